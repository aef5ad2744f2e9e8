"""Result databases as files people send each other: info, check, merge, export.

SQLite files are handled with plain SQL (ATTACH, VACUUM INTO: fast, consistent); a team's
database server (``--db postgresql+psycopg://...``) takes a merge with COPY
(storage.server_merge) and gives an export through SQLAlchemy Core, in row batches. A database
holds data only: nothing read from one is ever executed or unpickled.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel, create_engine

from storage.browse import RUN_TABLES
from storage.database import open_engine
from storage.errors import DamagedDatabase, DatabaseError, reason
from storage.models import RUN_PROGRESS, progress_sql, utc_now
from storage.queries import iso_utc, json_object
from storage.target import (
    SCHEMA_VERSION,
    Database,
    FileDatabase,
    ServerDatabase,
    bounded,
    check_sqlite_file,
    connect_to_read,
    database_target,
    file_uri,
    foreign_schema,
    guarded,
    interrupted,
    read_bound,
    read_header,
    shown_url,
    too_long,
)
from storage.text import printable

# A lab database: a Database (storage.target), or what --db takes (a path, a URL).
Target = Union[Database, Path, str]

# Tables in the order rows must be copied (parents before children).
TABLES = ("machine", "interpreter", "sweep", "run", "repeat", "task_sample", "import_log")


def _connect_ro(path: Path) -> sqlite3.Connection:
    """A connection that reads ``path`` and refuses every write to it."""
    connection = connect_to_read(path)
    connection.execute("PRAGMA query_only = ON")
    return connection


def _columns(connection: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    return [row[1] for row in connection.execute(f"PRAGMA {schema}.table_info({table})")]


def _shared_columns(connection: sqlite3.Connection, table: str) -> list[str]:
    """The columns of ``table`` that the target (main) and the attached source (src) both have."""
    theirs = set(_columns(connection, table, "src"))
    return [c for c in _columns(connection, table) if c in theirs]


@dataclass(frozen=True)
class Problem:
    what: str

    def __str__(self) -> str:
        return self.what


# A free-threaded build is named as every table names it: 3.13.15t.
_RUNS_BY_CONFIG = """SELECT coalesce(m.hostname, '?'),
    coalesce(i.version || CASE WHEN i.gil_disabled THEN 't' ELSE '' END, '?'), r.status, count(*)
    FROM run r LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint
    LEFT JOIN interpreter i ON i.key = r.interpreter_key
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""


_SAMPLES = "SELECT count(*) FROM task_sample"


def _summary(
    location: str, version: int, size: Optional[int], by_config, first, last, samples
) -> dict:
    return {
        "path": location,
        "schema_version": version,
        "size_bytes": size,
        "runs": sum(row[3] for row in by_config),
        "task_samples": samples,
        "runs_by": [
            {"machine": m, "python": p, "status": s, "runs": n} for m, p, s, n in by_config
        ],
        "first_run_at": first,
        "last_run_at": last,
    }


def info(db: Target) -> dict[str, Any]:
    """What a lab database holds: version, size, runs per machine and interpreter, date range."""
    db = database_target(db)
    if isinstance(db, ServerDatabase):
        return _server_info(db.url)
    path = db.path
    check_sqlite_file(path, create=False)
    version, _ = read_header(path)
    connection = _connect_ro(path)
    try:
        by_config = connection.execute(_RUNS_BY_CONFIG).fetchall()
        first, last = connection.execute(
            "SELECT min(created_at), max(created_at) FROM run"
        ).fetchone()
        (samples,) = connection.execute(_SAMPLES).fetchone()
    except sqlite3.DatabaseError as exc:
        raise DatabaseError(f"{path} cannot be read ({exc}); run `conlab db check`") from None
    finally:
        connection.close()
    return _summary(
        str(path), version, path.stat().st_size, by_config, iso_utc(first), iso_utc(last), samples
    )


