"""``conlab advise``: characterise one function, measure the executors that can win, answer.

``advise()`` is the whole of it, callable from the CLI, the app or a service; it returns plain
data (the ``--json`` object) and prints nothing. Four steps:

1. probes, in a runner process of their own (experiments.probe): one call's duration, CPU/wall,
   whether two threads overlap, what a process boundary costs, whether an async form exists;
2. a plan from those figures: the candidates, and each executor left out with its reason;
3. one sweep under the lab's rules (processes taking turns, adaptive repeats) within the time
   budget, stopped as soon as the best configuration is clear of the rest (or tied with them
   within ``MIN_EFFECT``, which more processes would not change);
4. the answer: the recommendation (the preferred among the fastest and its ties), its speedup
   with its interval, memory against the runner-up, why, and a snippet.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional

from experiments import launch
from experiments.environment import usable_cores
from experiments.executors import EXECUTORS, Executor, Snippet
from experiments.spec import ExperimentSpec, SpecError, new_id, run_label
from experiments.workloads import WORKLOADS

if TYPE_CHECKING:
    pass

DEFAULT_BUDGET_S = 60.0
TAG = "advise"
# Below this CPU/wall a function waits (sleep, a socket) rather than works.
WAITS_BELOW = 0.2
# Two threads at least this much faster than one after the other: the calls overlap.
OVERLAPS_FROM = 1.3
# Voluntary switches of the two threads per 10 ms: a thread holding the GIL makes the other
# wait every 5 ms switch interval (2-4 per 10 ms here for pure Python; hashlib 0-0.3).
FEW_GIL_WAITS = 0.5
MANY_GIL_WAITS = 1.5
# ... without those counts (not Linux): under this speedup, on a machine that gave the probe
# its CPU, they ran one at a time.
SERIAL_BELOW = 1.1
HAD_THE_CPU = 0.9
# The probes waited for a core this share of their time: the machine is busy (say so).
BUSY_FROM = 0.1
# ... or the 1-minute load average per core was this high (the lab itself adds about one
# process: 0.5 a core on two).
BUSY_LOAD = 1.0
WAITING_WORKERS = (8, 16, 32, 64)
# Without --tasks: enough tasks for the sequential run to take this long (at least 16).
RUN_TARGET_S = 0.2
MAX_AUTO_TASKS = 4096
# A task's dispatch above this share of its call: tasks go to the workers in chunks.
DISPATCH_SHARE = 0.1
MIN_EFFECT = 0.05  # as storage.summaries: a smaller difference is no difference
# The three rounds of turns every answer needs are planned within this share of the budget:
# runner processes on a busy machine take longer than the probes predict.
BUDGET_SHARE = 0.7
# Per runner process, beyond its repeats: start-up, import, environment, storing (measured here).
PROCESS_OVERHEAD_S = 0.25


# For an executor advise does not measure, by where its tasks run (Executor.workers_are): what
# they are, and the executor advise measures in their stead.
STANDS_IN = {
    "runner": ("work in the runner's thread", "sequential"),
    "threads": ("worker threads", "threads"),
    "interpreters": ("worker interpreters", "interpreters"),
    "processes": ("worker processes", "processes"),
}


class AdviseFailed(Exception):
    """The function failed while being probed (it raised, ended its process): nothing was
    measured or stored. One line naming what happened and the fix."""


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


# --- 1. probes -------------------------------------------------------------------------------


def characterise(workload: str, size, timeout_s: float, python: Optional[str] = None) -> dict:
    """The probes of ``workload`` at ``size`` (int, or "auto"); AdviseFailed when a call failed,
    SpecError when they take over ``timeout_s``."""
    found = launch.probe(workload, size, python, timeout_s=timeout_s)
    if "failed" in found:
        raise AdviseFailed(
            f"{workload} failed while being probed ({found['failed']}), so nothing was measured; "
            "fix the function so that it runs as f(size)"
        )
    return found


def _ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _bytes(count: Optional[float]) -> str:
    if count is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def _share(fraction: float) -> str:
    return f"{fraction:.1%}" if fraction < 0.1 else f"{fraction:.0%}"


def dispatch_s(probes: dict) -> float:
    """What one task costs to send to a worker process and back: the pool's round trip plus
    pickling its argument and result (measured by the probes)."""
    extra = (probes["argument"].get("s") or 0) + (probes["result"].get("s") or 0)
    return probes["process_pool"]["round_trip_s"] + extra


def waits(probes: dict) -> bool:
    return (probes.get("cpu_per_wall") or 0) < WAITS_BELOW


def busy(probes: dict) -> bool:
    """Whether other work crowded the machine: the probes waited for a core a good share of
    their time, or the load average per core was high before the probes or after the sweep."""
    return (probes.get("core_wait_share") or 0) >= BUSY_FROM or _load(probes) >= BUSY_LOAD


def _load(probes: dict) -> float:
    return max(probes.get("load_per_core") or 0, probes.get("load_per_core_after") or 0)


def _crowding(probes: dict) -> str:
    """What the probes measured of other work on the machine, in words."""
    waited = _share(probes.get("core_wait_share") or 0)
    return (
        f"the probe waited {waited} of its time for a core; load up to {_load(probes):.1f} per core"
    )


def thread_verdict(probes: dict) -> str:
    """``overlap``, ``serial``, ``crowded`` or ``unclear``: what two threads calling at once
    showed. Their speedup when it is plain; on a busy machine, nothing more (its cores make
    threads wait as the GIL does); else how often they waited for the GIL; else, where that is
    not known, a speedup of about 1 when the probe had a core."""
    two = probes["two_threads"]
    speedup, waits = two.get("speedup") or 0, two.get("gil_waits_per_10ms")
    if speedup >= OVERLAPS_FROM:
        return "overlap"
    if busy(probes):
        # Other work's cores also make threads wait (a switch a turn), and a socket's waits look
        # the same: on a busy machine no figure of the probe says "the GIL".
        return "crowded"
    if waits is not None:
        # A call that does not keep its core busy switches for its own waits (a socket, a
        # pipe) as often as for the GIL: many switches say "serial" only of one that does.
        worked = (probes.get("cpu_per_wall") or 0) >= HAD_THE_CPU
        return (
            "overlap"
            if waits < FEW_GIL_WAITS
            else "serial"
            if waits >= MANY_GIL_WAITS and worked
            else ("unclear")
        )
    if speedup < SERIAL_BELOW and (probes.get("cpu_per_wall") or 0) >= HAD_THE_CPU:
        return "serial"
    return "unclear"


def _thread_words(probes: dict) -> str:
    """The two-thread probe's figures, in words."""
    two = probes["two_threads"]
    words = (
        f"two threads calling it at once ran {two.get('speedup') or 0:.2f}x as fast as one "
        "after the other"
    )
    if two.get("gil_waits_per_10ms") is not None:
        words += f" and waited for the GIL {two['gil_waits_per_10ms']:.1f} times per 10 ms"
    return words


