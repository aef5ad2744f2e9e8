"""Advise's sweep: its repeats within the time budget, its specs, and the rule that stops it once
the answer stands."""

from __future__ import annotations

import math
import time

from experiments.executors import EXECUTORS
from experiments.spec import ExperimentSpec, SpecError, new_id
from service.advise.planning import Candidate
from service.advise.probes import _crowding, _ms, busy, dispatch_s, thread_verdict, waits

TAG = "advise"
MIN_EFFECT = 0.05  # as storage.summaries: a smaller difference is no difference
# The three rounds of turns every answer needs are planned within this share of the budget:
# runner processes on a busy machine take longer than the probes predict.
BUDGET_SHARE = 0.7
# Per runner process, beyond its repeats: start-up, import, environment, storing (measured here).
PROCESS_OVERHEAD_S = 0.25


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
    """One spec a candidate, in one sweep tagged ``advise``."""
    same = dict(workload=workload, tasks=tasks, size=size, repeats=repeats, warmups=1)
    sweep_id = new_id()
    return [
        ExperimentSpec(
            executor=c.executor,
            workers=c.workers,
            chunksize=c.chunksize,
            python=c.python,
            tag=TAG,
            sweep_id=sweep_id,
            **same,
        ).validate()
        for c in candidates
    ]
