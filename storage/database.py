"""Opening a result database: where it is, what it must be, and how SQLite is set up for it."""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

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


class DamagedDatabase(DatabaseError):
    """A lab database SQLite cannot read; ``reason`` is what SQLite said."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path} is damaged ({reason}); check it with `conlab db check --db {path}`"
        )
        self.reason = reason


def default_path() -> Path:
    """``$CONLAB_DB``, else ``results.db`` in the user data directory."""
    env = os.environ.get("CONLAB_DB")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("conlab", appauthor=False)) / "results.db"


@dataclass(frozen=True)
class FileDatabase:
    """A lab database in a SQLite file."""

    path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class ServerDatabase:
    """A lab database on a database server (a team's PostgreSQL), by its SQLAlchemy URL."""

    url: str

    def __str__(self) -> str:
        return shown_url(self.url)  # fit for a message: the password hidden


Database = Union[FileDatabase, ServerDatabase]


def database_target(db: str | os.PathLike | Database | None = None) -> Database:
    """What ``--db`` names: a file path or a ``sqlite:///`` URL is a FileDatabase, any other
    SQLAlchemy URL a ServerDatabase; None is ``$CONLAB_DB``, else the default file. Text that
    names no database to keep runs in (empty, neither a path nor a URL, SQLite in memory) is a
    DatabaseError of one line naming the fix."""
    if isinstance(db, (FileDatabase, ServerDatabase)):
        return db
    given = f"--db {str(db)!r}" if db is not None else f"$CONLAB_DB {os.environ.get('CONLAB_DB')!r}"
    if db is not None and not str(db).strip():
        raise DatabaseError("--db is empty; pass a file path or a database URL, or leave it out")
    try:
        url = make_url(database_url(db))
    except (ArgumentError, ValueError):
        raise DatabaseError(
            f"{given} is neither a file path nor a database URL; pass e.g. --db results.db "
            "or --db postgresql+psycopg://user@host/db"
        ) from None
    if url.get_backend_name() != "sqlite":
        return ServerDatabase(database_url(db))
    if url.database in (None, "", ":memory:"):
        raise DatabaseError(
            f"{given} names a SQLite database in memory, which keeps nothing; "
            "pass --db with a file path"
        )
    return FileDatabase(Path(url.database))


def database_url(db: str | os.PathLike | Database | None) -> str:
    """A SQLAlchemy URL for ``--db``: a path, a SQLAlchemy URL, or None for the default."""
    if isinstance(db, (FileDatabase, ServerDatabase)):
        return db.url
    if db is None:
        db = default_path()
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


def lab_database(db: str | os.PathLike | Database | None) -> Database:
    """What ``--db`` names (``database_target``)."""
    return database_target(db)


# The tables every lab database has had since schema 1.
LAB_TABLES = frozenset({"machine", "interpreter", "run", "repeat", "task_sample"})


def check_sqlite_file(path: Path, *, create: bool) -> None:
    """Refuse, without changing a byte, a file that is not a lab database of a version we know.

    ``create`` allows what only a writer may set up: a missing, 0-byte or table-less SQLite file.
    """
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
        if create:
            return
        raise DatabaseError(
            f"{path} is an empty file, not a lab database; check the path "
            "(`conlab run --db` records into a new file)"
        )
    user_version, application_id = read_header(path)
    if application_id != APPLICATION_ID:
        if application_id == 0 and user_version == 0 and not _foreign_tables(path):
            if create:
                return  # an empty SQLite file: ours to set up
            raise DatabaseError(
                f"{path} is an empty SQLite database, not a lab one yet; check the path "
                "(`conlab run --db` records into it)"
            )
        raise DatabaseError(
            f"{path} is a SQLite database but not a concurrency-lab one; "
            "pass --db with a lab database or a new file name"
        )
    if user_version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {user_version}, newer than this conlab "
            f"understands ({SCHEMA_VERSION}); upgrade concurrency-lab to read it"
        )
    missing = LAB_TABLES - _table_names(path, ours=True)
    if user_version < 1 or missing:
        what = f"no {', '.join(sorted(missing))} table" if missing else "no schema version"
        raise DatabaseError(
            f"{path} is marked as a concurrency-lab database but has {what}; it is damaged "
            "or was made by another program: ask for a fresh `conlab db export`"
        )


