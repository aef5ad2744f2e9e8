"""What ``--db`` names, and whether the file there is a lab database this conlab can use.

Standard library only (SQLAlchemy is loaded for URLs alone): a command checks its ``--db`` with
these before it loads SQLAlchemy, and the app before its first screen. ``storage.database``
opens the engine on what passes."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from storage.errors import DamagedDatabase, DatabaseError, reason

log = logging.getLogger("conlab.storage")

# PRAGMA application_id: "CLab". Identifies a lab database among SQLite files.
APPLICATION_ID = 0x434C6162
SCHEMA_VERSION = 6  # storage/migrations.py has a step from each older version
BUSY_TIMEOUT_MS = 30_000
# How long a database server may take to let us in (TCP connect, TLS and the start-up exchange),
# on every path that connects to one: a server that accepts and never answers is given up on.
CONNECT_TIMEOUT_S = 10


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
    url_text = database_url(db)
    if url_text.startswith("sqlite:///") and not any(c in url_text for c in "?%"):
        name = url_text[len("sqlite:///") :]  # as SQLAlchemy reads a URL without ? or %
    else:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(url_text)
        except (ArgumentError, ValueError):
            raise DatabaseError(
                f"{masked(given)} is neither a file path nor a database URL; pass e.g. --db "
                "results.db or --db postgresql+psycopg://user@host/db"
            ) from None
        if url.get_backend_name() != "sqlite":
            return ServerDatabase(url_text)
        name = url.database
    if name in (None, "", ":memory:"):
        raise DatabaseError(
            f"{given} names a SQLite database in memory, which keeps nothing; "
            "pass --db with a file path"
        )
    return FileDatabase(Path(name))


def database_url(db: str | os.PathLike | Database | None) -> str:
    """A SQLAlchemy URL for ``--db``: a path, a SQLAlchemy URL, or None for the default."""
    if isinstance(db, (FileDatabase, ServerDatabase)):
        return db.url
    if db is None:  # $CONLAB_DB as written (a Path would make a URL's // one /), else the file
        db = os.environ.get("CONLAB_DB") or default_path()
    text = str(db)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


def lab_database(db: str | os.PathLike | Database | None) -> Database:
    """What ``--db`` names (``database_target``)."""
    return database_target(db)


def shown_url(url: str) -> str:
    """``url`` fit for a message: its password hidden (also in text that does not parse)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 (not a URL SQLAlchemy reads: hidden by its text alone)
        return masked(url)


# The password of a URL's user, up to the last @ (a password may hold one): ://user:PASSWORD@
_PASSWORD = re.compile(r"(://[^/?#@:\s]*:)[^\s]*@")


def masked(text: str) -> str:
    """``text`` with the password of every URL in it written ``***``, whether it parses or not."""
    return _PASSWORD.sub(r"\1***@", text)


def cannot_open(url: str, exc: BaseException, fix: str, *, verb: str = "open") -> DatabaseError:
    """The one line that says the database at ``url`` could not be opened (or read: ``verb``),
    and ``fix``."""
    return DatabaseError(f"cannot {verb} {shown_url(url)} ({reason(exc)}); check --db and {fix}")


def cannot_read(url: str, exc: BaseException, fix: str) -> DatabaseError:
    return cannot_open(url, exc, fix, verb="read")


# What to check when a server does not let us in.
SERVER_FIX = "that the server is running"


# The tables every lab database has had since schema 1.
LAB_TABLES = frozenset({"machine", "interpreter", "run", "repeat", "task_sample"})
# Every table and index any version of the lab's schema makes (storage.models, migrations):
# anything else in a file's sqlite_master was put there by someone else.
LAB_SCHEMA_TABLES = LAB_TABLES | {"sweep", "process", "import_log"}
LAB_INDEXES = frozenset(
    {
        "ix_interpreter_machine_fingerprint",
        "ix_run_sweep_id",
        "ix_run_interpreter_key",
        "ix_run_status",
        "ix_run_machine_fingerprint",
        "ix_run_config",
        "ix_run_workload",
        "ix_run_report",
        "ix_run_created_at",
        "ix_run_executor",
        "ix_run_tag",
        "ix_repeat_run",
        "ix_repeat_run_id",
        "ix_task_sample_run_id",
    }
)


