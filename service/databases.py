"""Databases as the faces name them (a path, a URL, or None for the default): open one for
reading or writing, make one ready for the app, and what `conlab db` does with them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