# --- 2. the plan -----------------------------------------------------------------------------


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
    cores = probes["cores"]
    cpu = probes.get("cpu_per_wall") or 0
    call, cost = probes["call_s"], dispatch_s(probes)
    candidates = [Candidate("sequential")]
    left: dict[str, str] = {}
    waiting = waits(probes)
    threads = thread_verdict(probes)
    if waiting:
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
    else:
        left["asyncio"] = (
            f"it works rather than waits (CPU {_share(min(cpu, 1))} of wall): "
            "an event loop runs one task at a time"
        )
        if cores < 2:
            left["threads"] = "one usable core: threads could only take turns on it"
            procs = "one usable core: worker processes could only take turns on it"
        else:
            if threads == "serial":
                left["threads"] = (
                    f"{_thread_words(probes)}: it holds the GIL, so threads "
                    "cannot run it in parallel"
                )
            else:
                candidates += [Candidate("threads", w) for w in _process_counts(cores)]
            procs = ""
            for w in _process_counts(cores):
                candidates.append(Candidate("processes", w, _chunksize(probes, tasks, w)))
            if any(c.chunksize and c.chunksize > 1 for c in candidates):
                left["processes chunksize 1"] = (
                    f"a task's round trip to a worker process costs {_ms(cost)}, "
                    f"{cost / max(call, 1e-9):.1f}x a call's {_ms(call)}: one task at a time, "
                    "dispatch would decide the time"
                )
    unpicklable = probes["result"].get("error")
    if unpicklable:
        candidates = [c for c in candidates if not EXECUTORS[c.executor].pickles_tasks]
        left.pop("processes chunksize 1", None)
        procs = (
            f"its result cannot be pickled ({unpicklable}), so no worker process can send it back"
        )
    if procs:
        left["processes"] = procs
    for name, executor in EXECUTORS.items():
        if name in ("sequential", "threads", "asyncio", "processes"):
            continue
        # as the probed interpreter said (it may not be this one), else as this one says
        reason = probes.get("unavailable", {}).get(name, executor.unavailable_reason())
        if reason:
            left[name] = f"unavailable here: {reason}"
        elif name == "interpreters" and not (waiting or unpicklable) and cores >= 2:
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
    return candidates, [{"executor": k, "reason": v} for k, v in left.items()]