def _server_info(url: str) -> dict[str, Any]:
    engine = open_engine(url, create=False)
    try:
        with engine.connect() as connection:
            by_config = connection.execute(sql(_RUNS_BY_CONFIG)).all()
            first, last = connection.execute(
                sql("SELECT min(created_at), max(created_at) FROM run")
            ).one()
            samples = connection.execute(sql(_SAMPLES)).scalar()
            size = None
            if engine.dialect.name == "postgresql":
                size = connection.execute(
                    sql("SELECT pg_database_size(current_database())")
                ).scalar()
    finally:
        engine.dispose()
    return _summary(
        shown_url(url), SCHEMA_VERSION, size, by_config, iso_utc(first), iso_utc(last), samples
    )


# The lab's own consistency checks, in SQL every database we support speaks.
_LAB_CHECKS = {
    "runs with an unknown status": "SELECT id FROM run WHERE status NOT IN "
    "('running', 'ok', 'failed', 'cancelled', 'interrupted')",
    "ok runs missing counted repeats": "SELECT r.id FROM run r WHERE r.status = 'ok' AND "
    "r.repeats > (SELECT count(*) FROM repeat p WHERE p.run_id = r.id AND NOT p.warmup)",
    "repeats with a missing or non-positive wall time": "SELECT run_id FROM repeat "
    "WHERE wall_ns IS NULL OR wall_ns <= 0",
    "task samples ending before they start": "SELECT run_id FROM task_sample "
    "WHERE end_ns < start_ns",
    "task samples with missing values": "SELECT run_id FROM task_sample WHERE task_index IS NULL "
    "OR pid IS NULL OR thread_id IS NULL OR start_ns IS NULL OR end_ns IS NULL",
}
# SQLite keeps any value in any column; a server's typed columns cannot hold these. Text and
# blobs sort after every number and NULL and at or after the empty text, and ``+`` takes the
# column's affinity off (no conversion on either side): ``+c >= ''`` holds exactly where
# typeof(c) is neither integer, real nor null, at a third of typeof's cost.
_SQLITE_CHECKS = {
    "repeats whose times are not numbers": "SELECT run_id FROM repeat WHERE "
    + " OR ".join(
        f"+{c} >= ''"
        for c in ("wall_ns", "cpu_ns", "start_ns", "end_ns")  # since schema 1
    ),
    "task samples whose times are not numbers": "SELECT run_id FROM task_sample WHERE "
    "+start_ns >= '' OR +end_ns >= ''",
}


def _run_problems(execute, checks: dict[str, str] = _LAB_CHECKS, figured: bool = True):
    """The lab's ``checks`` over ``execute(sql)``'s rows, the environments that are not JSON
    and (``figured``) the stored process figures that are not what the runs give: each run's
    environment read once, one run at a time."""
    problems = []
    for what, query in checks.items():
        ids = [row[0] for row in execute(query + " LIMIT 5")]
        if ids:
            problems.append(Problem(f"{what}: {', '.join(map(str, ids))}"))
    unreadable, facts = _environments(execute, figured)
    problems += unreadable
    if figured:
        problems += _figures_problems(execute, facts)
    return problems


def _environments(execute, figured: bool) -> tuple[list[Problem], dict[Any, tuple]]:
    """A problem for each run whose environment is not a JSON object this process reads, and
    (``figured``) each run's facts for its figures (storage.figures.run_facts)."""
    from storage import figures

    problems, facts = [], {}
    for run_id, text in execute("SELECT id, environment_json FROM run"):
        environment = json_object(text)
        if environment is None and text is not None:
            problems.append(
                Problem(f"run {run_id} has an environment that is not JSON (or too deep to read)")
            )
        if figured:
            facts[run_id] = figures.run_facts(environment or {})
    return problems, facts


