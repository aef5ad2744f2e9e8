"""A lab database someone sent: what it holds (``info``) and whether it is sound (``check``,
and ``soundness``, what a merge asks of each source before it commits).

SQLite files are read with plain SQL, read-only, guarded as crafted files are (storage.target);
a team's database server through SQLAlchemy Core. A database holds data only: nothing read
from one is ever executed or unpickled. Merging is storage.merge, exporting storage.export.
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from sqlalchemy import text as sql

from storage.database import open_engine
from storage.errors import DamagedDatabase, DatabaseError
from storage.queries import iso_utc, json_object
from storage.target import (
    SCHEMA_VERSION,
    Database,
    ServerDatabase,
    check_sqlite_file,
    connect_to_read,
    database_target,
    foreign_schema,
    guarded,
    interrupted,
    read_header,
    shown_url,
    too_long,
)
from storage.text import printable

# A lab database: a Database (storage.target), or what --db takes (a path, a URL).
Target = Union[Database, Path, str]


def connect_ro(path: Path) -> sqlite3.Connection:
    """A connection that reads ``path`` and refuses every write to it."""
    connection = connect_to_read(path)
    connection.execute("PRAGMA query_only = ON")
    return connection


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
    connection = connect_ro(path)
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
    connection = connect_ro(path)
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
                    migrated = connect_ro(copy)
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
    source = connect_ro(path)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    if version < SCHEMA_VERSION:
        migrate(copy, version, SCHEMA_VERSION)


@contextmanager
def readable_copy(path: Path) -> Iterator[Path]:
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


def refuse_unless_lab_file(path: Path) -> None:
    check_sqlite_file(path, create=False)
    if path.stat().st_size == 0:
        raise DatabaseError(f"{path} is empty, not a lab database; check the file you were sent")


def soundness(path: Path, uri: Optional[str]) -> Optional[DatabaseError]:
    """What ``db check`` would find in the source ``path`` (read through ``uri``, as the merge
    attaches it, where it has one): None when it would pass, else the refusal. A merge takes
    only what the check passes, so no fault spreads into the target."""
    try:
        if uri is not None:
            connection = guarded(sqlite3.connect(uri, uri=True), path)
            connection.execute("PRAGMA query_only = ON")
        else:
            connection = connect_ro(path)
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