# --- 3. the sweep ----------------------------------------------------------------------------


def estimate_s(c: Candidate, probes: dict, tasks: int) -> float:
    """A rough wall time of one repeat of ``c``, from the probes (for the budget only)."""
    call, cores = probes["call_s"], probes["cores"]
    if c.executor == "sequential":
        return tasks * call
    if waits(probes) and c.executor in ("threads", "asyncio"):
        return math.ceil(tasks / c.workers) * call
    parallel = min(c.workers, cores)
    if EXECUTORS[c.executor].pickles_tasks:
        per_task = call + dispatch_s(probes) / (c.chunksize or 1)
        return probes["process_pool"]["startup_s"] * c.workers + tasks * per_task / parallel
    overlap = thread_verdict(probes) == "overlap" or c.executor == "interpreters"
    return tasks * call / (parallel if overlap else 1)


def budget_repeats(candidates, probes: dict, tasks: int, budget_s: float) -> tuple[int, float]:
    """Counted repeats per process (5, 3 or 2) such that three rounds of turns fit in
    ``BUDGET_SHARE`` of the budget left (2 when they fit in all of it), and the estimated time of
    one round. SpecError when not even that fits."""
    per_repeat = sum(estimate_s(c, probes, tasks) for c in candidates)
    for repeats in (5, 3, 2):
        round_s = len(candidates) * PROCESS_OVERHEAD_S + (repeats + 1) * per_repeat
        if 3 * round_s <= BUDGET_SHARE * budget_s:
            return repeats, round_s
    if 3 * round_s <= budget_s:
        return 2, round_s
    crowded = ""
    if busy(probes):
        crowded = f" (the machine is busy: {_crowding(probes)})"
    raise SpecError(
        f"measuring {len(candidates)} configurations of {tasks} tasks (one call "
        f"{_ms(probes['call_s'])}) needs about {3 * round_s:.0f} s, more than the {budget_s:.0f} s "
        f"left of --time-budget after the probes{crowded}; pass a larger --time-budget, fewer "
        "--tasks or a smaller --size"
    )


def settled(intervals: list, min_effect: float = MIN_EFFECT) -> bool:
    """Whether more processes would not change the answer: the best configuration (lowest
    centre) is clear of every other (a ``slower`` verdict), or an other's difference from it is
    inside ±``min_effect`` with its whole interval (a tie that stays a tie)."""
    from storage import stats

    known = [i for i in intervals if math.isfinite(i.center) and i.processes >= 2]
    if len(known) < len(intervals) or len(known) < 2:
        return False
    best = min(known, key=lambda i: i.center)
    for other in known:
        if other is best:
            continue
        found = stats.ratio(best, other, min_effect)
        clear = found.verdict == "slower"
        tied = 1 - min_effect <= found.low and found.high <= 1 + min_effect
        if not (clear or tied):
            return False
    return True


