"""Reading stored runs back: the run objects that `conlab run/runs --json` print.

Rows are read as plain values with SQL (not as ORM objects): a database may come from someone
else, so a value of an unexpected type is shown as it is, never trusted or executed.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from storage.models import utc_now

RUN_COLUMNS = (
    "id", "sweep_id", "status", "workload", "executor", "workers", "start_method", "chunksize",
    "tasks", "size", "repeats", "warmups", "tag", "error",
)  # fmt: skip


def json_object(text: Any) -> Optional[dict[str, Any]]:
    """``text`` (a stored JSON column) as a dict, or None when it is not a JSON object this
    process can read: not text, not JSON, not an object, or nested too deep to parse."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> Optional[float]:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_object(
    run: Mapping[str, Any],
    walls_ns: Iterable[Any],
    machine: Optional[str] = None,
    python: Optional[str] = None,
    *,
    stored: bool = False,
) -> dict[str, Any]:
    """One run as the CLI contract's JSON object (``stored`` adds machine, python, created_at).

    ``run`` maps the run table's column names to values; walls that are not numbers are left out.
    """
    wall_s = [w / 1e9 for w in walls_ns if _number(w) is not None]
    obj: dict[str, Any] = {"run_id": run["id"]}
    obj.update({name: run.get(name) for name in RUN_COLUMNS[1:]})
    obj["wall_s"] = wall_s
    obj["median_s"] = statistics.median(wall_s) if wall_s else None
    # keep the contract's key order: error last
    obj["error"] = obj.pop("error")
    if stored:
        obj.update(
            machine=machine,
            python=python,
            created_at=_iso_utc(run.get("created_at")),
            machine_fingerprint=run.get("machine_fingerprint"),
        )
    return obj


def _iso_utc(moment: Any) -> Optional[str]:
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment  # not a date: shown as the text it is
    if not isinstance(moment, datetime):
        return None if moment is None else str(moment)
    if moment.tzinfo is None:  # SQLite keeps no zone; the lab writes UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def mark_interrupted(engine: Engine) -> int:
    """Runs left `running` by a recorder process that no longer exists on this host become
    `interrupted`. Returns how many changed."""
    host = socket.gethostname()
    with engine.connect() as connection:
        candidates = connection.execute(
            text(
                "SELECT id, recorder_pid FROM run WHERE status = 'running' AND recorder_host = :h"
            ),
            {"h": host},
        ).all()
    stale = [run_id for run_id, pid in candidates if not _pid_alive(pid)]
    if stale:
        try:
            _mark(engine, stale)
        except OperationalError as exc:
            if "readonly" not in str(exc):
                raise
            return 0  # a database on a read-only disk: shown as it is stored
    return len(stale)


def _mark(engine: Engine, stale: list[str]) -> None:
    with engine.begin() as connection:
        for run_id in stale:
            connection.execute(
                text(
                    "UPDATE run SET status = 'interrupted', finished_at = :now, error = "
                    "coalesce(error, 'the recording process ended before the run finished') "
                    "WHERE id = :id AND status = 'running'"
                ),
                {"id": run_id, "now": utc_now().replace(tzinfo=None).isoformat(sep=" ")},
            )


def list_runs(engine: Engine, tag: Optional[str] = None) -> list[dict[str, Any]]:
    """Every stored run (optionally with ``tag``), oldest first, as run objects."""
    where = "WHERE r.tag = :tag" if tag is not None else ""
    with engine.connect() as connection:
        runs = (
            connection.execute(
                text(
                    f"SELECT r.*, m.hostname AS machine_name, i.version AS python_version "
                    f"FROM run r LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
                    f"LEFT JOIN interpreter i ON i.key = r.interpreter_key {where} "
                    f"ORDER BY r.created_at, r.id"
                ),
                {"tag": tag},
            )
            .mappings()
            .all()
        )
        walls: dict[str, list] = defaultdict(list)
        repeats = connection.execute(
            text(
                "SELECT p.run_id, p.wall_ns FROM repeat p "
                + ("JOIN run r ON r.id = p.run_id AND r.tag = :tag " if tag is not None else "")
                + "WHERE NOT p.warmup ORDER BY p.run_id, p.repeat_index"
            ),
            {"tag": tag},
        )
        for run_id, wall_ns in repeats:
            walls[run_id].append(wall_ns)
    return [
        run_object(run, walls.get(run["id"], ()), run["machine_name"], run["python_version"],
                   stored=True)
        for run in runs
    ]  # fmt: skip
