"""Advise's plan: from the probes' figures, the candidates worth measuring and every executor left
out with its reason."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from experiments.executors import EXECUTORS
from experiments.spec import run_label
from service.advise.probes import _ms, _share, _thread_words, dispatch_s, thread_verdict, waits

WAITING_WORKERS = (8, 16, 32, 64)
# Without --tasks: enough tasks for the sequential run to take this long (at least 16).
RUN_TARGET_S = 0.2
MAX_AUTO_TASKS = 4096
# A task's dispatch above this share of its call: tasks go to the workers in chunks.
DISPATCH_SHARE = 0.1


# For an executor advise does not measure, by where its tasks run (Executor.workers_are): what
# they are, and the executor advise measures in their stead.
STANDS_IN = {
    "runner": ("work in the runner's thread", "sequential"),
    "threads": ("worker threads", "threads"),
    "interpreters": ("worker interpreters", "interpreters"),
    "processes": ("worker processes", "processes"),
}


@dataclass(frozen=True)
class Candidate:
    executor: str
    workers: int = 1
    chunksize: Optional[int] = None
    python: Optional[str] = None  # the interpreter's path (None: the running one)
    label: Optional[str] = None  # its version as reports name it (3.13.1t)

    @property
    def name(self) -> str:
        if self.executor == "sequential":
            return "sequential"
        chunks = f" chunksize {self.chunksize}" if self.chunksize and self.chunksize > 1 else ""
        return f"{run_label(self.executor, self.workers)}{chunks}"

    def named(self, several_pythons: bool) -> str:
        """Its name, with its interpreter when the answer spans several."""
        return f"{self.name} on {self.label}" if several_pythons and self.label else self.name


def choose_tasks(probes: dict, tasks: Optional[int]) -> int:
    """``--tasks``, else enough for the sequential run to take ``RUN_TARGET_S`` (16 at least):
    with 16 tasks of 20 µs, any pool's start-up would decide the answer."""
    if tasks is not None:
        return tasks
    wanted = math.ceil(RUN_TARGET_S / max(probes["call_s"], 1e-9))
    return max(16, min(MAX_AUTO_TASKS, wanted))


def _process_counts(cores: int) -> list[int]:
    counts, n = [], 2
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + ([cores] if cores >= 2 else [])


def _chunksize(probes: dict, tasks: int, workers: int) -> int:
    """1 while a task's dispatch is a small share of its call; else chunks long enough that
    dispatch is a tenth of a chunk's work, and at least as long as Pool.map's (4 a worker)."""
    call_s, cost = probes["call_s"], dispatch_s(probes)
    if cost <= DISPATCH_SHARE * call_s:
        return 1
    by_cost = math.ceil(cost / (DISPATCH_SHARE * max(call_s, 1e-9)))
    by_pool = math.ceil(tasks / (4 * workers))
    return max(2, min(math.ceil(tasks / workers), max(by_cost, by_pool)))


def plan(workload: str, probes: dict, tasks: int) -> tuple[list[Candidate], list[dict]]:
    """The candidates worth measuring, and every executor left out with its reason (words from
    the probe figures)."""
    left: dict[str, str] = {}
    waiting = waits(probes)
    if waiting:
        candidates, procs = _plan_waiting(workload, probes, tasks, left)
    else:
        candidates, procs = _plan_working(probes, tasks, left)
    unpicklable = probes["result"].get("error")
    if unpicklable:
        candidates = [c for c in candidates if not EXECUTORS[c.executor].pickles_tasks]
        left.pop("processes chunksize 1", None)
        procs = (
            f"its result cannot be pickled ({unpicklable}), so no worker process can send it back"
        )
    if procs:
        left["processes"] = procs
    _plan_the_others(probes, candidates, left, procs, bool(waiting or unpicklable))
    return candidates, [{"executor": k, "reason": v} for k, v in left.items()]