class _StopRule:
    """The sweep's stop: after the third round, once ``settled``, or when the next round would
    not fit in the budget (from how long the rounds so far took)."""

    def __init__(self, budget_s: float):
        self.budget_s = budget_s
        self.started = time.monotonic()
        self.reason = "every planned process ran"
        self.rounds = 0

    def __call__(self, round_: int, recorders: dict) -> bool:
        self.rounds = round_
        if round_ < 3:
            return False
        if settled([r.interval() for r in recorders.values()]):
            self.reason = f"settled after {round_} rounds: the answer stands at this precision"
            return True
        elapsed = time.monotonic() - self.started
        if elapsed + elapsed / round_ > self.budget_s:
            self.reason = f"the time budget ({self.budget_s:.0f} s) ran out after {round_} rounds"
            return True
        return False


def specs_for(
    workload: str, candidates: list[Candidate], size: int, tasks: int, repeats: int
) -> list[ExperimentSpec]:
    sweep_id = new_id()
    return [
        ExperimentSpec(
            workload=workload,
            executor=c.executor,
            workers=c.workers,
            tasks=tasks,
            size=size,
            repeats=repeats,
            warmups=1,
            chunksize=c.chunksize,
            python=c.python,
            tag=TAG,
            sweep_id=sweep_id,
        ).validate()
        for c in candidates
    ]


# --- 4. the answer ---------------------------------------------------------------------------


def _row_name(row) -> str:
    candidate = Candidate(row.executor, int(row.workers), _int(row.chunksize), label=row.python)
    return candidate.named(bool(getattr(row, "several_pythons", False)))


def _int(value) -> Optional[int]:
    return None if value is None or value != value else int(value)


def _preference(row, pythons: Sequence[str] = ()) -> tuple:
    """Among tied rows: the simpler executor, then the interpreter given first, then fewer
    workers and smaller chunks."""
    rank = getattr(EXECUTORS.get(row.executor), "preference", Executor.preference)
    python = pythons.index(row.python) if row.python in pythons else len(pythons)
    return rank, python, int(row.workers), _int(row.chunksize) or 1


def _prefer_reason(chosen, other) -> str:
    """Why ``chosen`` is preferred to the tied ``other``, from what they are and cost."""
    if chosen.executor == other.executor and chosen.python != other.python:
        memory = _memory_text(chosen, other)
        if memory:
            return f"{_row_name(chosen)} holds less memory ({memory})"
        return f"{_row_name(chosen)} runs on the first interpreter given (--python)"
    if chosen.executor == other.executor:
        return f"{_row_name(chosen)} uses fewer workers"
    if chosen.executor == "sequential":
        return "sequential needs no executor at all"
    if chosen.executor == "threads" and other.executor == "asyncio":
        return "threads needs no async rewrite"
    memory = _memory_text(chosen, other)
    if memory:
        return f"{_row_name(chosen)} holds less memory ({memory})"
    return f"{_row_name(chosen)} starts no worker processes"


def _memory_text(a, b) -> str:
    ma, mb = a.peak_rss_bytes, b.peak_rss_bytes
    if not (ma == ma and mb == mb and ma and mb):
        return ""
    return f"{_bytes(ma)} against {_bytes(mb)} for {_row_name(b)}, peaks summed over processes"


def _import_line(workload: str) -> tuple[str, str]:
    """(import statement, function name) for the snippet."""
    if workload in WORKLOADS:
        name = WORKLOADS[workload].func.__name__
        return f"from experiments.workloads import {name}", name
    module, _, name = workload.rpartition(":")
    if module.endswith(".py") or "/" in module:
        module = module.rsplit("/", 1)[-1].removesuffix(".py")
    return f"from {module} import {name}", name


def snippet(
    workload: str,
    executor: str,
    workers: int,
    chunksize: Optional[int],
    start_method: Optional[str],
    size: int,
    tasks: int,
) -> str:
    """Ready-to-paste code running the function the recommended way (the executor's own);
    "" where it has none."""
    line, func = _import_line(workload)
    async_form = getattr(WORKLOADS.get(workload), "async_func", None)
    items = f"items = [{size}] * {tasks}  # your arguments"
    afunc = getattr(async_form, "__name__", func)
    code = Snippet(line, func, afunc, items, workers, chunksize, start_method)
    found = EXECUTORS.get(executor)
    return (found.snippet(code) if found else None) or ""


