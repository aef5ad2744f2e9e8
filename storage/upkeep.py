"""Keeping a database in shape: pruning old runs (`conlab db prune`) with their repeats and task
samples, in one transaction, then giving the space back.

Tagged runs are baselines someone chose to keep: they stay unless asked for, and the tags named
with ``keep_tags`` stay even then. A run still `running` is never pruned.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from storage.browse import RUN_TABLES


def prune(
    engine: Engine,
    before: datetime,
    keep_tags: Sequence[str] = (),
    include_tagged: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Delete the runs created before ``before`` (naive UTC) as the module says; what went (or,
    with ``dry_run``, would go): runs, repeats, task samples, and the space given back."""
    terms = ["created_at < :before", "status <> 'running'"]
    if not include_tagged:
        terms.append("tag IS NULL")
    if keep_tags:
        terms.append("(tag IS NULL OR tag NOT IN :keep)")
    picked = f"SELECT id FROM run WHERE {' AND '.join(terms)}"
    params: dict[str, Any] = {
        "before": before if engine.dialect.name != "sqlite" else before.isoformat(" ")
    }
    if keep_tags:
        params["keep"] = list(keep_tags)

    def statement(sql: str):
        found = text(sql)
        return found.bindparams(bindparam("keep", expanding=True)) if keep_tags else found

    counted: dict[str, Any] = {}
    with engine.begin() as connection:
        for table in ("run", *RUN_TABLES):
            column = "id" if table == "run" else "run_id"
            counted[table] = connection.execute(
                statement(f"SELECT count(*) FROM {table} WHERE {column} IN ({picked})"), params
            ).scalar_one()
        if not dry_run and counted["run"]:
            for table in RUN_TABLES:  # children first: no orphan at any point
                connection.execute(
                    statement(f"DELETE FROM {table} WHERE run_id IN ({picked})"), params
                )
            connection.execute(statement(f"DELETE FROM run WHERE id IN ({picked})"), params)
            connection.execute(text("DELETE FROM sweep WHERE id NOT IN (SELECT sweep_id FROM run)"))
    found = {
        "runs": counted["run"],
        "repeats": counted["repeat"],
        "task_samples": counted["task_sample"],
        "dry_run": dry_run,
        "reclaimed_bytes": None,
    }
    if not dry_run and counted["run"] and engine.dialect.name == "sqlite":
        found["reclaimed_bytes"] = _vacuum(engine)
    return found


def _vacuum(engine: Engine) -> int:
    """VACUUM a SQLite file (outside any transaction); the bytes it gave back."""
    size = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()"
    with engine.connect() as connection:
        before = connection.execute(text(size)).scalar_one()
        connection.rollback()  # VACUUM cannot run inside a transaction
        connection.connection.driver_connection.execute("VACUUM")
        return before - connection.execute(text(size)).scalar_one()
