"""Timing one task: its start and end on the system-wide monotonic clock, and what the OS says
around it (the thread's context switches, its process's peak memory, the core it ran on, whether
the GIL was on). The executors send these functions to their workers with each task.

Only cheap modules here: a spawned worker imports this file with its first task.
"""

from __future__ import annotations

import os
import sys
import time
from _thread import get_ident  # threading.get_ident without importing threading

# The pid, cached: os.getpid() is a system call, and a fork gives the child its own copy.
_pid = os.getpid()


def _forget_pid() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pid)


# Whether the GIL is on in this process now (3.13+ can say; before, it always is).
_is_gil_enabled = getattr(sys, "_is_gil_enabled", None)


def gil_enabled() -> bool:
    """Whether this process runs with the GIL on, now."""
    return bool(_is_gil_enabled()) if _is_gil_enabled is not None else True


def gil_setting():
    """What the user asked of the GIL at start-up (``PYTHON_GIL`` or ``-X gil``), or None."""
    asked = getattr(sys, "_xoptions", {}).get("gil")
    return str(asked) if asked not in (None, True) else os.environ.get("PYTHON_GIL") or None


# On a free-threaded build a worker's GIL can come back at run time (importing an extension
# that needs it), so each sample says whether it was on. A GIL build's never changes: no call.
_gil_enabled = _is_gil_enabled if "free-threading" in sys.version else None

try:  # the thread's own context switches and its process's peak memory, where the OS says
    from resource import RUSAGE_THREAD as _RUSAGE_THREAD
    from resource import getrusage as _getrusage
except ImportError:  # not Linux (or no resource module): no per-thread figures
    _getrusage = None
# ru_maxrss is in KiB on Linux (bytes on macOS, which has no RUSAGE_THREAD and never gets here).
_RSS_UNIT = 1024


def _no_usage():
    return None


def thread_usage():
    """``(voluntary, involuntary, peak_rss_bytes)`` of the calling thread so far: its context
    switches, and its process's peak resident memory (Linux's RUSAGE_THREAD gives both)."""
    usage = _getrusage(_RUSAGE_THREAD)
    return usage.ru_nvcsw, usage.ru_nivcsw, usage.ru_maxrss * _RSS_UNIT


_usage = thread_usage if _getrusage is not None else _no_usage


def _busy_ticks():
    """The CPU time the whole machine spent busy so far, in clock ticks, from Linux's
    /proc/stat (user, nice, system, irq, softirq and steal: time no one else could use)."""
    with open("/proc/stat", "rb") as stat:
        fields = stat.readline().split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))


