"""A look at every thread of a runner and its workers, from outside them: about every
millisecond, what the kernel says each thread is doing (on a core, and which; waiting for one;
blocked on a lock, in I/O, asleep). It runs in the parent, a process of its own, so looking
takes no GIL and no time from the interpreter it looks at.

Linux only (``/proc``): elsewhere ``available()`` is False and nothing is looked at. What was
seen is kept as text (``encode``): one lane per thread, each state from the moment it began.
"""

from __future__ import annotations

import os
import threading
import time

# What a thread was doing, one letter each (storage.states draws them).
ON_CORE, WAITING, LOCK, IO, SLEEP, BLOCKED = "C", "W", "L", "I", "S", "B"

# System calls a blocked thread sits in, by what it waits for (Linux numbers per machine).
_SYSCALLS = {
    "x86_64": {
        LOCK: (202,),  # futex: a lock, a condition, the GIL
        IO: (0, 1, 7, 17, 18, 19, 20, 23, 43, 44, 45, 46, 47, 232, 270, 271, 281, 288, 295, 296),
        SLEEP: (34, 35, 230),  # pause, nanosleep, clock_nanosleep
    },
    "aarch64": {
        LOCK: (98,),
        IO: (17, 22, 63, 64, 65, 66, 67, 68, 72, 73, 202, 203, 204, 206, 207, 211, 212, 242),
        SLEEP: (101, 115),
    },
}


def available() -> bool:
    """Whether this platform lets a parent look at its children's threads."""
    return os.path.exists(f"/proc/{os.getpid()}/task")