def _figures_problems(execute, facts: Optional[dict[Any, tuple]] = None) -> list[Problem]:
    """Stored process rows that are not what the runs' own repeats and environments give
    (storage.figures; ``facts``: each run's facts, where they are read already): a received
    file's rows are read as they are, so they are checked here. Runs without rows are no
    problem: a report derives them when it reads them."""
    from storage import figures

    if facts is None:
        facts = _environments(execute, True)[1]
    stored = {
        (row[0], row[1]): tuple(row)
        for row in execute(f"SELECT {', '.join(figures.COLUMNS)} FROM process")
    }
    repeats = list(execute(figures.REPEATS_SQL.format(runs="SELECT id FROM run")))
    derived = {(row[0], row[1]): row for row in figures.derive_with_facts(facts, repeats)}
    held = {run_id for run_id, _ in stored}
    wrong = {key[0] for key, row in stored.items() if derived.get(key) != row}
    wrong |= {key[0] for key in derived if key[0] in held and key not in stored}
    wrong = sorted(map(str, wrong))
    if not wrong:
        return []
    return [
        Problem(
            f"process figures that are not what their runs' repeats give: {', '.join(wrong[:5])}"
            "; rows changed since they were recorded: ask for a fresh `conlab db export`"
        )
    ]


def check(db: Target) -> list[Problem]:
    """SQLite's integrity and foreign-key checks, then the lab's own consistency checks (a
    server keeps its own integrity and foreign keys: there, only the lab's)."""
    db = database_target(db)
    if isinstance(db, ServerDatabase):
        engine = open_engine(db, create=False)
        try:
            with engine.connect() as connection:
                execute = lambda query: connection.execute(sql(query)).all()  # noqa: E731
                return _run_problems(execute)
        finally:
            engine.dispose()
    path = db.path
    try:
        check_sqlite_file(path, create=False)
    except DamagedDatabase as exc:
        return [Problem(f"unreadable: {exc.reason}")]
    connection = _connect_ro(path)
    try:
        problems = _file_problems(connection, path)
    except sqlite3.DatabaseError as exc:
        problems = [Problem(f"unreadable: {too_long(path) if interrupted(exc) else exc}")]
    finally:
        connection.close()
    version, _ = read_header(path)
    if version < SCHEMA_VERSION and not problems:
        try:  # the migration every command would make first, tried on a copy
            with tempfile.TemporaryDirectory(prefix="conlab-check-") as scratch:
                copy = Path(scratch) / "copy.db"
                _migrated_copy(path, copy)
                if version >= 4:  # the version that has process rows of its own
                    migrated = _connect_ro(copy)
                    try:
                        problems += _figures_problems(migrated.execute)
                    finally:
                        migrated.close()
        except sqlite3.Error as exc:
            problems.append(Problem(f"cannot be migrated from schema {version}: {exc}"))
    return problems


def _file_problems(connection: sqlite3.Connection, path: Path) -> list[Problem]:
    """What ``db check`` finds in the lab file ``path``, read through ``connection``:
    SQLite's integrity check (alone when it fails), what the lab did not make, foreign keys,
    the lab's own checks and, at the current schema, the stored process figures."""
    rows = [r[0] for r in connection.execute("PRAGMA integrity_check")]
    if rows != ["ok"]:
        return [Problem(f"integrity: {row}") for row in rows[:20]]
    problems = _schema_problems(connection)
    for table, rowid, parent, _ in connection.execute("PRAGMA foreign_key_check"):
        problems.append(Problem(f"{table} row {rowid} points at a missing {parent}"))
    # an older file's figures are checked once it is migrated (``check``)
    figured = read_header(path)[0] >= SCHEMA_VERSION
    return problems + _run_problems(
        connection.execute, {**_LAB_CHECKS, **_SQLITE_CHECKS}, figured=figured
    )


