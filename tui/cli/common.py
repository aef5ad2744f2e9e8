"""What every command of the CLI shares: the bad-input error, the --db and --json help, reading
``--db`` and the values typed (counts, sizes, dates), and printing (JSON, lines, tables) with
what a printed value may hold (a path, a tag) shown as text."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

from storage.text import as_text


class BadInput(Exception):
    """Bad usage or input: one line for stderr, exit code 2."""


DB_HELP = (
    "database file or SQLAlchemy URL (default: $CONLAB_DB, else results.db in the user data dir)"
)
JSON_HELP = "print machine-readable JSON on stdout, and nothing else there"


def new_console(stderr: bool = False):
    from rich.console import Console

    return Console(
        width=None if sys.stdout.isatty() else 200,
        stderr=stderr,
        no_color=bool(os.environ.get("NO_COLOR")) or None,
        highlight=False,
    )


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def db_sources(db: Optional[list[str]]) -> list[tuple[str, Optional[str]]]:
    """The databases ``--db`` names (the default when none), each checked and read once, as
    (label, --db value) pairs."""
    from service.databases import distinct

    for one in db or [None]:
        check_db(one)
    return [(one or str(default_db()), one) for one in distinct(db or [None])]


def check_db(db: Optional[str]) -> None:
    """Refuse a --db (or $CONLAB_DB) that names no database we could keep runs in (one line,
    from storage.database.database_target)."""
    from service.databases import check_target

    check_target(db)


def default_db():
    from service.databases import default_path

    return default_path()


def parse_count(option: str, text: str, example: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BadInput(
            f"{option} takes a whole number, not {text!r}; pass e.g. {option} {example}"
        ) from None


def parse_sizes(text: Optional[str]) -> list[Optional[int | str]]:
    """``--size``: none (the workload's own), ``auto``, or sizes separated by commas, which
    take turns in one sweep (compare them with --compare size:A size:B)."""
    if text is None:
        return [None]
    if text.strip().lower() == "auto":
        return ["auto"]
    sizes = [
        parse_count("--size", part.strip(), "1000, 1000,1100 or auto") for part in text.split(",")
    ]
    return list(dict.fromkeys(sizes))


def parse_since(since: Optional[str], option: str = "--since"):
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


def print_rows(rows: list[dict], columns: list[str], title: Optional[str] = None) -> None:
    new_console().print(table(title, rows, columns))


def say(line: str, console=None) -> None:
    """Print one line of text that may hold data (a path, a host name, a tag): shown as text,
    never markup, its control characters escaped."""
    (console or new_console()).print(as_text(line))


def print_fitted(tables, required: list[str], if_room: list[str], console) -> list[str]:
    """Print each (title, rows) with the ``required`` columns and as many of ``if_room`` as
    fit the console's width, the same in every table; a value too long for any width wraps
    onto a second line, never cut. Returns the columns of ``if_room`` left out."""
    first = tables[0][1][0]
    shown = required + [c for c in if_room if c in first]

    def in_order() -> list[str]:  # the rows' own order of columns
        return [c for c in first if c in shown]

    unbounded = console.options.update_width(10_000)  # a table's own width, not the console's
    while len(shown) > len(required):
        tables_now = [table(None, rows, in_order()) for _, rows in tables]
        widths = [console.measure(table, options=unbounded).maximum for table in tables_now]
        if max(widths) <= console.width:
            break
        shown.pop()
    for title, rows in tables:  # the title a line of its own: as wide as the terminal
        say(title, console)
        console.print(table(None, rows, in_order()))
    return [c for c in if_room if c in first and c not in shown]


def table(title: Optional[str], rows: list[dict], columns: list[str]):
    from rich.table import Table

    table = Table(title=as_text(title) if title else None)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(as_text(row.get(c)) for c in columns))
    return table