class ThreadLook:
    """Looks at the threads of ``root`` (a pid) and its descendants, every ``interval_s``,
    from ``start()`` until ``stop()``, which returns what was seen: ``{(pid, tid): [(t_ns,
    state, core), ...]}``, each lane's states from the moment they changed (``t_ns`` on the
    system-wide monotonic clock)."""

    def __init__(self, root: int, interval_s: float = 0.001):
        self.root = root
        self.interval_s = interval_s
        self._files: dict = {}  # (pid, tid) -> (stat fd, schedstat fd, syscall fd or -1)
        self._seen: dict = {}  # (pid, tid) -> [(t_ns, state, core, run delay), ...]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="conlab-look", daemon=True)
        table = _SYSCALLS.get(os.uname().machine, {})
        self._kinds = {number: kind for kind, numbers in table.items() for number in numbers}

    def start(self) -> ThreadLook:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        for files in self._files.values():
            for fd in files:
                if fd >= 0:
                    os.close(fd)
        self._files.clear()
        return self._lanes()

    def _loop(self) -> None:
        next_scan, began = 0, time.monotonic_ns()
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now >= next_scan:
                self._scan()
                # new threads and processes: at every look while the repeat starts its
                # workers, then every 10 ms
                next_scan = now + (0 if now - began < 50_000_000 else 10_000_000)
            self._look(now)
            self._stop.wait(self.interval_s)

    def _scan(self) -> None:
        """Open the files of every thread of ``root`` and its descendants not yet seen."""
        pids, seen = [self.root], set()
        while pids:
            pid = pids.pop()
            if pid in seen:
                continue
            seen.add(pid)
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                key = (pid, int(tid))
                base = f"/proc/{pid}/task/{tid}"
                if key not in self._files:
                    self._files[key] = _open_all(base)
                try:
                    with open(f"{base}/children") as children:
                        pids += [int(child) for child in children.read().split()]
                except (OSError, ValueError):
                    pass

    def _look(self, now: int) -> None:
        gone = []
        for key, (stat, schedstat, syscall) in self._files.items():
            try:
                line = os.pread(stat, 512, 0)
                fields = line[line.rindex(b")") + 2 :].split()
                state, core = fields[0], int(fields[36])
                ran, waited = map(int, os.pread(schedstat, 96, 0).split()[:2])
            except (OSError, ValueError, IndexError):
                gone.append(key)
                continue
            kind = ON_CORE if state == b"R" else self._blocked_on(syscall)
            self._seen.setdefault(key, []).append((now, kind, core, waited, ran))
        for key in gone:
            for fd in self._files.pop(key):
                if fd >= 0:
                    os.close(fd)
            self._seen.setdefault(key, []).append((now, "X", -1, None, None))  # ended

    def _lanes(self) -> dict:
        """Each thread's states from what was seen, with what the kernel's counters add to the
        looks: a runnable thread (R) is on a core unless it was waiting for one (the kernel
        adds a wait to the run delay when the wait ends, so a delay that grew by D by a look at
        t marks [t - D, t] as waiting); a thread on a core at one look and blocked at the next
        ran only as long as its time on a core grew (exact once it stopped running: a thread
        that woke to find the GIL taken ran microseconds, not the millisecond between looks);
        and one core runs one thread at a time (``_queued``)."""
        lanes, waits = {}, {}
        for key, seen in self._seen.items():
            waits[key], before = [], None
            for t, _, _, waited, _ in seen:
                if waited is not None and before is not None and waited > before:
                    waits[key].append((t - (waited - before), t))
                if waited is not None:
                    before = waited
            steps = []
            for n, (t, kind, core, _, ran) in enumerate(seen):
                steps.append([t, kind, core if kind == ON_CORE else -1])
                later = seen[n + 1] if n + 1 < len(seen) else None
                if kind == ON_CORE and later is not None and later[1] not in (ON_CORE, "X"):
                    ran_for = later[4] - ran
                    if 0 <= ran_for < later[0] - t:
                        steps.append([t + ran_for, later[1], -1])
            lanes[key] = steps
        lanes = {key: _merged(_waiting(steps, waits[key])) for key, steps in lanes.items()}
        queued = _queued(lanes)
        return {key: _merged(_waiting(steps, queued.get(key, []))) for key, steps in lanes.items()}

    def _blocked_on(self, syscall: int) -> str:
        if syscall < 0:
            return BLOCKED
        try:
            number = int(os.pread(syscall, 64, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return BLOCKED  # running again already, or not ours to read
        return self._kinds.get(number, BLOCKED)


def _queued(lanes: dict) -> dict:
    """For each lane, when it was shown on a core that another lane already held: two threads
    runnable on one core's queue at one look, one of which waited for the other (whose wait
    the kernel had not yet reported when the look ended)."""
    held: dict = {}
    for key, steps in lanes.items():
        for at, (t, kind, core) in enumerate(steps):
            end = steps[at + 1][0] if at + 1 < len(steps) else t
            if kind == ON_CORE and end > t:
                held.setdefault(core, []).append((t, end, key))
    queued: dict = {}
    for spans in held.values():
        until = None
        for start, end, key in sorted(spans):
            if until is not None and start < until:
                queued.setdefault(key, []).append((start, min(end, until)))
            until = end if until is None else max(until, end)
    return queued


def _waiting(steps: list, windows: list) -> list:
    """``steps`` (each holding from its time to the next step's) with the time in ``windows``
    (``[start, end)``, when the kernel says the thread waited for a core) that they show on a
    core shown waiting: a wait of D before a look covers D, not the look's whole interval."""
    if not windows or not steps:
        return [list(step) for step in steps]
    merged: list = []
    for start, end in sorted(windows):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    out = []
    ends = [step[0] for step in steps[1:]] + [steps[-1][0]]
    for (t, kind, core), end in zip(steps, ends):
        if kind != ON_CORE or end <= t:
            out.append([t, kind, core])
            continue
        cursor = t
        for start, stop in merged:
            if stop <= cursor or start >= end:
                continue
            if start > cursor:
                out.append([cursor, ON_CORE, core])
            out.append([max(start, cursor), WAITING, -1])
            cursor = min(stop, end)
        if cursor < end:
            out.append([cursor, ON_CORE, core])
    return out


def _merged(steps: list) -> list:
    """``steps`` as ``(t, state, core)`` without repeats of the state before."""
    lane = []
    for t, kind, core in steps:
        if not lane or lane[-1][1:] != (kind, core):
            lane.append((t, kind, core))
    return lane


def _open_all(base: str) -> tuple:
    files = []
    for name in ("stat", "schedstat", "syscall"):
        try:
            files.append(os.open(f"{base}/{name}", os.O_RDONLY))
        except OSError:
            files.append(-1)
    if files[0] < 0 or files[1] < 0:
        for fd in files:
            if fd >= 0:
                os.close(fd)
        return (-1, -1, -1)
    return tuple(files)


def encode(lanes: dict, start_ns: int, end_ns: int, root: int) -> str:
    """``lanes`` (``ThreadLook.stop()``) between ``start_ns`` and ``end_ns`` as text: the
    span in us and ``|``, then one lane per thread, ``pid tid`` then each state as
    ``offset_us state core``, lanes separated by ``;``, the threads of ``root`` (the runner)
    first; a lane never seen in that window is left out."""
    out = []
    for (pid, tid), states in sorted(lanes.items(), key=lambda i: (i[0][0] != root, i[0])):
        kept, current = [], None
        for t, kind, core in states:
            if t <= start_ns:
                current = (start_ns, kind, core)
                continue
            if t >= end_ns:
                break
            if current is not None:
                kept.append(current)
                current = None
            kept.append((t, kind, core))
        if current is not None:
            kept.append(current)
        kept = [k for k in kept if k[1] != "X" or k is not kept[0]]
        if kept:
            steps = " ".join(f"{(t - start_ns) // 1000} {k} {c}" for t, k, c in kept)
            out.append(f"{pid} {tid} {steps}")
    return f"{(end_ns - start_ns) // 1000}|" + ";".join(out)
