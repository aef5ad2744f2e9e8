"""The tables of a result database (sqlmodel). Plain column types only, so the sqlite3 shell,
pandas.read_sql and Datasette read every table as it is. Nanoseconds, thread ids and byte counts
are BigInteger: SQLite's INTEGER is 64-bit anyway, PostgreSQL's is not."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import BigInteger, Index
from sqlmodel import Field, SQLModel

from experiments.options import BY_NAME
from storage.queries import OPTION_COLUMNS, REPORT_COLUMNS

# Run statuses. `running` rows whose recorder is gone are shown as `interrupted`.
RUN_STATUSES = ("running", "ok", "failed", "cancelled", "interrupted")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def option_fields(annotations: dict) -> dict:
    """A nullable column for each of OPTION_COLUMNS not in ``annotations`` (a class body's,
    given one each), by the option's type; the class body's defaults (None) to add."""
    added = {}
    for name in OPTION_COLUMNS:
        if name not in annotations:
            annotations[name] = Optional[BY_NAME[name].type]
            added[name] = None
    return added


class Machine(SQLModel, table=True):
    __tablename__ = "machine"

    fingerprint: str = Field(primary_key=True)
    hostname: Optional[str] = None
    os_name: Optional[str] = None
    os_release: Optional[str] = None
    architecture: Optional[str] = None
    cpu_model: Optional[str] = None
    logical_cores: Optional[int] = None
    physical_cores: Optional[int] = None
    usable_cores: Optional[int] = None
    memory_total_bytes: Optional[int] = Field(default=None, sa_type=BigInteger)
    first_seen_at: datetime = Field(default_factory=utc_now)


class Interpreter(SQLModel, table=True):
    __tablename__ = "interpreter"

    key: str = Field(primary_key=True)
    machine_fingerprint: str = Field(foreign_key="machine.fingerprint", index=True)
    implementation: Optional[str] = None
    version: Optional[str] = None
    executable: Optional[str] = None
    compiler: Optional[str] = None
    gil_disabled: Optional[bool] = None


class Sweep(SQLModel, table=True):
    """Runs started together by one `conlab run` (or one press of `r`)."""

    __tablename__ = "sweep"

    id: str = Field(primary_key=True)
    created_at: datetime = Field(default_factory=utc_now)
    tag: Optional[str] = None
    # How its runs' processes were ordered: "turns" (round by round, each round in an order
    # shuffled with order_seed) or "blocks" (all processes of one run, then the next run).
    run_order: Optional[str] = None
    order_seed: Optional[int] = Field(default=None, sa_type=BigInteger)


class ImportLog(SQLModel, table=True):
    """One `conlab db merge` of a source file into this database."""

    __tablename__ = "import_log"

    id: Optional[int] = Field(default=None, primary_key=True)
    imported_at: datetime = Field(default_factory=utc_now)
    source: str
    runs_added: int
    runs_skipped: int


class Run(SQLModel, table=True):
    __tablename__ = "run"
    __table_args__ = (
        Index("ix_run_config", "workload", "size", "tasks", "executor", "workers"),
        # What a report reads of each finished run (storage.loading.RUN_COLUMNS), kept apart
        # from its environment text: a report over 100,000 runs reads this, not the table.
        Index("ix_run_report", *REPORT_COLUMNS),
    )

    id: str = Field(primary_key=True)
    sweep_id: str = Field(index=True)
    status: str = Field(default="running", index=True)
    workload: str = Field(index=True)
    executor: str = Field(index=True)
    workers: int
    start_method: Optional[str] = None
    chunksize: Optional[int] = None
    max_tasks_per_child: Optional[int] = None
    tasks: int
    size: int = Field(sa_type=BigInteger)
    repeats: int  # counted repeats per runner process
    warmups: int  # per runner process
    processes: Optional[int] = None  # runner processes that ran (each its own memory layout)
    timeout_s: Optional[float] = None
    tag: Optional[str] = Field(default=None, index=True)
    error: Optional[str] = None
    error_detail: Optional[str] = None
    stderr: Optional[str] = None
    machine_fingerprint: Optional[str] = Field(
        default=None, foreign_key="machine.fingerprint", index=True
    )
    interpreter_key: Optional[str] = Field(default=None, foreign_key="interpreter.key", index=True)
    python_requested: Optional[str] = None
    environment_json: Optional[str] = None
    created_at: datetime = Field(default_factory=utc_now, index=True)
    finished_at: Optional[datetime] = None
    # Who is recording the run, so a run left `running` by a dead recorder shows as interrupted.
    recorder_host: Optional[str] = None
    recorder_pid: Optional[int] = None
    runner_pid: Optional[int] = None
    heartbeat_at: Optional[datetime] = None  # the last repeat stored
    # What every thread did in one more repeat, never counted, looked at from outside
    # (experiments.look; storage.states reads it); None where the platform does not say.
    thread_states: Optional[str] = None
    # Every other dimension of the option table (storage.queries.OPTION_COLUMNS), each a column
    # of the option's name holding the value the run used (the executor's default where it was
    # not given), so runs that differ in any option are told apart: made here from the table.
    vars().update(option_fields(__annotations__))


class Repeat(SQLModel, table=True):
    __tablename__ = "repeat"
    __table_args__ = (Index("ix_repeat_run", "run_id", "repeat_index"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    repeat_index: int  # unique within the run, across its processes
    process_index: Optional[int] = None  # which of the run's runner processes timed it
    warmup: bool
    wall_ns: int = Field(sa_type=BigInteger)
    cpu_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    start_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    end_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    # From the repeat's task samples, kept here so reports never scan task_sample:
    # start-up latency = first_task_start_ns - start_ns; parallelism = busy_ns / wall_ns
    first_task_start_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    busy_ns: Optional[int] = Field(default=None, sa_type=BigInteger)  # sum of task durations
    # The cost beyond time, None where the platform does not say: the runner's peak resident
    # memory plus each worker process's (an upper bound: the peaks need not coincide), the
    # largest single worker's, the tasks' context switches, how many tasks ended on another
    # core than they started on, and how many cores ran tasks.
    peak_rss_bytes: Optional[int] = Field(default=None, sa_type=BigInteger)
    worker_peak_rss_bytes: Optional[int] = Field(default=None, sa_type=BigInteger)
    voluntary_switches: Optional[int] = Field(default=None, sa_type=BigInteger)
    involuntary_switches: Optional[int] = Field(default=None, sa_type=BigInteger)
    core_moves: Optional[int] = None
    cores_used: Optional[int] = None
    # What the worker threads did, from the kernel's schedstat (None where it does not say):
    # summed over the workers, each between its first and last reading of the repeat, its time
    # on a core and waiting for one; the rest of ``worker_span_ns`` they were blocked (a lock,
    # the GIL's included, I/O or sleep). ``worker_split``: each worker's own, as text,
    # "pid:thread:span:on_core:core_wait" separated by spaces.
    worker_span_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    on_core_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    core_wait_ns: Optional[int] = Field(default=None, sa_type=BigInteger)
    worker_split: Optional[str] = None


class TaskSample(SQLModel, table=True):
    __tablename__ = "task_sample"

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    repeat_index: int
    task_index: int
    pid: int
    thread_id: int = Field(sa_type=BigInteger)
    start_ns: int = Field(sa_type=BigInteger)
    end_ns: int = Field(sa_type=BigInteger)
    # The running thread's context switches during the task, and the core it started and
    # ended on (None where the platform does not say).
    voluntary_switches: Optional[int] = None
    involuntary_switches: Optional[int] = None
    core_start: Optional[int] = None
    core_end: Optional[int] = None


class Process(SQLModel, table=True):
    """One runner process of a run as a report reads it, derived from the run's counted repeats
    and stored environment by storage.figures when the run finishes, carried with it by merges
    and checked against its repeats by `conlab db check`."""

    __tablename__ = "process"
    __table_args__ = {"sqlite_with_rowid": False}  # stored in run order, as reports read it

    run_id: str = Field(foreign_key="run.id", primary_key=True)
    process_index: int = Field(primary_key=True)
    walls: str  # each counted repeat's wall time (ns), in repeat order: "10402231 10377754"
    # Medians over its counted repeats (start-up latency in ns; tasks in flight = busy / wall).
    startup_ns: Optional[float] = None
    in_flight: Optional[float] = None
    cpu_per_wall: Optional[float] = None
    voluntary_switches: Optional[float] = None
    involuntary_switches: Optional[float] = None
    core_moves: Optional[float] = None
    # Median shares of the workers' time on a core and waiting for one (storage.figures).
    on_core_share: Optional[float] = None
    core_wait_share: Optional[float] = None
    # From its run's looked-at repeat (storage.figures.LOOK): the shares of its workers' blocked
    # time on a lock, in I/O and asleep, hand-overs per second; None where none was looked at.
    look_lock: Optional[float] = None
    look_io: Optional[float] = None
    look_sleep: Optional[float] = None
    handovers_per_s: Optional[float] = None
    # The largest over its counted repeats.
    peak_rss_bytes: Optional[int] = Field(default=None, sa_type=BigInteger)
    worker_peak_rss_bytes: Optional[int] = Field(default=None, sa_type=BigInteger)
    cores_used: Optional[int] = None
    # Its run's facts (storage.figures.FACTS).
    gil_on: Optional[bool] = None
    others_cores: Optional[float] = None
    load_per_core: Optional[float] = None
    detect: Optional[float] = None
    problems: Optional[int] = None


# How far a run got. A copy of a run that got further replaces one that did not (a run exported
# while `running`, then finished), never the other way round.
RUN_PROGRESS = {"running": 0, "interrupted": 1}


def progress_sql(alias: str) -> str:
    """How far the run ``alias`` got, in SQL (SQLite and PostgreSQL): ``RUN_PROGRESS``'s order."""
    return f"CASE {alias}.status WHEN 'running' THEN 0 WHEN 'interrupted' THEN 1 ELSE 2 END"