def _probe_reasons(workload: str, probes: dict, tasks: int) -> list[str]:
    """What the probes found, in words with their figures."""
    cpu = probes.get("cpu_per_wall") or 0
    sized = probes.get("calibration") or {}
    how = " (--size auto)" if sized.get("grows") else ""
    if sized and not sized.get("grows"):
        how = " (its time does not grow with its argument)"
    found = [
        f"one call takes {_ms(probes['call_s'])} at size {probes['size']}{how}; its CPU time is "
        f"{_share(min(cpu, 1))} of the wall time it had a core for: it "
        + ("waits rather than works" if waits(probes) else "works rather than waits")
    ]
    if busy(probes):
        found.append(
            f"the machine was busy ({_crowding(probes)}): speedups here are smaller "
            "than on a quiet machine, and ties likelier"
        )
    verdict = thread_verdict(probes)
    found.append(
        f"{_thread_words(probes)}: "
        + {
            "overlap": "the calls overlap (it waits, or its C code releases the GIL)",
            "serial": "one ran at a time (it holds the GIL)",
            "unclear": "no clear sign either way, so threads are measured",
            "crowded": (
                "with other work on the cores these figures do not say whether the GIL or the "
                "busy machine held them back, so threads are measured"
            ),
        }[verdict]
    )
    cost, call = dispatch_s(probes), probes["call_s"]
    share = cost / max(call, 1e-9)
    found.append(
        f"a task's round trip to a worker process costs {_ms(cost)} here (argument "
        f"{_bytes(probes['argument']['bytes'])}, result {_bytes(probes['result']['bytes'])} "
        f"pickled), "
        + (f"{share:.1f}x" if share >= 1 else f"{share:.1%} of")
        + " a call: "
        + (
            "dispatch dominates, so process pools get chunks of tasks"
            if share > DISPATCH_SHARE
            else "small beside the work"
        )
    )
    return found


