"""The `conlab` command line (typer). Bad input is one line on stderr and exit code 2; a run that
fails is recorded as failed and gives exit code 1; never a traceback for either.

One module per command group, each parsing its flags, calling service/ and printing what it
returns: ``sweep`` (run), ``advise``, ``catalogue`` (list, env), ``listing`` (runs), ``report``
with ``report_table``, ``db``; ``common`` holds what they share. Here the typer app is made,
their commands registered on it in the order ``--help`` lists them, and ``main`` runs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from experiments.spec import SpecError
from storage.errors import DatabaseError, OutputError, SelectionError
from tui.cli import advise, catalogue, coercion, db, listing, report, sweep
from tui.cli.common import DB_HELP, BadInput, print_rows, say
from tui.cli.sweep import use_option_table
from tui.opening import fail, open_app

__all__ = ["app", "main", "print_rows", "say", "use_option_table"]

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


app.command()(sweep.run)
app.command()(advise.advise)
list_app.command("workloads")(catalogue.list_workloads)
list_app.command("executors")(catalogue.list_executors)
list_app.command("pythons")(catalogue.list_pythons)
app.command()(listing.runs)
app.command()(report.report)
app.command()(catalogue.env)
db_app.command("info")(db.db_info)
db_app.command("check")(db.db_check)
db_app.command("prune")(db.db_prune)
db_app.command("merge")(db.db_merge)
db_app.command("export")(db.db_export)


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
    coercion.install()  # plain values without pydantic's import
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
