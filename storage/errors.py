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


class DamagedDatabase(DatabaseError):
    """A lab database SQLite cannot read; ``reason`` is what SQLite said."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"{path} is damaged ({reason}); check it with `conlab db check --db {path}`"
        )
        self.reason = reason
