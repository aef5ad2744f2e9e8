"""The `conlab` command line (typer). Bad input is one line on stderr and exit code 2; a run that
fails is recorded as failed and gives exit code 1; never a traceback for either."""

from __future__ import annotations

import inspect
import itertools
import json
import os
import sys
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, Optional

import typer

from experiments import options as sweep_options
from experiments.options import parse_workers
from experiments.spec import SpecError, normal_workload, run_label
from storage.errors import DatabaseError, OutputError, SelectionError
from storage.text import as_text, number_text, printable
from tui.opening import fail, open_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    pretty_exceptions_enable=False,
    help="concurrency-lab: which way of running this work concurrently is fastest here, and why.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
list_app = typer.Typer(help="List workloads, executors or Python interpreters.")
app.add_typer(list_app, name="list")
db_app = typer.Typer(help="Inspect, check, merge and export result databases.")
app.add_typer(db_app, name="db")


class BadInput(Exception):
    """Bad usage or input: one line for stderr, exit code 2."""


DB_HELP = (
    "database file or SQLAlchemy URL (default: $CONLAB_DB, else results.db in the user data dir)"
)
JSON_HELP = "print machine-readable JSON on stdout, and nothing else there"


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(
        width=None if sys.stdout.isatty() else 200,
        stderr=stderr,
        no_color=bool(os.environ.get("NO_COLOR")) or None,
        highlight=False,
    )


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _sources(db: Optional[list[str]]) -> list[tuple[str, Optional[str]]]:
    """The databases ``--db`` names (the default when none), each checked and read once, as
    (label, --db value) pairs."""
    from service.databases import distinct

    for one in db or [None]:
        _check_db(one)
    return [(one or str(_default_db()), one) for one in distinct(db or [None])]


def _check_db(db: Optional[str]) -> None:
    """Refuse a --db (or $CONLAB_DB) that names no database we could keep runs in (one line,
    from storage.database.database_target)."""
    from service.databases import check_target

    check_target(db)


SCREENSHOTS_HELP = "folder for the app's F8 screenshots (default: screenshots in the user data dir)"


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    screenshots: Optional[Path] = typer.Option(None, file_okay=False, help=SCREENSHOTS_HELP),
) -> None:
    """Without a command: open the app (on the database --db). Before a command, --db is
    that command's database unless it names its own."""
    if ctx.invoked_subcommand is None:
        open_app(db, screenshots)
    elif db is not None:
        os.environ["CONLAB_DB"] = db  # what every command's own --db defaults to


class Order(str, Enum):
    turns = "turns"
    blocks = "blocks"


@app.command()
def run(
    workload: list[str] = typer.Option(
        ..., "-w", "--workload", help="built-in name, MODULE:FUNCTION or path/file.py:FUNCTION"
    ),
    executor: list[str] = typer.Option(..., "-e", "--executor", help="may be given several times"),
    order: Order = typer.Option(
        Order.turns,
        help="turns: the runs' processes take turns in a shuffled order (drift hits all alike); "
        "blocks: all processes of one run, then the next",
    ),
    target_ci: float = typer.Option(2.0, help="with --repeats auto: interval half-width, percent"),
    detect: Optional[float] = typer.Option(
        None,
        help="with --repeats auto: the smallest change (percent) a comparison of these runs "
        "should see; sets --target-ci to half of it",
    ),
    against: Optional[str] = typer.Option(
        None,
        metavar="SELECTION",
        help="measure the stored runs SELECTION picks (e.g. tag:v1) again in this sweep, taking "
        "turns with the new ones, so `report --compare` compares them within one sweep",
    ),
    max_time: Optional[float] = typer.Option(
        None, help="with --repeats auto: seconds the sweep may take (default 300)"
    ),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    **options: Any,
) -> int:
    """Run workloads on executors and store every timing."""
    from service import sweeps

    options = {o.name: options[o.key] for o in sweep_options.OPTIONS}
    workers, size, repeats = options.pop("workers"), options.pop("size"), options.pop("repeats")
    adaptive = repeats.strip().lower() == "auto"
    if detect is not None and not adaptive:
        raise BadInput("--detect needs --repeats auto; add --repeats auto")
    if detect is not None and not 0 < detect < 100:
        raise BadInput(f"--detect must be a percentage above 0 and below 100, not {detect}")
    if detect is not None:
        # Two runs each measured to +-detect/2 see a change of `detect` about 4 times in 5.
        target_ci = detect / 2
    if adaptive and not 0 < target_ci < 100:
        raise BadInput(f"--target-ci must be a percentage above 0 and below 100, not {target_ci}")
    if max_time is not None and not 0 < max_time < 10**6:
        raise BadInput(f"--max-time must be a number of seconds above 0, not {max_time}")
    request = sweeps.SweepRequest(
        workloads=list(dict.fromkeys(map(normal_workload, workload))),
        executors=executor,
        workers=parse_workers(workers),
        pythons=options.pop("python") or [None],
        sizes=_parse_sizes(size),
        params={
            "repeats": 5 if adaptive else _parse_count("--repeats", repeats, "5 or auto"),
            **{name: getattr(value, "value", value) for name, value in options.items()},
        },
        order=order.value,
        target_ci=target_ci / 100 if adaptive else None,
        max_time_s=max_time,
        detect=detect / 100 if detect is not None else None,
        against=against,
    )
    prepared = sweeps.prepare(db, request)
    sweep, engine, specs = prepared.sweep, prepared.sweep.engine, prepared.sweep.specs
    for note in prepared.notes:
        sys.stderr.write(f"conlab: {printable(note)}\n")
    live = sys.stdout.isatty() and not as_json and not os.environ.get("NO_COLOR")
    if not as_json:
        for line in sweeps.detectable_note(engine, specs):
            sys.stderr.write(f"conlab: {line}\n")
    with _Progress(live, sweep) as progress, sweep.cancelled_by_signals():
        sweep.on_event = progress.on_event
        results = sweep.run()
    if as_json:
        _print_json(results)
    else:
        _print_results(results, sweep.cancelled)
        _print_verdicts(engine, results)
    if any("saved_to" in r for r in results):
        _say_unsaved(results, as_json)
        return 1
    return 0 if results and all(r["status"] == "ok" for r in results) and not sweep.cancelled else 1