def read_header(path: Path) -> tuple[int, int]:
    """``(user_version, application_id)`` as SQLite sees them, without changing the file: from
    the file's header, or from its write-ahead log when one holds changes not yet checkpointed
    (a writer that died before a checkpoint may have set them there)."""
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
    try:  # the log may go between two looks: SQLite removes it as the last connection closes
        logged = path.with_name(path.name + "-wal").stat().st_size > 0
    except OSError:
        logged = False
    if logged:
        try:
            connection = connect_readonly(path)
            try:
                found = (
                    connection.execute("PRAGMA user_version").fetchone()[0],
                    connection.execute("PRAGMA application_id").fetchone()[0],
                )
            finally:
                connection.close()
        except sqlite3.DatabaseError:
            pass  # SQLite cannot read the log either: the header is all there is
    return found


def _table_names(path: Path, *, ours: bool) -> set[str]:
    """The tables in ``path``. A file that is not ours is opened read-only (SQLite may then
    leave its -wal and -shm files beside a WAL file); ours as every lab reader opens it."""
    try:
        connection = connect_to_read(path) if ours else connect_readonly(path)
        try:
            return {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise DamagedDatabase(path, str(exc)) from None


def _foreign_tables(path: Path) -> bool:
    """Whether a SQLite file without the lab's header holds anything (unreadable counts)."""
    try:
        return bool(_table_names(path, ours=False))
    except DamagedDatabase:
        return True


def _file_uri(path: Path, **parameters: str) -> str:
    from urllib.parse import quote, urlencode

    return f"file:{quote(str(Path(path).absolute()))}?{urlencode(parameters)}"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot change ``path``. A WAL file in a directory SQLite cannot write
    (a read-only mount) is opened immutable: nobody can be writing it there either."""
    try:
        connection = sqlite3.connect(_file_uri(path, mode="ro"), uri=True)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master")  # opens the file for real
        except sqlite3.OperationalError:
            connection.close()
            raise
        return connection
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) or _writable(path):
            raise
    return sqlite3.connect(_file_uri(path, immutable="1"), uri=True)


def connect_to_read(path: Path) -> sqlite3.Connection:
    """A connection for reading an existing file: read-write where the file and its directory
    are writable (so SQLite tidies its -wal and -shm files away on close), else read-only. It
    never creates the file."""
    if _writable(path):
        connection = sqlite3.connect(
            _file_uri(path, mode="rw"), uri=True, timeout=BUSY_TIMEOUT_MS / 1000
        )
    else:
        connection = connect_readonly(path)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


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
        check_sqlite_file(path, create=create)
        _migrate_if_older(path)
        if create or writer:
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
        fix = (
            "that the file is writable"
            if isinstance(target, FileDatabase)
            else "that the server is running"
        )
        raise DatabaseError(
            f"cannot open {shown_url(url)} ({str(exc).strip().splitlines()[0]}); "
            f"check --db and {fix}"
        ) from None
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


def read_error(path: Path, error: BaseException) -> Optional[DatabaseError]:
    """SQLite failing to read ``path`` (a damaged page, a table or column missing) as a
    DatabaseError that names the file; None for anything else, and for a write refused by a
    read-only database or a lock."""
    if not isinstance(error, sqlite3.DatabaseError):
        return None
    if isinstance(error, sqlite3.OperationalError) and (
        "readonly" in str(error) or "locked" in str(error)
    ):
        return None
    return DatabaseError(
        f"cannot read {path} ({str(error).strip()}); check it with `conlab db check --db {path}`"
    )


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

        if not _writable(path):
            raise DatabaseError(
                f"{path} has schema version {version} and must be migrated, but it cannot be "
                "written here; copy it to a writable place and pass --db with the copy"
            )

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


def _ensure_schema(engine: Engine, *, create: bool = True) -> None:
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            version = connection.exec_driver_sql("PRAGMA user_version").scalar()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:  # what SQLite sees now, write-ahead log included
            raise DatabaseError(
                f"{engine.url.database} has schema version {version}, newer than this conlab "
                f"understands ({SCHEMA_VERSION}); upgrade concurrency-lab to read it"
            )
        if version or not create:  # a reader never writes a schema into a file
            raise DatabaseError(
                f"{engine.url.database} has schema version {version}, not one this conlab "
                f"can use ({SCHEMA_VERSION}); check it with `conlab db check`"
            )
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