def _plan_waiting(workload: str, probes: dict, tasks: int, left: dict) -> tuple[list, str]:
    """For a function that waits: threads (and asyncio where it has an async form) at the
    waiting worker counts; the candidates and why processes are left out. Fills ``left``."""
    cpu = probes.get("cpu_per_wall") or 0
    candidates = [Candidate("sequential")]
    counts = [w for w in WAITING_WORKERS if w <= tasks] or [max(2, tasks)]
    beyond = [w for w in WAITING_WORKERS if w > tasks]
    candidates += [Candidate("threads", w) for w in counts]
    if beyond:
        left["threads " + ", ".join(f"x{w}" for w in beyond)] = (
            f"only {tasks} tasks: workers beyond {tasks} would have nothing to do "
            f"(pass --tasks {beyond[-1]} to try them)"
        )
    if probes.get("async_form"):
        candidates += [Candidate("asyncio", w) for w in counts]
    else:
        left["asyncio"] = (
            f"{workload} has no async form (it is a plain def); asyncio needs "
            "an async def, threads wait as well without a rewrite"
        )
    startup = _ms(probes["process_pool"]["startup_s"])
    procs = (
        f"it waits (CPU {_share(cpu)} of wall): threads wait as well as processes "
        f"without an interpreter each (a worker process took {startup} to start "
        "here)"
    )
    return candidates, procs


def _plan_working(probes: dict, tasks: int, left: dict) -> tuple[list, str]:
    """For a function that works: threads unless they hold the GIL, and processes in chunks
    where dispatch would decide, at counts up to the cores; the candidates and why processes are
    left out ("" when they are not). Fills ``left``."""
    cores = probes["cores"]
    cpu = probes.get("cpu_per_wall") or 0
    call, cost = probes["call_s"], dispatch_s(probes)
    candidates = [Candidate("sequential")]
    left["asyncio"] = (
        f"it works rather than waits (CPU {_share(min(cpu, 1))} of wall): "
        "an event loop runs one task at a time"
    )
    if cores < 2:
        left["threads"] = "one usable core: threads could only take turns on it"
        return candidates, "one usable core: worker processes could only take turns on it"
    if thread_verdict(probes) == "serial":
        left["threads"] = (
            f"{_thread_words(probes)}: it holds the GIL, so threads cannot run it in parallel"
        )
    else:
        candidates += [Candidate("threads", w) for w in _process_counts(cores)]
    for w in _process_counts(cores):
        candidates.append(Candidate("processes", w, _chunksize(probes, tasks, w)))
    if any(c.chunksize and c.chunksize > 1 for c in candidates):
        left["processes chunksize 1"] = (
            f"a task's round trip to a worker process costs {_ms(cost)}, "
            f"{cost / max(call, 1e-9):.1f}x a call's {_ms(call)}: one task at a time, "
            "dispatch would decide the time"
        )
    return candidates, ""


def _plan_the_others(
    probes: dict, candidates: list, left: dict, procs: str, no_interpreters: bool
) -> None:
    """The executors beyond sequential, threads, asyncio and processes: worker interpreters
    measured where they can win (not for a function that waits or whose result cannot be
    pickled), every other left out with its reason. Fills ``candidates`` and ``left``."""
    cores, cost = probes["cores"], dispatch_s(probes)
    for name, executor in EXECUTORS.items():
        if name in ("sequential", "threads", "asyncio", "processes"):
            continue
        # as the probed interpreter said (it may not be this one), else as this one says
        reason = probes.get("unavailable", {}).get(name, executor.unavailable_reason())
        if reason:
            left[name] = f"unavailable here: {reason}"
        elif name == "interpreters" and not no_interpreters and cores >= 2:
            candidates.append(Candidate("interpreters", cores))
        elif name == "interpreters":
            left[name] = procs or left.get("threads", "threads do the same with less")
        elif procs and executor.workers_are == "processes":
            left[name] = f"as processes: {procs}"
        elif "scheduler" in executor.options:
            left[name] = (
                "a cluster's scheduler adds its own round trip to every task on top of "
                f"a process pool's {_ms(cost)}; it pays off across machines, which "
                "advise does not measure"
            )
        else:
            kind, stand_in = STANDS_IN[executor.workers_are]
            left[name] = (
                f"the same kind of {kind} as {stand_in}, which stands for them "
                f"here (compare with conlab run -e {stand_in} -e {name})"
            )
