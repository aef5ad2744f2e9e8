"""``conlab advise``'s probes: what one function is, measured in a runner process.

Each probe is cheap (a few calls of the function) and answers one question the choice of an
executor turns on:

- how long one call takes at the chosen size (``--size auto`` calibrates it first);
- its CPU time against its wall time: does it work or wait?
- whether two threads calling it at once finish sooner than one after the other: does it
  release the GIL (or wait)?
- what a process boundary costs: the pickled size and time of its argument and result, the
  round trip of one task to a process pool worker, and the start-up of that pool;
- whether it has an async form (the asyncio executor needs one).

The runner calls ``probe`` (``--probe`` mode); whatever the user's function does -- raise, print,
end the process, never return -- the parent's watchdog and error messages are the runner's own.
"""

from __future__ import annotations

import math
import os
import pickle
import threading
import time

from experiments.timing import core_wait_s

# The probes' own budget: enough calls to see past one slow call, few enough to stay cheap.
CALLS_BUDGET_S = 0.3
MAX_CALLS = 200
# Tries of the two-thread probe, and the speedup at which an overlap is plain (no more tries).
ATTEMPTS = 4
OVERLAP_SEEN = 1.5
# Round trips timed through a one-worker process pool (the built-in ``tiny`` task).
ROUND_TRIPS = 200


def _calls(func, size: int, budget_s: float = CALLS_BUDGET_S) -> dict:
    """Call ``func(size)`` at least 3 times (once when one call outlasts the budget) and up to
    the budget: the median call's wall time, its CPU time over the wall time it had a core for
    (waiting for a core, on a busy machine, is neither working nor waiting for I/O), the share
    of the wall time spent waiting for a core, and the last result."""
    walls, cpu_total, wall_total = [], 0.0, 0.0
    result = None
    core_wait0 = core_wait_s()
    while True:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        result = func(size)
        wall = time.perf_counter() - wall0
        cpu_total += time.process_time() - cpu0
        wall_total += wall
        walls.append(wall)
        enough = len(walls) >= 3 or wall_total >= budget_s
        if enough and (wall_total >= budget_s or len(walls) >= MAX_CALLS):
            break
    core_wait = min(core_wait_s() - core_wait0, wall_total)
    had_core = wall_total - core_wait
    walls.sort()
    return {
        "call_s": walls[len(walls) // 2],
        "calls": len(walls),
        "cpu_per_wall": min(cpu_total / had_core, 9.99) if had_core > 0 else None,
        "core_wait_share": core_wait / wall_total if wall_total > 0 else None,
        "result": result,
    }


def _two_threads(func, size: int, call_s: float) -> dict:
    """Two threads each making ``k`` calls at once, against the same ``2k`` calls one after the
    other: ``speedup`` near 1 means the calls ran one at a time (the GIL), near 2 that they
    overlapped (the GIL released, or waiting).

    Other work on the machine slows either side at random: up to ``ATTEMPTS`` tries, and the
    fastest serial time against the fastest threaded one (each its least disturbed)."""
    k = max(1, min(10_000, math.ceil(0.05 / max(call_s, 1e-9))))
    switches = _thread_switches()
    waits: list = []

    def calls() -> None:
        before = switches()
        for _ in range(k):
            func(size)
        if before is not None:
            waits.append(switches() - before)

    serial_s = threaded_s = math.inf
    for _ in range(ATTEMPTS if call_s * k < 0.5 else 1):
        start = time.perf_counter()
        calls()
        calls()
        serial_s = min(serial_s, time.perf_counter() - start)
        del waits[:]  # only the threaded calls' switches count
        threads = [threading.Thread(target=calls) for _ in range(2)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall_s = time.perf_counter() - start
        threaded_s = min(threaded_s, wall_s)
        if serial_s >= OVERLAP_SEEN * threaded_s:
            break
    return {
        "calls_per_thread": k,
        "serial_s": serial_s,
        "threaded_s": threaded_s,
        "speedup": serial_s / threaded_s if threaded_s > 0 else None,
        # A thread that wants the GIL asks for it and sleeps until it gets it (a voluntary
        # switch), every switch interval (5 ms) while the other holds it; a function whose C
        # code releases it makes almost none. Unlike the speedup, this does not need a free
        # second core to show: other load takes cores (involuntary switches), not the GIL.
        "gil_waits_per_10ms": sum(waits) / (wall_s * 100) if len(waits) == 2 else None,
    }


def _thread_switches():
    """A reader of the calling thread's voluntary context switches so far (Linux), else one
    that answers None."""
    try:
        import resource

        who = resource.RUSAGE_THREAD
    except (ImportError, AttributeError):
        return lambda: None
    return lambda: resource.getrusage(who).ru_nvcsw


def _pickled(value) -> dict:
    """Pickled size (bytes) and the time to pickle and unpickle it (s); ``error`` instead when
    it cannot be pickled."""
    try:
        data = pickle.dumps(value, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        return {"bytes": None, "s": None, "error": f"{type(exc).__name__}: {exc}"}
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))
        best = min(best, time.perf_counter() - start)
        if best > 0.05:
            break
    return {"bytes": len(data), "s": best, "error": None}


def _round_trip(start_method: str) -> dict:
    """A process pool's fixed costs here: starting one worker (until its first answer), and the
    round trip of one task that does nothing (``tiny``), the function sent with each task as
    ``ex.map(f, xs)`` sends it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from experiments.workloads import tiny

    context = multiprocessing.get_context(start_method)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(tiny, 0).result()
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        for _ in pool.map(tiny, range(ROUND_TRIPS)):
            pass
        trip_s = (time.perf_counter() - start) / ROUND_TRIPS
    return {"start_method": start_method, "startup_s": startup_s, "round_trip_s": trip_s}


def probe(workload, size, fallback_size: int, cores: int, start_method: str) -> dict:
    """Every probe of ``workload`` (experiments.workloads.Workload) at ``size`` (an int, or
    "auto" to calibrate it first); a plain dict, JSON-ready. A call that raises propagates."""
    found: dict = {
        "python": _python_label(),
        "cores": cores,
        "async_form": getattr(workload.async_func, "__name__", None),
    }
    try:  # other work on the machine, before ours
        found["load_per_core"] = os.getloadavg()[0] / max(cores, 1)
    except (AttributeError, OSError):
        found["load_per_core"] = None
    if size == "auto":
        from experiments.calibrate import calibrate

        calibration = calibrate(workload.func, fallback_size)
        found["calibration"] = {k: calibration[k] for k in ("size", "call_s", "grows")}
        size = calibration["size"]
    found["size"] = size
    calls = _calls(workload.func, size)
    result = calls.pop("result")
    found.update(calls)
    found["two_threads"] = _two_threads(workload.func, size, calls["call_s"])
    found["argument"] = _pickled(size)
    found["result"] = _pickled(result)
    found["function"] = _pickled(workload.func)
    found["process_pool"] = _round_trip(start_method)
    return found


def _python_label() -> str:
    """This interpreter as reports name it: its version, with a ``t`` for a free-threaded build."""
    import platform
    import sysconfig

    return platform.python_version() + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else "")
