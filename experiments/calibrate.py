"""``--size auto``: the size at which one call of a workload takes long enough to measure.

As timeit's autorange grows the loop count, this grows the argument: 1, 2, 4, ... until one call
takes at least ``TARGET_S``. A function whose time does not grow with its argument is reported as
such (``grows`` false) and keeps the size it was given.

A call's time is its wall time less the time it waited for a core: on a busy machine a short
call preempted for a scheduler's slice would otherwise pass for a long one, and the size chosen
would be a fraction of the one asked for.
"""

from __future__ import annotations

import threading
import time

from experiments.timing import core_wait_s

TARGET_S = 0.010  # one call this long: clock and dispatch costs are small beside it
MAX_SIZE = 2**40
FLAT_FROM = 2**16  # by this size a function that uses its argument takes clearly longer
BUDGET_S = 30.0  # calibration gives up past this, keeping the largest size tried


class _Watch:
    """The call in progress, so that one which outlasts the target can be answered for without
    waiting for it to return (a call may take minutes, or never return)."""

    size = 0
    since = None  # perf_counter() when the call in progress started
    waited = 0.0  # the calling thread's core wait then (experiments.timing.core_wait_s)
    thread_id = None  # the calling thread's native id

    def start(self, size: int) -> None:
        self.thread_id = threading.get_native_id()
        self.size, self.waited, self.since = size, core_wait_s(), time.perf_counter()

    def running_s(self, since: float) -> float:
        """How long the call started at ``since`` has run, less the time it waited for a core."""
        waited = core_wait_s(self.thread_id) - self.waited
        return max(time.perf_counter() - since - max(waited, 0.0), 0.0)


def _one_call_s(func, size: int, watch: _Watch) -> float:
    """The fastest of up to three calls (one when a call is already long enough)."""
    best = float("inf")
    for _ in range(3):
        watch.start(size)
        func(size)
        best = min(best, watch.running_s(watch.since))
        watch.since = None
        if best >= TARGET_S:
            break
    return best


def calibrate(func, fallback_size: int = 1, target_s: float = TARGET_S, watch=None) -> dict:
    """``{"size", "call_s", "grows", "tried"}``: the smallest power of two at which one call
    takes ``target_s``, or ``fallback_size`` when the time does not grow with the size."""
    watch = watch or _Watch()
    started = time.perf_counter()
    size, first, tried, flat = 1, None, 0, 0
    while True:
        call_s = _one_call_s(func, size, watch)
        tried += 1
        first = call_s if first is None else first
        if call_s >= target_s:
            return {"size": size, "call_s": call_s, "grows": True, "tried": tried}
        # flat at two sizes running: one call's time, less the core wait taken from it, can
        # come out near zero once on a loaded machine
        flat = flat + 1 if size >= FLAT_FROM and call_s < 2 * first else 0
        # still short of the target at the largest size: whatever its time did on the way (a
        # busy machine can keep it from coming out flat twice running), it does not grow with
        # an argument that large
        if flat >= 2 or size >= MAX_SIZE:
            call_s = _one_call_s(func, fallback_size, watch)
            return {"size": fallback_size, "call_s": call_s, "grows": False, "tried": tried}
        if time.perf_counter() - started > BUDGET_S:
            return {"size": size, "call_s": call_s, "grows": True, "tried": tried}
        size *= 2


def calibrate_answering_early(func, fallback_size: int, answer) -> None:
    """Run ``calibrate`` and give its result to ``answer``; if a call outlasts twice the
    target, answer with that call's size at once and end the process (the call is not waited
    for)."""
    import os

    watch = _Watch()

    def watchdog() -> None:
        while True:
            time.sleep(TARGET_S / 2)
            since = watch.since
            call_s = watch.running_s(since) if since is not None else 0.0
            if call_s >= 2 * TARGET_S:
                answer({"size": watch.size, "call_s": call_s, "grows": True, "tried": 0})
                from experiments import reaping

                reaping.end_descendants(os.getpid())  # what the call started ends with it
                os._exit(0)

    threading.Thread(target=watchdog, name="conlab-calibrate-watch", daemon=True).start()
    answer(calibrate(func, fallback_size, watch=watch))