def _say_unsaved(results: list[dict], as_json: bool) -> None:
    """One line on the runs the database did not take: where they were saved instead, or that
    nothing could keep them but what was printed."""
    saved = [r["saved_to"] for r in results if r.get("saved_to")]
    lost = [r for r in results if "saved_to" in r and not r["saved_to"]]
    parts = []
    if saved:
        where = printable(os.path.dirname(saved[0]))
        stored = f"{len(saved)} run(s) could not be stored in the database"
        parts.append(f"{stored}; their results are saved in {where}")
    if lost:
        shown = (
            "in the JSON on stdout, with every event the runner sent"
            if as_json
            else "shown above, and nowhere else"
        )
        parts.append(
            f"{len(lost)} run(s) could not be stored in the database nor saved to a file "
            f"({printable(lost[0].get('unsaved_error'))}): their results are {shown}"
        )
    sys.stderr.write(f"conlab: {'; '.join(parts)}\n")


# How `conlab run` takes an option whose command-line form is not one value of its type: several
# worker counts or sizes, a count or "auto", an interpreter per --python.
CLI_FORMS: dict[str, tuple[Any, Any]] = {
    "workers": (Optional[str], None),
    "size": (Optional[str], None),
    "repeats": (str, "5"),
    "python": (Optional[list[str]], None),
}


def _option_parameter(option: sweep_options.SweepOption) -> inspect.Parameter:
    """``option`` as a parameter of ``run``, which typer turns into a flag."""
    if option.name in CLI_FORMS:
        annotation, default = CLI_FORMS[option.name]
    elif option.choices:
        annotation = Optional[Enum(option.key, [(c, c) for c in option.choices], type=str)]
        default = option.default
    else:
        annotation = option.type if option.default is not None else Optional[option.type]
        default = option.default
    return inspect.Parameter(
        option.key,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, option.flag, help=option.help),
        annotation=annotation,
    )


def use_option_table() -> None:
    """Give ``run`` one flag per row of the option table (typer reads the signature)."""
    fixed = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(run, follow_wrapped=False).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in _option_keys
    ]
    added = [_option_parameter(option) for option in sweep_options.OPTIONS]
    _option_keys.clear()
    _option_keys.update(p.name for p in added)
    # after -w and -e, before the options of the sweep as a whole (--order ... --json)
    run.__signature__ = inspect.Signature(fixed[:2] + added + fixed[2:], return_annotation=int)


_option_keys: set[str] = set()
use_option_table()


def _parse_count(option: str, text: str, example: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInput(
            f"{option} takes a whole number, not {text!r}; pass e.g. {option} {example}"
        ) from None


def _parse_sizes(text: Optional[str]) -> list[Optional[int | str]]:
    """``--size``: none (the workload's own), ``auto``, or sizes separated by commas, which
    take turns in one sweep (compare them with --compare size:A size:B)."""
    if text is None:
        return [None]
    if text.strip().lower() == "auto":
        return ["auto"]
    sizes = [
        _parse_count("--size", part.strip(), "1000, 1000,1100 or auto") for part in text.split(",")
    ]
    return list(dict.fromkeys(sizes))


class _Progress:
    """Rich live progress on a terminal; nothing otherwise."""

    def __init__(self, live: bool, sweep):
        self.live = live
        self.sweep = sweep
        self._progress = None

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),  # a workload path is text
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=_console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._overall = self._progress.add_task("processes", total=self.sweep.planned)
            self._current = None
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False

    def on_event(self, spec, event) -> None:
        if self._progress is None:
            return
        kind = event.get("event")
        if kind == "env":
            from service.sweeps import process_label, process_tasks

            label = printable(process_label(spec, event))
            self._current = self._progress.add_task(label, total=process_tasks(spec))
        elif kind == "tasks" and self._current is not None:
            # Per repeat, between timings: mid-repeat updates would take CPU from the run.
            self._progress.update(self._current, completed=(event["repeat"] + 1) * spec.tasks)
        elif kind in ("done", "error"):
            total = max(self.sweep.planned, self.sweep.launched)
            self._progress.update(self._overall, completed=self.sweep.launched, total=total)
            if self._current is not None:
                self._progress.remove_task(self._current)
                self._current = None