def machine_busy_ns():
    """The CPU time every process on the machine has used so far (ns, at clock-tick
    resolution), or None where the platform does not say: read around a repeat, it tells how
    many cores other work took while the repeat ran."""
    try:
        return _busy_ticks() * (10**9 // os.sysconf("SC_CLK_TCK"))
    except (AttributeError, ValueError, OSError, IndexError):
        return None


def core_wait_s(thread_id=None) -> float:
    """How long a thread (the calling one, or the one of native id ``thread_id``) has waited
    for a core so far, ready to run while others held every core (Linux schedstat), else 0."""
    path = (
        "/proc/thread-self/schedstat"
        if thread_id is None
        else f"/proc/self/task/{thread_id}/schedstat"
    )
    try:
        with open(path) as handle:
            return int(handle.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


# What each thread did: its time on a core (the CPU clock of the thread, exact) and its time
# waiting for one (Linux schedstat's run delay), both cumulative. A thread reads its own wait
# through a file it keeps open (one pread), at most once a millisecond and at the ends of its
# tasks: a worker's split (on a core, waiting for a core, blocked) over the span between its
# first and last reading costs at most a few microseconds per millisecond of its work.
READ_EVERY_NS = 1_000_000
_stat_files: dict = {}  # thread ident -> [file descriptor, time of its last reading]


def _forget_stat_files() -> None:
    for fd, _ in _stat_files.values():  # a forked child's copies name its parent's threads
        try:
            os.close(fd)
        except OSError:
            pass
    _stat_files.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_stat_files)


# `make bench` measures what the split costs by running the same work without it.
_thread_time_ns = (
    None if os.environ.get("CONLAB_NO_SPLIT") else getattr(time, "thread_time_ns", None)
)


def _open_own_stat():
    if _thread_time_ns is None:
        return None
    try:
        return os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except (OSError, AttributeError):
        return None


def schedstat_reading(now_ns: int):
    """``(now_ns, ns on a core, ns waiting for a core)`` of the calling thread, cumulative,
    when its last reading is a millisecond old or more (or it has none); else None, and None
    where the platform does not say. (schedstat's own time on a core lags by up to a
    scheduler tick for a running thread; the thread's CPU clock does not.)"""
    ident = get_ident()
    kept = _stat_files.get(ident)
    if kept is not None and now_ns - kept[1] < READ_EVERY_NS:
        return None
    for _ in range(2):  # a kept file of an ended thread whose ident was reused: open anew
        if kept is None:
            fd = _open_own_stat()
            if fd is None:
                _stat_files[ident] = kept = [-1, now_ns]
                return None
            _stat_files[ident] = kept = [fd, now_ns]
        if kept[0] < 0:
            kept[1] = now_ns
            return None
        try:
            waited = int(os.pread(kept[0], 96, 0).split()[1])
            kept[1] = now_ns
            return (now_ns, _thread_time_ns(), waited)
        except (OSError, ValueError, IndexError):
            try:
                os.close(kept[0])
            except OSError:
                pass
            kept = None
    return None


def _no_core():
    return None


def _load_core_reader():
    """Linux's ``sched_getcpu`` through ctypes, loaded once per process; elsewhere a reader
    of None. ``current_core`` becomes it."""
    global current_core
    current_core = _no_core
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            getcpu = ctypes.CDLL(None).sched_getcpu
            getcpu.argtypes, getcpu.restype = (), ctypes.c_int
            current_core = getcpu
        except (ImportError, OSError, AttributeError):
            pass
    return current_core


def load_core_reader() -> None:
    """Load the core reader now (the runner does, before forking workers, so they inherit
    it)."""
    _load_core_reader()


def _stat_core():
    """The calling thread's core from the kernel's stat line for it: ~10 us, no import; None
    where the platform does not say."""
    try:
        with open("/proc/thread-self/stat", "rb") as stat:
            line = stat.read()
        return int(line[line.rindex(b")") + 2 :].split()[36])  # field 39, "processor"
    except (OSError, ValueError, IndexError):
        return None


# Loading ctypes costs a spawned worker ~1.4-7 ms, as much as a few hundred reads of the stat
# line: a process reads its cores from the stat line until it has read this many, then loads
# sched_getcpu. What finding its cores costs a process stays within twice the least it could,
# however few or many tasks it runs.
READS_BEFORE_LOADING = 200
_core_reads = 0


def _core_until_loaded():
    global _core_reads
    _core_reads += 1
    if _core_reads < READS_BEFORE_LOADING or not sys.platform.startswith("linux"):
        return _stat_core()
    return _load_core_reader()()


# The core the calling thread runs on now (-1 or None when unknown).
current_core = _core_until_loaded


def timed_call(func, size: int):
    """Call ``func(size)`` and return its sample (``_sample``).

    Start and end are on the system-wide monotonic clock, comparable across worker processes;
    switches and cores are read outside that window.
    """
    core_start = current_core()
    before = _usage()
    first = schedstat_reading(time.monotonic_ns())
    start_ns = time.monotonic_ns()
    result = func(size)
    end_ns = time.monotonic_ns()
    readings = (first, schedstat_reading(end_ns))
    return _sample(result, start_ns, end_ns, before, _usage(), core_start, current_core(), readings)


def _sample(result, start_ns: int, end_ns: int, before, after, core_start, core_end, readings):
    """``(result, pid, thread_id, start_ns, end_ns, gil, voluntary, involuntary, core at
    start, core at end, peak_rss_bytes, readings)``: ``gil`` is whether the GIL was on in this
    worker on a free-threaded build (else None); the switches are the thread's during the task,
    the peak is its process's so far; ``readings`` the thread's schedstat readings at the
    task's ends (``schedstat_reading``), for the runner to split each worker's time; each is
    None where the platform does not say."""
    gil = None if _gil_enabled is None else _gil_enabled()
    if before is None:
        voluntary = involuntary = peak = None
    else:
        voluntary, involuntary, peak = after[0] - before[0], after[1] - before[1], after[2]
    return (
        result,
        _pid,
        get_ident(),
        start_ns,
        end_ns,
        gil,
        voluntary,
        involuntary,
        core_start,
        core_end,
        peak,
        readings,
    )


def _chunk_core():
    """The calling thread's core (``current_core``), None where unknown."""
    core = current_core()
    return core if core is None or core >= 0 else None


def timed_chunk(func, sizes: list) -> list:
    """``timed_call`` over a chunk of tasks: one message to a worker, as ``Pool.map`` and
    ``ProcessPoolExecutor.map(chunksize=N)`` send. The function travels with every message, as
    it does in the user's own ``ex.map(f, xs)``, so the lab pays the user's dispatch cost.

    Each task keeps its own start and end; the switches, cores and peak memory are read once,
    at the chunk's two ends (a reading costs more than a short task), and sit on its last task,
    the others carrying None for them."""
    if not sizes:
        return []
    core_start = _chunk_core()
    before = _usage()
    gil = None if _gil_enabled is None else _gil_enabled()
    pid, thread_id, clock = _pid, get_ident(), time.monotonic_ns
    first = schedstat_reading(clock())
    samples = []
    for size in sizes:
        start_ns = clock()
        result = func(size)
        samples.append(
            (result, pid, thread_id, start_ns, clock(), gil, None, None, None, None, None, None)
        )
    after, core_end = _usage(), _chunk_core()
    readings = (first, schedstat_reading(samples[-1][4]))
    last = samples[-1]
    if after is None:
        samples[-1] = (*last[:8], core_start, core_end, None, readings)
    else:
        switches = (after[0] - before[0], after[1] - before[1])
        samples[-1] = (*last[:6], *switches, core_start, core_end, after[2], readings)
    return samples


async def timed_call_async(func, size: int):
    """The coroutine form of ``timed_call``."""
    core_start = current_core()
    before = _usage()
    first = schedstat_reading(time.monotonic_ns())
    start_ns = time.monotonic_ns()
    result = await func(size)
    end_ns = time.monotonic_ns()
    readings = (first, schedstat_reading(end_ns))
    return _sample(result, start_ns, end_ns, before, _usage(), core_start, current_core(), readings)


# --- tasks in worker interpreters (the interpreters executor): each worker imports this module,
# not the executors', as a spawned worker process does.

# The functions loaded in this interpreter, by their pickled bytes: one load per worker.
_loaded: dict = {}


def _load(payload: bytes):
    """The function pickled in ``payload``, loaded in this (worker) interpreter. The first
    load also has the interpreter close its kept schedstat files when it ends (a destroyed
    interpreter's would stay open in the runner's process, one per worker and repeat)."""
    func = _loaded.get(payload)
    if func is None:
        import pickle

        if not _loaded:
            import atexit

            atexit.register(_forget_stat_files)
        func = _loaded[payload] = pickle.loads(payload)
    return func


def interpreter_check(payload: bytes) -> None:
    """Load the function in ``payload`` in this (worker) interpreter, sending nothing back."""
    _load(payload)


def interpreter_call(payload: bytes, size: int) -> bytes:
    """``timed_call`` in a worker interpreter, of the function pickled in ``payload``: the
    sample, pickled here, so that a function that cannot be loaded or a result that cannot be
    sent fails the task with the pickler's words."""
    import pickle

    sample = timed_call(_load(payload), size)
    try:
        return pickle.dumps(sample)
    except Exception as exc:
        raise pickle.PicklingError(
            f"cannot pickle {type(sample[0]).__name__!r} object: {exc}"
        ) from None
