"""The one way through for both faces: the CLI and the app call these functions and only format
what they return. Each opens the database it is given, does one job, and returns plain data
(dicts, dataclasses, pandas frames). Nothing here prints or draws.

pandas, SQLAlchemy and the reports load inside the functions that need them, so that importing
this module (the app does at start-up) costs nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments.spec import ExperimentSpec

if TYPE_CHECKING:
    import pandas as pd

# What a report is drawn from: (label, database) pairs; the label is what `db:` selections match.
Sources = Sequence[tuple[str, Optional[str]]]


@contextmanager
def engine_for(db: Optional[str], *, create: bool = True, writer: bool = False) -> Iterator:
    """An engine on ``db`` (a path, a URL, or None for the default), disposed afterwards."""
    from storage.database import open_engine

    engine = open_engine(db, create=create, writer=writer)
    try:
        yield engine
    finally:
        engine.dispose()


# --- sweeps ----------------------------------------------------------------------------------


def run_label(spec: ExperimentSpec, event: dict) -> str:
    """One runner process of a run, as progress displays name it."""
    workers = event.get("resolved", {}).get("workers", spec.workers)
    return (
        f"{spec.workload} · {spec.executor} × {workers} · process {event['process'] + 1}"
        f"/{spec.processes}"
    )


def process_tasks(spec: ExperimentSpec) -> int:
    """The tasks one runner process of ``spec`` runs, warm-ups included: its progress total."""
    return (spec.warmups + spec.repeats) * spec.tasks


def sized(specs: Sequence[ExperimentSpec]) -> tuple[list[ExperimentSpec], list[str]]:
    """``specs`` with ``--size auto`` resolved (a user function without a size is calibrated,
    as the CLI does), and what calibration chose, in words. Starts a process per workload."""
    from tui.sweep import calibration_note, choose_sizes

    auto = [s.workload for s in specs if s.size is None and ":" in s.workload]
    if not auto:
        return list(specs), []
    sizes, calibrations = choose_sizes(auto, ["auto"], specs[0].python)
    chosen = [
        replace(s, size=sizes[s.workload][0]) if s.workload in sizes and s.size is None else s
        for s in specs
    ]
    return chosen, [calibration_note(name, found) for name, found in calibrations.items()]


def start_sweep(db: Optional[str], specs: Sequence[ExperimentSpec], **options: Any):
    """A Sweep of ``specs`` on ``db``, its specs checked in the interpreters that will run them
    (SpecError, DatabaseError when they cannot); ``run()`` it, ``cancel()`` it from any thread."""
    from storage.database import open_engine
    from tui.sweep import Sweep, check

    resolved = check(specs)
    return Sweep(open_engine(db, writer=True), specs, resolved, **options)


@dataclass
class SweepReport:
    """A finished sweep: its summary (one row per configuration) and verdicts in words."""

    summary: pd.DataFrame
    verdicts: list[str]


def sweep_report(engine, results: Sequence[dict]) -> Optional[SweepReport]:
    """The report of the sweep that gave ``results`` (the runs' objects), keyed as every report
    is (machine, Python, size and tasks); None when no run finished."""
    from storage.reports import sweep_verdicts

    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        return None
    summary, words = sweep_verdicts(engine, ok[0]["sweep_id"])
    return None if summary.empty else SweepReport(summary, words)


# --- reports ---------------------------------------------------------------------------------


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
        """The shape ``storage.render`` takes."""
        return self.rows, self.geomean, self.differences, self.a, self.b


@dataclass
class Report:
    """What stored runs mean: their runner processes (storage.reports.load_processes),
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
    """The finished runs' runner processes in ``sources`` (storage.reports.load_processes), or
    with ``repeats`` their counted repeats (what a comparison reads), only those matching
    ``selection`` if given (SelectionError for a selection that cannot be read)."""
    from contextlib import ExitStack

    from storage.listing import open_runs
    from storage.reports import load_processes, load_repeats, select

    with ExitStack() as stack:
        opened = [(label, stack.enter_context(open_runs(db))) for label, db in sources]
        found = (load_repeats if repeats else load_processes)(opened, selection)
    if selection and not found.empty:
        found = select(found, selection)
    return found


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

    processes = load(sources, selection)
    if processes.empty:
        return Report(processes, pd.DataFrame())
    repeats = load(sources, selection, repeats=True) if compare else None
    return build_report(processes, compare, min_effect, summarise_all, repeats)


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

    from storage.reports import min_effect_for, select, summarize, verdicts

    effect = min_effect_for(processes) if min_effect is None else min_effect
    summary = summarize(processes) if summarise_all or not compare else pd.DataFrame()
    words = verdicts(summary, effect) if not summary.empty else []
    found = Report(processes, summary, words, min_effect=effect)
    if compare:
        from storage.reports import compare as compare_selections

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


def detectable_note(engine, specs) -> list[str]:
    """Before a sweep: the smallest change its runs can tell apart on this machine, from the
    spread of the runs stored here (storage.power); nothing when none are."""
    from experiments.environment import collect, machine_fingerprint
    from storage.power import note

    if not specs:
        return []
    found = note(engine, machine_fingerprint(collect()), max(s.processes for s in specs))
    return [found] if found else []


def run_warnings(db: Optional[str], run: dict) -> list[str]:
    """The reports' stability warnings for one run's configuration, as a report gives them."""
    if run["status"] != "ok":
        return []
    summary = report([("db", db)], f"run:{run['run_id']}").summary
    if summary.empty:
        return []
    # Alone, any run lacks its sequential baseline: that one says nothing about this run.
    return [w for w in summary.iloc[0]["warnings"] if "no sequential run" not in w]


def timeline(engine, runs: pd.DataFrame, run_prefix: Optional[str] = None, samples: bool = True):
    """(run id, task samples, what its threads did or None) of the run whose prefix is given,
    else of the latest parallel run (the latest run when none ran in parallel) among ``runs``
    (a frame with a row or more per run); SelectionError for an unknown prefix.
    ``samples=False`` reads neither: (run id, None)."""
    from storage.errors import SelectionError
    from storage.reports import load_timeline, utc_times

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
    from storage.reports import load_look

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
    from storage.reports import load_look

    run_id, _ = timeline(lambda db: None, runs, run_prefix, samples=False)
    row = runs[runs["run_id"] == run_id].iloc[0]
    lanes, span_us = states.decode(load_look(engine(row["db"]), run_id))
    if not lanes:
        return None
    label = f"{row['workload']}, {row['executor']} x{row['workers']}, Python {row['python']}"
    return Look(run_id, label, lanes, span_us, states.seen(lanes, span_us))


# The formats a report can be exported in, by the name the CLI and the palette use.
EXPORT_SUFFIXES = {"html": "html", "markdown": "md", "csv": "csv", "json": "json"}


def render_report(found: Report, format: str, timeline_of=None) -> str:
    """``found`` as the text of ``format`` (markdown, csv, json or html)."""
    from storage import render

    compared = found.comparison.as_tuple() if found.comparison else None
    if format == "markdown":
        return render.markdown(found.summary, found.verdicts, compared)
    if format == "csv":
        return render.csv_report(found.summary)
    if format == "json":
        return render.json_report(found.summary, found.verdicts, compared)
    from storage.reports import MIN_EFFECT, verdicts_by_work

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
    from storage.output import database_files, write_text

    out = folder / f"summary.{EXPORT_SUFFIXES[format]}"
    write_text(out, render_report(found, format), database_files([db]))
    return out


# --- runs and machines -----------------------------------------------------------------------


def complete_selection(db: Optional[str], typed: str) -> Optional[str]:
    """``typed`` (a selection being written) with its last term completed from what ``db``
    holds: a key (``exec`` -> ``executor:``) or a stored value (``tag:be`` -> ``tag:before``);
    None when nothing stored completes it."""
    from storage.queries import SELECTION_KEYS, key_values

    head, comma, last = typed.rpartition(",")
    before = head + comma
    key, colon, value = last.lstrip().partition(":")
    if not colon:
        keys = [k for k in SELECTION_KEYS if k.startswith(key) and key]
        return f"{before}{keys[0]}:" if keys else None
    with engine_for(db, create=False) as engine:
        found = [v for v in key_values(engine, key, value) if v != value]
    return f"{before}{key}:{found[0]}" if found else None


def open_database(db: Optional[str]) -> None:
    """Make ``db`` ready for the app's panes to read side by side: a lab file is checked (and
    migrated when older) with the standard library alone, as `conlab runs` opens it; anything
    else goes the writer's way, through SQLAlchemy: a new file gets its tables (a file another
    opener is setting up this moment is waited for), a server database its check, and what is
    not a lab database is refused."""
    from storage.listing import open_runs
    from storage.target import FileDatabase, database_target, has_lab_header

    target = database_target(db)
    if isinstance(target, FileDatabase) and has_lab_header(target.path):
        with open_runs(target):
            return
    with engine_for(db):
        pass


def runs_page(db: Optional[str], text: str = "", offset: int = 0, limit: int = 200) -> list:
    """One page of the stored runs in ``db`` whose row holds ``text`` (``tag:X``: the tag X),
    newest first, from the ``offset``-th (runs left `running` by a recorder that is gone are
    marked interrupted before the first page)."""
    from storage.listing import open_runs
    from storage.queries import RunFilter

    with open_runs(db) as runs:
        if not offset:
            runs.mark_interrupted()
        return list(runs.stream(RunFilter(text=text, offset=offset, limit=limit)))


def list_runs(db: Optional[str], tag: Optional[str] = None, *, create: bool = True) -> list[dict]:
    """Every stored run in ``db`` as run objects, newest first; runs left `running` by a
    recorder that is gone are marked interrupted first."""
    from storage.queries import list_runs as stored_runs
    from storage.queries import mark_interrupted

    with engine_for(db, create=create) as engine:
        mark_interrupted(engine)
        return stored_runs(engine, tag=tag)  # newest first


@contextmanager
def stored_runs(sources: Sources, chosen) -> Iterator[tuple[Iterator[dict], int]]:
    """The runs of ``sources`` (label, db) that ``chosen`` (storage.queries.RunFilter) picks,
    newest first across the databases, streamed; and how many they hold without its limit.
    Runs left `running` by a recorder that is gone are marked interrupted first."""
    import heapq
    from contextlib import ExitStack

    from storage.listing import open_runs

    with ExitStack() as stack:
        streams, total = [], 0
        for label, db in sources:
            runs = stack.enter_context(open_runs(db))
            runs.mark_interrupted()
            one = replace(chosen, label=label)
            total += runs.count(one)
            streams.append(runs.stream(one))
        merged = heapq.merge(*streams, key=lambda r: r.get("created_at") or "", reverse=True)
        if chosen.limit is not None:
            merged = itertools.islice(merged, chosen.limit)
        yield merged, total


def prune_runs(db: Optional[str], before, keep_tags, include_tagged: bool, dry_run: bool) -> dict:
    """`conlab db prune` (storage.upkeep.prune) on ``db``."""
    from storage.upkeep import prune

    with engine_for(db, create=False, writer=not dry_run) as engine:
        return prune(engine, before, keep_tags, include_tagged, dry_run)


# The columns of a list of runs, in `conlab runs` and the app's Runs table alike.
RUN_COLUMNS = (
    "run",
    "created",
    "machine",
    "python",
    "workload",
    "executor",
    "workers",
    "status",
    "median",
    "tag",
)


def run_row(run: dict) -> dict[str, Any]:
    """One run as a list shows it, by RUN_COLUMNS: numbers stay numbers (to sort)."""
    median = run["median_s"]
    return {
        "run": run["run_id"][:8],
        "created": iso_seconds(run.get("created_at")),
        "machine": run.get("machine") or "?",
        "python": run.get("python") or "?",
        "workload": run["workload"],
        "executor": run["executor"],
        "workers": run["workers"],
        "status": run["status"],
        "median": f"{median * 1000:.1f} ms" if median is not None else "",
        "tag": run["tag"] or "",
    }


def iso_seconds(moment: Any) -> str:
    """A stored time as every command and pane shows it: ISO 8601, UTC, to the second
    (2026-11-25T21:03:07Z); text that is no time is shown as it is."""
    from datetime import datetime, timezone

    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        try:
            moment = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
        except ValueError:
            return str(moment)
    if moment.tzinfo is None:  # SQLite keeps no zone; the lab writes UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def newest_first(runs: list[dict]) -> list[dict]:
    """Runs of several databases by creation time, the newest first; runs of one second keep
    the order each database gave them (its own, finer)."""
    return sorted(runs, key=lambda r: r.get("created_at") or "", reverse=True)


def run_detail(db: Optional[str], run: dict) -> dict[str, Any]:
    """What the run's row in a list leaves out: its environment, error detail, stderr, and the
    reports' warnings for it."""
    from storage.browse import run_detail as stored_detail

    with engine_for(db) as engine:
        detail = stored_detail(engine, run["run_id"])
    return {**detail, "warnings": run_warnings(db, run)}


def tag_run(db: Optional[str], run_id: str, tag: Optional[str]) -> None:
    """Set one run's tag (empty or None removes it)."""
    from storage.browse import set_tag

    with engine_for(db, writer=True) as engine:
        set_tag(engine, run_id, tag or None)


def delete_run(db: Optional[str], run_id: str) -> None:
    """Delete one run and its measurements."""
    from storage.browse import delete_run as stored_delete

    with engine_for(db, writer=True) as engine:
        stored_delete(engine, run_id)


def machines(db: Optional[str]) -> list[dict[str, Any]]:
    """The machines in ``db`` (see storage.queries.machine_objects), read as the runs are
    listed (storage.listing: a lab file through sqlite3 alone)."""
    from storage.listing import open_runs

    with open_runs(db) as stored:
        return stored.machines()


def this_machine() -> dict[str, Any]:
    """This machine's and interpreter's facts, as recorded with every run."""
    from experiments.environment import collect

    return collect()