def _print_results(results: list[dict], cancelled: bool) -> None:
    """The sweep's runs, one line each, fitted to the terminal as the report is: what every
    run shares said once above them, errors and notes below."""
    from service.sweeps import speedups as run_speedups

    speedups = run_speedups(results)
    rows = [
        {
            "python": r.get("python") or "",
            "workload": r["workload"],
            "size": number_text(r["size"]),
            "executor": r["executor"],
            "workers": str(r["workers"]),
            "start": r["start_method"] or "",
            "status": r["status"],
            "median": f"{r['median_s'] * 1000:.1f} ms" if r["median_s"] is not None else "",
            "95% interval": _interval_text(r),
            "speedup": speedups.get(r["run_id"], ""),
        }
        for r in results
    ]
    shared = [c for c in ("workload", "size", "python") if len({row[c] for row in rows}) == 1]
    said = {"workload": "{}", "size": "size {}", "python": "Python {}"}
    title = "runs: " + ", ".join(said[c].format(rows[0][c]) for c in shared if rows[0][c])
    identity = [c for c in ("python", "workload", "size") if c not in shared]
    failed = ["status"] if any(row["status"] != "ok" for row in rows) else []
    required = [*identity, "executor", "workers", *failed, "median", "95% interval"]
    if_room = ["speedup"] + (["start"] if any(row["start"] for row in rows) else [])
    console = _console()
    _print_fitted([(title, rows)], required, if_room, console)
    for r in results:
        name = run_label(r["executor"], r["workers"])
        if r["error"]:
            console.print(as_text(f"{name}: {r['error']}"))
        for note in r.get("notes", []):
            console.print(as_text(f"{name}: {note}"))
        if r.get("target_ci_met") is False:
            console.print(as_text(f"{name}: its interval did not reach --target-ci in --max-time"))
    if cancelled:
        console.print("cancelled: the run in progress was stored as cancelled; later runs skipped")


def _print_verdicts(engine, results: list[dict]) -> None:
    from service.sweeps import sweep_report

    found = sweep_report(engine, results)
    if found is not None:
        console = _console()
        for line in found.verdicts:
            console.print(as_text(line))


def _interval_text(r: dict) -> str:
    if r.get("ci_low_s") is None or r.get("ci_high_s") is None:
        return ""
    return f"{r['ci_low_s'] * 1000:.1f}–{r['ci_high_s'] * 1000:.1f} ms"


