"""What the lab knows of this machine and the machines in a database."""

from __future__ import annotations

from typing import Any, Optional


def machines(db: Optional[str]) -> list[dict[str, Any]]:
    """The machines in ``db`` (see storage.queries.machine_objects), read as the runs are
    listed (storage.listing: a lab file through sqlite3 alone)."""
    from storage.listing import open_runs

    with open_runs(db) as stored:
        return stored.machines()


def this_machine() -> dict[str, Any]:
    """This machine's and interpreter's facts, as recorded with every run."""
    from experiments.environment import collect

    return collect()
