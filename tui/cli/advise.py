"""`conlab advise`: which executor for this function, on this machine."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from storage.text import as_text, printable
from tui.cli.common import (
    DB_HELP,
    JSON_HELP,
    BadInput,
    check_db,
    new_console,
    parse_sizes,
    print_json,
)
from tui.opening import fail


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

    sizes = parse_sizes(size)
    if len(sizes) > 1:
        raise BadInput("advise takes one --size (or auto); pass e.g. --size 1000")
    check_db(db)
    say = (
        (lambda line: sys.stderr.write(f"conlab: {printable(line)}\n"))
        if (sys.stderr.isatty())
        else None
    )
    try:
        found = run_advise(
            workload,
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
        print_json(found)
    else:
        _print_advice(found)
    return 0 if found["recommendation"] is not None else 1


def _print_advice(found: dict) -> None:
    from service.advise import advice_lines

    console = new_console()
    for line in advice_lines(found):
        console.print(as_text(line))
