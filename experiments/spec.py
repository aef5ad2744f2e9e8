"""ExperimentSpec: everything that defines one run, validated, and round-tripped through JSON.

``validate()`` makes the checks that need nothing but the spec (it runs in the parent, before any
process starts); ``prepare()`` makes the ones that need the target interpreter: importing the
user's function and proving the executor can ship it to its workers. It runs in the runner.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Optional

from experiments import executors as executors_module
from experiments import workloads as workloads_module

START_METHODS = ("fork", "spawn", "forkserver")
MAX_WORKERS = 1024  # beyond this no machine gains anything; it is a typo
MAX_TASKS = 10_000_000
MAX_PROCESSES = 1000
# Runner processes per run. This VM's speed drifts between processes by ~5% (sd): with 6 a side,
# a 10% change clears Welch's interval most of the time; with 3 it did in under half the pairs.
DEFAULT_PROCESSES = 6
# A run that may take longer than a week is a typo; and threading.Timer cannot wait past
# threading.TIMEOUT_MAX (~292 years on Linux), where it fails in its own thread.
MAX_TIMEOUT_S = 7 * 24 * 3600
# Where an existing Dask cluster can be reached from the runner's process (not inproc://).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
# Ray: a running head's HOST:PORT (what `ray start --head` prints), or ray://HOST:PORT (Ray Client).
RAY_SCHEMES = ("ray",)
# joblib's backends (--backend, joblib's default first) and asyncio's event loops (--loop).
BACKENDS = executors_module.JOBLIB_BACKENDS
LOOPS = ("asyncio", "uvloop")


class SpecError(ValueError):
    """A spec that cannot run. The message is one line naming the problem and the fix."""


def usable_cores() -> int:
    """The cores this process may use: affinity and, on 3.13+, ``os.process_cpu_count``."""
    count = getattr(os, "process_cpu_count", None)
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def default_worker_counts() -> list[int]:
    """1, 2, 4 ... up to the usable cores (and the core count itself when not a power of two)."""
    cores = usable_cores()
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    counts.append(cores)
    return counts


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ExperimentSpec:
    """One run: a workload, an executor and its parameters. ``None`` means "the default here"."""

    workload: str
    executor: str
    workers: int = 1
    tasks: int = 16
    size: Optional[int] = None
    repeats: int = 5  # counted repeats in each runner process
    warmups: int = 1  # in each runner process
    processes: int = DEFAULT_PROCESSES  # runner processes, each with its own memory layout
    start_method: Optional[str] = None
    chunksize: Optional[int] = None
    max_tasks_per_child: Optional[int] = None
    scheduler: Optional[str] = None  # dask, ray: the address of an existing cluster
    backend: Optional[str] = None  # joblib: loky, threading or multiprocessing
    loop: Optional[str] = None  # asyncio: asyncio's own event loop or uvloop
    timeout_s: Optional[float] = None
    python: Optional[str] = None
    tag: Optional[str] = None
    run_id: str = field(default_factory=new_id)
    sweep_id: str = field(default_factory=new_id)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(
                f"unknown spec field(s) {', '.join(unknown)}; "
                f"known fields are {', '.join(sorted(names))}"
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"the spec is not JSON ({exc}); send one JSON object") from None
        if not isinstance(data, dict):
            raise SpecError("the spec must be a JSON object; send one object per run")
        return cls.from_dict(data)

    def replace(self, **changes) -> ExperimentSpec:
        return dataclasses.replace(self, **changes)

    def validate(self) -> ExperimentSpec:
        """Raise SpecError unless the spec can run; checks that need no user code. Returns self."""
        _check_int("workers", self.workers, 1, MAX_WORKERS, "--workers")
        _check_int("tasks", self.tasks, 1, MAX_TASKS, "--tasks")
        if self.size is not None:
            _check_int("size", self.size, 0, 2**40, "--size")
        _check_int("repeats", self.repeats, 1, 10_000, "--repeats")
        _check_int("warmups", self.warmups, 0, 10_000, "--warmups")
        _check_int("processes", self.processes, 1, MAX_PROCESSES, "--processes")
        if self.chunksize is not None:
            _check_int("chunksize", self.chunksize, 1, MAX_TASKS, "--chunksize")
        if self.max_tasks_per_child is not None:
            _check_int("max_tasks_per_child", self.max_tasks_per_child, 1, MAX_TASKS,
                       "--max-tasks-per-child")  # fmt: skip
        if self.timeout_s is not None and (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, (int, float))
            or not 0 < self.timeout_s <= MAX_TIMEOUT_S
        ):
            raise SpecError(
                f"timeout must be a positive number of seconds up to {MAX_TIMEOUT_S:,} (a week), "
                f"not {self.timeout_s!r}; pass e.g. --timeout 60"
            )
        if self.python is not None and (
            not isinstance(self.python, str) or not self.python.strip()
        ):
            raise SpecError(
                "--python needs an interpreter, a path or a name on PATH; pass e.g. "
                "--python python3.12, or leave it out to use this one"
            )
        _check_stored_text("tag", self.tag, "--tag")
        _check_stored_text("workload", self.workload, "-w")
        if not isinstance(self.workload, str) or not self.workload.strip():
            raise SpecError("no workload given; pass -w with a name from `conlab list workloads`")
        if ":" not in self.workload and self.workload not in workloads_module.WORKLOADS:
            raise SpecError(
                f"unknown workload {self.workload!r}"
                f"{workloads_module._suggest(self.workload, workloads_module.WORKLOADS)}"
                "; see `conlab list workloads`, or pass MODULE:FUNCTION"
            )
        executor = executors_module.EXECUTORS.get(self.executor)
        if executor is None:
            raise SpecError(
                f"unknown executor {self.executor!r}"
                f"{workloads_module._suggest(str(self.executor), executors_module.EXECUTORS)}"
                "; see `conlab list executors`"
            )
        if self.start_method is not None:
            self._check_start_method(executor)
        if self.scheduler is not None:
            ray = executor.name == "ray"
            _check_scheduler(self.scheduler, RAY_SCHEMES if ray else SCHEDULER_SCHEMES,
                             "127.0.0.1:6379" if ray else "tcp://host:8786")  # fmt: skip
        _check_choice("backend", self.backend, BACKENDS, executor, "takes_backend", "joblib")
        _check_choice("loop", self.loop, LOOPS, executor, "takes_loop", "asyncio")
        if executor.pickles_tasks and self.workers > max(64, 8 * usable_cores()):
            raise SpecError(
                f"{self.workers} worker processes on a {usable_cores()}-core machine "
                "would only measure the OS scheduler; pass fewer --workers"
            )
        return self

    def _check_start_method(self, executor) -> None:
        if self.start_method not in START_METHODS:
            raise SpecError(
                f"unknown start method {self.start_method!r}; use one of {', '.join(START_METHODS)}"
            )
        import multiprocessing

        available = multiprocessing.get_all_start_methods()
        if self.start_method not in available:
            raise SpecError(
                f"start method {self.start_method!r} is not available on this OS; "
                f"use one of {', '.join(available)}"
            )


def normal_workload(ref: str) -> str:
    """``ref`` as a run stores it: a file path in its normal form, so that ``./jobs.py:work``
    and ``jobs.py:work`` are one workload; names and ``MODULE:FUNCTION`` stay as given."""
    module, colon, func = ref.rpartition(":")
    if colon and (module.endswith(".py") or "/" in module or os.sep in module):
        return f"{os.path.normpath(module)}:{func}"
    return ref


def _check_choice(name: str, value, choices, executor, takes: str, owner: str) -> None:
    """An executor's own option (--backend, --loop): one of ``choices``, and only for it."""
    if value is None:
        return
    if value not in choices:
        raise SpecError(f"unknown {name} {value!r}; use one of {', '.join(choices)}")
    if not getattr(executor, takes, False):
        raise SpecError(
            f"--{name} applies to {owner}, not {executor.name}; drop --{name} or run "
            f"-e {owner} in a sweep of its own"
        )