def answer(
    workload: str,
    probes: dict,
    candidates: list[Candidate],
    left_out: list[dict],
    summary,
    words: list[str],
    results: list[dict],
    stop_reason: str,
    tasks: int,
) -> dict:
    """The recommendation and everything behind it, as the ``--json`` object."""
    from storage.verdicts import fastest, undecided

    why = _probe_reasons(workload, probes, tasks)
    rows = summary[summary["workload"] == workload] if not summary.empty else summary
    if not rows.empty:  # every name says its interpreter when several were measured
        rows = rows.assign(several_pythons=rows["python"].nunique() > 1)
    measured = _candidate_rows(candidates, rows, results)
    base = {
        "probes": probes,
        "candidates": measured + [{**x, "left_out": True} for x in left_out],
        "sweep_id": results[0]["sweep_id"] if results else None,
        "tasks": tasks,
        "stopped": stop_reason,
    }
    if rows.empty:
        failed = [r for r in results if r["status"] != "ok"]
        reason = failed[0]["error"] if failed else "no run finished"
        return {
            "recommendation": None,
            "ties": [],
            "undecided": None,
            **base,
            "why": why + [reason],
            "snippet": "",
        }
    best, tied = fastest(rows, MIN_EFFECT)
    group = [best] + [row for row, _ in tied]
    pythons = [c.label for c in candidates if c.label]
    chosen = min(group, key=lambda row: _preference(row, list(dict.fromkeys(pythons))))
    others = rows[rows.index != chosen.name].sort_values("median_s")
    runner_up = others.iloc[0] if not others.empty else None
    is_seq = chosen.executor == "sequential"
    speedup = 1.0 if is_seq else float(chosen.speedup)
    ci = [1.0, 1.0] if is_seq else [float(chosen.speedup_low), float(chosen.speedup_high)]
    start_method = _start_method(results, chosen)
    recommendation = {
        "python": chosen.python,
        "executor": chosen.executor,
        "workers": int(chosen.workers),
        "chunksize": _int(chosen.chunksize),
        "start_method": start_method,
        "speedup": speedup,
        "ci": ci,
        "median_s": float(chosen.median_s),
        "peak_rss_bytes": _number(chosen.peak_rss_bytes),
    }
    ties = [
        {
            "python": row.python,
            "executor": row.executor,
            "workers": int(row.workers),
            "chunksize": _int(row.chunksize),
            "median_s": float(row.median_s),
            "preferred": _prefer_reason(chosen, row),
        }
        for row in group
        if row.name != chosen.name
    ]
    open_tie = undecided(best, tied, MIN_EFFECT)
    if open_tie is not None:
        reasons = dict.fromkeys(t["preferred"] for t in ties)
        why.append(
            f"until more measurement tells them apart, the simplest of them is "
            f"{_row_name(chosen)} (the snippet below): " + "; ".join(reasons)
        )
    elif ties:
        names = [_row_name(chosen)] + [_row_name(r) for r in group if r.name != chosen.name]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        reasons = dict.fromkeys(t["preferred"] for t in ties)  # each reason once, in order
        why.append(f"{listed} are tied; " + "; ".join(reasons))
    elif runner_up is not None:
        slower = runner_up.median_s / chosen.median_s
        why.append(
            f"{_row_name(chosen)} is clear of the rest beyond their intervals; the "
            f"runner-up, {_row_name(runner_up)}, took {slower:.2f}x as long"
        )
    if not is_seq:
        why.append(
            f"{_row_name(chosen)}: {speedup:.2f}x the sequential run (95% CI "
            f"{ci[0]:.2f}–{ci[1]:.2f})"
        )
    if runner_up is not None:
        memory = _memory_text(chosen, runner_up)
        if memory:
            recommendation["runner_up_peak_rss_bytes"] = _number(runner_up.peak_rss_bytes)
            why.append(f"memory: {_row_name(chosen)} {memory}")
    if EXECUTORS[chosen.executor].pickles_tasks:
        why.append(
            'the snippet starts its pool under `if __name__ == "__main__":`: the spawn '
            "and forkserver start methods import the main module in every worker, which "
            "would otherwise start pools of its own"
            + (f" ({start_method} is the default here)" if start_method else "")
        )
    why.append(
        f"measured: {len(candidates)} configurations in one sweep, taking turns; {stop_reason}"
    )
    why += [w.strip() for w in words[1:]]
    code = snippet(
        workload,
        chosen.executor,
        int(chosen.workers),
        _int(chosen.chunksize),
        start_method,
        int(chosen["size"]),
        tasks,
    )
    return {
        "recommendation": recommendation,
        "ties": ties,
        "undecided": _undecided_json(open_tie),
        **base,
        "why": why,
        "snippet": code,
    }


def _undecided_json(found) -> Optional[dict]:
    """An undecided answer (storage.verdicts.Undecided) as the ``--json`` object holds it, with
    its headline in words."""
    if found is None:
        return None
    from storage.verdicts import undecided_text

    return {
        "headline": undecided_text(found, [_row_name(r) for r in found.leaders]),
        "leaders": [
            {
                "python": row.python,
                "executor": row.executor,
                "workers": int(row.workers),
                "chunksize": _int(row.chunksize),
                "speedup": 1.0 if row.executor == "sequential" else _number(row.speedup),
                "ci": [_number(row.speedup_low), _number(row.speedup_high)],
                "median_s": float(row.median_s),
            }
            for row in found.leaders
        ],
        "processes": found.processes,
        "more_processes": found.more,
        "seconds": found.seconds,
    }


def _number(value) -> Optional[float]:
    return None if value is None or value != value else float(value)


def _start_method(results: list[dict], row) -> Optional[str]:
    for r in results:
        if (r["executor"], r["workers"], r.get("python")) == (
            row.executor,
            row.workers,
            row.python,
        ):
            return r.get("start_method")
    return None


def _candidate_rows(candidates, rows, results: list[dict]) -> list[dict]:
    """Each measured candidate with its figures (or its run's status and error)."""
    found = []
    for c in candidates:
        entry: dict[str, Any] = {
            "python": c.label,
            "executor": c.executor,
            "workers": c.workers,
            "chunksize": c.chunksize,
            "left_out": False,
        }
        run = next(
            (
                r
                for r in results
                if (r["executor"], r["workers"]) == (c.executor, c.workers)
                and r.get("python") == c.label
            ),
            None,
        )
        if run is not None:
            entry.update(status=run["status"], processes=run["processes"], error=run["error"])
        mine = rows[
            (rows["executor"] == c.executor)
            & (rows["workers"] == c.workers)
            & (rows["python"] == c.label)
        ]
        if not mine.empty:
            row = mine.iloc[0]
            entry.update(
                median_s=float(row.median_s),
                ci_low_s=_number(row.ci_low_s),
                ci_high_s=_number(row.ci_high_s),
                speedup=_number(row.speedup),
                peak_rss_bytes=_number(row.peak_rss_bytes),
            )
        found.append(entry)
    return found


