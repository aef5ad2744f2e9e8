"""`conlab db info | check | prune | merge | export`: a result database looked at, checked,
pruned, merged into and exported."""

from __future__ import annotations

from typing import Optional

import typer

from storage.text import printable
from tui.cli.common import (
    DB_HELP,
    JSON_HELP,
    BadInput,
    check_db,
    parse_since,
    print_json,
    print_rows,
    say,
)


def db_info(
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Path, schema version, size, runs and task samples, runs per machine and interpreter, the
    oldest and newest run."""
    from service.databases import info
    from service.runs import iso_seconds

    check_db(db)
    details = info(db)
    if as_json:
        return print_json(details)
    say(
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
        print_rows(details["runs_by"], ["machine", "python", "status", "runs"])


def db_check(db: Optional[str] = typer.Option(None, help=DB_HELP)) -> int:
    """Integrity, foreign keys and the lab's own consistency checks; exit 1 on a fault."""
    from service.databases import check

    check_db(db)
    where, problems = check(db)
    for problem in problems:
        typer.echo(printable(f"fault: {problem}"))
    typer.echo(printable(f"{where}: {'ok' if not problems else f'{len(problems)} fault(s)'}"))
    return 1 if problems else 0


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

    moment = parse_since(before, "--before")
    check_db(db)
    found = prune_runs(db, moment, keep_tag or [], include_tagged, dry_run)
    if as_json:
        return print_json(found)
    verb = "would delete" if dry_run else "deleted"
    say(
        f"{verb} {found['runs']} run(s) created before {before.strip()}, with "
        f"{found['repeats']} repeat(s) and {found['task_samples']} task sample(s)"
        + ("" if include_tagged else "; tagged runs kept (--include-tagged deletes them)")
    )
    if found["reclaimed_bytes"] is not None:
        say(f"VACUUM gave back {found['reclaimed_bytes']:,} bytes")
    elif found["runs"] and not dry_run:
        say("a PostgreSQL server gives the space back by its autovacuum; run VACUUM to do it now")


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
    check_db(db)
    results = merge(db, [Path(s) for s in sources])
    if as_json:
        return print_json([r.__dict__ for r in results])
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

    check_db(db)
    count = export(db, Path(out), anonymize=anonymize, tag=tag)
    typer.echo(printable(f"exported {count} runs to {out}" + (" (anonymized)" * anonymize)))
