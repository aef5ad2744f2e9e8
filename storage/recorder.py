"""Recording one run as it happens: inserted as `running`, each repeat committed as it finishes,
finished as `ok`, `failed` or `cancelled`."""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Optional

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from experiments.spec import ExperimentSpec
from storage.models import Interpreter, Machine, Repeat, Run, Sweep, TaskSample, utc_now


class RunRecorder:
    """Feeds a runner's events into the database for one run."""

    def __init__(self, engine: Engine, spec: ExperimentSpec, resolved: dict[str, Any]):
        self.engine = engine
        self.spec = spec
        self.resolved = resolved
        self.run_id = spec.run_id
        self._pending_repeat: Optional[dict] = None
        self.walls_ns: list[int] = []  # counted (non-warm-up) repeats, in order

    def start(self) -> None:
        run = Run(
            id=self.spec.run_id,
            sweep_id=self.spec.sweep_id,
            status="running",
            workload=self.spec.workload,
            executor=self.spec.executor,
            workers=self.resolved["workers"],
            start_method=self.resolved["start_method"],
            chunksize=self.resolved["chunksize"],
            tasks=self.spec.tasks,
            size=self.resolved["size"],
            repeats=self.spec.repeats,
            warmups=self.spec.warmups,
            timeout_s=self.spec.timeout_s,
            tag=self.spec.tag,
            python_requested=self.spec.python,
            recorder_host=socket.gethostname(),
            recorder_pid=os.getpid(),
        )
        with Session(self.engine) as session:
            if session.get(Sweep, self.spec.sweep_id) is None:
                session.add(Sweep(id=self.spec.sweep_id, tag=self.spec.tag))
                session.flush()
            session.add(run)
            session.commit()

    def on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "env":
            self._record_environment(event)
        elif kind == "repeat":
            self._pending_repeat = event
        elif kind == "tasks":
            self._record_repeat(event)

    def finish(
        self,
        status: str,
        error: Optional[str] = None,
        detail: Optional[str] = None,
        stderr: Optional[str] = None,
    ) -> Run:
        """Store the run's final status; return the finished row (detached)."""
        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            run.status = status
            run.error = error
            run.error_detail = detail
            run.stderr = stderr or None
            run.finished_at = utc_now()
            session.add(run)
            session.commit()
            session.refresh(run)
            session.expunge(run)
            return run

    def _record_environment(self, event: dict) -> None:
        env = event.get("environment") or {}
        fingerprint, key = env.get("machine_fingerprint"), env.get("interpreter_key")
        with Session(self.engine) as session:
            if fingerprint and session.get(Machine, fingerprint) is None:
                session.add(
                    Machine(
                        fingerprint=fingerprint,
                        hostname=env.get("hostname"),
                        os_name=env.get("os_name"),
                        os_release=env.get("os_release"),
                        architecture=env.get("architecture"),
                        cpu_model=env.get("cpu_model"),
                        logical_cores=env.get("logical_cores"),
                        physical_cores=env.get("physical_cores"),
                        usable_cores=env.get("usable_cores"),
                        memory_total_bytes=env.get("memory_total_bytes"),
                    )
                )
                session.flush()
            if key and session.get(Interpreter, key) is None:
                session.add(
                    Interpreter(
                        key=key,
                        machine_fingerprint=fingerprint,
                        implementation=env.get("python_implementation"),
                        version=env.get("python_version"),
                        executable=env.get("python_executable"),
                        compiler=env.get("python_compiler"),
                        gil_disabled=env.get("py_gil_disabled"),
                    )
                )
                session.flush()
            run = session.get(Run, self.run_id)
            run.machine_fingerprint = fingerprint
            run.interpreter_key = key
            run.environment_json = json.dumps(env, sort_keys=True)
            run.runner_pid = event.get("runner_pid")
            session.add(run)
            session.commit()

    def _record_repeat(self, event: dict) -> None:
        repeat = self._pending_repeat or {}
        self._pending_repeat = None
        index = event["repeat"]
        run_id = self.run_id
        samples = event.get("samples") or ()
        rows = [
            (run_id, index, task_index, s[0], s[1], s[2], s[3])
            for task_index, s in enumerate(samples)
        ]
        with self.engine.begin() as connection:
            connection.execute(
                insert(Repeat),
                [
                    {
                        "run_id": self.run_id,
                        "repeat_index": index,
                        "warmup": repeat.get("warmup"),
                        "wall_ns": repeat.get("wall_ns"),
                        "cpu_ns": repeat.get("cpu_ns"),
                        "start_ns": repeat.get("start_ns"),
                        "end_ns": repeat.get("end_ns"),
                        "first_task_start_ns": min((s[2] for s in samples), default=None),
                        "busy_ns": sum(s[3] - s[2] for s in samples) if samples else None,
                    }
                ],
            )
            if rows:
                _insert_samples(connection, rows)
            connection.execute(
                update(Run).where(Run.id == self.run_id).values(heartbeat_at=utc_now())
            )
        if not repeat.get("warmup"):
            self.walls_ns.append(repeat.get("wall_ns"))


_SAMPLE_COLUMNS = ("run_id", "repeat_index", "task_index", "pid", "thread_id", "start_ns", "end_ns")


def _insert_samples(connection, rows: list[tuple]) -> None:
    """Bulk-insert task samples: the driver's executemany with plain tuples on SQLite (a third of
    the time SQLAlchemy's per-row parameter handling takes), the portable insert elsewhere."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql(
            f"INSERT INTO task_sample ({', '.join(_SAMPLE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    else:
        connection.execute(insert(TaskSample), [dict(zip(_SAMPLE_COLUMNS, row)) for row in rows])
