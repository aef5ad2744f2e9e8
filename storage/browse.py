"""What the app's panes read and change one run or machine at a time: a run's detail, its tag,
deleting it with its measurements, and the machines a database holds. Plain values only; the
faces (CLI and app) reach these through ``service.runs``."""

from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage.queries import (
    INTERPRETER_VERSIONS_SQL,
    MACHINES_SQL,
    json_object,
    machine_objects,
)

# A run's rows, children first: deleting in this order never leaves an orphan.
RUN_TABLES = ("task_sample", "repeat", "process")


def run_detail(engine: Engine, run_id: str) -> dict[str, Any]:
    """The stored environment (a dict, empty when unreadable), error detail and stderr of one
    run; empty values when the run is gone."""
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT environment_json, error_detail, stderr FROM run WHERE id = :id"),
            {"id": run_id},
        ).one_or_none()
    if row is None:
        return {"environment": {}, "error_detail": None, "stderr": None}
    return {"environment": json_object(row[0]) or {}, "error_detail": row[1], "stderr": row[2]}


def set_tag(engine: Engine, run_id: str, tag: Optional[str]) -> None:
    """Give one run ``tag`` (None removes it)."""
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE run SET tag = :tag WHERE id = :id"), {"tag": tag, "id": run_id}
        )


def delete_run(engine: Engine, run_id: str) -> None:
    """Delete one run and its measurements, in one transaction."""
    with engine.begin() as connection:
        for table in RUN_TABLES:
            connection.execute(text(f"DELETE FROM {table} WHERE run_id = :id"), {"id": run_id})
        connection.execute(text("DELETE FROM run WHERE id = :id"), {"id": run_id})


def machines(engine: Engine) -> list[dict[str, Any]]:
    """Every machine in the database with its interpreters' versions and its number of runs,
    by host name (storage.queries.machine_objects)."""
    with engine.connect() as connection:
        found = connection.execute(text(MACHINES_SQL))
        names, rows = list(found.keys()), found.all()
        versions = connection.execute(text(INTERPRETER_VERSIONS_SQL)).all()
    return machine_objects(names, rows, versions)
