"""Schema versions. A file of an older version is copied aside, then migrated one step per
version; each step is one function here, run in one transaction."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Optional

# The version each step starts from -> the step, which leaves the file at version + 1.
STEPS: dict[int, Callable[[sqlite3.Connection], None]] = {}


def step(from_version: int):
    def register(function: Callable[[sqlite3.Connection], None]):
        STEPS[from_version] = function
        return function

    return register


@step(1)
def _sweeps_imports_and_heartbeats(connection: sqlite3.Connection) -> None:
    """v1 (the first cut) -> v2: sweep and import_log tables, run heartbeats, report indexes."""
    for statement in (
        """CREATE TABLE IF NOT EXISTS sweep (
            id VARCHAR NOT NULL PRIMARY KEY, created_at DATETIME NOT NULL, tag VARCHAR)""",
        """INSERT OR IGNORE INTO sweep (id, created_at, tag)
            SELECT sweep_id, min(created_at), max(tag) FROM run GROUP BY sweep_id""",
        """CREATE TABLE IF NOT EXISTS import_log (
            id INTEGER NOT NULL PRIMARY KEY, imported_at DATETIME NOT NULL,
            source VARCHAR NOT NULL, runs_added INTEGER NOT NULL,
            runs_skipped INTEGER NOT NULL)""",
        "ALTER TABLE run ADD COLUMN heartbeat_at DATETIME",
        "ALTER TABLE run ADD COLUMN max_tasks_per_child INTEGER",
        "ALTER TABLE repeat ADD COLUMN first_task_start_ns BIGINT",
        "ALTER TABLE repeat ADD COLUMN busy_ns BIGINT",
        """UPDATE repeat SET
            first_task_start_ns = (SELECT min(s.start_ns) FROM task_sample s
                WHERE s.run_id = repeat.run_id AND s.repeat_index = repeat.repeat_index),
            busy_ns = (SELECT sum(s.end_ns - s.start_ns) FROM task_sample s
                WHERE s.run_id = repeat.run_id AND s.repeat_index = repeat.repeat_index)""",
        """CREATE INDEX IF NOT EXISTS ix_run_config
            ON run (workload, size, tasks, executor, workers)""",
        "CREATE INDEX IF NOT EXISTS ix_repeat_run ON repeat (run_id, repeat_index)",
    ):
        # One statement at a time: executescript() would commit the open transaction first.
        connection.execute(statement)


# Steps from version 2 on are plain SQL that SQLite and PostgreSQL both accept, so a team's server
# database is migrated by the same statements as a file (servers started at version 2).
PORTABLE_STEPS: dict[int, tuple[str, ...]] = {
    # v2 -> v3: several runner processes per run, and the order a sweep's runs took turns in
    # (runs recorded before were measured in one process); the cost beyond time, per repeat and
    # per task (unknown, NULL, for runs recorded before).
    2: (
        "ALTER TABLE run ADD COLUMN processes INTEGER",
        "UPDATE run SET processes = 1",
        "ALTER TABLE repeat ADD COLUMN process_index INTEGER",
        "UPDATE repeat SET process_index = 0",
        "ALTER TABLE sweep ADD COLUMN run_order VARCHAR",
        "ALTER TABLE sweep ADD COLUMN order_seed BIGINT",
        "ALTER TABLE repeat ADD COLUMN peak_rss_bytes BIGINT",
        "ALTER TABLE repeat ADD COLUMN worker_peak_rss_bytes BIGINT",
        "ALTER TABLE repeat ADD COLUMN voluntary_switches BIGINT",
        "ALTER TABLE repeat ADD COLUMN involuntary_switches BIGINT",
        "ALTER TABLE repeat ADD COLUMN core_moves INTEGER",
        "ALTER TABLE repeat ADD COLUMN cores_used INTEGER",
        "ALTER TABLE task_sample ADD COLUMN voluntary_switches INTEGER",
        "ALTER TABLE task_sample ADD COLUMN involuntary_switches INTEGER",
        "ALTER TABLE task_sample ADD COLUMN core_start INTEGER",
        "ALTER TABLE task_sample ADD COLUMN core_end INTEGER",
    ),
}


def _portable(statements: tuple[str, ...]) -> Callable[[sqlite3.Connection], None]:
    def run(connection: sqlite3.Connection) -> None:
        for statement in statements:
            connection.execute(statement)

    return run


for _version, _statements in PORTABLE_STEPS.items():
    STEPS[_version] = _portable(_statements)


def _process_table(connection, dialect: str) -> None:
    """v3 -> v4: each runner process's figures as a report reads them, derived for every run
    stored (storage.figures)."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateTable

    from storage import figures
    from storage.models import Process

    dialects = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
    create = str(
        CreateTable(Process.__table__, if_not_exists=True).compile(dialect=dialects[dialect])
    )
    execute = connection.execute if dialect == "sqlite" else connection.exec_driver_sql
    execute(create)
    _worker_columns(connection, dialect)  # what figures reads of the repeats now
    option_columns(connection, dialect)  # what the report's index holds now
    figures.refresh(connection, "SELECT id FROM run")


