"""Recording one run as it happens: inserted as `running`, each repeat committed as it finishes,
finished as `ok`, `failed` or `cancelled`.

If the database stops taking writes (read-only, disk full, locked for too long), the run goes on:
its events are kept, and at the end they are saved as JSON in a file the user is told about."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterator, Sequence
from functools import cached_property, lru_cache, partial
from itertools import chain, compress, count, repeat
from operator import eq, is_not, ne
from typing import Any, Optional

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from experiments.spec import ExperimentSpec
from storage.models import Interpreter, Machine, Repeat, Run, Sweep, TaskSample, utc_now
from storage.queries import OPTION_COLUMNS, run_costs
from storage.stats import Interval, interval

# Where the runner's environment fields go: column of Machine / Interpreter <- environment key.
MACHINE_COLUMNS = {
    name: name
    for name in (
        "hostname",
        "os_name",
        "os_release",
        "architecture",
        "cpu_model",
        "logical_cores",
        "physical_cores",
        "usable_cores",
        "memory_total_bytes",
    )
}
INTERPRETER_COLUMNS = {
    "implementation": "python_implementation",
    "version": "python_version",
    "executable": "python_executable",
    "compiler": "python_compiler",
    "gil_disabled": "py_gil_disabled",
}


def _columns(env: dict, columns: dict) -> dict:
    return {column: env.get(key) for column, key in columns.items()}


def python_label(env: dict) -> Optional[str]:
    """The interpreter as reports name it: its version, with a ``t`` for a free-threaded build."""
    version = env.get("python_version")
    if version is None:
        return None
    return f"{version}t" if env.get("py_gil_disabled") else str(version)


def others_cores(repeat: dict) -> Optional[float]:
    """How many cores' worth of CPU other work on the machine took while ``repeat`` (a runner's
    repeat event) ran, to two decimals; None where the machine's busy time was not read."""
    busy, cpu, wall = (repeat.get(k) for k in ("machine_busy_ns", "cpu_ns", "wall_ns"))
    if not all(isinstance(v, (int, float)) for v in (busy, cpu, wall)) or wall <= 0:
        return None
    return round(max(busy - cpu, 0) / wall, 2)


def worker_columns(workers: Any) -> dict[str, Any]:
    """The repeat's columns for what its worker threads did (a runner's ``workers``: each
    ``[pid, thread, span_ns, on_core_ns, core_wait_ns]``): their sums and each one's, as text;
    None where no worker was read (the platform does not say) or what came is not that."""
    rows = [
        w
        for w in workers or ()
        if isinstance(w, list)
        and len(w) == 5
        and all(isinstance(v, int) and not isinstance(v, bool) for v in w)
        and w[2] > 0
        and w[3] >= 0
        and w[4] >= 0
    ]
    if not rows:
        return {}
    return {
        "worker_span_ns": sum(w[2] for w in rows),
        "on_core_ns": sum(min(w[3], w[2]) for w in rows),
        "core_wait_ns": sum(min(w[4], max(w[2] - w[3], 0)) for w in rows),
        "worker_split": " ".join(":".join(map(str, w)) for w in rows),
    }


def look_facts(thread_states: str) -> dict[str, Any]:
    """What the run's looked-at repeat saw of its workers, as its environment keeps it: the
    shares of their time on a core, waiting for one, blocked on a lock, in I/O and asleep,
    and how often a core changed threads (storage.states)."""
    from storage import states

    found = states.seen(*states.decode(thread_states))
    if found is None:
        return {}
    names = {"C": "on_core", "W": "waiting", "L": "lock", "I": "io", "S": "sleep", "B": "blocked"}
    shares = {name: found.shares.get(letter, 0.0) for letter, name in names.items()}
    blocked = sum(shares[n] for n in ("lock", "io", "sleep", "blocked"))
    return {
        **{name: round(share, 4) for name, share in shares.items()},
        "lock_while_another_ran": round(found.lock_while_another_ran, 4),
        # how their blocked time divided, what a counted repeat's blocked time is split by:
        # on a lock another worker's running held them from (the GIL), in I/O, asleep
        "of_blocked": {
            "lock": round(found.lock_while_another_ran / blocked, 4) if blocked else 0.0,
            **{n: round(shares[n] / blocked, 4) if blocked else 0.0 for n in ("io", "sleep")},
        },
        "handovers_per_s": round(found.handovers_per_s, 1),
        "at_once": found.at_once,
    }