def _load_per_core(cores: int) -> Optional[float]:
    try:
        return os.getloadavg()[0] / max(cores, 1)
    except (AttributeError, OSError):  # Windows
        return None


def _entry_name(entry: dict, several_pythons: bool) -> str:
    """A measured candidate of the ``--json`` answer, named."""
    candidate = Candidate(
        entry["executor"], entry["workers"], entry["chunksize"], label=entry.get("python")
    )
    return candidate.named(several_pythons)


def advice_lines(found: dict) -> list[str]:
    """The answer in words: the recommendation, why, what was left out and why, the snippet
    (the CLI prints these; the Lab shows them)."""
    rec = found["recommendation"]
    several = len({c.get("python") for c in found["candidates"] if not c["left_out"]}) > 1
    open_tie = found.get("undecided")
    if rec is None:
        lines = ["no recommendation: no configuration finished"]
    elif open_tie:
        budget = open_tie.get("time_budget_s")
        lines = [open_tie["headline"] + (f" (--time-budget {budget:.0f})" if budget else "")]
    else:
        name = Candidate(
            rec["executor"], rec["workers"], rec["chunksize"], label=rec["python"]
        ).named(several)
        method = f", start method {rec['start_method']}" if rec["start_method"] else ""
        lines = [
            f"recommendation: {name}{method} — {rec['speedup']:.2f}x sequential (95% CI "
            f"{rec['ci'][0]:.2f}–{rec['ci'][1]:.2f})"
        ]
    lines += [f"  - {line}" for line in found["why"]]
    lines += [
        f"  left out {c['executor']}{' on ' + c['python'] if several and c.get('python') else ''}: "
        f"{c['reason']}"
        for c in found["candidates"]
        if c["left_out"]
    ]
    lines += [
        f"  {_entry_name(c, several)} {c['status']}: {c['error']}"
        for c in found["candidates"]
        if not c["left_out"] and c.get("status") not in (None, "ok")
    ]
    if found["snippet"]:
        lines += ["", *found["snippet"].rstrip("\n").split("\n"), ""]
    if found["sweep_id"]:
        lines.append(
            f"stored as sweep {found['sweep_id']} (tag {TAG}): conlab report "
            f"--select sweep:{found['sweep_id']}"
        )
    return lines


# --- all of it -------------------------------------------------------------------------------


