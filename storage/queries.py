"""Reading stored runs back: the run objects that `conlab run/runs --json` print."""

from __future__ import annotations

import os
import socket
import statistics
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from storage.models import Interpreter, Machine, Repeat, Run


def run_object(
    run: Run,
    walls_ns: Iterable[int],
    machine: Optional[str] = None,
    python: Optional[str] = None,
    *,
    stored: bool = False,
) -> dict[str, Any]:
    """One run as the CLI contract's JSON object (``stored`` adds machine, python, created_at)."""
    wall_s = [w / 1e9 for w in walls_ns]
    obj: dict[str, Any] = {
        "run_id": run.id,
        "sweep_id": run.sweep_id,
        "status": run.status,
        "workload": run.workload,
        "executor": run.executor,
        "workers": run.workers,
        "start_method": run.start_method,
        "chunksize": run.chunksize,
        "tasks": run.tasks,
        "size": run.size,
        "repeats": run.repeats,
        "warmups": run.warmups,
        "tag": run.tag,
        "wall_s": wall_s,
        "median_s": statistics.median(wall_s) if wall_s else None,
        "error": run.error,
    }
    if stored:
        obj.update(
            machine=machine,
            python=python,
            created_at=_iso_utc(run.created_at),
            machine_fingerprint=run.machine_fingerprint,
        )
    return obj


def _iso_utc(moment: Optional[datetime]) -> Optional[str]:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite keeps no zone; the lab writes UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def _pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_interrupted(engine: Engine) -> int:
    """Runs left `running` by a recorder process that no longer exists on this host become
    `interrupted`. Returns how many changed."""
    host = socket.gethostname()
    with Session(engine) as session:
        stale = [
            run
            for run in session.exec(select(Run).where(Run.status == "running"))
            if run.recorder_host == host and not _pid_alive(run.recorder_pid)
        ]
        for run in stale:
            run.status = "interrupted"
            run.error = run.error or "the recording process ended before the run finished"
            session.add(run)
        if stale:
            session.commit()
        return len(stale)


def list_runs(engine: Engine, tag: Optional[str] = None) -> list[dict[str, Any]]:
    """Every stored run (optionally with ``tag``), oldest first, as run objects."""
    with Session(engine) as session:
        query = select(Run).order_by(Run.created_at)
        if tag is not None:
            query = query.where(Run.tag == tag)
        runs = session.exec(query).all()
        walls: dict[str, list[int]] = defaultdict(list)
        repeats = session.exec(
            select(Repeat.run_id, Repeat.wall_ns)
            .where(Repeat.warmup == False)  # noqa: E712
            .order_by(Repeat.run_id, Repeat.repeat_index)
        )
        for run_id, wall_ns in repeats:
            walls[run_id].append(wall_ns)
        machines = {m.fingerprint: m.hostname for m in session.exec(select(Machine))}
        pythons = {i.key: i.version for i in session.exec(select(Interpreter))}
        return [
            run_object(
                run,
                walls.get(run.id, ()),
                machines.get(run.machine_fingerprint),
                pythons.get(run.interpreter_key),
                stored=True,
            )
            for run in runs
        ]
