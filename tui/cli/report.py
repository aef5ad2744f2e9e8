"""`conlab report`: what the stored runs mean, printed as a terminal table or rendered (Markdown,
CSV, JSON, HTML) to stdout or a file; a run's thread timeline with --timeline."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from storage.text import printable
from tui.cli.common import DB_HELP, BadInput, db_sources
from tui.cli.report_table import print_report_table


class ReportFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    csv = "csv"
    json = "json"
    html = "html"


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
    sources = db_sources(db)
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
    if len(sources) > 1:
        _say_adding_nothing(sources, processes, select_runs)
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
    _show(found, sources, chosen, wide, timeline, output, db)
    if fail_if_slower is not None:
        slower = reports.slower(found, fail_if_slower)
        if slower:
            sys.stderr.write(
                f"conlab: {len(slower)} configuration(s) slower by more than {fail_if_slower:g}%\n"
            )
            return 1
    return 0


def _say_adding_nothing(sources, processes, select_runs: Optional[str]) -> None:
    """One line for each --db past the first that adds no run to the report."""
    from service.reports import adding_nothing

    matching = " matching --select" if select_runs else ""
    for label in adding_nothing(sources, processes):
        sys.stderr.write(
            f"conlab: {printable(label)} adds no run to the report: it holds no finished run"
            f"{matching} that an earlier --db does not\n"
        )


def _show(found, sources, chosen: ReportFormat, wide: bool, timeline, output, db) -> None:
    """The report as ``chosen``: on the terminal, or rendered to stdout or ``output``; a run's
    thread timeline instead when --timeline names one outside HTML."""
    from service import reports

    if timeline is not None and chosen != ReportFormat.html:
        _print_look(sources, found.processes, timeline)
    elif chosen == ReportFormat.table:
        print_report_table(found, wide)
    else:
        timeline_of = None
        if chosen == ReportFormat.html:
            timeline_of = _timeline(sources, found.processes, timeline)
        text = reports.render_report(found, chosen.value, timeline_of)
        if output:
            from service.output import database_files, write_text

            write_text(Path(output), text, database_files(db or [None]))
        else:
            sys.stdout.write(text)


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