def _check_scheduler(address, schemes=SCHEDULER_SCHEMES, example="tcp://host:8786") -> None:
    """A cluster address: ``[SCHEME://]HOST[:PORT]``, as ``distributed`` (or Ray) reads it."""
    from urllib.parse import urlsplit

    fix = f"pass e.g. --scheduler {example}"
    if not isinstance(address, str) or not address.strip():
        raise SpecError(f"--scheduler needs an address; {fix}")
    scheme, _, rest = address.rpartition("://")
    try:
        parts = urlsplit(f"//{rest}")
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        (scheme and scheme not in schemes)
        or parts is None
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username is not None
        or any(c.isspace() for c in address)
        or (port is None and parts.netloc.endswith(":"))
    ):
        raise SpecError(
            f"--scheduler {address!r} is not a scheduler address ([SCHEME://]HOST[:PORT], "
            f"SCHEME one of {', '.join(schemes)}); {fix}"
        )


def _check_stored_text(name: str, value, option: str) -> None:
    """Text a run stores must be text: a command line can carry bytes that are not UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise SpecError(f"{name} {value!r} is not valid UTF-8 text; change {option}") from None


def check_worker_counts(counts) -> None:
    """Refuse a bad --workers list even for executors that ignore it (sequential)."""
    if not counts:
        raise SpecError("no worker count given; pass e.g. --workers 1,2,4")
    for count in counts:
        _check_int("workers", count, 1, MAX_WORKERS, "--workers")


def _check_int(name: str, value, low: int, high: int, option: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(
            f"{name} must be a whole number, not {value!r}; pass e.g. {option} {low + 1}"
        )
    if not low <= value <= high:
        raise SpecError(
            f"{name} must be between {low} and {high:,}, not {value:,}; change {option}"
        )


@dataclass(frozen=True)
class PreparedRun:
    """A validated spec, its workload imported, its defaults filled in for this interpreter."""

    spec: ExperimentSpec
    workload: workloads_module.Workload
    executor: executors_module.Executor
    size: int
    workers: int
    start_method: Optional[str]
    chunksize: Optional[int]
    max_tasks_per_child: Optional[int] = None
    scheduler: Optional[str] = None
    backend: Optional[str] = None
    loop: Optional[str] = None

    def resolved(self) -> dict:
        """The parameters actually used, as recorded with the run."""
        return {
            "size": self.size,
            "workers": self.workers,
            "start_method": self.start_method,
            "chunksize": self.chunksize,
            "max_tasks_per_child": self.max_tasks_per_child,
            "scheduler": self.scheduler,
            "backend": self.backend,
            "loop": self.loop,
            "workload": self.spec.workload,
            "executor": self.executor.name,
            "tasks": self.spec.tasks,
            "repeats": self.spec.repeats,
            "warmups": self.spec.warmups,
            "processes": self.spec.processes,
            "description": self.workload.description,
        }


def prepare(spec: ExperimentSpec) -> PreparedRun:
    """Validate ``spec`` fully in this interpreter: import the workload, check the executor can
    run it here and ship it to its workers. Raises SpecError naming the fix."""
    spec.validate()
    executor = executors_module.EXECUTORS[spec.executor]
    reason = executor.unavailable_reason()
    if reason:
        raise SpecError(f"executor {executor.name!r} is unavailable: {reason}")
    try:
        workload = workloads_module.resolve(spec.workload)
    except workloads_module.WorkloadError as exc:
        raise SpecError(str(exc)) from None
    reason = executor.check_workload(workload)
    if reason:
        raise SpecError(reason)
    start_method = spec.start_method
    if executor.takes_start_method and start_method is None:
        start_method = executor.default_start_method()
    if executor.pickles_tasks:
        _check_picklable(workload, executor, start_method)
    workers = spec.workers if executor.takes_workers else 1
    chunksize = spec.chunksize
    if executor.takes_chunksize and chunksize is None:
        chunksize = executor.default_chunksize(spec.tasks, workers)
    size = spec.size if spec.size is not None else workload.default_size
    prepared = PreparedRun(
        spec,
        workload,
        executor,
        size,
        workers,
        start_method if executor.takes_start_method else None,
        chunksize if executor.takes_chunksize else None,
        spec.max_tasks_per_child,
        spec.scheduler,
        (spec.backend or BACKENDS[0]) if executor.takes_backend else None,
        (spec.loop or LOOPS[0]) if executor.takes_loop else None,
    )
    reason = executor.unsupported_option(prepared)
    if reason:
        raise SpecError(reason)
    return prepared


def _check_picklable(workload, executor, start_method: Optional[str]) -> None:
    import pickle

    func = workload.func
    where = f"executor {executor.name!r}"
    if getattr(func, "__module__", None) == "__main__" and start_method != "fork":
        raise SpecError(
            f"workload {workload.name!r} is defined in __main__, which {where} "
            f"with start method {start_method!r} cannot import in its workers; "
            "move the function to a module's top level"
        )
    try:
        pickle.dumps(func)
    except Exception as exc:
        raise SpecError(
            f"workload {workload.name!r} cannot be pickled for {where} "
            f"({type(exc).__name__}: {exc}); move it to a module's top level "
            "as a plain def (not a lambda or nested function)"
        ) from None
