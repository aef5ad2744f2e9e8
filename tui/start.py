"""The `conlab` console script. A command line that only opens the app (``conlab``, ``--db F``,
``--screenshots D``) opens it at once; every other goes to the CLI (``tui.cli``, typer).

Typer is not loaded to open the app: it converts each option it parses with pydantic, and the
two imports cost the app's start a third of its time. The app's options are declared once, on
the CLI's root (its ``--help`` shows them), which opens the app the same way."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn, Optional

from storage.errors import DatabaseError
from storage.text import printable


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args == ["--version"]:  # the start-up floor: nothing of the lab's is imported for it
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"conlab {version('concurrency-lab')}")
        except PackageNotFoundError:
            print("conlab (not installed as a package)")
        return
    executors_unloaded()
    try:
        found = app_options(args)
        if found is None:
            from tui.cli import main as cli  # typer, and what the command needs, load here

            cli(args)
            return
        import logging

        logging.basicConfig(level=logging.WARNING, format="conlab: %(message)s")
        shots = found.get("--screenshots")
        open_app(found.get("--db"), Path(shots) if shots else None)
    except DatabaseError as exc:
        fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C at any moment, loading included: one line
        fail("interrupted", 1)


def executors_unloaded() -> None:
    """A module that $CONLAB_EXECUTORS names and that cannot be imported: one line, exit 2
    (looked at only when it is set: the lab's own executors load with the first sweep)."""
    import os

    if os.environ.get("CONLAB_EXECUTORS"):
        from experiments.executors import not_loaded

        if not_loaded():
            fail(not_loaded())


def app_options(args: list[str]) -> Optional[dict[str, str]]:
    """The options in ``args`` when all they ask is the app: ``--db`` and ``--screenshots``,
    each once, as ``--opt V`` or ``--opt=V``; None for anything else (typer parses it)."""
    found: dict[str, str] = {}
    rest = list(args)
    while rest:
        name, equals, value = rest.pop(0).partition("=")
        if name not in ("--db", "--screenshots") or name in found:
            return None
        if not equals:
            if not rest or rest[0].startswith("-"):
                return None
            value = rest.pop(0)
        found[name] = value
    shots = found.get("--screenshots")
    if shots is not None and (not shots or Path(shots).is_file()):
        return None  # typer says what is wrong with it
    return found


def open_app(db: Optional[str], screenshots: Optional[Path]) -> None:
    """Open the app on ``--db``. A bad --db is one line and exit 2, before the screen opens: a
    file is checked without SQLAlchemy (the app loads it after its first screen), a server is
    opened."""
    from storage.target import FileDatabase, database_target, prepare_file

    target = database_target(db)
    if isinstance(target, FileDatabase):
        prepare_file(target.path, create=True)
    else:
        from storage.database import open_engine

        open_engine(target).dispose()
    from tui.app import run_app

    run_app(db, screenshots)


def fail(message: str, code: int = 2) -> NoReturn:
    sys.stderr.write(f"conlab: {printable(message)}\n")  # one line, whatever a path holds
    sys.exit(code)


if __name__ == "__main__":
    main()