def advise(
    workload: str,
    db: Optional[str],
    size: Optional[int | str] = None,
    tasks: Optional[int] = None,
    time_budget_s: float = DEFAULT_BUDGET_S,
    on_event: Optional[Callable] = None,
    say: Optional[Callable[[str], None]] = None,
    on_sweep: Optional[Callable] = None,
    pythons: Sequence[Optional[str]] = (None,),
) -> dict:
    """Probe ``workload``, measure its candidates as one sweep tagged ``advise`` in ``db`` (a
    path, a URL, or None for the default) within ``time_budget_s``, and return the answer (the
    ``--json`` object).

    ``db`` is opened once the plan stands (bad input then leaves no database behind) and its
    engine disposed before this returns or raises. SpecError for bad input (one line);
    AdviseFailed when the function fails while probed.
    ``on_event`` gets the sweep's runner events, ``say`` a line per step, ``on_sweep`` the
    Sweep once it exists (to cancel it). ``pythons``: the interpreters to advise on (None is
    this one); each is probed, and their candidates take turns in one sweep, at the size the
    first one chose."""
    from service.sweeps import Sweep, check
    from storage.database import open_engine

    started = time.monotonic()
    say = say or (lambda line: None)
    chosen_size, pythons = _checked(workload, size, tasks, time_budget_s, pythons)
    probes, candidates, left_out, tasks = _probe_all(
        workload, chosen_size, tasks, time_budget_s, pythons, say
    )
    remaining = time_budget_s - (time.monotonic() - started)
    repeats, round_s = budget_repeats(candidates, probes, tasks, remaining)
    specs = specs_for(workload, candidates, probes["size"], tasks, repeats)
    resolved = check(specs)
    engine = open_engine(db, writer=True)
    try:
        stop = _StopRule(time_budget_s - (time.monotonic() - started))
        say(f"measuring {len(candidates)} configurations for up to {stop.budget_s:.0f} s")
        sweep = Sweep(
            engine,
            specs,
            resolved,
            on_event=on_event,
            target_ci=0.0,
            max_time_s=stop.budget_s,
            stop=stop,
            notes={"advise": {"probes": probes, "left_out": left_out}},
        )
        if on_sweep is not None:
            on_sweep(sweep)
        with sweep.cancelled_by_signals():
            results = sweep.run()
        if sweep.cancelled:
            stop.reason = "cancelled"
        from storage.verdicts import sweep_verdicts

        summary, words = sweep_verdicts(engine, specs[0].sweep_id)
    finally:
        engine.dispose()
    probes["load_per_core_after"] = _load_per_core(probes["cores"])
    found = answer(
        workload, probes, candidates, left_out, summary, words, results, stop.reason, tasks
    )
    found["elapsed_s"] = time.monotonic() - started
    if found["undecided"]:  # the budget that would measure what tells the leaders apart
        found["undecided"]["time_budget_s"] = math.ceil(
            found["elapsed_s"] + found["undecided"]["seconds"]
        )
    return found


def _checked(workload: str, size, tasks, time_budget_s: float, pythons) -> tuple:
    """The size to probe at and the interpreters to advise on; SpecError for bad input,
    before anything starts."""
    from service.sweeps import is_auto_size

    if not 0 < time_budget_s <= 86400:
        raise SpecError(
            f"--time-budget must be seconds above 0 and at most a day, not "
            f"{time_budget_s:g}; pass e.g. --time-budget 60"
        )
    if tasks is not None:
        ExperimentSpec(workload=workload, executor="sequential", tasks=tasks).validate()
    # an unknown name (a module without its :FUNCTION) is refused before anything looks it up
    ExperimentSpec(workload=workload, executor="sequential").validate()
    auto = is_auto_size(workload, size)
    chosen_size = "auto" if auto else size if size is not None else WORKLOADS[workload].default_size
    ExperimentSpec(
        workload=workload, executor="sequential", size=None if auto else chosen_size
    ).validate()
    pythons = list(dict.fromkeys(pythons)) or [None]
    for python in pythons:  # an empty --python is refused as `conlab run` refuses it
        ExperimentSpec(workload=workload, executor="sequential", python=python).validate()
    return chosen_size, pythons


def _probe_all(workload: str, chosen_size, tasks, time_budget_s: float, pythons, say) -> tuple:
    """(probes, candidates, left out, tasks): each interpreter probed and planned for, the
    first at ``chosen_size``, the others at the size it chose."""
    say(f"probing {workload}")
    probes = characterise(workload, chosen_size, time_budget_s, pythons[0])
    probes["cores"] = probes.get("cores") or usable_cores()
    tasks = choose_tasks(probes, tasks)
    candidates, left_out = plan(workload, probes, tasks)
    candidates = [replace(c, python=pythons[0], label=probes["python"]) for c in candidates]
    left_out = [{**x, "python": probes["python"]} for x in left_out]
    by_python = {probes["python"]: probes}
    for python in pythons[1:]:
        say(f"probing {workload} on {python}")
        more = characterise(workload, probes["size"], time_budget_s, python)
        more["cores"] = more.get("cores") or usable_cores()
        found, left = plan(workload, more, tasks)
        candidates += [replace(c, python=python, label=more["python"]) for c in found]
        left_out += [{**x, "python": more["python"]} for x in left]
        by_python[more["python"]] = more
    if len(by_python) > 1:
        probes = {**probes, "by_python": by_python}
    return probes, candidates, left_out, tasks
