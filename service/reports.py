"""Reports and comparisons of stored runs, for both faces: the CLI and the app call these
functions and only format what they return. Each opens the databases it is given, does one job,
and returns plain data (dicts, dataclasses, pandas frames). Nothing here prints or draws.

pandas, SQLAlchemy and the reports load inside the functions that need them, so that importing
this module (the app does at start-up) costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from service.databases import Sources

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Comparison:
    """B against A: one row per configuration both hold, their geometric mean, and how the
    selections' environments differ."""

    a: str
    b: str
    rows: list
    geomean: float
    differences: dict[str, tuple[str, str]]
    summary_a: pd.DataFrame
    summary_b: pd.DataFrame

    def as_tuple(self) -> tuple:
        """The shape ``service.present.render`` takes."""
        return self.rows, self.geomean, self.differences, self.a, self.b


@dataclass
class Report:
    """What stored runs mean: their runner processes (storage.loading.load_processes),
    summary and verdicts, and a comparison if asked."""

    processes: pd.DataFrame
    summary: pd.DataFrame
    verdicts: list[str] = field(default_factory=list)
    comparison: Optional[Comparison] = None
    min_effect: Optional[float] = None  # the change a verdict calls a difference; None: default

    @property
    def empty(self) -> bool:
        return self.processes.empty


def load(sources: Sources, selection: Optional[str] = None, repeats: bool = False):
    """The finished runs' runner processes in ``sources`` (storage.loading.load_processes), or
    with ``repeats`` their counted repeats (what a comparison reads), only those matching
    ``selection`` if given (SelectionError for a selection that cannot be read)."""
    processes, counted = load_both(sources, selection, repeats)
    return counted if repeats else processes


def load_both(sources: Sources, selection: Optional[str] = None, repeats: bool = True):
    """(runner processes, counted repeats or None) of the finished runs in ``sources`` that
    ``selection`` picks, each database opened once for both (see ``load``)."""
    from contextlib import ExitStack

    from storage.listing import open_runs
    from storage.loading import load_processes, load_repeats, select

    with ExitStack() as stack:
        opened = [(label, stack.enter_context(open_runs(db))) for label, db in sources]
        found = [load_processes(opened, selection)]
        found.append(load_repeats(opened, selection) if repeats else None)
    if selection:
        found = [f if f is None or f.empty else select(f, selection) for f in found]
    return found[0], found[1]


def adding_nothing(sources: Sources, processes: pd.DataFrame) -> list[str]:
    """The labels of ``sources`` (past the first) that gave ``processes`` (``load``'s frame) no
    run: a run held by several databases is read from the first that holds it."""
    given = set(processes["db"]) if "db" in processes else set()
    return [label for label, _ in sources[1:] if label not in given]


def report(
    sources: Sources,
    selection: Optional[str] = None,
    compare: Optional[tuple[str, str]] = None,
    min_effect: Optional[float] = None,
    summarise_all: bool = True,
) -> Report:
    """The report over ``sources``: the summary and verdicts of the runs ``selection`` picks,
    and B against A when ``compare`` is given. ``summarise_all=False`` leaves the whole summary
    out when only the comparison is wanted."""
    import pandas as pd

    processes, repeats = load_both(sources, selection, repeats=bool(compare))
    if processes.empty:
        return Report(processes, pd.DataFrame())
    return build_report(processes, compare, min_effect, summarise_all, repeats)


def slower(found: Report, percent: float) -> list:
    """The rows of ``found``'s comparison that are significantly slower by more than
    ``percent`` percent (`conlab report --fail-if-slower`'s gate); none without a comparison."""
    if found.comparison is None:
        return []
    return [
        row
        for row in found.comparison.rows
        if row.verdict == "slower" and (row.ratio - 1) * 100 > percent
    ]


def build_report(
    processes: pd.DataFrame,
    compare: Optional[tuple[str, str]] = None,
    min_effect: Optional[float] = None,
    summarise_all: bool = True,
    repeats: Optional[pd.DataFrame] = None,
) -> Report:
    """The report of ``processes`` already loaded (see ``report``); a comparison reads the
    same runs' ``repeats`` (``load(..., repeats=True)``)."""
    import pandas as pd

    from storage.loading import select
    from storage.summaries import min_effect_for, summarize
    from storage.verdicts import verdicts

    effect = min_effect_for(processes) if min_effect is None else min_effect
    summary = summarize(processes) if summarise_all or not compare else pd.DataFrame()
    words = verdicts(summary, effect) if not summary.empty else []
    found = Report(processes, summary, words, min_effect=effect)
    if compare:
        from storage.comparisons import compare as compare_selections

        if repeats is None:
            raise ValueError("a comparison reads the runs' repeats: pass repeats")
        a, b = compare
        rows, geomean, differences = compare_selections(repeats, a, b, effect)
        found.comparison = Comparison(
            a,
            b,
            rows,
            geomean,
            differences,
            summarize(select(processes, a)),
            summarize(select(processes, b)),
        )
    return found


