"""`conlab runs`: the stored runs, newest first, streamed as JSON or as terminal tables."""

from __future__ import annotations

import itertools
import json
import os
import sys
from functools import partial
from typing import Optional

import typer

from storage.text import printable
from tui.cli.common import DB_HELP, JSON_HELP, BadInput, db_sources, parse_since, print_rows

RUNS_SHOWN = 50  # `conlab runs` without --limit or --all
# Rows of one terminal table while `conlab runs --all` streams (each table sized to its rows).
TABLE_ROWS = 500


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
    sources = db_sources(db)
    chosen = run_filter(
        tag=tag,
        selection=select_runs,
        since=parse_since(since),
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
    """``print_rows``, drawn by tui.table where it draws the same table, else by rich."""
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
        print_rows(rows, columns)
    else:
        sys.stdout.write(drawn + "\n")
