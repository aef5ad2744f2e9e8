"""Opening a result database: where it is, what it must be, and how SQLite is set up for it."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import SQLModel, create_engine

from storage import models  # noqa: F401  (registers the tables on SQLModel.metadata)

log = logging.getLogger("conlab.storage")

# PRAGMA application_id: "CLab". Identifies a lab database among SQLite files.
APPLICATION_ID = 0x434C6162
SCHEMA_VERSION = 3  # storage/migrations.py has a step from each older version
BUSY_TIMEOUT_MS = 30_000


class DatabaseError(Exception):
    """A database that cannot be used as asked. The message names the problem and the fix."""


def default_path() -> Path:
    """``$CONLAB_DB``, else ``results.db`` in the user data directory."""
    env = os.environ.get("CONLAB_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("conlab", appauthor=False)) / "results.db"


def database_url(db: str | os.PathLike | None) -> str:
    """A SQLAlchemy URL for ``--db``: a path, a SQLAlchemy URL, or None for the default."""
    if db is None:
        db = default_path()
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


def lab_database(db: str | os.PathLike | None) -> Path | str:
    """What ``--db`` names: a SQLite file's Path, or a database server's URL (a str)."""
    url = database_url(db)
    return sqlite_path(url) if is_sqlite(url) else url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def check_sqlite_file(path: Path, *, create: bool) -> None:
    """Refuse, without changing a byte, a file that is not a lab database of a version we know."""
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory; pass --db with a file path")
    if not path.exists():
        if not create:
            raise DatabaseError(
                f"no database at {path}; check the path (or run `conlab run` to create one)"
            )
        if not path.parent.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create {path.parent} ({exc.strerror}); "
                    "pass --db with a writable location"
                ) from None
        return
    if not os.access(path, os.R_OK):
        raise DatabaseError(f"{path} is not readable; fix its permissions or pass another --db")
    if path.stat().st_size == 0:
        return
    user_version, application_id = read_header(path)
    if application_id != APPLICATION_ID:
        if application_id == 0 and user_version == 0 and not _has_tables(path):
            return  # an empty SQLite file: ours to set up
        raise DatabaseError(
            f"{path} is a SQLite database but not a concurrency-lab one; "
            "pass --db with a lab database or a new file name"
        )
    if user_version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {user_version}, newer than this conlab "
            f"understands ({SCHEMA_VERSION}); upgrade concurrency-lab to read it"
        )


def read_header(path: Path) -> tuple[int, int]:
    """``(user_version, application_id)`` from a SQLite file's header, without opening it."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise DatabaseError(f"cannot read {path} ({exc.strerror}); check the path") from None
    if not header.startswith(b"SQLite format 3\x00"):
        raise DatabaseError(
            f"{path} is not a SQLite database; pass --db with a lab database or a new file name"
        )
    # Header offsets 60 (user_version) and 68 (application_id), big-endian (SQLite file format).
    found = int.from_bytes(header[60:64], "big"), int.from_bytes(header[68:72], "big")
    wal = path.with_name(path.name + "-wal")
    if found[1] != APPLICATION_ID and wal.exists() and wal.stat().st_size:
        # The header may still be in the write-ahead log (a writer died before a checkpoint).
        try:
            connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                found = (
                    connection.execute("PRAGMA user_version").fetchone()[0],
                    connection.execute("PRAGMA application_id").fetchone()[0],
                )
            finally:
                connection.close()
        except sqlite3.DatabaseError:
            pass
    return found


def _has_tables(path: Path) -> bool:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
    except sqlite3.DatabaseError:
        return True
    finally:
        connection.close()


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers (TUI, reports) read while a run writes; the busy timeout lets two writers
    # take turns instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _enter_wal(cursor) -> None:
    """Switch a file to WAL. Two processes switching a new file at once: one gets "database is
    locked" at once (SQLite does not wait on the busy timeout for it), so it tries again."""
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _begin_immediate(connection) -> None:
    # A writer takes the write lock when its transaction begins, so it waits (busy timeout) for
    # another writer instead of failing when it upgrades a read lock halfway through.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _autocommit_driver(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN


def open_engine(
    db: str | os.PathLike | None = None, *, create: bool = True, writer: bool = False
) -> Engine:
    """An engine on ``db`` (path, URL or None for the default), with the schema in place.

    ``writer=True`` makes every transaction ``BEGIN IMMEDIATE`` (for recording runs); readers
    keep plain transactions, which under WAL never wait for a writer.
    Raises DatabaseError, leaving the file untouched, when it is not a lab database we can read.
    """
    url = database_url(db)
    if is_sqlite(url):
        path = sqlite_path(url)
        check_sqlite_file(path, create=create)
        _migrate_if_older(path)
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _configure_sqlite)
        if writer:
            event.listen(engine, "connect", _autocommit_driver)
            event.listen(engine, "begin", _begin_immediate)
    else:
        engine = _server_engine(url)
    try:
        _ensure_schema(engine)
    except Exception as exc:
        engine.dispose()
        if isinstance(exc, DatabaseError):
            raise
        fix = "that the file is writable" if is_sqlite(url) else "that the server is running"
        raise DatabaseError(
            f"cannot open {shown_url(url)} ({str(exc).strip().splitlines()[0]}); "
            f"check --db and {fix}"
        ) from None
    return engine


def shown_url(url: str) -> str:
    """``url`` fit for a message: its password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def _server_engine(url: str) -> Engine:
    """An engine on a database server (a team's shared store, e.g. PostgreSQL)."""
    connect_args = {}
    if make_url(url).get_backend_name() == "postgresql":
        # Timestamps are stored as UTC wall times, as in SQLite files, whatever the server's zone.
        connect_args["options"] = "-c timezone=UTC"
    try:
        return create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    except ImportError as exc:
        raise DatabaseError(
            f"no driver for {shown_url(url)} ({exc}); for PostgreSQL install the postgres extra: "
            "pip install 'concurrency-lab[postgres]'"
        ) from None
    except ArgumentError as exc:
        raise DatabaseError(
            f"--db {shown_url(url)} is not a database URL we can use ({exc}); "
            "pass a file path or e.g. postgresql+psycopg://user@host/db"
        ) from None


def _migrate_if_older(path: Path) -> None:
    if not path.exists() or path.stat().st_size == 0:
        return
    version, application_id = read_header(path)
    if application_id == APPLICATION_ID and 0 < version < SCHEMA_VERSION:
        from storage.migrations import migrate

        try:
            backup = migrate(path, version, SCHEMA_VERSION)
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"cannot migrate {path} from schema {version} ({exc}); "
                "the file is unchanged: check it with `conlab db check`"
            ) from None
        if backup is None:
            return  # someone else migrated it just now
        log.warning(
            "migrated %s from schema %d to %d; the previous file is kept as %s",
            path,
            version,
            SCHEMA_VERSION,
            backup,
        )


# A server database has no file header: its schema version lives in a one-row table of its own
# (outside SQLModel.metadata, so SQLite files never get it).
_server_meta = MetaData()
_server_schema = Table("conlab_schema", _server_meta, Column("version", Integer, nullable=False))


def _ensure_schema(engine: Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            version = connection.exec_driver_sql("PRAGMA user_version").scalar()
        if version == SCHEMA_VERSION:
            return
    else:
        _check_server_version(engine)
    SQLModel.metadata.create_all(engine)
    if engine.dialect.name == "sqlite":
        with engine.begin() as connection:
            connection.exec_driver_sql(f"PRAGMA application_id = {APPLICATION_ID}")
            connection.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")
        # Put the header into the main file now, not at some later checkpoint: tools that look
        # at the file (and our own check) read it there. Outside any transaction, on the driver.
        raw = engine.raw_connection()
        try:
            raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def _check_server_version(engine: Engine) -> None:
    """Refuse a server database written by a newer conlab; mark a new one with our version."""
    _server_meta.create_all(engine)
    with engine.begin() as connection:
        versions = connection.execute(select(_server_schema.c.version)).scalars().all()
        if not versions:
            connection.execute(_server_schema.insert(), {"version": SCHEMA_VERSION})
        elif max(versions) < SCHEMA_VERSION:
            from storage.migrations import migrate_server

            migrate_server(connection, max(versions), SCHEMA_VERSION)
            connection.execute(_server_schema.update().values(version=SCHEMA_VERSION))
        elif max(versions) > SCHEMA_VERSION:
            raise DatabaseError(
                f"{shown_url(str(engine.url))} has schema version {max(versions)}, newer than "
                f"this conlab understands ({SCHEMA_VERSION}); upgrade concurrency-lab to use it"
            )