def timeline(engine, runs: pd.DataFrame, run_prefix: Optional[str] = None, samples: bool = True):
    """(run id, task samples, what its threads did or None) of the run whose prefix is given,
    else of the latest parallel run (the latest run when none ran in parallel) among ``runs``
    (a frame with a row or more per run); SelectionError for an unknown prefix.
    ``samples=False`` reads neither: (run id, None)."""
    from storage.errors import SelectionError
    from storage.loading import load_timeline, utc_times

    runs = runs.drop_duplicates("run_id")
    runs = runs.assign(created_at=utc_times(runs["created_at"])).sort_values("created_at")
    if run_prefix:
        runs = runs[runs["run_id"].astype(str).str.startswith(run_prefix)]
        if runs.empty:
            raise SelectionError(f"no finished run starts with {run_prefix!r}; see `conlab runs`")
    else:
        parallel = runs[runs["workers"] > 1]
        runs = parallel if not parallel.empty else runs
    run = runs.iloc[-1]
    if not samples:
        return str(run["run_id"]), None
    from storage.loading import load_look

    source = engine(run["db"])
    run_id = str(run["run_id"])
    return run_id, load_timeline(source, run_id), load_look(source, run_id)


@dataclass(frozen=True)
class Look:
    """What each thread of one run did in its looked-at repeat (storage.states)."""

    run_id: str
    label: str  # the run as reports name it: workload, executor x workers, python
    lanes: list
    span_us: int
    seen: Any  # storage.states.Seen, or None


def look(engine, runs: pd.DataFrame, run_prefix: Optional[str] = None) -> Optional[Look]:
    """The looked-at repeat of the run ``timeline`` picks among ``runs``; None when that run
    has none."""
    from storage import states
    from storage.loading import load_look

    run_id, _ = timeline(lambda db: None, runs, run_prefix, samples=False)
    row = runs[runs["run_id"] == run_id].iloc[0]
    lanes, span_us = states.decode(load_look(engine(row["db"]), run_id))
    if not lanes:
        return None
    from experiments.spec import run_label

    configuration = run_label(row["executor"], row["workers"], False)
    label = f"{row['workload']}, {configuration}, Python {row['python']}"
    return Look(run_id, label, lanes, span_us, states.seen(lanes, span_us))


# The formats a report can be exported in, by the name the CLI and the palette use.
EXPORT_SUFFIXES = {"html": "html", "markdown": "md", "csv": "csv", "json": "json"}


def render_report(found: Report, format: str, timeline_of=None) -> str:
    """``found`` as the text of ``format`` (markdown, csv, json or html)."""
    from service.present import render

    compared = found.comparison.as_tuple() if found.comparison else None
    if format == "markdown":
        return render.markdown(found.summary, found.verdicts, compared)
    if format == "csv":
        return render.csv_report(found.summary)
    if format == "json":
        return render.json_report(found.summary, found.verdicts, compared)
    from storage.summaries import MIN_EFFECT
    from storage.verdicts import verdicts_by_work

    effect = MIN_EFFECT if found.min_effect is None else found.min_effect
    said = verdicts_by_work(found.summary, effect) if not found.summary.empty else []
    return render.html_page(found.summary, said, compared, timeline_of)


def export_report(db: Optional[str], format: str, folder: Path) -> Optional[Path]:
    """Write the report of every finished run in ``db`` to ``folder``/summary.SUFFIX (never
    through a link there, never over ``db``); the file written, or None when no run has
    finished. OutputError when it cannot be written."""
    found = report([("db", db)])
    if found.empty:
        return None
    from service.output import database_files, write_text

    out = folder / f"summary.{EXPORT_SUFFIXES[format]}"
    write_text(out, render_report(found, format), database_files([db]))
    return out


def work_key() -> tuple:
    """The columns that make a piece of work, what a speedup is measured against
    (storage.summaries.BASELINE_KEY): machine, Python, workload, size, tasks."""
    from storage.summaries import BASELINE_KEY

    return tuple(BASELINE_KEY)
