"""``conlab db merge``: add the runs of lab database files to a lab database, keyed by run UUID.

A SQLite target attaches each source read-only and copies with plain SQL in one transaction
(a target without runs takes each table whole); a team's database server takes a merge with
COPY (storage.server_merge) or row batches through SQLAlchemy Core. Each source is checked
(storage.sharing.soundness) beside the copy, which commits only once every source is sound.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, create_engine

from storage.browse import RUN_TABLES
from storage.database import open_engine
from storage.errors import DatabaseError, reason
from storage.models import RUN_PROGRESS, progress_sql, utc_now
from storage.sharing import Target, readable_copy, refuse_unless_lab_file, soundness
from storage.target import (
    SCHEMA_VERSION,
    Database,
    FileDatabase,
    ServerDatabase,
    bounded,
    database_target,
    file_uri,
    guarded,
    interrupted,
    read_bound,
    read_header,
    too_long,
)


def _columns(connection: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA {schema}.table_info({table})")]


def _shared_columns(connection: sqlite3.Connection, table: str) -> list[str]:
    """The columns of ``table`` that the target (main) and the attached source (src) both have."""
    theirs = set(_columns(connection, table, "src"))
    return [c for c in _columns(connection, table) if c in theirs]


class _Checks:
    """The quick check of every source, in a thread of its own beside the copy (SQLite works
    without the GIL): a copy commits only after ``wait`` has said that every source is sound,
    so a refusal still leaves the target as it was."""

    def __init__(self, sources: list[tuple[Path, Optional[str]]]) -> None:
        import threading

        self._refusal: Optional[DatabaseError] = None
        self._thread = threading.Thread(
            target=self._run, args=(sources,), name="conlab-merge-check", daemon=True
        )
        self._thread.start()

    def _run(self, sources: list[tuple[Path, Optional[str]]]) -> None:
        for path, uri in sources:
            try:
                self._refusal = soundness(path, uri)
            except BaseException as exc:  # a thread's failure is the merge's refusal
                self._refusal = DatabaseError(f"cannot check {path} ({exc}); nothing was merged")
            if self._refusal is not None:
                return

    def wait(self) -> None:
        """Returns once every source is found sound; raises the first refusal."""
        self._thread.join()
        if self._refusal is not None:
            raise self._refusal


@dataclass(frozen=True)
class MergeResult:
    source: str
    runs_added: int  # runs_replaced included
    runs_skipped: int
    runs_replaced: int = 0  # finished runs that replaced this database's unfinished copies


def merge(target: Target, sources: list[Path]) -> list[MergeResult]:
    """Add the runs of ``sources`` that ``target`` lacks, keyed by run UUID (and machines by
    fingerprint): merging the same file twice adds nothing. A run the source has finished
    replaces the target's copy of it that is still `running` (or `interrupted`), with its repeats
    and task samples. Every source is checked before anything is written; each source is merged
    in one transaction."""
    target = database_target(target)
    for source in sources:
        refuse_unless_lab_file(source)
        if isinstance(target, FileDatabase) and source.resolve() == target.path.resolve():
            raise DatabaseError(f"{source} is the target database itself; merge another file")
    uris = {source: _read_only_uri(source) for source in sources}
    checks = _Checks([(source, uris[source]) for source in sources])
    if not _opens_unchanged(target):
        checks.wait()  # opening would create or migrate the target: only once all are sound
    engine = open_engine(target, create=True)  # creates or migrates the target's schema
    try:
        if isinstance(target, FileDatabase):
            return [_merge_one(target.path, source, uris[source], checks) for source in sources]
        return [_merge_into_server(engine, source, uris[source], checks) for source in sources]
    finally:
        engine.dispose()


def _opens_unchanged(target: Database) -> bool:
    """Whether opening ``target`` for a merge writes nothing to it: a lab file that exists
    with the current schema (a new file is created, an older one migrated), or a server
    database at the current schema with every table of the lab's."""
    if isinstance(target, ServerDatabase):
        from storage.listing import current_server

        connection = current_server(target, SQLModel.metadata.tables)
        if connection is None:
            return False
        connection.close()
        return True
    if not isinstance(target, FileDatabase) or not target.path.is_file():
        return False
    try:
        return target.path.stat().st_size > 0 and read_header(target.path)[0] == SCHEMA_VERSION
    except (OSError, DatabaseError):
        return False


