"""What both entry points (tui.start, the console script, and tui.cli, the typer CLI) do: open
the app on a --db, and end with one line on stderr and an exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

from storage.text import printable


def open_app(db: Optional[str], screenshots: Optional[Path]) -> None:
    """Open the app on ``--db``. A bad --db is one line and exit 2, before the screen opens: a
    file is checked without SQLAlchemy (the app loads it after its first screen), a server is
    opened."""
    from service.databases import ready_for_app

    ready_for_app(db)
    from tui.app import run_app

    run_app(db, screenshots)


def fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"conlab: {printable(message)}\n")  # one line, whatever a path holds
    sys.exit(code)