def _schema_problems(connection: sqlite3.Connection) -> list[Problem]:
    """Views, triggers, virtual tables, tables and indexes the lab did not make: nothing of
    the lab's reads or writes them, so a file holding them was made or changed by another."""
    foreign = foreign_schema(connection)
    if not foreign:
        return []
    named = ", ".join(f"{kind} {name!r}" for kind, name in foreign[:5])
    more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
    return [
        Problem(
            f"not of the lab's schema: {named}{more}; `conlab db export` the file to a new "
            "one, which holds the lab's tables alone"
        )
    ]


def _migrated_copy(path: Path, copy: Path) -> None:
    """A consistent copy of the lab database ``path`` at ``copy``, with the current schema."""
    from storage.migrations import migrate

    version, _ = read_header(path)
    source = _connect_ro(path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    if version < SCHEMA_VERSION:
        migrate(copy, version, SCHEMA_VERSION)


@contextmanager
def _readable_copy(path: Path) -> Iterator[Path]:
    """A consistent copy of the lab database ``path`` with the current schema, in a private
    temporary directory: a merge reads the copy, so the file itself is neither locked nor
    changed."""
    with tempfile.TemporaryDirectory(prefix="conlab-merge-") as scratch:
        copy = Path(scratch) / "source.db"
        try:
            _migrated_copy(path, copy)
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"cannot read {path} ({exc}); nothing was merged: "
                "ask for a fresh `conlab db export`"
            ) from None
        yield copy


def _refuse_unless_lab_file(path: Path) -> None:
    check_sqlite_file(path, create=False)
    if path.stat().st_size == 0:
        raise DatabaseError(f"{path} is empty, not a lab database; check the file you were sent")