@step(3)
def _process_table_in_a_file(connection: sqlite3.Connection) -> None:
    _process_table(connection, "sqlite")


# v4 -> v5: what each worker thread did (schedstat: on a core, waiting for one), per repeat and
# as each process's medians; what every thread did in the looked-at repeat. NULL for runs recorded
# before: not observed. (A process table made by the step before already has its columns.)
_WORKER_COLUMNS = (
    ("repeat", "worker_span_ns", "BIGINT"),
    ("repeat", "on_core_ns", "BIGINT"),
    ("repeat", "core_wait_ns", "BIGINT"),
    ("repeat", "worker_split", "VARCHAR"),
    ("run", "thread_states", "VARCHAR"),
    ("process", "on_core_share", "FLOAT"),
    ("process", "core_wait_share", "FLOAT"),
    ("process", "look_lock", "FLOAT"),
    ("process", "look_io", "FLOAT"),
    ("process", "look_sleep", "FLOAT"),
    ("process", "handovers_per_s", "FLOAT"),
)


def _columns_of(connection, dialect: str):
    """How a step runs a statement on ``connection`` (a file's sqlite3 connection or a server's
    SQLAlchemy one), and the columns a table has."""
    if dialect == "sqlite":

        def has(table: str) -> set:
            return {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}

        return connection.execute, has

    def has(table: str) -> set:
        rows = connection.exec_driver_sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = %(t)s",
            {"t": table},
        )
        return {row[0] for row in rows}

    return connection.exec_driver_sql, has


def _worker_columns(connection, dialect: str) -> None:
    execute, has = _columns_of(connection, dialect)
    for table, column, kind in _WORKER_COLUMNS:
        if column not in has(table):
            execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


@step(4)
def _worker_columns_in_a_file(connection: sqlite3.Connection) -> None:
    _worker_columns(connection, "sqlite")


# v5 -> v6: a column for every dimension of the option table (storage.queries.OPTION_COLUMNS),
# filled for the runs stored before from what they recorded: the option in their environment,
# else the default of their executor where it takes the option (joblib's loky, asyncio's own
# loop), else NULL (not given). A merged file is migrated before its runs are copied, so they
# come in filled the same way. The report's index is made again over the new columns.
_SQL_TYPES = {int: "INTEGER", float: "FLOAT", str: "VARCHAR"}
_FILL_BATCH = 1000


def option_columns(connection, dialect: str) -> None:
    from experiments.options import BY_NAME
    from storage.queries import OPTION_COLUMNS, REPORT_COLUMNS

    execute, has = _columns_of(connection, dialect)
    added = [name for name in OPTION_COLUMNS if name not in has("run")]
    for name in added:
        execute(f"ALTER TABLE run ADD COLUMN {name} {_SQL_TYPES[BY_NAME[name].type]}")
    if added:
        _fill_options(connection, dialect, added)
    execute("DROP INDEX IF EXISTS ix_run_report")
    execute(f"CREATE INDEX ix_run_report ON run ({', '.join(REPORT_COLUMNS)})")


def _fill_options(connection, dialect: str, names: list[str]) -> None:
    """Each of ``names`` (run columns just added) as the stored runs used it."""
    execute = connection.execute if dialect == "sqlite" else connection.exec_driver_sql
    rows = execute("SELECT id, executor, tasks, workers, environment_json FROM run").fetchall()
    mark = (lambda n: f":{n}") if dialect == "sqlite" else (lambda n: f"%({n})s")
    update = (
        f"UPDATE run SET {', '.join(f'{n} = {mark(n)}' for n in names)} WHERE id = {mark('id')}"
    )
    found = [v for v in (_options_used(row, names) for row in rows) if v is not None]
    for start in range(0, len(found), _FILL_BATCH):
        if dialect == "sqlite":
            connection.executemany(update, found[start : start + _FILL_BATCH])
        else:
            connection.exec_driver_sql(update, found[start : start + _FILL_BATCH])


