"""``conlab db export``: a consistent copy of a lab database in a new SQLite file, its runs
filtered by tag and anonymised (storage.anonymize) on request.

The copy is made (``VACUUM INTO`` from a SQLite file, one read transaction from a server),
filtered and anonymised in a private temporary directory; only the finished file is placed
beside ``out``, linked into place, never over another file.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from storage.anonymize import anonymize_copy, identifier
from storage.browse import RUN_TABLES
from storage.database import open_engine
from storage.errors import DatabaseError
from storage.merge import copy_runs
from storage.sharing import Target
from storage.target import (
    FileDatabase,
    check_sqlite_file,
    connect_to_read,
    database_target,
    foreign_schema,
)


def export(source: Target, out: Path, anonymize: bool = False, tag: Optional[str] = None) -> int:
    """Write a consistent copy of ``source`` to the new SQLite file ``out`` (``VACUUM INTO`` from
    a SQLite file, one read transaction from a server: a live database is fine). ``tag`` keeps
    only runs with that tag; ``anonymize`` rewrites what ``anonymize_copy`` says. Returns the
    number of runs exported.

    The copy is made, filtered and anonymised in a private temporary directory; only the
    finished file is written beside ``out`` and then linked into place. An export that fails or
    is interrupted leaves no ``out`` and nothing un-anonymised beside it (after SIGKILL, the
    private copy stays in $TMPDIR: nothing else can remove it)."""
    source = database_target(source)
    if isinstance(source, FileDatabase):
        check_sqlite_file(source.path, create=False)
    _refuse_as_export_target(out)
    placed, made = False, {}  # made: the inode of the file linked as `out`, once there is one
    try:
        with _terminate_as_interrupt() as arrived, _private_directory("conlab-export-") as scratch:
            work = Path(scratch) / "export.db"
            if isinstance(source, FileDatabase):
                _vacuum_into(source.path, work)
            else:
                _copy_from_server(source.url, work)
            count = _finish_copy(work, anonymize, tag)
            with _interrupts_held():  # an interrupt comes after `placed` says what was done
                if arrived:  # one that a callback swallowed: nothing is placed after it
                    raise KeyboardInterrupt
                placed = _put_in_place(work, out, made)
    except BaseException:
        # An export that is said to be interrupted leaves no `out`, whenever the signal came;
        # `out` is ours if it is the file we made.
        if placed or _is_file(out, made.get("inode")):
            out.unlink(missing_ok=True)
        raise
    return count


def _refuse_as_export_target(out: Path) -> None:
    if out.is_symlink():
        raise DatabaseError(
            f"{out} is a symbolic link (to {os.readlink(out)}); "
            "choose a new file name for the export"
        )
    if out.exists():
        raise DatabaseError(f"{out} already exists; choose a new file name for the export")
    if not out.parent.is_dir():
        raise DatabaseError(f"{out.parent} is not a directory; choose where to write the export")


@contextmanager
def _terminate_as_interrupt() -> Iterator[list]:
    """SIGINT and SIGTERM raise KeyboardInterrupt meanwhile, so the temporary files are removed;
    each is also kept in the list given, since SQLite's callbacks (a read's bound) swallow an
    exception raised inside them: what arrived is raised again before anything is placed."""
    import signal
    import threading

    arrived: list = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return

    def interrupt(signum, frame):
        arrived.append(signum)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield arrived
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _private_directory(prefix: str) -> tempfile.TemporaryDirectory:
    """A temporary directory that is removed whenever an interrupt arrives: SIGINT and SIGTERM
    wait while it is made, until its removal is registered (an interrupt between ``mkdtemp`` and
    that registration would leave it behind)."""
    with _interrupts_held():
        return tempfile.TemporaryDirectory(prefix=prefix)


@contextmanager
def _interrupts_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then arrive. Blocked in this thread only:
    no other thread may be there to take them, so the export path loads no numpy (its BLAS
    starts threads)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _finish_copy(work: Path, anonymize: bool, tag: Optional[str]) -> int:
    """Filter and anonymise the private copy ``work`` in place; returns its number of runs."""
    copy = sqlite3.connect(work, isolation_level=None)
    try:
        copy.execute("BEGIN")
        _drop_foreign_schema(copy)  # before any write: no trigger of the source runs
        if tag is not None:
            _keep_only_tag(copy, tag)
        if anonymize:
            anonymize_copy(copy)
        copy.execute("DELETE FROM import_log")  # the exporter's own history is not shared
        copy.execute("COMMIT")
        return copy.execute("SELECT count(*) FROM run").fetchone()[0]
    finally:
        copy.close()


def _drop_foreign_schema(copy: sqlite3.Connection) -> None:
    """Drop from the private copy everything the lab did not make (storage.target's
    ``foreign_schema``): triggers first, then views, virtual tables (with their own tables),
    tables and indexes. An export holds the lab's tables and nothing else."""
    order = ("trigger", "view", "virtual table", "table", "index")
    while True:
        foreign = foreign_schema(copy)
        if not foreign:
            return
        kind, name = min(foreign, key=lambda found: order.index(found[0]))
        statement = "TABLE" if kind in ("virtual table", "table") else kind.upper()
        copy.execute(f"DROP {statement} IF EXISTS {identifier(name)}")