def _soundness(path: Path, uri: Optional[str]) -> Optional[DatabaseError]:
    """What ``db check`` would find in the source ``path`` (read through ``uri``, as the merge
    attaches it, where it has one): None when it would pass, else the refusal. A merge takes
    only what the check passes, so no fault spreads into the target."""
    try:
        if uri is not None:
            connection = guarded(sqlite3.connect(uri, uri=True), path)
            connection.execute("PRAGMA query_only = ON")
        else:
            connection = _connect_ro(path)
        try:
            problems = _file_problems(connection, path)
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if interrupted(exc):
            return too_long(path)
        problems = [Problem(f"integrity: {exc}")]
    if not problems:
        return None
    if str(problems[0]).startswith("integrity: "):
        verdict = printable(str(problems[0])[len("integrity: ") :])
        return DatabaseError(
            f"{path} is damaged ({verdict}); nothing was merged: ask for a fresh `conlab db export`"
        )
    more = f"; {len(problems)} faults in all" if len(problems) > 1 else ""
    return DatabaseError(
        f"{path} does not pass `conlab db check` ({printable(problems[0])}{more}); nothing was "
        f"merged: `conlab db check --db {path}` lists what is wrong"
    )


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
                self._refusal = _soundness(path, uri)
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
        _refuse_unless_lab_file(source)
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
            with _readable_copy(source) as readable:
                rows = _sqlite_reader(readable)
                try:
                    with rows.connect() as src:
                        counts = _in_one_transaction(
                            engine,
                            source,
                            lambda dst: _copy_runs(src, dst, skip_running=True),
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
            readable = stack.enter_context(_readable_copy(source))
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


def _copy_runs(src: Connection, dst: Connection, *, skip_running: bool) -> tuple[int, int, int]:
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
        with _readable_copy(source) as readable:
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


def export(source: Target, out: Path, anonymize: bool = False, tag: Optional[str] = None) -> int:
    """Write a consistent copy of ``source`` to the new SQLite file ``out`` (``VACUUM INTO`` from
    a SQLite file, one read transaction from a server: a live database is fine). ``tag`` keeps
    only runs with that tag; ``anonymize`` rewrites what ``_anonymize`` says. Returns the
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
            _anonymize(copy)
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
        copy.execute(f"DROP {statement} IF EXISTS {_identifier(name)}")


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
            _copy_runs(src, dst, skip_running=False)
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


# Columns whose values the lab itself makes (keys, statuses, executor names): never rewritten.
_NOT_SCRUBBED = frozenset(
    {
        "id",
        "run_id",
        "sweep_id",
        "key",
        "fingerprint",
        "machine_fingerprint",
        "interpreter_key",
        "status",
        "executor",
        "start_method",
    }
)

_PATH_PART = r"""[^\s/\\"'`<>|:;,()\[\]{}=]+"""
# A folder's name may hold single spaces ("My Clients"); the last part ends at the first space.
_FOLDER = rf"{_PATH_PART}(?: {_PATH_PART})*"
# Every absolute path, not inside a word, number or web URL; each form captures its last part:
# a file:// URL, a UNC path (\\server\share\..., or //server/share/...), a path under a home
# (~/... or ~user/...), a POSIX path, a Windows path with a drive letter (either slash).
_ABSOLUTE_PATH = re.compile(
    rf"(?i:file):(?://[^\s/]*)?/(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w.~/\\:-])\\\\{_PATH_PART}\\(?:{_FOLDER}\\)*({_PATH_PART})"
    rf"|(?<![\w.~/\\:-])//(?!/){_PATH_PART}/(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w.~/\\-])~[\w.-]*/(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w.~/\\-])/(?!/)(?:{_FOLDER}/)*({_PATH_PART})"
    rf"|(?<![\w])[A-Za-z]:[\\/](?:{_FOLDER}[\\/])*({_PATH_PART})"
)


class _Scrubber:
    """Rewrites text in this order: known interpreter paths become ``python``; a known home
    directory standing alone becomes ``~``; every absolute path (inside a home too) is cut to its
    last part; then known host and user names (in any case) become their aliases. Paths are cut
    before names are replaced, so that no folder between a home and a file survives."""

    def __init__(self) -> None:
        self.paths: dict[str, str] = {}
        self.homes: set[str] = set()
        self.words: dict[str, str] = {}

    def learn(self, env: dict, alias: str) -> None:
        home = env.get("home")
        if isinstance(home, str) and len(home.rstrip("/\\")) > 1:
            self.homes.add(home.rstrip("/\\"))
        executable = env.get("python_executable")
        if isinstance(executable, str) and executable:
            self.paths[executable] = "python"
        for key, replacement in (("hostname", alias), ("user", "user")):
            value = env.get(key)
            if isinstance(value, str) and value:
                self.words[value.casefold()] = replacement

    def __call__(self, value):
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if not isinstance(value, str):
            return value
        for path in sorted(self.paths, key=len, reverse=True):
            value = value.replace(path, self.paths[path])
        for home in sorted(self.homes, key=len, reverse=True):
            # the home itself, not a path inside it (which is cut below, as any other)
            value = re.sub(rf"{re.escape(home)}(?![/\\]?{_PATH_PART})", "~", value)
        value = _ABSOLUTE_PATH.sub(_last_part, value)
        for word in sorted(self.words, key=len, reverse=True):
            pattern = rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])"
            value = re.sub(pattern, self.words[word], value, flags=re.IGNORECASE)
        return value


def _last_part(match: re.Match) -> str:
    last = next(part for part in match.groups() if part is not None)
    backslash = match.group(0).startswith("\\") or (
        match.group(0)[1:2] == ":" and "\\" in match.group(0)
    )
    return f"...\\{last}" if backslash else f".../{last}"