def _merge_into_server(
    engine: Engine, source: Path, uri: Optional[str], checks: _Checks
) -> MergeResult:
    """Merge one source into a server in one transaction: with COPY where the driver is
    psycopg (storage.server_merge), reading the source where it lies when it has the current
    schema (``uri``), else row batches through SQLAlchemy Core from a migrated copy. Commits
    once ``checks`` found every source sound."""
    try:
        if engine.dialect.driver == "psycopg":
            from storage.server_merge import copy_new_runs, refusals

            with _source_reader(source, uri) as reader:
                counts = _in_one_transaction(
                    engine, source, lambda dst: copy_new_runs(dst, reader), checks, refusals()
                )
        else:
            with readable_copy(source) as readable:
                rows = _sqlite_reader(readable)
                try:
                    with rows.connect() as src:
                        counts = _in_one_transaction(
                            engine,
                            source,
                            lambda dst: copy_runs(src, dst, skip_running=True),
                            checks,
                        )
                finally:
                    rows.dispose()
    except DatabaseError:
        checks.wait()  # a damaged source is said to be damaged, however the copy failed
        raise
    added, total, replaced = counts
    return MergeResult(str(source), added, total - added, replaced)


@contextmanager
def _source_reader(source: Path, uri: Optional[str]) -> Iterator[sqlite3.Connection]:
    """A connection of our own to ``source``, in one read transaction (every table read as of
    one moment): read-only where it lies (``uri``), else on a migrated copy. Its temporary
    tables are ours either way; its views and triggers may call no function with side effects."""
    with ExitStack() as stack:
        reader = None
        if uri is not None:
            reader = stack.enter_context(closing(guarded(sqlite3.connect(uri, uri=True), source)))
            try:
                reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError:
                reader = None  # not readable where it lies: a copy reads it, or says why not
        if reader is None:
            readable = stack.enter_context(readable_copy(source))
            reader = stack.enter_context(closing(guarded(sqlite3.connect(readable), source)))
        try:
            reader.isolation_level = None
            reader.execute("PRAGMA trusted_schema = OFF")
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(
                f"cannot read {source} ({exc}); nothing was merged: "
                "ask for a fresh `conlab db export`"
            ) from None
        yield reader


def _in_one_transaction(
    engine: Engine,
    source: Path,
    copy,
    checks: _Checks,
    refusals: tuple[type[Exception], ...] = (),
) -> tuple[int, int, int]:
    """``copy(dst)``'s (added, total, replaced), logged in import_log, committed together once
    ``checks`` found every source sound; any database error (or one of ``refusals``) rolls it
    all back and is the merge's refusal (a damaged source's, where the checks found one)."""
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.begin() as dst:
            added, total, replaced = copy(dst)
            dst.execute(
                SQLModel.metadata.tables["import_log"].insert(),
                {
                    "imported_at": utc_now(),
                    "source": os.path.basename(str(source)),
                    "runs_added": added,
                    "runs_skipped": total - added,
                },
            )
            checks.wait()
    except DBAPIError as exc:
        checks.wait()
        raise _not_merged(source, exc.orig or exc) from None
    except refusals as exc:
        checks.wait()
        raise _not_merged(source, exc) from None
    return added, total, replaced


def _not_merged(source: Path, error: BaseException) -> DatabaseError:
    return DatabaseError(
        f"cannot merge {source} ({reason(error)}); nothing was merged: "
        "check both databases with `conlab db check`"
    )


def _sqlite_reader(path: Path) -> Engine:
    """A read-only engine on a SQLite file (SQLAlchemy turns its text dates and 0/1 flags into
    the types a server's columns take)."""
    return create_engine(
        "sqlite://",
        creator=lambda: guarded(sqlite3.connect(f"file:{path}?mode=ro", uri=True), path),
    )


# Rows are copied in batches of this many: bounded memory, few round trips to a server.
_BATCH = 5_000


