"""``--size auto``: the size at which one call of a workload takes long enough to measure.

As timeit's autorange grows the loop count, this grows the argument: 1, 2, 4, ... until one call
takes at least ``TARGET_S``. A function whose time does not grow with its argument is reported as
such (``grows`` false) and keeps the size it was given.
"""

from __future__ import annotations

import time

TARGET_S = 0.010  # one call this long: clock and dispatch costs are small beside it
MAX_SIZE = 2**40
FLAT_FROM = 2**16  # by this size a function that uses its argument takes clearly longer
BUDGET_S = 30.0  # calibration gives up past this, keeping the largest size tried


def _one_call_s(func, size: int) -> float:
    """The fastest of up to three calls (one when a call is already long enough)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        func(size)
        best = min(best, time.perf_counter() - start)
        if best >= TARGET_S:
            break
    return best


def calibrate(func, fallback_size: int = 1, target_s: float = TARGET_S) -> dict:
    """``{"size", "call_s", "grows", "tried"}``: the smallest power of two at which one call
    takes ``target_s``, or ``fallback_size`` when the time does not grow with the size."""
    started = time.perf_counter()
    size, first, tried = 1, None, 0
    while True:
        call_s = _one_call_s(func, size)
        tried += 1
        first = call_s if first is None else first
        if call_s >= target_s:
            return {"size": size, "call_s": call_s, "grows": True, "tried": tried}
        if size >= FLAT_FROM and call_s < 2 * first:
            call_s = _one_call_s(func, fallback_size)
            return {"size": fallback_size, "call_s": call_s, "grows": False, "tried": tried}
        if size >= MAX_SIZE or time.perf_counter() - started > BUDGET_S:
            return {"size": size, "call_s": call_s, "grows": True, "tried": tried}
        size *= 2