def _anonymize(copy: sqlite3.Connection) -> None:
    """Rewrite every text value in every table (keys, statuses and executor names aside): host
    names become machine-<fingerprint>, user names `user`, home directories `~`, interpreter
    paths pythonX.Y, every other absolute path its last part (/srv/lab/jobs.py and
    ~/clients/acme/jobs.py -> .../jobs.py); drop the machine id and the recording host; number
    each run's processes 1, 2, ... in place of their ids, in its rows and its words alike.
    (docs/sharing.md and --help say so.)"""
    scrub = _Scrubber()
    aliases = {
        fingerprint: f"machine-{str(fingerprint)[:8]}"
        for (fingerprint,) in copy.execute("SELECT fingerprint FROM machine")
    }
    for fingerprint, hostname in copy.execute("SELECT fingerprint, hostname FROM machine"):
        scrub.learn({"hostname": hostname}, aliases[fingerprint])
    for (executable,) in copy.execute("SELECT executable FROM interpreter"):
        scrub.learn({"python_executable": executable}, "")
    scrub.learn(_this_process(), "machine")
    runs = copy.execute(
        "SELECT id, environment_json, machine_fingerprint, recorder_host FROM run"
    ).fetchall()
    for _, text, fingerprint, host in runs:
        alias = aliases.get(fingerprint, "machine")
        scrub.learn({"hostname": host}, alias)
        scrub.learn(json_object(text) or {}, alias)
    numbers = _number_processes(copy)
    for run_id, text, fingerprint, _ in runs:
        env = json_object(text)
        if env is not None:
            env.update(hostname=aliases.get(fingerprint, "machine"), user="user", home="~")
            env.pop("machine_id", None)
            _number_environment_processes(env, numbers.setdefault(run_id, {}))
            copy.execute(
                "UPDATE run SET environment_json = ? WHERE id = ?",
                (json.dumps(env, sort_keys=True), run_id),
            )
    _number_processes_in_words(copy, numbers)
    _number_processes_in_looks(copy, numbers)
    copy.execute("UPDATE run SET recorder_host = NULL, recorder_pid = NULL, runner_pid = NULL")
    for fingerprint, alias in aliases.items():
        copy.execute("UPDATE machine SET hostname = ? WHERE fingerprint = ?", (alias, fingerprint))
    for key, _executable, version in copy.execute(
        "SELECT key, executable, version FROM interpreter"
    ).fetchall():
        short = f"python{'.'.join(str(version or '').split('.')[:2])}"
        copy.execute("UPDATE interpreter SET executable = ? WHERE key = ?", (short, key))
    _scrub_every_text(copy, scrub)


def _number_processes(copy: sqlite3.Connection) -> dict[Any, dict[str, int]]:
    """Each run's task samples name their process 1, 2, ... in the order the processes first
    ran a task, in place of its id (lanes and per-worker figures still tell them apart). Returns
    each run's numbering: {run id: {str(pid): number}}."""
    copy.execute(
        "CREATE TEMP TABLE conlab_pid AS SELECT run_id, pid, "
        "row_number() OVER (PARTITION BY run_id ORDER BY min(id)) AS number "
        "FROM task_sample GROUP BY run_id, pid"
    )
    copy.execute("CREATE INDEX temp.conlab_pid_key ON conlab_pid (run_id, pid)")
    copy.execute(
        "UPDATE task_sample SET pid = (SELECT p.number FROM temp.conlab_pid p "
        "WHERE p.run_id IS task_sample.run_id AND p.pid IS task_sample.pid)"
    )
    numbers: dict[Any, dict[str, int]] = {}
    for run_id, pid, number in copy.execute("SELECT run_id, pid, number FROM temp.conlab_pid"):
        numbers.setdefault(run_id, {})[str(pid)] = number
    copy.execute("DROP TABLE temp.conlab_pid")
    return numbers


# "pid 1234" as the lab's messages (a worker that died) and Ray's lines write a process id.
_PID_IN_WORDS = re.compile(r"(?<![\w-])(pid[ =:]?)(\d+)\b", re.IGNORECASE)