@app.command()
def advise(
    workload: str = typer.Argument(
        ..., help="MODULE:FUNCTION, path/file.py:FUNCTION or a built-in name"
    ),
    size: Optional[str] = typer.Option(
        None, help="the argument each call gets, or auto (default: auto for MODULE:FUNCTION)"
    ),
    tasks: Optional[int] = typer.Option(
        None, help="calls per repeat (default: enough for ~0.2 s sequentially, at least 16)"
    ),
    time_budget: float = typer.Option(60.0, help="seconds the probes and the sweep may take"),
    python: Optional[list[str]] = typer.Option(
        None,
        help="an interpreter to advise on (repeat it: their candidates take turns in one sweep, "
        "and the answer names the interpreter); default: this one",
    ),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> int:
    """Characterise a function, measure the executors that can win, and recommend one."""
    from service.advise import AdviseFailed
    from service.advise import advise as run_advise

    sizes = _parse_sizes(size)
    if len(sizes) > 1:
        raise BadInput("advise takes one --size (or auto); pass e.g. --size 1000")
    _check_db(db)
    say = (
        (lambda line: sys.stderr.write(f"conlab: {printable(line)}\n"))
        if (sys.stderr.isatty())
        else None
    )
    try:
        found = run_advise(
            normal_workload(workload),
            db,
            sizes[0],
            tasks,
            time_budget,
            say=say,
            pythons=python or (None,),
        )
    except AdviseFailed as exc:
        fail(str(exc), 1)
    if as_json:
        _print_json(found)
    else:
        _print_advice(found)
    return 0 if found["recommendation"] is not None else 1


def _print_advice(found: dict) -> None:
    from service.advise import advice_lines

    console = _console()
    for line in advice_lines(found):
        console.print(as_text(line))


@list_app.command("workloads")
def list_workloads(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Built-in workloads, with what each shows and its default size."""
    from service.catalogue import workloads

    rows = [
        {
            "name": w.name,
            "description": w.description,
            "default_size": w.default_size,
            "async": w.async_func is not None,
        }
        for w in workloads().values()
    ]
    if as_json:
        return _print_json(rows)
    _print_rows(rows, ["name", "description", "default_size", "async"])
    typer.echo(
        "Your own function: -w MODULE:FUNCTION or -w path/to/file.py:FUNCTION "
        "(called as FUNCTION(size))."
    )


@list_app.command("executors")
def list_executors(
    python: Optional[str] = typer.Option(
        None, help="the interpreter to ask (default: this one), as `conlab run --python` runs it"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Executors, whether each is available here, and why not when it is not."""
    from service.catalogue import executors

    rows = executors(python)
    if as_json:
        return _print_json(rows)
    for row in rows:
        row["available"] = "yes" if row["available"] else f"no: {row['reason']}"
    _print_rows(rows, ["name", "available", "description"])


@list_app.command("pythons")
def list_pythons(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Python interpreters found on this machine (3.9 and newer), for --python."""
    from service.catalogue import interpreters

    rows = interpreters()
    if as_json:
        return _print_json(rows)
    for row in rows:
        row["build"] = "free-threaded" if row["free_threaded"] else "GIL"
        row["gil by default"] = "off" if not row["gil_enabled"] else "on"
        row["current"] = "*" if row["current"] else ""
    _print_rows(rows, ["current", "version", "implementation", "build", "gil by default", "path"])


RUNS_SHOWN = 50  # `conlab runs` without --limit or --all
# Rows of one terminal table while `conlab runs --all` streams (each table sized to its rows).
TABLE_ROWS = 500


@app.command()
def runs(
    db: Optional[list[str]] = typer.Option(None, help=DB_HELP + "; repeat to read several"),
    tag: Optional[str] = typer.Option(None, help="only runs with this tag"),
    select_runs: Optional[str] = typer.Option(
        None, "--select", help="only runs matching this selection (as in `conlab report`)"
    ),
    since: Optional[str] = typer.Option(
        None, help="only runs created on or after this UTC date or time (2026-11-25)"
    ),
    limit: int = typer.Option(RUNS_SHOWN, help="the newest N runs"),
    all_runs: bool = typer.Option(False, "--all", help="every run (instead of --limit)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Stored runs, newest first (the newest 50 unless --limit or --all)."""
    from service.runs import RUN_COLUMNS, run_filter, run_row, stored_runs

    if limit < 1:
        raise BadInput(f"--limit must be 1 or more, not {limit}; or pass --all")
    sources = _sources(db)
    chosen = run_filter(
        tag=tag,
        selection=select_runs,
        since=_parse_since(since),
        limit=None if all_runs else limit,
    )
    with stored_runs(sources, chosen) as (found, total):
        write = _stream_json if as_json else partial(_print_run_tables, RUN_COLUMNS, run_row)
        shown = write(found)
    if not total and not as_json:
        filtered = tag is not None or select_runs or since
        typer.echo(
            "No stored run matches --tag, --select or --since; `conlab runs` lists the newest"
            if filtered
            else "No runs stored yet. Record one with: conlab run -w cpu -e sequential -e processes"
        )
    if total > shown:
        sys.stderr.write(
            f"conlab: {total - shown} older run(s) not shown; see them with --limit N, --all, "
            "--since DATE or --select SEL\n"
        )


def _parse_since(since: Optional[str], option: str = "--since"):
    """An ISO date or time given to ``option``, UTC unless it names its zone (naive UTC)."""
    if since is None:
        return None
    from datetime import datetime, timezone

    try:
        moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{option} {since!r} is no date; write an ISO date or time, e.g. 2026-11-25 or "
            "2026-11-25T21:00"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.replace(tzinfo=None)


def _stream_json(objects) -> int:
    """Write ``objects`` as one JSON array, each as soon as it comes, one object a line (json's C
    encoder: the indented one is pure Python, a third of a 10,000-run listing); how many."""
    count = 0
    encode = json.JSONEncoder(default=str, separators=(", ", ": ")).encode
    sys.stdout.write("[")
    for count, obj in enumerate(objects, 1):
        sys.stdout.write(("," if count > 1 else "") + "\n" + encode(obj))
    sys.stdout.write("\n]\n" if count else "]\n")
    return count


def _print_run_tables(columns, row_of, runs) -> int:
    """Runs as terminal tables of at most TABLE_ROWS rows each, as they come; how many."""
    count = 0
    for batch in iter(lambda: list(itertools.islice(runs, TABLE_ROWS)), []):
        _print_plain_rows([row_of(run) for run in batch], list(columns))
        count += len(batch)
    return count


def _print_plain_rows(rows: list[dict], columns: list[str]) -> None:
    """``_print_rows``, drawn by tui.table where it draws the same table, else by rich."""
    import shutil

    from tui.table import box_table

    drawn = None
    if (sys.stdout.encoding or "").lower().replace("-", "").startswith("utf"):
        tty = sys.stdout.isatty()
        drawn = box_table(
            columns,
            [[printable(row.get(c)) for c in columns] for row in rows],
            shutil.get_terminal_size().columns if tty else 200,
            bold=tty and os.environ.get("TERM") not in ("dumb", "unknown"),
        )
    if drawn is None:
        _print_rows(rows, columns)
    else:
        sys.stdout.write(drawn + "\n")


class ReportFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


@app.command()
def report(
    db: Optional[list[str]] = typer.Option(None, help=DB_HELP + "; repeat to read several"),
    format: Optional[ReportFormat] = typer.Option(
        None,
        "--format",
        help="default: table (on a terminal or a pipe alike), markdown to --output",
    ),
    wide: bool = typer.Option(
        False, "--wide", help="the table with every column (the other formats have them all)"
    ),
    output: Optional[str] = typer.Option(None, help="write to this file instead of stdout"),
    compare: Optional[tuple[str, str]] = typer.Option(
        None,
        help="compare selection B against A: KEY:VALUE[,KEY:VALUE] with keys run, sweep, "
        "tag, machine, python, workload, executor, db (e.g. --compare tag:before tag:after)",
    ),
    fail_if_slower: Optional[float] = typer.Option(
        None, help="exit 1 when a comparison is significantly slower by more than PCT percent"
    ),
    min_effect: Optional[float] = typer.Option(
        None,
        help="smallest change (percent) called a difference (default 5, or half the smallest "
        "--detect the runs were measured for)",
    ),
    select_runs: Optional[str] = typer.Option(None, "--select", help="only runs matching this"),
    timeline: Optional[str] = typer.Option(
        None,
        help="run id (prefix) whose task timeline the "
        "HTML report draws (default: the latest parallel run)",
    ),
) -> int:
    """What the stored runs mean: medians, spread, speedup, efficiency, verdicts, comparisons."""
    from service import reports

    _check_report_flags(compare, fail_if_slower, min_effect)
    sources = _sources(db)
    if output is not None:
        _check_output(output, db or [None])
    # A pipe gets what a terminal gets (`conlab report | tee out.txt`); a file, Markdown.
    chosen = format or (ReportFormat.markdown if output else ReportFormat.table)
    # A comparison on a terminal is the answer asked for: the whole summary would bury it.
    found = reports.report(
        sources,
        select_runs,
        compare,
        None if min_effect is None else min_effect / 100,
        summarise_all=chosen != ReportFormat.table,
    )
    processes = found.processes
    matching = " matching --select" if select_runs else ""
    for label in reports.adding_nothing(sources, processes):
        sys.stderr.write(
            f"conlab: {printable(label)} adds no run to the report: it holds no finished run"
            f"{matching} that an earlier --db does not\n"
        )
    if processes.empty and select_runs:
        raise BadInput(
            f"--select {select_runs!r} matches no finished run; see `conlab runs` for what "
            "is stored"
        )
    if processes.empty:
        typer.echo(
            "No finished runs to report yet. Record a first one with:\n"
            "  conlab run -w cpu -e sequential -e threads -e processes"
        )
        return 0
    if timeline is not None and chosen != ReportFormat.html:
        _print_look(sources, processes, timeline)
    elif chosen == ReportFormat.table:
        _print_report_table(found, wide)
    else:
        timeline_of = None
        if chosen == ReportFormat.html:
            timeline_of = _timeline(sources, processes, timeline)
        text = reports.render_report(found, chosen.value, timeline_of)
        if output:
            from service.output import database_files, write_text

            write_text(Path(output), text, database_files(db or [None]))
        else:
            sys.stdout.write(text)
    if fail_if_slower is not None:
        slower = reports.slower(found, fail_if_slower)
        if slower:
            sys.stderr.write(
                f"conlab: {len(slower)} configuration(s) slower by more than {fail_if_slower:g}%\n"
            )
            return 1
    return 0


def _check_report_flags(
    compare: Optional[tuple[str, str]], fail_if_slower: Optional[float], min_effect: Optional[float]
) -> None:
    """Refuse, before anything is read, a --fail-if-slower without a comparison and a
    percentage out of its range."""
    if fail_if_slower is not None and not compare:
        raise BadInput("--fail-if-slower needs --compare A B; add the two selections")
    if fail_if_slower is not None and not 0 <= fail_if_slower < float("inf"):
        raise BadInput(
            f"--fail-if-slower must be a percentage of 0 or more, not {fail_if_slower}; "
            "pass e.g. --fail-if-slower 5"
        )
    if min_effect is not None and not 0 <= min_effect < 100:
        raise BadInput(f"--min-effect must be a percentage from 0 to 100, not {min_effect}")


def _check_output(output: str, databases: list[Optional[str]]) -> None:
    """Refuse, before any work, an --output that cannot be a file (a directory, or a path
    under something that is not a directory) or that is a database being read."""
    from pathlib import Path

    from service.output import check_not_an_input, database_files

    path = Path(output)
    if not output.strip() or path.is_dir():
        raise BadInput(f"--output {output!r} is a directory; pass a file name, e.g. report.html")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise BadInput(
                    f"--output {output!r} is under {str(parent)!r}, which is a file, not a "
                    "directory; pass a path in a directory"
                )
            break
    check_not_an_input(path, database_files(databases))


def _default_db():
    from service.databases import default_path

    return default_path()


def _timeline(sources, runs, run_prefix: Optional[str]):
    """The run whose task timeline an HTML report draws, and its samples."""
    from service.databases import engine_for
    from service.reports import timeline

    databases = dict(sources)
    opened = []

    def engine(label):
        context = engine_for(databases[label], create=False)
        opened.append(context)
        return context.__enter__()

    try:
        return timeline(engine, runs, run_prefix)
    finally:
        for context in opened:
            context.__exit__(None, None, None)


def _print_look(sources, runs, run_prefix: str) -> None:
    """What each thread of a run did in its looked-at repeat, drawn for the terminal."""
    import shutil

    from service.databases import engine_for
    from service.present import states
    from service.reports import look

    databases, opened = dict(sources), []

    def engine(label):
        context = engine_for(databases[label], create=False)
        opened.append(context)
        return context.__enter__()

    try:
        found = look(engine, runs, run_prefix)
    finally:
        for context in opened:
            context.__exit__(None, None, None)
    if found is None:
        raise BadInput(
            f"run {run_prefix!r} has no looked-at repeat (recorded before the lab looked at "
            "threads, or where the platform does not let it); record it again with `conlab run`"
        )
    width = shutil.get_terminal_size((100, 24)).columns
    typer.echo(printable(f"{found.label} (run {found.run_id[:8]}): what each thread did"))
    for line in states.text_view(found.lanes, found.span_us, width):
        typer.echo(line)
    if found.seen is not None:
        typer.echo(printable(states.summary(found.seen)))


def _print_report_table(found, wide: bool = False) -> None:
    """A comparison, or the summary with its warnings once each below it, then the verdicts.
    Without ``wide`` each table holds the columns people read first, as many as fit the
    terminal, and a line names the rest."""
    from service.present import render

    console = _console()
    left_out: list[str] = []
    if found.comparison:
        left_out += _print_comparison(found.comparison, wide, console)
    if not found.summary.empty:
        rows = render.summary_rows(found.summary, compact=True)
        notes = _warnings_below(rows, list(found.summary["warnings"]))
        if wide:
            title = f"summary: {render.shared_caption(found.summary)}"
            _print_fitted([(title, rows)], list(rows[0]), [], console)
        else:
            left_out += _print_summary_groups(found.summary, rows, console)
        for line in notes:
            _say(line, console)
    for line in found.verdicts:
        _say(line, console)
    if left_out:
        shown = ", ".join(dict.fromkeys(left_out))
        _say(f"not shown: {shown}; `conlab report --wide` shows them (csv, json, html hold all)")


# The terminal's comparison and summary: the columns always shown, then those shown while they
# fit, in this order; `--wide` shows every column.
COMPARISON_COLUMNS = ["workload", "executor", "workers", "B/A", "95% CI", "verdict"]
COMPARISON_IF_ROOM = ["A", "B"]
SUMMARY_COLUMNS = ["#", "executor", "start", "workers", "median", "95% CI"]
SUMMARY_IF_ROOM = ["speedup", "eff.", "CPU/wall", "peak mem"]


def _print_comparison(compared, wide: bool, console) -> list[str]:
    """The comparison table, then what its verdicts stand on; the columns left out."""
    from service.present import render

    rows = render.comparison_rows(compared.rows)
    title = f"{compared.b} against {compared.a}"
    workloads = {row["workload"] for row in rows}
    if len(workloads) == 1 and not wide:  # one workload: said once, in the title
        title += f": {workloads.pop()}"
        rows = [{k: v for k, v in row.items() if k != "workload"} for row in rows]
    if wide:
        left_out = _print_fitted([(title, rows)], list(rows[0]), [], console)
    else:
        required = [c for c in COMPARISON_COLUMNS if c in rows[0]]
        left_out = _print_fitted([(title, rows)], required, COMPARISON_IF_ROOM, console)
    _say(f"geometric mean of B/A: {compared.geomean:.3f}", console)
    for line in render.basis_lines(compared.rows):
        _say(line, console)
    for name, (va, vb) in compared.differences.items():
        _say(f"the selections differ in {name}: {va} vs {vb}", console)
    return left_out


def _print_summary_groups(summary, rows: list[dict], console) -> list[str]:
    """One table per work (machine, Python, workload, size, tasks: what a speedup is measured
    against), its rows numbered across tables; the columns left out."""
    from service.present import render
    from service.reports import work_key

    key_columns = work_key()
    groups: dict[tuple, list[dict]] = {}
    for (_, figures), row in zip(summary.iterrows(), rows):
        groups.setdefault(tuple(figures[c] for c in key_columns), []).append(row)
    titled = [(_work_title(dict(zip(key_columns, key))), group) for key, group in groups.items()]
    # an option that tells apart rows otherwise alike is shown as the executor is
    apart = [label for _, label in render.told_apart_by(summary)]
    required = [c for c in [*SUMMARY_COLUMNS, *apart] if c in rows[0]]
    return _print_fitted(titled, required, SUMMARY_IF_ROOM, console) + [
        c for c in rows[0] if c not in required + SUMMARY_IF_ROOM + list(_IN_TITLE)
    ]


# The summary's columns a work's title says instead (terminal labels, render.COLUMNS).
_IN_TITLE = ("machine", "python", "workload", "size", "tasks")


def _work_title(work: dict) -> str:
    return (
        f"{work['workload']}, size {number_text(work['size'])}, {number_text(work['tasks'])} "
        f"tasks, Python {work['python']}, {work['machine']}"
    )


def _print_fitted(tables, required: list[str], if_room: list[str], console) -> list[str]:
    """Print each (title, rows) with the ``required`` columns and as many of ``if_room`` as
    fit the console's width, the same in every table; a value too long for any width wraps
    onto a second line, never cut. Returns the columns of ``if_room`` left out."""
    first = tables[0][1][0]
    shown = required + [c for c in if_room if c in first]

    def in_order() -> list[str]:  # the rows' own order of columns
        return [c for c in first if c in shown]

    unbounded = console.options.update_width(10_000)  # a table's own width, not the console's
    while len(shown) > len(required):
        tables_now = [_table(None, rows, in_order()) for _, rows in tables]
        widths = [console.measure(table, options=unbounded).maximum for table in tables_now]
        if max(widths) <= console.width:
            break
        shown.pop()
    for title, rows in tables:  # the title a line of its own: as wide as the terminal
        _say(title, console)
        console.print(_table(None, rows, in_order()))
    return [c for c in if_room if c in first and c not in shown]


def _table(title: Optional[str], rows: list[dict], columns: list[str]):
    from rich.table import Table

    table = Table(title=as_text(title) if title else None)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(as_text(row.get(c)) for c in columns))
    return table


def _warnings_below(rows: list[dict], warnings: list[list[str]]) -> list[str]:
    """Take the warnings out of a terminal table's rows (a long cell wraps every row onto
    several lines): each warning once, with the rows it applies to by number, in a "#"
    column."""
    by_warning: dict[str, list[int]] = {}
    for number, (row, row_warnings) in enumerate(zip(rows, warnings), 1):
        row.pop("warnings", None)
        for warning in row_warnings:
            by_warning.setdefault(warning, []).append(number)
        row["#"] = str(number)
        row.update({k: row.pop(k) for k in list(row) if k != "#"})  # "#" first
    return [
        f"warning (row{'s' * (len(numbers) > 1)} {', '.join(map(str, numbers))}): {warning}"
        for warning, numbers in by_warning.items()
    ]


@app.command()
def env(
    python: Optional[str] = typer.Option(None, help="interpreter to describe (default: this one)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    check: bool = typer.Option(
        False, "--check", help="say whether the machine is fit to measure; exit 1 when not"
    ),
) -> int:
    """What this machine and interpreter are, as recorded with every run."""
    from service.catalogue import environment

    info = environment(python)
    if check:
        return _env_check(info, as_json)
    if as_json:
        return _print_json(info)
    _print_rows([{"field": k, "value": v} for k, v in info.items()], ["field", "value"])
    return 0


def _env_check(info: dict, as_json: bool) -> int:
    """The fitness fields, then one line per problem with its fix; 1 when there is one."""
    from service.catalogue import fitness

    fields, found = fitness(info)
    if as_json:
        _print_json({"fit": not found, "problems": found, **{k: info.get(k) for k in fields}})
        return 1 if found else 0
    for field in fields:
        value = info.get(field)
        shown = "unknown here" if value is None else "none" if value == "" else value
        typer.echo(printable(f"{field}: {shown}"))
    for problem in found:
        typer.echo(printable(f"problem: {problem}"))
    typer.echo("fit to measure" if not found else f"not fit to measure: {len(found)} problem(s)")
    return 1 if found else 0


@db_app.command("info")
def db_info(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Path, schema version, size, runs and task samples, runs per machine and interpreter, the
    oldest and newest run."""
    from service.databases import info
    from service.runs import iso_seconds

    _check_db(db)
    details = info(db)
    if as_json:
        return _print_json(details)
    _say(
        f"{details['path']}: schema version {details['schema_version']}, "
        + (f"{details['size_bytes']:,} bytes, " if details["size_bytes"] is not None else "")
        + f"{details['runs']} runs, {details['task_samples']:,} task samples"
        + (
            f" from {iso_seconds(details['first_run_at'])} to {iso_seconds(details['last_run_at'])}"
            if details["runs"]
            else ""
        )
    )
    if details["runs_by"]:
        _print_rows(details["runs_by"], ["machine", "python", "status", "runs"])


@db_app.command("check")
def db_check(db: Optional[str] = typer.Option(None, help=DB_HELP)) -> int:
    """Integrity, foreign keys and the lab's own consistency checks; exit 1 on a fault."""
    from service.databases import check

    _check_db(db)
    where, problems = check(db)
    for problem in problems:
        typer.echo(printable(f"fault: {problem}"))
    typer.echo(printable(f"{where}: {'ok' if not problems else f'{len(problems)} fault(s)'}"))
    return 1 if problems else 0


@db_app.command("prune")
def db_prune(
    before: str = typer.Option(..., help="delete runs created before this UTC date or time"),
    keep_tag: Optional[list[str]] = typer.Option(
        None, help="never delete runs with this tag (may be given several times)"
    ),
    include_tagged: bool = typer.Option(
        False, help="delete tagged runs too (those of --keep-tag stay)"
    ),
    dry_run: bool = typer.Option(False, help="say what would be deleted; change nothing"),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Delete old runs with their repeats and task samples, in one transaction; tagged runs
    (baselines) stay unless --include-tagged; then give the space back."""
    from service.runs import prune_runs

    moment = _parse_since(before, "--before")
    _check_db(db)
    found = prune_runs(db, moment, keep_tag or [], include_tagged, dry_run)
    if as_json:
        return _print_json(found)
    verb = "would delete" if dry_run else "deleted"
    _say(
        f"{verb} {found['runs']} run(s) created before {before.strip()}, with "
        f"{found['repeats']} repeat(s) and {found['task_samples']} task sample(s)"
        + ("" if include_tagged else "; tagged runs kept (--include-tagged deletes them)")
    )
    if found["reclaimed_bytes"] is not None:
        _say(f"VACUUM gave back {found['reclaimed_bytes']:,} bytes")
    elif found["runs"] and not dry_run:
        _say("a PostgreSQL server gives the space back by its autovacuum; run VACUUM to do it now")


@db_app.command("merge")
def db_merge(
    sources: list[str] = typer.Argument(..., help="lab database files to merge in"),
    db: Optional[str] = typer.Option(None, help=DB_HELP + " (the target)"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Add the runs of other lab databases to this one. Merging a file twice adds nothing."""
    from pathlib import Path

    from service.databases import merge

    for source in sources:
        _check_merge_source(source)
    _check_db(db)
    results = merge(db, [Path(s) for s in sources])
    if as_json:
        return _print_json([r.__dict__ for r in results])
    for r in results:
        typer.echo(
            printable(
                f"{r.source}: {r.runs_added} runs added, {r.runs_skipped} already there "
                "or in progress (skipped)"
            )
        )


def _check_merge_source(source: str) -> None:
    """A merge source is a lab database file: say so when it is a directory or missing."""
    from pathlib import Path

    if Path(source).is_dir():
        raise BadInput(
            f"{source} is a directory, not a database file; pass the lab database files to "
            "merge, e.g. conlab db merge theirs.db"
        )
    if not Path(source).exists():
        raise BadInput(f"no file {source} to merge; check the path of the database to merge")


@db_app.command("export")
def db_export(
    out: str = typer.Argument(..., help="the new file to write"),
    anonymize: bool = typer.Option(
        False,
        help="rewrite every stored text: host names -> machine-<fingerprint>, user names -> "
        "user, home directories -> ~, interpreter paths -> pythonX.Y, every other absolute path "
        "(inside a home, on a share, a file:// URL) -> .../its last part; drop machine id and "
        "recording host; process ids -> 1, 2, ... per run",
    ),
    tag: Optional[str] = typer.Option(None, help="only runs with this tag"),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
) -> None:
    """A consistent copy of the database (safe while runs are being recorded)."""
    from pathlib import Path

    from service.databases import export

    _check_db(db)
    count = export(db, Path(out), anonymize=anonymize, tag=tag)
    typer.echo(printable(f"exported {count} runs to {out}" + (" (anonymized)" * anonymize)))


def _print_rows(rows: list[dict], columns: list[str], title: Optional[str] = None) -> None:
    _console().print(_table(title, rows, columns))


def _say(line: str, console=None) -> None:
    """Print one line of text that may hold data (a path, a host name, a tag): shown as text,
    never markup, its control characters escaped."""
    (console or _console()).print(as_text(line))


def _click_error_line(exc: Exception) -> Optional[str]:
    """One line for a click usage error (typer may vendor click, so match by shape, not class)."""
    if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
        return None
    message = exc.format_message().rstrip(".")
    possibilities = getattr(exc, "possibilities", None)
    if possibilities:
        message += f" (did you mean {possibilities[0]}?)"
    ctx = getattr(exc, "ctx", None)
    return f"{message}; see {ctx.command_path if ctx else 'conlab'} --help"


def main(argv: Optional[list[str]] = None) -> None:
    """The console script: run the CLI, turning bad input into one line and exit code 2."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="conlab: %(message)s")
    use_option_table()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="conlab")
    except (SpecError, DatabaseError, BadInput, SelectionError, OutputError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", 1)
    except BrokenPipeError:
        sys.exit(1)
    except Exception as exc:
        line = _click_error_line(exc)
        if line is None:
            if type(exc).__name__ == "Abort":
                fail("interrupted", 1)
            raise
        fail(line, 2)
    if result == 130:  # typer's word for a KeyboardInterrupt inside a command
        fail("interrupted", 1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
