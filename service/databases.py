"""Databases as the faces name them (a path, a URL, or None for the default): open one for
reading or writing, make one ready for the app, and what `conlab db` does with them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

# What a report is drawn from: (label, database) pairs; the label is what `db:` selections match.
Sources = Sequence[tuple[str, Optional[str]]]


@contextmanager
def engine_for(db: Optional[str], *, create: bool = True, writer: bool = False) -> Iterator:
    """An engine on ``db`` (a path, a URL, or None for the default), disposed afterwards."""
    from storage.database import open_engine

    engine = open_engine(db, create=create, writer=writer)
    try:
        yield engine
    finally:
        engine.dispose()


def open_database(db: Optional[str]) -> None:
    """Make ``db`` ready for the app's panes to read side by side: a lab file is checked (and
    migrated when older) with the standard library alone, as `conlab runs` opens it; anything
    else goes the writer's way, through SQLAlchemy: a new file gets its tables (a file another
    opener is setting up this moment is waited for), a server database its check, and what is
    not a lab database is refused."""
    from storage.listing import open_runs
    from storage.target import FileDatabase, database_target, has_lab_header

    target = database_target(db)
    if isinstance(target, FileDatabase) and has_lab_header(target.path):
        with open_runs(target):
            return
    with engine_for(db):
        pass


def check_target(db: Optional[str]) -> None:
    """Refuse a database name (--db, $CONLAB_DB) that names no database runs could be kept in:
    DatabaseError, one line."""
    from storage.target import database_target

    database_target(db)


def distinct(databases: Sequence[Optional[str]]) -> list[Optional[str]]:
    """``databases`` without the ones that name a database named before (the same file by
    another path, the same server by another URL)."""
    from storage.target import distinct as distinct_targets

    return distinct_targets(databases)


def default_path() -> Path:
    """The database used when none is named: $CONLAB_DB, else results.db in the user data dir."""
    from storage.target import default_path as default

    return default()


def ready_for_app(db: Optional[str]) -> None:
    """Check ``db`` before the app's screen opens (DatabaseError, one line): a file without
    SQLAlchemy (the app loads it after its first screen), a server by opening it."""
    from storage.target import FileDatabase, database_target, prepare_file

    target = database_target(db)
    if isinstance(target, FileDatabase):
        prepare_file(target.path, create=True)
    else:
        from storage.database import open_engine

        open_engine(target).dispose()


def info(db: Optional[str]) -> dict:
    """`conlab db info`: path, schema version, size, runs and samples (storage.sharing.info)."""
    from storage.sharing import info as stored_info
    from storage.target import lab_database

    return stored_info(lab_database(db))


def check(db: Optional[str]) -> tuple[str, list[str]]:
    """`conlab db check`: where the database is, as shown (a server's URL without its
    password), and its faults (none: it is sound)."""
    from storage.sharing import check as faults
    from storage.target import lab_database, shown_url

    target = lab_database(db)
    problems = faults(target)
    return str(shown_url(target) if isinstance(target, str) else target), problems


def merge(db: Optional[str], sources: Sequence[Path]) -> list:
    """Add the runs of the lab database files ``sources`` to ``db`` (storage.merge.merge): a
    result per source, with the runs added and skipped."""
    from storage.merge import merge as merge_into
    from storage.target import lab_database

    return merge_into(lab_database(db), list(sources))


def export(db: Optional[str], out: Path, anonymize: bool = False, tag: Optional[str] = None) -> int:
    """A consistent copy of ``db`` at ``out`` (storage.export.export); the runs it holds."""
    from storage.export import export as export_copy
    from storage.target import lab_database

    return export_copy(lab_database(db), out, anonymize=anonymize, tag=tag)