def _number_processes_in_words(copy: sqlite3.Connection, numbers: dict) -> None:
    """A process id in a run's error, error detail or output ("worker pid 1234 exited with code
    3") becomes the number its task samples give that process, or the next one."""
    rows = copy.execute(
        "SELECT id, error, error_detail, stderr FROM run "
        "WHERE error LIKE '%pid%' OR error_detail LIKE '%pid%' OR stderr LIKE '%pid%'"
    ).fetchall()
    for run_id, *texts in rows:
        known = numbers.setdefault(run_id, {})

        def number(match: re.Match, known: dict = known) -> str:
            return f"{match.group(1)}{known.setdefault(match.group(2), len(known) + 1)}"

        texts = [_PID_IN_WORDS.sub(number, t) if isinstance(t, str) else t for t in texts]
        copy.execute(
            "UPDATE run SET error = ?, error_detail = ?, stderr = ? WHERE id = ?", (*texts, run_id)
        )


def _number_processes_in_looks(copy: sqlite3.Connection, numbers: dict) -> None:
    """The process and thread ids of what each thread was doing (``run.thread_states``: a lane
    per thread, ``pid tid`` first) and of each repeat's worker split (``repeat.worker_split``:
    ``pid:thread:...`` a worker) become numbers from the run's numbering, one id one number,
    so a process's main thread (tid = pid) stays its process's."""
    for run_id, text in copy.execute(
        "SELECT id, thread_states FROM run WHERE thread_states IS NOT NULL"
    ).fetchall():
        known = numbers.setdefault(run_id, {})
        span, bar, lanes = str(text).partition("|")
        lanes = ";".join(_numbered_fields(lane, " ", 2, known) for lane in lanes.split(";"))
        copy.execute("UPDATE run SET thread_states = ? WHERE id = ?", (span + bar + lanes, run_id))
    for repeat_id, run_id, text in copy.execute(
        "SELECT id, run_id, worker_split FROM repeat WHERE worker_split IS NOT NULL"
    ).fetchall():
        known = numbers.setdefault(run_id, {})
        split = " ".join(_numbered_fields(w, ":", 1, known) for w in str(text).split(" "))
        copy.execute("UPDATE repeat SET worker_split = ? WHERE id = ?", (split, repeat_id))


def _numbered_fields(text: str, separator: str, count: int, numbers: dict[str, int]) -> str:
    """``text`` with its first ``count`` fields (process or thread ids) numbered."""
    fields = text.split(separator)
    for at in range(min(count, len(fields))):
        if fields[at].strip().isdigit():
            fields[at] = str(numbers.setdefault(fields[at].strip(), len(numbers) + 1))
    return separator.join(fields)


def _number_environment_processes(env: dict, numbers: dict[str, int]) -> None:
    """The process ids in a run's environment (its runner processes, the per-worker figures)
    become the numbers its task samples have (``numbers``), or the next ones."""

    def number(pid: Any) -> int:
        return numbers.setdefault(str(pid), len(numbers) + 1)

    for key in ("peak_rss_by_worker", "gil_enabled_by_worker"):
        if isinstance(env.get(key), dict):
            env[key] = {str(number(pid)): value for pid, value in env[key].items()}
    for process in env.get("runner_processes") or ():
        if isinstance(process, dict) and "pid" in process:
            process["pid"] = number(process["pid"])


def _this_process() -> dict[str, str]:
    """The exporting user's own host, user name and home: secrets wherever they appear."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {"hostname": socket.gethostname(), "user": user, "home": os.path.expanduser("~")}


def _scrub_every_text(copy: sqlite3.Connection, scrub: _Scrubber) -> None:
    copy.create_function("conlab_scrub", 1, scrub, deterministic=True)
    tables = [
        row[0]
        for row in copy.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    for table in tables:
        quoted = _identifier(table)
        for (column,) in copy.execute(f"SELECT name FROM pragma_table_info({_literal(table)})"):
            if column in _NOT_SCRUBBED:
                continue
            name = _identifier(column)
            copy.execute(
                f"UPDATE {quoted} SET {name} = conlab_scrub({name}) "
                f"WHERE typeof({name}) IN ('text', 'blob')"
            )


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