def _options_used(row, names: list[str]) -> Optional[dict]:
    """``names``' values for one run (a row of id, executor, tasks, workers, environment), as
    parameters of the update; None when it used none of them."""
    from experiments.executors import EXECUTORS
    from experiments.options import BY_NAME
    from storage.queries import json_object

    run_id, executor_name, tasks, workers, environment = row
    env = json_object(environment) or {}
    executor = EXECUTORS.get(executor_name) if isinstance(executor_name, str) else None
    values = {}
    for name in names:
        value = env.get(name)
        if name == "main" and isinstance(value, dict):  # the entry script and its cost
            value = value.get("script")
        kind = BY_NAME[name].type
        if value is None and executor is not None and name in executor.options:
            try:
                value = executor.default(name, tasks, workers)
            except (TypeError, ValueError, ArithmeticError):
                value = None  # a damaged row's tasks or workers: not known
        if isinstance(value, bool) or not isinstance(value, kind):
            value = None
        values[name] = value
    if all(value is None for value in values.values()):
        return None
    return {**values, "id": run_id}


@step(5)
def _option_columns_in_a_file(connection: sqlite3.Connection) -> None:
    option_columns(connection, "sqlite")


# Steps that are not plain SQL, for a server (a SQLAlchemy connection).
SERVER_STEPS: dict[int, Callable] = {
    3: partial(_process_table, dialect="postgresql"),
    4: partial(_worker_columns, dialect="postgresql"),
    5: partial(option_columns, dialect="postgresql"),
}


def migrate_server(connection, from_version: int, to_version: int) -> None:
    """Bring a server database (a SQLAlchemy connection in a transaction) up to ``to_version``."""
    for version in range(from_version, to_version):
        if version in SERVER_STEPS:
            SERVER_STEPS[version](connection)
            continue
        for statement in PORTABLE_STEPS[version]:
            connection.exec_driver_sql(statement)


def backup_path(path: Path, version: int) -> Path:
    candidate = path.with_name(f"{path.name}.v{version}.bak")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.v{version}.bak{n}")
        n += 1
    return candidate


@contextmanager
def _migration_lock(path: Path):
    """One migrator at a time across processes and threads (two windows opening an old file).
    The lock file lives in the user's own folder in $TMPDIR (storage.private), not beside the
    user's file; what is not a regular file there is refused (a sqlite3.Error, which the opener
    turns into one line), never opened blocking or followed."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; SQLite's own lock still guards steps
        yield
        return
    import hashlib

    from storage.private import open_private_file, private_folder

    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    try:
        lock = private_folder("conlab-locks") / f"migrate-{key}.lock"
        descriptor = open_private_file(lock, os.O_RDWR | os.O_CREAT)
    except OSError as exc:  # NotPrivate too: its message names the fix
        raise sqlite3.OperationalError(f"no lock to migrate under: {exc}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def migrate(path: Path, from_version: int, to_version: int) -> Optional[Path]:
    """Bring the lab database at ``path`` from ``from_version`` to ``to_version``.

    A consistent copy of the file is made first (SQLite's backup API); returns its path, or None
    when another process or thread migrated the file meanwhile.
    """
    with _migration_lock(path):
        current = sqlite3.connect(path)
        try:
            from_version = current.execute("PRAGMA user_version").fetchone()[0]
        finally:
            current.close()
        if from_version >= to_version:
            return None
        return _migrate_locked(path, from_version, to_version)


def _migrate_locked(path: Path, from_version: int, to_version: int) -> Path:
    backup = backup_path(path, from_version)
    source = sqlite3.connect(path)
    try:
        target = sqlite3.connect(backup)
        with target:
            source.backup(target)
        target.close()
        source.isolation_level = None  # transactions are explicit below
        for version in range(from_version, to_version):
            source.execute("BEGIN IMMEDIATE")
            try:
                STEPS[version](source)
                source.execute(f"PRAGMA user_version = {version + 1}")
                source.execute("COMMIT")
            except BaseException:
                source.execute("ROLLBACK")
                if version == from_version:
                    backup.unlink(missing_ok=True)  # the file is unchanged: no copy to keep
                raise
    finally:
        source.close()
    return backup