def check_sqlite_file(path: Path, *, create: bool) -> None:
    """Refuse, without changing a byte, a file that is not a lab database of a version we know.

    ``create`` allows what only a writer may set up: a missing, 0-byte or table-less SQLite file.
    """
    if path.is_dir():
        raise DatabaseError(f"{path} is a directory; pass --db with a file path")
    if not path.exists():
        _refuse_to_create(path, create)
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
    user_version, application_id = _lab_header(path)
    if application_id != APPLICATION_ID:
        if application_id == 0 and user_version == 0:
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
    _refuse_without_lab_tables(path, user_version)


def _refuse_to_create(path: Path, create: bool) -> None:
    """Refuse the missing file ``path`` unless ``create`` and its folder can be made and
    written (the folder is made here)."""
    if not create:
        raise DatabaseError(
            f"no database at {path}; check the path (or run `conlab run` to create one)"
        )
    if not path.parent.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create {path.parent} ({exc.strerror}); pass --db with a writable location"
            ) from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise DatabaseError(
            f"cannot create {path} ({path.parent} is not writable); "
            "pass --db with a writable location"
        )


def _lab_header(path: Path) -> tuple[int, int]:
    """(user_version, application_id) of the existing SQLite file ``path``, as its first page
    says, or as SQLite sees them where the page may not be the whole story; application_id -1:
    tables without the lab's header, another program's file."""
    user_version, application_id = read_header(path)
    if application_id == 0 and user_version == 0:
        # Another opener may be setting the file up this moment: its header is then in the
        # WAL, where SQLite sees it and the file's first page does not yet.
        user_version, application_id = _header_seen_by_sqlite(path)
    if application_id == 0 and user_version == 0 and _foreign_tables(path):
        # Tables and the lab's header are committed together (storage.database): tables seen
        # after a header read without it may be a creator's that committed in between.
        user_version, application_id = _header_seen_by_sqlite(path)
        if application_id != APPLICATION_ID:
            application_id = -1
    if application_id not in (0, APPLICATION_ID) or (
        application_id == APPLICATION_ID and user_version < 1
    ):
        # The file's bytes may be read while a checkpoint writes its first page (read() and
        # write() of one page are not atomic to each other): SQLite's own read, under its
        # locks, says whether it is ours before it is called damaged or another program's.
        seen = _header_seen_by_sqlite(path)
        if seen[1] == APPLICATION_ID:
            user_version, application_id = seen
    return user_version, application_id


def _refuse_without_lab_tables(path: Path, user_version: int) -> None:
    """Refuse a file marked as the lab's that lacks a table its version has (or has it as a
    view), or has no schema version."""
    kinds = _table_kinds(path)
    missing = sorted(
        (LAB_TABLES | ({"process"} if user_version >= 4 else set()))
        - {name for name, kind in kinds.items() if kind == "table"}
        | {name for name in LAB_SCHEMA_TABLES if kinds.get(name, "table") != "table"}
    )
    if user_version < 1 or missing:
        what = "no schema version"
        if missing:
            what = "; ".join(
                f"its {name} is a {kinds[name]}, not a table" if name in kinds else f"no {name}"
                for name in missing
            )
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


def has_lab_header(path: Path) -> bool:
    """Whether ``path`` is a file SQLite sees with the lab's header (False for anything else:
    missing, empty, another program's, or one being set up this moment)."""
    try:
        return path.stat().st_size > 0 and read_header(path)[1] == APPLICATION_ID
    except (OSError, DatabaseError):
        return False


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