class RunRecorder:
    """Feeds a runner's events into the database for one run."""

    def __init__(
        self,
        engine: Engine,
        spec: ExperimentSpec,
        resolved: dict[str, Any],
        sweep: Optional[dict[str, Any]] = None,
    ):
        self.engine = engine
        self.spec = spec
        self.resolved = resolved
        # The sweep row's own columns (run_order, order_seed): the first run of a sweep stored
        # writes its row, with them.
        self.sweep_columns = sweep or {}
        self.run_id = spec.run_id
        self._pending_repeat: Optional[dict] = None
        # Counted (non-warm-up) repeats' wall times, per runner process, in order.
        self.walls_by_process: dict[int, list[int]] = {}
        self.process_index = 0  # the runner process whose events come in now
        self.runner_processes: list[dict[str, Any]] = []  # each process's layout and pid
        self.python: Optional[str] = None  # the interpreter's version, from its environment
        self._stderr: list[str] = []  # each runner process's stderr
        # Stored in the run's environment too: how its size was chosen, its interval target.
        self.environment_notes: dict[str, Any] = {}
        self.events: list[dict] = []  # everything the runner said, for the fallback file
        self.storage_error: Optional[str] = None  # why the database stopped taking writes
        self.saved_to: Optional[str] = None  # where the results went instead
        self.unsaved_error: Optional[str] = None  # why they could not go there either
        # Free-threaded builds: whether each worker (pid) ran with the GIL on, from its samples.
        self.gil_by_worker: dict[str, bool] = {}
        self.counted_costs: list[dict] = []  # the counted repeats' costs (repeat_costs)
        self.peak_rss_by_worker: dict[str, int] = {}  # each worker process's peak (pid: bytes)
        # Cores' worth of CPU that other work took during each counted repeat: the machine's
        # busy time less the runner's and its workers', over the wall time.
        self.others_cores: list[float] = []

    def _store(self, write, *args) -> None:
        """Write to the database unless it already failed; remember the first failure."""
        if self.storage_error is not None:
            return
        try:
            write(*args)
        except SQLAlchemyError as exc:
            self.storage_error = str(exc.orig if getattr(exc, "orig", None) else exc).splitlines()[
                0
            ]

    def start(self) -> None:
        self._store(self._insert_running)

    def _insert_running(self) -> None:
        run = Run(
            id=self.spec.run_id,
            sweep_id=self.spec.sweep_id,
            status="running",
            workload=self.spec.workload,
            executor=self.spec.executor,
            # each option as the run used it: the executor's default where the spec had none
            **{name: self.resolved.get(name, getattr(self.spec, name)) for name in OPTION_COLUMNS},
            repeats=self.spec.repeats,
            warmups=self.spec.warmups,
            processes=self.spec.processes,
            timeout_s=self.spec.timeout_s,
            tag=self.spec.tag,
            python_requested=self.spec.python,
            recorder_host=socket.gethostname(),
            recorder_pid=os.getpid(),
        )
        with Session(self.engine) as session:
            if session.get(Sweep, self.spec.sweep_id) is None:
                session.add(Sweep(id=self.spec.sweep_id, tag=self.spec.tag, **self.sweep_columns))
                session.flush()
            session.add(run)
            session.commit()

    def begin_process(self, index: int, layout: Optional[dict] = None) -> None:
        """The events that follow come from the run's runner process number ``index``."""
        self.process_index = index
        self.runner_processes.append({"index": index, **(layout or {})})
        self.walls_by_process.setdefault(index, [])

    def end_process(self, output: str) -> None:
        """The current runner process has ended; keep what it and the tasks printed (as
        ``Launch.stderr`` holds it: its first and last ``launch.KEPT_OUTPUT`` bytes)."""
        if not output.strip():
            return
        label = f"[process {self.process_index}]\n" if self.spec.processes > 1 else ""
        self._stderr.append(label + output)

    def interval(self) -> Interval:
        """The median of the counted repeats so far and its 95% interval (over processes)."""
        return interval(self.walls_by_process.values())

    def _repeat_index(self, index: int) -> int:
        """A repeat's index within the run: each process's repeats follow the previous ones'."""
        return self.process_index * (self.spec.warmups + self.spec.repeats) + index

    def on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind != "progress":
            self.events.append({**event, "process": self.process_index})
        if kind == "env":
            if self.runner_processes:
                self.runner_processes[-1]["pid"] = event.get("runner_pid")
            self.python = python_label(event.get("environment") or {})
            self._store(self._record_environment, event)
        elif kind == "session" and self.runner_processes:
            started = {k: v for k, v in event.items() if k not in ("event", "process")}
            self.runner_processes[-1].update(started)
        elif kind == "control" and self.runner_processes:
            process = self.runner_processes[-1]
            process["control_version"] = event.get("version")
            process.setdefault("control", []).append([event.get("loop_ns"), event.get("hash_ns")])
        elif kind == "repeat":
            self._pending_repeat = event
            if not event.get("warmup"):
                walls = self.walls_by_process.setdefault(self.process_index, [])
                walls.append(event.get("wall_ns"))
                others = others_cores(event)
                if others is not None:
                    self.others_cores.append(others)
        elif kind == "tasks":
            samples = Samples(event.get("samples") or ())
            self._store(self._record_repeat, event, samples, self._note_costs(samples))
        elif kind == "looked" and isinstance(event.get("thread_states"), str):
            self.environment_notes["look"] = look_facts(event["thread_states"])
            self._store(self._record_look, event["thread_states"])

    def finish(
        self, status: str, error: Optional[str] = None, detail: Optional[str] = None
    ) -> dict[str, Any]:
        """Store the run's final status; return the run's columns.

        If the database failed at any point, the whole run is saved to a JSON file instead
        (``saved_to``), and ``error`` says so."""
        stderr = "".join(self._stderr)
        self._store(self._record_processes)
        self._store(self._update_finished, status, error, detail, stderr)
        if self.storage_error is None:
            return self._finished_row()
        self.saved_to = self._save_elsewhere(status, error, detail, stderr)
        if self.saved_to is not None:
            note = (
                f"not stored in the database ({self.storage_error}); the results are saved in "
                f"{self.saved_to}"
            )
        else:
            note = (
                f"not stored in the database ({self.storage_error}), nor in a file "
                f"({self.unsaved_error}): the results shown here are all that is left of it"
            )
        row = self._columns(status)
        row["error"] = f"{error}; {note}" if error else note
        return row

    def _columns(self, status: str) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "sweep_id": self.spec.sweep_id,
            "status": status,
            "workload": self.spec.workload,
            "executor": self.spec.executor,
            "workers": self.resolved["workers"],
            "start_method": self.resolved["start_method"],
            "chunksize": self.resolved["chunksize"],
            "tasks": self.spec.tasks,
            "size": self.resolved["size"],
            "repeats": self.spec.repeats,
            "warmups": self.spec.warmups,
            "tag": self.spec.tag,
            "processes": len(self.runner_processes),
            **run_costs(self.counted_costs),
        }

    def _save_elsewhere(self, status, error, detail, stderr) -> Optional[str]:
        """Save the run as JSON in the user's own folder in $TMPDIR (storage.private: mode 0700,
        the file 0600, as it holds the machine id and the task's output); its path, or None
        with ``unsaved_error`` saying why when nothing could be written there (a full disk,
        another user's folder or a file at its name). No part-written file is left."""
        from storage.private import NotPrivate, open_private_file, private_folder

        record = {
            "run": self._columns(status),
            "error": error,
            "detail": detail,
            "stderr": stderr,
            "storage_error": self.storage_error,
            "spec": json.loads(self.spec.to_json()),
            "events": self.events,
        }
        path = created = None
        try:
            path = private_folder("conlab-unsaved") / f"{self.run_id}.json"
            descriptor = open_private_file(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            created = path
            with open(descriptor, "w", encoding="utf-8") as handle:
                json.dump(record, handle, default=str)
            return str(path)
        except OSError as exc:
            if isinstance(exc, NotPrivate) or not exc.strerror:
                self.unsaved_error = str(exc)
            else:
                self.unsaved_error = f"{exc.filename or path}: {exc.strerror}"
            if created is not None:
                created.unlink(missing_ok=True)
            return None

    def _finished_row(self) -> dict[str, Any]:
        with Session(self.engine) as session:
            return {**session.get(Run, self.run_id).model_dump(), **run_costs(self.counted_costs)}

    def _update_finished(self, status, error, detail, stderr) -> None:
        from storage import figures  # numpy: not before a run has something to store

        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            run.status = status
            run.error = error
            run.error_detail = detail
            run.stderr = stderr or None
            run.finished_at = utc_now()
            session.add(run)
            session.flush()
            figures.refresh_ids(session.connection(), [self.run_id])
            session.commit()

    def _record_environment(self, event: dict) -> None:
        env = event.get("environment") or {}
        fingerprint, key = env.get("machine_fingerprint"), env.get("interpreter_key")
        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            if run.environment_json is not None:  # a later process of the run: same machine
                run.runner_pid = event.get("runner_pid")
                session.add(run)
                session.commit()
                return
            if fingerprint and session.get(Machine, fingerprint) is None:
                session.add(Machine(fingerprint=fingerprint, **_columns(env, MACHINE_COLUMNS)))
                session.flush()
            if key and session.get(Interpreter, key) is None:
                columns = _columns(env, INTERPRETER_COLUMNS)
                session.add(Interpreter(key=key, machine_fingerprint=fingerprint, **columns))
                session.flush()
            run.machine_fingerprint = fingerprint
            run.interpreter_key = key
            run.environment_json = json.dumps(env, sort_keys=True)
            run.runner_pid = event.get("runner_pid")
            session.add(run)
            session.commit()

    def _record_look(self, states: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(Run).where(Run.id == self.run_id).values(thread_states=states)
            )

    def _record_processes(self) -> None:
        """How many runner processes ran and each one's layout (to replay it); on a
        free-threaded build, whether each worker ran with the GIL on."""
        with Session(self.engine) as session:
            run = session.get(Run, self.run_id)
            run.processes = len(self.runner_processes) or None
            env = json.loads(run.environment_json or "{}")
            env["runner_processes"] = self.runner_processes
            env.update(self.environment_notes)
            if self.gil_by_worker:
                env["gil_enabled_by_worker"] = dict(sorted(self.gil_by_worker.items()))
            if self.peak_rss_by_worker:
                env["peak_rss_by_worker"] = dict(sorted(self.peak_rss_by_worker.items()))
            if self.others_cores:
                env["others_cores"] = self.others_cores
            run.environment_json = json.dumps(env, sort_keys=True)
            session.add(run)
            session.commit()

    def _note_costs(self, samples: Samples) -> dict:
        """The repeat's costs (``repeat_costs``), kept for the run's figures even when the
        database stopped taking writes."""
        repeat = self._pending_repeat or {}
        runner_pid = self.runner_processes[-1].get("pid") if self.runner_processes else None
        costs = samples.costs(runner_pid, repeat.get("runner_peak_rss_bytes"))
        if not repeat.get("warmup"):
            self.counted_costs.append(costs)
        for pid, peak in samples.worker_peaks.items():
            self.peak_rss_by_worker[str(pid)] = max(peak, self.peak_rss_by_worker.get(str(pid), 0))
        return costs

    def _record_repeat(self, event: dict, samples: Samples, costs: dict) -> None:
        repeat = self._pending_repeat or {}
        self._pending_repeat = None
        index = self._repeat_index(event["repeat"])
        self.gil_by_worker.update(samples.gil_by_worker())
        with self.engine.begin() as connection:
            connection.execute(
                insert(Repeat),
                [
                    {
                        "run_id": self.run_id,
                        "repeat_index": index,
                        "process_index": self.process_index,
                        "warmup": repeat.get("warmup"),
                        "wall_ns": repeat.get("wall_ns"),
                        "cpu_ns": repeat.get("cpu_ns"),
                        "start_ns": repeat.get("start_ns"),
                        "end_ns": repeat.get("end_ns"),
                        "first_task_start_ns": min(samples.start_ns, default=None),
                        "busy_ns": sum(samples.end_ns) - sum(samples.start_ns) if samples else None,
                        **costs,
                        **worker_columns(repeat.get("workers")),
                    }
                ],
            )
            if samples:
                _insert_samples(connection, samples, self.run_id, index)
            connection.execute(
                update(Run).where(Run.id == self.run_id).values(heartbeat_at=utc_now())
            )


# A task sample as the runner sends it (experiments.workloads._sample without the result).
SAMPLE_FIELDS = (
    "pid",
    "thread_id",
    "start_ns",
    "end_ns",
    "gil",
    "voluntary_switches",
    "involuntary_switches",
    "core_start",
    "core_end",
    "peak_rss_bytes",
)
# The fields stored per task, after the run id, repeat index and task index.
_STORED_FIELDS = (
    "pid",
    "thread_id",
    "start_ns",
    "end_ns",
    "voluntary_switches",
    "involuntary_switches",
    "core_start",
    "core_end",
)
_SAMPLE_COLUMNS = ("run_id", "repeat_index", "task_index", *_STORED_FIELDS)


class Samples:
    """A repeat's task samples, field by field (``SAMPLE_FIELDS``): a repeat has up to a
    hundred thousand, so each field is read and checked once, in C loops (chain, slices, map,
    min, sum), and the rows to store are laid out from the fields, never built in a Python
    loop. Samples from before the costs were collected have only their first four fields: the
    others are None."""

    def __init__(self, samples) -> None:
        self.count = len(samples)
        width = len(SAMPLE_FIELDS)
        flat = list(chain.from_iterable(samples))
        # The samples end to end; field k of each is every width-th value from k when every
        # sample has exactly the width (same total, none shorter).
        if len(flat) != width * self.count or (self.count and min(map(len, samples)) != width):
            samples = [(*s[:width], *(None,) * (width - len(s))) for s in samples]
            flat = list(chain.from_iterable(samples))
        for at, name in enumerate(SAMPLE_FIELDS):
            values = flat[at::width]
            setattr(self, name, values if at < 5 else _counts(values))

    def __bool__(self) -> bool:
        return self.count > 0

    def rows(self, run_id: str, repeat_index: int) -> Iterator[tuple]:
        """The task_sample rows (``_SAMPLE_COLUMNS``), task by task."""
        fields = [getattr(self, name) for name in _STORED_FIELDS]
        return zip(repeat(run_id), repeat(repeat_index), count(), *fields)

    def flat_rows(self, run_id: str, repeat_index: int) -> list:
        """The task_sample rows (``_SAMPLE_COLUMNS``) end to end in one list, each column laid
        in by one slice assignment."""
        width, tasks = len(_SAMPLE_COLUMNS), self.count
        flat: list = [None] * (width * tasks)
        flat[0::width] = [run_id] * tasks
        flat[1::width] = [repeat_index] * tasks
        flat[2::width] = range(tasks)
        for at, name in enumerate(_STORED_FIELDS, 3):
            flat[at::width] = getattr(self, name)
        return flat

    def gil_by_worker(self) -> dict[str, bool]:
        """Free-threaded builds: whether each worker (pid) ran with the GIL on (its last
        sample that says)."""
        if self.gil.count(None) == len(self.gil):
            return {}
        return {str(pid): bool(gil) for pid, gil in zip(self.pid, self.gil) if gil is not None}

    @cached_property
    def worker_peaks(self) -> dict:
        """Each worker process's peak resident memory in these samples: pid -> bytes."""
        pids, peaks = self.pid, self.peak_rss_bytes
        if None in peaks:  # a chunk's peak sits on its last task
            pids, peaks = _known(pids, peaks)
        return {pid: max(compress(peaks, map(eq, pids, repeat(pid)))) for pid in set(pids)}

    def costs(self, runner_pid, runner_peak) -> dict[str, Optional[int]]:
        """The repeat's cost beyond time: the runner's peak plus each other worker process's
        (an upper bound of the peak total), the largest one process's peak, the switches summed
        over tasks, tasks that ended on another core, and the cores used."""
        # a chunk's switches sit on its last task, the others carry None
        voluntary, involuntary = _known(self.voluntary_switches, self.involuntary_switches)
        starts, ends = _known(self.core_start, self.core_end)
        peaks = self.worker_peaks
        runner_peak = _count(runner_peak)
        others = [peak for pid, peak in peaks.items() if pid != runner_pid]
        total = runner_peak + sum(others) if runner_peak is not None else None
        return {
            "peak_rss_bytes": total,
            "worker_peak_rss_bytes": max(peaks.values(), default=runner_peak),
            "voluntary_switches": sum(voluntary) if voluntary else None,
            "involuntary_switches": sum(involuntary) if involuntary else None,
            "core_moves": sum(map(ne, starts, ends)) if starts else None,
            "cores_used": len(set(starts) | set(ends)) or None,
        }


def _known(first: Sequence, second: Sequence) -> tuple[Sequence, Sequence]:
    """The pairs of two fields where both are known (not None), as two fields."""
    if None not in first and None not in second:
        return first, second
    kept = [i for i, (a, b) in enumerate(zip(first, second)) if a is not None and b is not None]
    return [first[i] for i in kept], [second[i] for i in kept]


def _counts(values: tuple) -> tuple:
    """A field of counts with every value that is not one (``_count``) made None: the field
    as it is when it holds only None and whole numbers >= 0, checked in C loops."""
    kinds = set(map(type, values))
    if kinds == {int} and min(values) >= 0:
        return values
    if kinds <= {int, type(None)} and min(filter(partial(is_not, None), values), default=0) >= 0:
        return values
    return tuple(map(_count, values))


def _count(value) -> Optional[int]:
    """A sample's count or core number, or None when it is missing or not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def repeat_costs(samples, runner_pid, runner_peak) -> dict[str, Optional[int]]:
    """A repeat's cost beyond time from its task samples (``Samples.costs``)."""
    return Samples(samples).costs(runner_pid, runner_peak)


def _insert_samples(connection, samples: Samples, run_id: str, repeat_index: int) -> None:
    """Bulk-insert a repeat's task samples, in the transaction SQLAlchemy began: on SQLite as
    INSERTs of many rows each (``_insert_sql``), their values sliced from one flat list
    (``Samples.flat_rows``), through SQLAlchemy so that a failing write is its error like any
    other; the portable insert elsewhere."""
    if connection.dialect.name != "sqlite":
        rows = samples.rows(run_id, repeat_index)
        connection.execute(insert(TaskSample), [dict(zip(_SAMPLE_COLUMNS, row)) for row in rows])
        return
    width = len(_SAMPLE_COLUMNS)
    limit = connection.connection.driver_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    step = width * max(1, min(ROWS_PER_INSERT, limit // width))
    values = tuple(samples.flat_rows(run_id, repeat_index))  # exec_driver_sql takes tuples
    whole = len(values) - len(values) % step
    if whole:
        chunks = [values[at : at + step] for at in range(0, whole, step)]
        connection.exec_driver_sql(_insert_sql(step // width), chunks)
    if whole < len(values):
        connection.exec_driver_sql(_insert_sql((len(values) - whole) // width), values[whole:])


# Task samples per INSERT on SQLite (fewer where SQLite takes fewer variables per statement):
# one statement stepped once per few hundred rows costs a third less than one per row.
ROWS_PER_INSERT = 500


@lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    """An INSERT of ``rows`` task_sample rows (``_SAMPLE_COLUMNS``), positional values."""
    row = f"({', '.join('?' * len(_SAMPLE_COLUMNS))})"
    columns = ", ".join(_SAMPLE_COLUMNS)
    return f"INSERT INTO task_sample ({columns}) VALUES {', '.join([row] * rows)}"