def _is_file(path: Path, inode) -> bool:
    try:
        return inode is not None and os.lstat(path).st_ino == inode
    except OSError:
        return False


def _put_in_place(work: Path, out: Path, made: Optional[dict] = None) -> bool:
    """Write ``work`` compacted (``VACUUM INTO``: no free pages keep what was deleted or
    rewritten) to a hidden file beside ``out``, then link it as ``out``, which must not exist.
    Returns True; an interrupt raised once ``out`` is linked removes it again."""
    import uuid

    part = out.with_name(f".{out.name}.{uuid.uuid4().hex[:12]}.part")
    placed = False
    try:
        copy = sqlite3.connect(work)
        try:
            copy.execute("VACUUM INTO ?", (str(part),))
        finally:
            copy.close()
        with open(part, "rb") as handle:
            os.fsync(handle.fileno())  # the file is whole on disk before it has its name
        if made is not None:
            made["inode"] = os.stat(part).st_ino
        try:
            os.link(part, out)  # fails if `out` appeared meanwhile: never overwrites
        except FileExistsError:
            raise DatabaseError(
                f"{out} already exists; choose a new file name for the export"
            ) from None
        except OSError:  # a file system without hard links
            if os.path.lexists(out):
                raise DatabaseError(
                    f"{out} already exists; choose a new file name for the export"
                ) from None
            os.replace(part, out)
        placed = True
        part.unlink(missing_ok=True)
        return placed
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot write {out} ({exc}); choose another place") from None
    except BaseException:
        if placed:
            out.unlink(missing_ok=True)
        raise
    finally:
        part.unlink(missing_ok=True)


def _vacuum_into(source: Path, out: Path) -> None:
    try:
        connection = connect_to_read(source)
        try:
            connection.execute("VACUUM INTO ?", (str(out),))
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"cannot export {source} ({exc}); run `conlab db check`") from None


def _copy_from_server(url: str, out: Path) -> None:
    server = open_engine(url, create=False)
    local = open_engine(out, create=True)  # a new lab file: schema and header in place
    try:
        # One REPEATABLE READ transaction: runs recorded meanwhile are either all in or not.
        options = {"isolation_level": "REPEATABLE READ"}
        if server.dialect.name != "postgresql":
            options = {}
        with server.connect().execution_options(**options) as src, local.begin() as dst:
            copy_runs(src, dst, skip_running=False)
    finally:
        local.dispose()
        server.dispose()


def _keep_only_tag(copy: sqlite3.Connection, tag: str) -> None:
    drop = "SELECT id FROM run WHERE tag IS NOT ?"
    for table in RUN_TABLES:
        copy.execute(f"DELETE FROM {table} WHERE run_id IN ({drop})", (tag,))
    copy.execute("DELETE FROM run WHERE tag IS NOT ?", (tag,))
    copy.execute("DELETE FROM sweep WHERE id NOT IN (SELECT sweep_id FROM run)")
    copy.execute(
        "DELETE FROM interpreter WHERE key NOT IN "
        "(SELECT interpreter_key FROM run WHERE interpreter_key IS NOT NULL)"
    )
    copy.execute(
        "DELETE FROM machine WHERE fingerprint NOT IN "
        "(SELECT machine_fingerprint FROM run WHERE machine_fingerprint IS NOT NULL)"
    )