def _table_kinds(path: Path) -> dict[str, str]:
    """What each name in ``path``'s schema is, as the lab reads it: "table" for a plain table
    only; "view", "virtual table", "trigger" or "index" for anything else of that name."""
    try:
        connection = connect_to_read(path)
        try:
            rows = connection.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise DamagedDatabase(path, str(exc)) from None
    kinds: dict[str, str] = {}
    for kind, name, text in rows:
        if kind == "table" and _virtual(text):
            kind = "virtual table"
        if kinds.get(name) != "table":
            kinds[name] = kind
    return kinds


def _virtual(text: object) -> bool:
    return isinstance(text, str) and text.lstrip().upper().startswith("CREATE VIRTUAL")


def foreign_schema(connection: sqlite3.Connection, schema: str = "main") -> list[tuple[str, str]]:
    """(kind, name) of everything in ``schema``'s sqlite_master that the lab did not make:
    views, triggers, virtual tables, tables and indexes of other names (SQLite's own
    ``sqlite_`` tables and automatic indexes aside)."""
    rows = connection.execute(f"SELECT type, name, tbl_name, sql FROM {schema}.sqlite_master")
    found = []
    for kind, name, table, text in rows.fetchall():
        if kind == "table" and _virtual(text):
            found.append(("virtual table", name))
        elif not _the_labs(kind, name, table, text):
            found.append((kind, name))
    return found


def _the_labs(kind: str, name: str, table: str, text: object) -> bool:
    """Whether a plain table or index of this name is one the lab (or SQLite itself) makes."""
    if kind == "table":
        return name in LAB_SCHEMA_TABLES or name.startswith("sqlite_")
    if kind == "index":
        automatic = text is None and name.startswith("sqlite_autoindex_")
        return table in LAB_SCHEMA_TABLES and (name in LAB_INDEXES or automatic)
    return False


def foreign_triggers(path: Path) -> list[str]:
    """The names of the triggers in the lab file ``path`` (the lab makes none)."""
    try:
        connection = connect_to_read(path)
        try:
            return [
                kind_name[1]
                for kind_name in foreign_schema(connection)
                if kind_name[0] == "trigger"
            ]
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise DamagedDatabase(path, str(exc)) from None


def refuse_foreign_triggers(path: Path) -> None:
    """Refuse to write into ``path`` when it holds a trigger, which would run on the lab's
    writes (the lab's schema has none)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    names = foreign_triggers(path)
    if names:
        listed = ", ".join(repr(name) for name in names[:3])
        raise DatabaseError(
            f"{path} holds a trigger the lab did not make ({listed}), which would run on the "
            f"lab's writes; nothing was written: record into another --db, or `conlab db "
            f"export NEW.db --db {path}` (an export holds the lab's tables alone)"
        )


def _header_seen_by_sqlite(path: Path) -> tuple[int, int]:
    """(user_version, application_id) as SQLite reads them, WAL included; (0, 0) when it
    cannot read them."""
    try:
        connection = connect_readonly(path)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            return version, application_id
        finally:
            connection.close()
    except sqlite3.DatabaseError:
        return 0, 0


def _foreign_tables(path: Path) -> bool:
    """Whether a SQLite file without the lab's header holds anything (unreadable counts)."""
    try:
        return bool(_table_names(path, ours=False))
    except DamagedDatabase:
        return True


def file_uri(path: Path, **parameters: str) -> str:
    from urllib.parse import quote, urlencode

    return f"file:{quote(str(Path(path).absolute()))}?{urlencode(parameters)}"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


# The most work one statement reading a file may do, in SQLite virtual machine instructions:
# about 30 s of one core, plus 50 for each byte of the file. A view over an endless recursive
# query (a crafted file) is stopped there.
READ_STEPS = 3_000_000_000
READ_STEPS_PER_BYTE = 50
# SQLite calls the progress handler every this many instructions.
_PROGRESS_STEPS = 100_000


def read_bound(path: Path) -> int:
    """How much work one statement reading ``path`` may do, in SQLite instructions."""
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    return READ_STEPS + size * READ_STEPS_PER_BYTE


