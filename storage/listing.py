"""Reading stored runs without the models: `conlab runs` and the app's lists (how many runs a
RunFilter picks and the run objects of those it shows, after stale `running` runs are marked
interrupted; and the machines stored) and a report's reads (``reading``: a DB-API connection to
run its SQL on). Every way of fetching runs the same SQL (storage.queries), and one function
builds the objects (storage.queries.run_objects, machine_objects), so all print the same:

- a lab file is read with the standard library's sqlite3 alone, a PostgreSQL database at this
  conlab's schema version with psycopg alone (``ConnectionRuns``): listing and reports are what
  a person types most, and SQLAlchemy with the models take a quarter of a second to import;
- any other server database (another driver, an older schema) goes through a SQLAlchemy engine
  (``EngineRuns``), whose opener migrates it or says why it cannot.

A file is opened as storage.database opens a reader: checked (a damaged or foreign file, or one
from a newer conlab, is refused without a byte changed), migrated when older, never created.
"""

from __future__ import annotations

import os
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from storage.errors import DatabaseError, refuses_writes
from storage.queries import (
    BATCH,
    INTERPRETER_VERSIONS_SQL,
    MACHINES_SQL,
    MARK_SQL,
    RUNNING_SQL,
    RunFilter,
    count_runs,
    count_sql,
    list_params,
    list_sql,
    machine_objects,
    mark_interrupted,
    repeats_sql,
    run_objects,
    stale_marks,
    stream_runs,
    this_host,
)
from storage.target import (
    CONNECT_TIMEOUT_S,
    SCHEMA_VERSION,
    SERVER_FIX,
    FileDatabase,
    ServerDatabase,
    cannot_open,
    cannot_read,
    connect_to_read,
    database_target,
    foreign_schema,
    prepare_file,
    read_error,
    schema_refusal,
)


@dataclass(frozen=True)
class Reading:
    """One read of a lab database: its SQL dialect ("sqlite", "postgresql"), its driver's
    DB-API connection, and a file's path (what names it when SQLite cannot read it)."""

    dialect: str
    connection: Any
    path: Optional[Path] = None

    @property
    def mark(self) -> str:
        """A positional parameter as the driver writes it."""
        return "?" if self.dialect == "sqlite" else "%s"


class ConnectionRuns(ABC):
    """The runs of a lab database read through one DB-API connection, with storage.queries'
    SQL (named parameters written ``:name``): a file's (FileRuns) or a server's (ServerRuns)."""

    dialect: str  # its SQL's, as storage.queries names them ("sqlite", "postgresql")
    path: Optional[Path] = None

    def __init__(self, connection) -> None:
        self.connection = connection

    def close(self) -> None:
        self.connection.close()

    @abstractmethod
    def _read(self) -> AbstractContextManager[None]:
        """The driver failing to read is one line that names the database."""

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """One transaction, committed on leaving, rolled back on an error."""

    def _sql(self, text: str) -> str:
        """``text`` with its parameters as the driver writes them."""
        return text

    def _execute(self, text: str, params: Any = ()):
        return self.connection.execute(self._sql(text), params)

    def mark_interrupted(self) -> int:
        """storage.queries.mark_interrupted, on this database."""
        with self._read():
            marks = stale_marks(self._execute(RUNNING_SQL, this_host()).fetchall())
        if not marks:
            return 0
        with self._read():
            try:
                with self._transaction():
                    self.connection.cursor().executemany(self._sql(MARK_SQL), marks)
            except Exception as exc:
                if not refuses_writes(exc):
                    raise
                return 0  # a database that takes no writes: shown as it is stored
        return len(marks)

    def count(self, chosen: RunFilter) -> int:
        """storage.queries.count_runs, on this database."""
        with self._read():
            query = self._execute(
                count_sql(chosen, self.dialect), list_params(chosen, self.dialect)
            )
            return query.fetchone()[0]

    def stream(self, chosen: RunFilter) -> Iterator[dict[str, Any]]:
        """storage.queries.stream_runs, on this database: the run objects ``chosen`` picks,
        newest first, ``BATCH`` runs read at a time."""
        with self._read():
            cursor = self._execute(
                list_sql(chosen, self.dialect), list_params(chosen, self.dialect)
            )
            names = [d[0] for d in cursor.description]
            mark = Reading(self.dialect, self.connection).mark
            while batch := cursor.fetchmany(BATCH):
                runs = [dict(zip(names, row)) for row in batch]
                ids = [run["id"] for run in runs]
                marks = ", ".join([mark] * len(ids))
                repeats = self.connection.execute(repeats_sql(f"({marks})"), ids)
                yield from run_objects(runs, repeats)

    @contextmanager
    def reading(self) -> Iterator[Reading]:
        yield Reading(self.dialect, self.connection, self.path)

    def machines(self) -> list[dict[str, Any]]:
        """The machines of this database (storage.queries.machine_objects)."""
        with self._read():
            cursor = self._execute(MACHINES_SQL)
            names, rows = [d[0] for d in cursor.description], cursor.fetchall()
            versions = self._execute(INTERPRETER_VERSIONS_SQL).fetchall()
        return machine_objects(names, rows, versions)


