"""Errors the storage layer raises for bad user input, importable without pandas or SQLAlchemy."""

from __future__ import annotations

from pathlib import Path


class SelectionError(ValueError):
    """A selection the user wrote that cannot be understood; the message names the fix."""


class DatabaseError(Exception):
    """A database that cannot be used as asked. The message names the problem and the fix."""


def reason(exc: BaseException) -> str:
    """What ``exc`` says in one line (a driver's errors run to several): its first line, or
    its kind when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# PostgreSQL's SQLSTATEs for a write refused: a standby or read-only transaction, a role
# without the privilege.
_WRITE_REFUSED_STATES = frozenset({"25006", "42501"})


def refuses_writes(exc: BaseException) -> bool:
    """Whether a driver's error (or SQLAlchemy's wrapping of one) says the database takes no
    writes here: SQLite's read-only file, a PostgreSQL standby or a role that may only read,
    whichever driver reached it (psycopg's ``sqlstate``, psycopg2's ``pgcode``, pg8000's
    error fields)."""
    error = getattr(exc, "orig", None) or exc
    if "readonly" in str(error) and type(error).__module__ == "sqlite3":
        return True
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if state is None and error.args and isinstance(error.args[0], dict):
        state = error.args[0].get("C")
    return state in _WRITE_REFUSED_STATES


class DamagedDatabase(DatabaseError):
    """A lab database SQLite cannot read; ``reason`` is what SQLite said."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path} is damaged ({reason}); check it with `conlab db check --db {path}`"
        )
        self.reason = reason


class OutputError(ValueError):
    """A file the lab was asked to write that it must not or cannot write; the message names
    the problem and the fix."""
