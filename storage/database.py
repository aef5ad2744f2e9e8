"""Opening a result database: the engine on what ``--db`` names (``storage.target`` says what
that is and checks the file), with the schema in place and SQLite set up for it."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table, event, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlmodel import SQLModel, create_engine

from storage import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.errors import DatabaseError
from storage.target import (
    APPLICATION_ID,
    BUSY_TIMEOUT_MS,
    CONNECT_TIMEOUT_S,
    SCHEMA_VERSION,
    SERVER_FIX,
    Database,
    FileDatabase,
    cannot_open,
    connect_to_read,
    database_target,
    prepare_file,
    read_error,
    refuse_foreign_triggers,
    schema_refusal,
    shown_url,
)


def _configure_reader(dbapi_connection, _record) -> None:
    # A reader leaves the journal mode as it is: reading changes nothing in the file.
    dbapi_connection.execute("PRAGMA foreign_keys = ON")


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers (TUI, reports) read while a run writes; the busy timeout lets two writers
    # take turns instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    _enter_wal(cursor)
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA trusted_schema = OFF")  # a received file's schema calls nothing
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
    db: str | os.PathLike | Database | None = None, *, create: bool = True, writer: bool = False
) -> Engine:
    """An engine on ``db`` (a Database, a path, a URL, or None for the default), with the
    schema in place.

    ``writer=True`` makes every transaction ``BEGIN IMMEDIATE`` (for recording runs); readers
    keep plain transactions, which under WAL never wait for a writer.
    Raises DatabaseError, leaving the file untouched, when it is not a lab database we can read.
    """
    target = database_target(db)
    url = target.url
    if isinstance(target, FileDatabase):
        path = target.path
        prepare_file(path, create=create)
        if create or writer:
            refuse_foreign_triggers(path)  # no trigger runs on the lab's writes
            engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
            event.listen(engine, "connect", _configure_sqlite)
        else:
            engine = create_engine(url, creator=lambda: connect_to_read(path))
            event.listen(engine, "connect", _configure_reader)
            event.listen(engine, "handle_error", _unreadable(path))
        if writer:
            event.listen(engine, "connect", _autocommit_driver)
            event.listen(engine, "begin", _begin_immediate)
    else:
        engine = _server_engine(url)
    try:
        _ensure_schema(engine, create=create)
    except Exception as exc:
        engine.dispose()
        if isinstance(exc, DatabaseError):
            raise
        fix = "that the file is writable" if isinstance(target, FileDatabase) else SERVER_FIX
        raise cannot_open(url, exc, fix) from None
    return engine


def _unreadable(path: Path):
    """A ``handle_error`` listener: SQLite failing to read ``path`` (a damaged page, a table or
    column missing) is a DatabaseError that names the file. A write refused by a read-only
    database or a lock is left as it is, for the caller to handle."""

    def convert(context) -> None:
        found = read_error(path, context.original_exception)
        if found is not None:
            raise found

    return convert


# The name of a driver's connect timeout (seconds), where it is not libpq's ``connect_timeout``.
_CONNECT_TIMEOUT_ARGS = {"pg8000": "timeout", "asyncpg": "timeout", "pymysql": "connect_timeout"}


def _server_engine(url: str) -> Engine:
    """An engine on a database server (a team's shared store, e.g. PostgreSQL)."""
    connect_args: dict = {}
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        # Timestamps are stored as UTC wall times, as in SQLite files, whatever the server's zone.
        connect_args["options"] = "-c timezone=UTC"
    # Every connection is given up on after CONNECT_TIMEOUT_S (unless the URL sets its own), so
    # that a server that accepts and never answers is one line, not a command that never ends.
    timeout_arg = _CONNECT_TIMEOUT_ARGS.get(parsed.get_driver_name(), "connect_timeout")
    if timeout_arg not in parsed.query:
        connect_args[timeout_arg] = CONNECT_TIMEOUT_S
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


# A server database has no file header: its schema version lives in a one-row table of its own
# (outside SQLModel.metadata, so SQLite files never get it).
_server_meta = MetaData()
_server_schema = Table("conlab_schema", _server_meta, Column("version", Integer, nullable=False))


def _ensure_schema(engine: Engine, *, create: bool = True) -> None:
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            version = connection.exec_driver_sql("PRAGMA user_version").scalar()
        if version == SCHEMA_VERSION:
            return
        refused = schema_refusal(engine.url.database, version, create=create)
        if refused is not None:
            raise refused
        _create_sqlite_schema(engine)
        return
    _check_server_version(engine, create=create)


def _create_sqlite_schema(engine: Engine) -> None:
    """The tables and the header of a new lab file, in one transaction: another process (or
    the app's other worker) opening the file meanwhile sees it empty or whole, never tables
    without the lab's header (which it would refuse as another program's file)."""
    from sqlalchemy.schema import CreateIndex, CreateTable

    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        level, driver.isolation_level = driver.isolation_level, None  # our BEGIN, our COMMIT
        try:
            driver.execute("BEGIN IMMEDIATE")  # waits (busy timeout) for another creator
            try:
                # Another opener may have made it while this one waited for the lock.
                if driver.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                    for table in SQLModel.metadata.sorted_tables:
                        ddl = CreateTable(table, if_not_exists=True)
                        driver.execute(str(ddl.compile(dialect=engine.dialect)))
                        for index in table.indexes:
                            ddl = CreateIndex(index, if_not_exists=True)
                            driver.execute(str(ddl.compile(dialect=engine.dialect)))
                    driver.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    driver.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                driver.execute("COMMIT")
            except BaseException:
                driver.execute("ROLLBACK")
                raise
        finally:
            driver.isolation_level = level
        # Put the header into the main file now, not at some later checkpoint: tools that look
        # at the file (and our own check) read it there. Outside any transaction.
        driver.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def _check_server_version(engine: Engine, *, create: bool) -> None:
    """Refuse a server database written by a newer conlab; migrate an older one. A database
    without the lab's schema (no ``conlab_schema``) is set up by a writer (``create``) when it is
    empty, and refused otherwise: a reader never writes a schema, and no one puts the lab's
    tables beside another program's."""
    from sqlalchemy import inspect

    if not inspect(engine).has_table("conlab_schema"):
        _set_up_server(engine, create=create)
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
    if create:
        SQLModel.metadata.create_all(engine)


def _set_up_server(engine: Engine, *, create: bool) -> None:
    """Give an empty server database the lab's schema and version, in one transaction (another
    client sees none of it or all of it); DatabaseError for a reader, or a database holding
    tables or views of its own."""
    from sqlalchemy import inspect

    shown = shown_url(str(engine.url))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":  # one creator at a time; the others wait here
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({APPLICATION_ID})")
        found = inspect(connection)
        if found.has_table("conlab_schema"):
            return  # another writer set it up while this one waited
        own = sorted({*found.get_table_names(), *found.get_view_names()})
        if own:
            names = ", ".join(own[:3]) + (", ..." if len(own) > 3 else "")
            raise DatabaseError(
                f"{shown} is a database but not a concurrency-lab one (it holds {names}); "
                "pass --db with a lab database, or a new empty one for the lab to set up"
            )
        if not create:
            raise DatabaseError(
                f"{shown} is an empty database, not a lab one yet; check --db "
                "(`conlab run --db` records into it)"
            )
        _server_meta.create_all(connection)
        connection.execute(_server_schema.insert(), {"version": SCHEMA_VERSION})
        SQLModel.metadata.create_all(connection)