class FileRuns(ConnectionRuns):
    """The runs of a lab file, read with sqlite3 (see the module's note)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        prepare_file(path, create=False)
        with self._read():
            super().__init__(connect_to_read(path))
        try:
            with self._read():
                self.connection.execute("PRAGMA foreign_keys = ON")
                version = self.connection.execute("PRAGMA user_version").fetchone()[0]
                # A trigger would run on marking runs interrupted: such a file is only read.
                self._triggers = any(
                    kind == "trigger" for kind, _ in foreign_schema(self.connection)
                )
            refused = schema_refusal(path, version, create=False)
            if refused is not None:
                raise refused
        except BaseException:
            self.connection.close()
            raise

    @contextmanager
    def _read(self) -> Iterator[None]:
        """SQLite failing to read the file is one line that names it (storage.target.read_error)."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            found = read_error(self.path, exc) or DatabaseError(
                f"cannot read {self.path} ({str(exc).strip()}); try again when the database is "
                "free, or pass another --db"
            )
            raise found from None

    def _transaction(self):
        return self.connection  # sqlite3's: commits on leaving, rolls back on an error

    def mark_interrupted(self) -> int:
        """Stale runs marked interrupted, unless the file holds a trigger (shown as stored)."""
        return 0 if self._triggers else super().mark_interrupted()


class ServerRuns(ConnectionRuns):
    """The runs of a PostgreSQL database at this conlab's schema version, read with psycopg
    alone (``current_server``): the engine, the models and their checks cost a listing or a
    report on a server more than reading its runs does. Reads are committed as they go;
    marking runs interrupted is one transaction."""

    dialect = "postgresql"

    def __init__(self, connection, target: ServerDatabase) -> None:
        super().__init__(connection)
        connection.autocommit = True
        self._url = target.url

    @contextmanager
    def _read(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise cannot_read(self._url, exc, SERVER_FIX) from None

    def _sql(self, text: str) -> str:
        # psycopg writes a named parameter %(name)s, and a literal % as %%
        return re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", r"%(\1)s", text.replace("%", "%%"))

    def _transaction(self):
        return self.connection.transaction()


class EngineRuns:
    """The runs of a database behind a SQLAlchemy engine (a server), as FileRuns lists a file."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    def mark_interrupted(self) -> int:
        return mark_interrupted(self.engine)

    def count(self, chosen: RunFilter) -> int:
        return count_runs(self.engine, chosen)

    def stream(self, chosen: RunFilter) -> Iterator[dict[str, Any]]:
        return stream_runs(self.engine, chosen)

    def machines(self) -> list[dict[str, Any]]:
        from storage.browse import machines

        return machines(self.engine)

    @contextmanager
    def reading(self) -> Iterator[Reading]:
        with self.engine.connect() as connection:
            dialect, url = connection.dialect.name, self.engine.url
            path = Path(url.database or "") if dialect == "sqlite" else None
            yield Reading(dialect, connection.connection.driver_connection, path)


def reading(source) -> AbstractContextManager[Reading]:
    """A Reading of ``source``: what ``open_runs`` opened, or a SQLAlchemy engine."""
    if isinstance(source, (ConnectionRuns, EngineRuns)):
        return source.reading()
    return EngineRuns(source).reading()


@contextmanager
def open_runs(db: Union[str, os.PathLike, None]) -> Iterator[Union[ConnectionRuns, EngineRuns]]:
    """The runs stored in ``db`` (a path, a URL, or None for the default) to list or report
    on, closed afterwards: a file with sqlite3 alone, a server with psycopg alone where it can
    be (``_server_runs``), else through the engine's opener. DatabaseError when it is not a lab
    database that can be read."""
    target = database_target(db)
    found: Union[ConnectionRuns, EngineRuns]
    if isinstance(target, FileDatabase):
        found = FileRuns(target.path)
    else:
        found = _server_runs(target) or _engine_runs(target)
    try:
        yield found
    finally:
        found.close()


# What a listing or a report reads on a server: present in a database at this schema version.
SERVER_TABLES = ("run", "process", "repeat", "machine", "interpreter", "sweep")


def _server_runs(target: ServerDatabase) -> Optional[ServerRuns]:
    """ServerRuns of ``target`` when it is a PostgreSQL database (through psycopg) that holds
    this schema version and the tables read; None for anything else (another driver, a server
    that refuses, an older or newer schema, a new database), which the engine's opener then
    migrates, creates or refuses with its own words."""
    connection = current_server(target, SERVER_TABLES)
    return None if connection is None else ServerRuns(connection, target)


def current_server(target: ServerDatabase, tables: Iterable[str]):
    """A psycopg connection to ``target`` when it is a PostgreSQL database (through psycopg)
    at this schema version that holds ``tables``: one that the engine's opener would leave as
    it is. None for anything else, for the opener to migrate, create or refuse in its own
    words; DatabaseError when the server does not let us in (it would not let the opener in
    either, and a server that does not answer is waited for once)."""
    from sqlalchemy.engine import make_url

    url = make_url(target.url)
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
        return None
    try:
        import psycopg
    except ImportError:
        return None  # the engine's opener says which driver to install
    libpq_url = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        # timestamps as UTC wall times, as storage.database's engine has them
        timeout = {} if "connect_timeout" in url.query else {"connect_timeout": CONNECT_TIMEOUT_S}
        connection = psycopg.connect(libpq_url, options="-c timezone=UTC", **timeout)
    except psycopg.OperationalError as exc:  # the engine would be refused as well: say it once
        raise cannot_open(target.url, exc, SERVER_FIX) from None
    except Exception:  # noqa: BLE001 (the engine's opener says what is wrong)
        return None
    try:
        present = ", ".join(f"to_regclass('{name}')" for name in ("conlab_schema", *tables))
        if None in connection.execute(f"SELECT {present}").fetchone():
            connection.close()
            return None
        (version,) = connection.execute("SELECT max(version) FROM conlab_schema").fetchone()
        connection.rollback()
    except Exception:  # noqa: BLE001
        connection.close()
        return None
    if version != SCHEMA_VERSION:
        connection.close()
        return None
    return connection


def _engine_runs(target: ServerDatabase) -> EngineRuns:
    from storage.database import open_engine

    return EngineRuns(open_engine(target, create=False))