def copy_runs(src: Connection, dst: Connection, *, skip_running: bool) -> tuple[int, int, int]:
    """Copy the runs of ``src`` that ``dst`` lacks or has not seen finish, with their machines,
    interpreters, sweeps, repeats and task samples, through SQLAlchemy Core (any two databases).
    Both have the current schema. Returns (runs added, runs in the source, of the added: runs
    that replaced an unfinished copy)."""
    tables = SQLModel.metadata.tables
    run = tables["run"]
    have = dict(dst.execute(select(run.c.id, run.c.status)).all())
    source_runs = src.execute(select(run.c.id, run.c.status)).all()
    new_ids = [
        run_id
        for run_id, status in source_runs
        if not (skip_running and status == "running")
        and (run_id not in have or RUN_PROGRESS.get(have[run_id], 2) < RUN_PROGRESS.get(status, 2))
    ]
    replaced = [run_id for run_id in new_ids if run_id in have]
    for name in (*RUN_TABLES, "run"):  # children first
        table = tables[name]
        key = table.c.id if name == "run" else table.c.run_id
        for start in range(0, len(replaced), 500):
            dst.execute(table.delete().where(key.in_(replaced[start : start + 500])))
    for name, key in (("machine", "fingerprint"), ("interpreter", "key"), ("sweep", "id")):
        table = tables[name]
        known = set(dst.execute(select(table.c[key])).scalars())
        rows = [dict(r) for r in src.execute(select(table)).mappings() if r[key] not in known]
        _insert(dst, table, rows)
    for name in ("run", "repeat", "task_sample", "process"):
        table = tables[name]
        # new row ids for repeats and samples
        columns = [c for c in table.c if not (c.primary_key and name in ("repeat", "task_sample"))]
        key = table.c.id if name == "run" else table.c.run_id
        for start in range(0, len(new_ids), 500):
            chunk = new_ids[start : start + 500]
            result = src.execution_options(yield_per=_BATCH).execute(
                select(*columns).where(key.in_(chunk))
            )
            for rows in result.mappings().partitions():
                _insert(dst, table, [dict(r) for r in rows])
    from storage import figures

    process = tables["process"]
    figured = set(dst.execute(select(process.c.run_id).distinct()).scalars())
    figures.refresh_ids(dst, [run_id for run_id in new_ids if run_id not in figured])
    return len(new_ids), len(source_runs), len(replaced)


def _insert(connection: Connection, table, rows: list[dict]) -> None:
    for start in range(0, len(rows), _BATCH):
        connection.execute(table.insert(), rows[start : start + _BATCH])


def _merge_one(target: Path, source: Path, uri: Optional[str], checks: _Checks) -> MergeResult:
    """Merge one source into the SQLite file ``target``: the source attached read-only where
    it has the current schema (``uri``: a consistent read in the merge's one transaction, the
    file never written), else a migrated copy of it. Commits once ``checks`` found every
    source sound."""
    if uri is not None:
        try:
            return _merge_attached(target, uri, source, checks)
        except _NotAttachable:
            pass  # a file SQLite cannot open read-only where it lies: read a copy instead
    try:
        with readable_copy(source) as readable:
            return _merge_attached(target, str(readable), source, checks)
    except DatabaseError:
        checks.wait()  # a damaged source is said to be damaged, however the copy failed
        raise


def _read_only_uri(source: Path) -> Optional[str]:
    """How to attach ``source`` so that reading it changes no file, or None where only a copy
    can: a file of another schema version (migrated on a copy), or one with a write-ahead log
    beside it (SQLite reading it would leave its own -shm). A file in WAL mode with no log
    beside it has nobody writing it: its pages are all in the file (``immutable``, which makes
    no -shm); a file in rollback mode opens read-only and makes none."""
    version, _ = read_header(source)
    if version != SCHEMA_VERSION or os.path.lexists(f"{source}-wal"):
        return None
    with open(source, "rb") as handle:
        wal_mode = handle.read(20)[18:20] == b"\x02\x02"  # the header's read/write versions
    return file_uri(source, immutable="1") if wal_mode else file_uri(source, mode="ro")


class _NotAttachable(Exception):
    """The source cannot be attached read-only; nothing was written."""


def _merge_attached(target: Path, attach: str, source: Path, checks: _Checks) -> MergeResult:
    connection = sqlite3.connect(file_uri(target, mode="rw"), uri=True, isolation_level=None)
    # No statement holds the target's write lock past the work reading both files may take.
    bounded(connection, read_bound(source) + read_bound(target))
    try:
        connection.execute("PRAGMA busy_timeout = 30000")
        # A source is hostile: its views and triggers may call no function with side effects.
        connection.execute("PRAGMA trusted_schema = OFF")
        # As the lab's own writer (storage.database): WAL, synced at checkpoints; a larger page
        # cache keeps the indexes the copy writes in memory until the commit.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA cache_size = -65536")
        connection.execute("ATTACH DATABASE ? AS src", (attach,))
        try:
            connection.execute("SELECT count(*) FROM src.sqlite_master").fetchone()
        except sqlite3.OperationalError:
            if attach.startswith("file:"):
                raise _NotAttachable from None
            raise
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = _copy_new_runs(connection, str(source))
            checks.wait()
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        connection.execute("DETACH DATABASE src")
    except sqlite3.DatabaseError as exc:
        checks.wait()  # a damaged source is said to be damaged, however the copy failed
        raise (too_long(source) if interrupted(exc) else _not_merged(source, exc)) from None
    finally:
        connection.close()
    return result