def bounded(connection: sqlite3.Connection, steps: int) -> sqlite3.Connection:
    """Stop any statement of ``connection`` that does more than ``steps`` instructions
    (SQLite's progress handler; the statement fails with "interrupted"). Each statement's
    count starts when it begins to run (the trace callback). The handler is a C callable
    (a bytearray's ``pop``: 0 while work is left, then 1), so no Python runs inside SQLite's
    loop: a signal (Ctrl-C, SIGTERM) is handled as the statement returns, never swallowed."""
    full = b"\x01" + bytes(max(1, steps // _PROGRESS_STEPS))
    left = bytearray(full)

    def begins(_statement) -> None:
        left[:] = full

    connection.set_trace_callback(begins)
    connection.set_progress_handler(left.pop, _PROGRESS_STEPS)
    return connection


def too_long(path: Path) -> DatabaseError:
    """The refusal of a file a read of which ran past ``read_bound``."""
    return DatabaseError(
        f"reading {path} was stopped: one statement ran past its bound (a crafted view or a "
        f"query that never ends?); check it with `conlab db check --db {path}`"
    )


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` is SQLite stopping a statement that ran past its bound."""
    return isinstance(error, sqlite3.OperationalError) and str(error) == "interrupted"


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that cannot change ``path``. A WAL file in a directory SQLite cannot write
    (a read-only mount) is opened immutable: nobody can be writing it there either; so is one
    on a full disk (``_opened``); one with commits in a write-ahead log beside it that SQLite
    cannot read so is refused (``unreadable_log``), not read without them."""
    try:
        return _opened(path, file_uri(path, mode="ro"))
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) or _writable(path):
            raise
    refused = unreadable_log(path)
    if refused is not None:
        raise refused
    return guarded(sqlite3.connect(file_uri(path, immutable="1"), uri=True), path)


def unreadable_log(path: Path) -> Optional[DatabaseError]:
    """The refusal of a file that can only be opened immutable (a read-only folder, no -shm
    beside it) while a write-ahead log beside it holds commits: immutable, SQLite reads the
    file alone and would skip them. None when there is no such log."""
    wal = path.with_name(path.name + "-wal")
    try:
        if wal.stat().st_size == 0:
            return None
    except OSError:
        return None
    return DatabaseError(
        f"{path} has commits in its write-ahead log ({wal.name}) that SQLite can read only by "
        f"writing {path.name}-shm beside it, and its folder is read-only; copy {path.name} and "
        f"{wal.name} together to a writable place and pass --db with the copy"
    )


def guarded(connection: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """``connection`` to a file that may have been crafted: its schema may call no function
    with side effects (``trusted_schema``), and no statement runs past ``read_bound``."""
    connection.execute("PRAGMA trusted_schema = OFF")
    return bounded(connection, read_bound(path))


def connect_to_read(path: Path) -> sqlite3.Connection:
    """A connection for reading an existing file: read-write where the file and its directory
    are writable (so SQLite tidies its -wal and -shm files away on close), else read-only. It
    never creates the file. Guarded as a received file is (``guarded``)."""
    if _writable(path):
        connection = _opened(path, file_uri(path, mode="rw"), timeout=BUSY_TIMEOUT_MS / 1000)
    else:
        connection = connect_readonly(path)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


# Room SQLite needs beside a WAL file to read it: its -shm index, one 32 KiB region first.
_SHM_ROOM = 32_768


def _opened(path: Path, uri: str, **options) -> sqlite3.Connection:
    """``path`` opened through ``uri`` and read once. On a disk too full for the -shm file
    SQLite makes beside a WAL file (it fails with an I/O error, and is no fault of the file):
    the -wal and -shm files this open left behind are removed, and the file is read as it is
    (immutable) when no write-ahead log holds more of it; DatabaseError, naming the fix, when
    one does (reading it without its -shm would skip those commits). Guarded (``guarded``)."""
    there = files_beside(path)
    connection = guarded(sqlite3.connect(uri, uri=True, **options), path)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master")  # opens the file for real
        return connection
    except sqlite3.OperationalError as exc:
        connection.close()
        if not out_of_room(path, exc):
            raise
    tidy_beside(path, there)
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise DatabaseError(
            f"cannot read {path}: the disk it is on is full, and SQLite needs {_SHM_ROOM // 1024} "
            f"KiB there for its -shm file to read its write-ahead log; free some space and "
            "try again"
        ) from None
    connection = guarded(sqlite3.connect(file_uri(path, immutable="1"), uri=True), path)
    connection.execute("SELECT count(*) FROM sqlite_master")
    return connection


def files_beside(path: Path) -> dict[Path, bool]:
    """Whether each of the -wal and -shm files SQLite keeps beside ``path`` is there now."""
    beside = (path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))
    return {file: file.exists() for file in beside}


def tidy_beside(path: Path, there: dict[Path, bool]) -> None:
    """Remove the -wal and -shm files of ``path`` that an open which failed left behind: those
    not ``there`` before it (``files_beside``) and holding nothing (an empty log, a -shm not
    set up)."""
    for made, existed in there.items():
        try:
            if not existed and made.stat().st_size < _SHM_ROOM:
                made.unlink()
        except OSError:
            pass


def out_of_room(path: Path, error: BaseException) -> bool:
    """Whether SQLite failed for want of room on ``path``'s disk (an I/O error or "full" there,
    with less free than a -shm region needs), not for anything in the file. ``error`` may be
    SQLAlchemy's wrapping of sqlite3's."""
    error = getattr(error, "orig", None) or error
    if not isinstance(error, sqlite3.OperationalError):
        return False
    name = getattr(error, "sqlite_errorname", "")
    if not (name.startswith(("SQLITE_IOERR", "SQLITE_FULL")) or "disk" in str(error)):
        return False
    try:
        disk = os.statvfs(path.parent)
    except (OSError, AttributeError):  # no statvfs (Windows): an I/O error is not called room
        return False
    return disk.f_bavail * disk.f_frsize < 2 * _SHM_ROOM


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
    if interrupted(error):
        return too_long(path)
    return DatabaseError(
        f"cannot read {path} ({str(error).strip()}); check it with `conlab db check --db {path}`"
    )


def schema_refusal(name: object, version: int, *, create: bool) -> Optional[DatabaseError]:
    """Why a lab file whose ``PRAGMA user_version`` reads ``version`` (what SQLite sees, the
    write-ahead log included) cannot be used as it is; None for this conlab's version, and for
    a new file (version 0) that a writer (``create``) sets up."""
    if version == SCHEMA_VERSION:
        return None
    if version > SCHEMA_VERSION:
        return DatabaseError(
            f"{name} has schema version {version}, newer than this conlab "
            f"understands ({SCHEMA_VERSION}); upgrade concurrency-lab to read it"
        )
    if version or not create:  # a reader never writes a schema into a file
        return DatabaseError(
            f"{name} has schema version {version}, not one this conlab "
            f"can use ({SCHEMA_VERSION}); check it with `conlab db check`"
        )
    return None


def prepare_file(path: Path, *, create: bool) -> None:
    """Everything opening a lab database file does before SQLAlchemy takes it: refuse what is
    not one we can use (``check_sqlite_file``), migrate an older one."""
    check_sqlite_file(path, create=create)
    _migrate_if_older(path)


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


def distinct(databases: Sequence[Optional[str]]) -> list[Optional[str]]:
    """``databases`` (``--db`` values) in their order without one named twice: the same file
    by another path, a link or a hard link, or the same URL, is read once."""
    kept, seen = [], []
    for db in databases:
        target = database_target(db)
        key = os.path.realpath(target.path) if isinstance(target, FileDatabase) else target.url
        if any(key == k or _same_file(key, k) for k in seen):
            continue
        seen.append(key)
        kept.append(db)
    return kept


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False
