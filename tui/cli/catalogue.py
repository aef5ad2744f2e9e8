"""`conlab list workloads | executors | pythons` and `conlab env`: what this machine offers."""

from __future__ import annotations

from typing import Optional

import typer

from storage.text import printable
from tui.cli.common import JSON_HELP, print_json, print_rows


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
        return print_json(rows)
    print_rows(rows, ["name", "description", "default_size", "async"])
    typer.echo(
        "Your own function: -w MODULE:FUNCTION or -w path/to/file.py:FUNCTION "
        "(called as FUNCTION(size))."
    )


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
        return print_json(rows)
    for row in rows:
        row["available"] = "yes" if row["available"] else f"no: {row['reason']}"
    print_rows(rows, ["name", "available", "description"])


def list_pythons(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Python interpreters found on this machine (3.9 and newer), for --python."""
    from service.catalogue import interpreters

    rows = interpreters()
    if as_json:
        return print_json(rows)
    for row in rows:
        row["build"] = "free-threaded" if row["free_threaded"] else "GIL"
        row["gil by default"] = "off" if not row["gil_enabled"] else "on"
        row["current"] = "*" if row["current"] else ""
    print_rows(rows, ["current", "version", "implementation", "build", "gil by default", "path"])


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
        return print_json(info)
    print_rows([{"field": k, "value": v} for k, v in info.items()], ["field", "value"])
    return 0


def _env_check(info: dict, as_json: bool) -> int:
    """The fitness fields, then one line per problem with its fix; 1 when there is one."""
    from service.catalogue import fitness

    fields, found = fitness(info)
    if as_json:
        print_json({"fit": not found, "problems": found, **{k: info.get(k) for k in fields}})
        return 1 if found else 0
    for field in fields:
        value = info.get(field)
        shown = "unknown here" if value is None else "none" if value == "" else value
        typer.echo(printable(f"{field}: {shown}"))
    for problem in found:
        typer.echo(printable(f"problem: {problem}"))
    typer.echo("fit to measure" if not found else f"not fit to measure: {len(found)} problem(s)")
    return 1 if found else 0