# The tables a merge copies a run's rows into, parents first.
_RUN_ROWS = ("run", "repeat", "task_sample", "process")


def _copy_new_runs(connection: sqlite3.Connection, source_name: str) -> MergeResult:
    for table in ("machine", "interpreter", "sweep"):
        columns = ", ".join(_shared_columns(connection, table))
        connection.execute(
            f"INSERT OR IGNORE INTO main.{table} ({columns}) SELECT {columns} FROM src.{table}"
        )
    if _copies_whole(connection):
        for table in _RUN_ROWS:
            # SQLite's transfer of whole tables: rows and index entries copied as they are
            connection.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
        (added,) = connection.execute("SELECT count(*) FROM main.run").fetchone()
        total, replaced, runs = added, 0, "main.run"
    else:
        added, total, replaced = _copy_runs_by_id(connection)
        runs = "temp.new_runs"
    from storage import figures

    figures.refresh(connection, figures.UNFIGURED_SQL.format(runs=runs))
    connection.execute(
        "INSERT INTO main.import_log (imported_at, source, runs_added, runs_skipped) "
        "VALUES (?, ?, ?, ?)",
        (utc_now().isoformat(sep=" "), os.path.basename(source_name), added, total - added),
    )
    connection.execute("DROP TABLE IF EXISTS temp.new_runs")
    return MergeResult(source_name, added, total - added, replaced)


def _copies_whole(connection: sqlite3.Connection) -> bool:
    """Whether the attached source's runs all go into the target as they are, table by table:
    the target holds no run rows, the source no run still `running`, and each table of run rows
    is declared in both by the same SQL (same columns in the same order, same keys: the source's
    foreign keys are those its check held it to)."""
    for table in _RUN_ROWS:
        if connection.execute(f"SELECT EXISTS (SELECT 1 FROM main.{table})").fetchone()[0]:
            return False
        declared = [
            connection.execute(
                f"SELECT sql FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?",
                (table,),
            ).fetchall()
            for schema in ("main", "src")
        ]
        if declared[0] != declared[1] or len(declared[0]) != 1:
            return False
    return not connection.execute(
        "SELECT EXISTS (SELECT 1 FROM src.run WHERE status = 'running')"
    ).fetchone()[0]


def _copy_runs_by_id(connection: sqlite3.Connection) -> tuple[int, int, int]:
    """Copy the source's runs the target lacks or has not seen finish (temp.new_runs), with
    their rows: (runs added, runs in the source, of the added: runs that replaced a copy)."""
    connection.execute("DROP TABLE IF EXISTS temp.new_runs")
    # Runs still `running` in the source are a snapshot of work in progress: left for later. A
    # run the source saw get further replaces the target's copy (see storage.models.RUN_PROGRESS).
    connection.execute(
        "CREATE TEMP TABLE new_runs (id TEXT PRIMARY KEY, replaces INTEGER NOT NULL) WITHOUT ROWID"
    )
    connection.execute(
        f"""INSERT OR IGNORE INTO temp.new_runs SELECT s.id, t.id IS NOT NULL
            FROM src.run s LEFT JOIN main.run t ON t.id = s.id
            WHERE s.status != 'running'
            AND (t.id IS NULL OR {progress_sql("t")} < {progress_sql("s")})"""
    )
    added, replaced = connection.execute(
        "SELECT count(*), coalesce(sum(replaces), 0) FROM temp.new_runs"
    ).fetchone()
    total = connection.execute("SELECT count(*) FROM src.run").fetchone()[0]
    for table, key in (*((t, "run_id") for t in RUN_TABLES), ("run", "id")):
        connection.execute(
            f"DELETE FROM main.{table} WHERE {key} IN (SELECT id FROM temp.new_runs WHERE replaces)"
        )
    for table in _RUN_ROWS:
        shared = _shared_columns(connection, table)
        if table in ("repeat", "task_sample"):
            shared = [c for c in shared if c != "id"]  # new row ids in the target
        key = "id" if table == "run" else "run_id"
        columns = ", ".join(shared)
        connection.execute(
            f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM src.{table} "
            f"WHERE {key} IN (SELECT id FROM temp.new_runs)"
        )
    return added, total, replaced
