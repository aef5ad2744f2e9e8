"""What each thread was doing in a looked-at repeat (experiments.look): read from its stored
text and summed into facts (each lane's shares, how many threads were on a core at once, how
often the core changed hands), which the recorder stores with the run. service.present.states
draws them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

# A state's letter (experiments.look) -> its name in words and its character when drawn.
STATES = {
    "C": ("on a core", None),  # drawn as the core's digit
    "W": ("waiting for a core", "-"),
    "L": ("blocked on a lock", "="),
    "I": ("in I/O", "~"),
    "S": ("asleep", "."),
    "B": ("blocked", ":"),
}
_MOST_LANES = 4096  # a crafted text names no more threads than this
_MOST_STEPS = 1_000_000


@dataclass(frozen=True)
class Lane:
    """One thread: ``pid``, ``tid`` and its states, each ``(start_us, letter, core)`` from the
    repeat's start, until ``end_us`` (the next state's start, or the repeat's end)."""

    pid: int
    tid: int
    steps: tuple

    def spans(self, end_us: int):
        """Each state as ``(start_us, end_us, letter, core)``; an ended thread's last step has
        no span."""
        for at, (start, letter, core) in enumerate(self.steps):
            stop = self.steps[at + 1][0] if at + 1 < len(self.steps) else end_us
            if letter != "X" and stop > start:
                yield start, stop, letter, core


def decode(text: Optional[str]) -> tuple[list[Lane], int]:
    """The lanes of stored ``thread_states`` and the span they cover (us); what does not read
    as that text is left out (a received file's text is anything): no lanes, span 0."""
    if not isinstance(text, str) or "|" not in text:
        return [], 0
    span, _, text = text.partition("|")
    try:
        span_us = int(span)
    except ValueError:
        return [], 0
    if span_us <= 0:
        return [], 0
    lanes, steps_read = [], 0
    for part in text.split(";")[:_MOST_LANES]:
        fields = part.split()
        if len(fields) < 5 or (len(fields) - 2) % 3:
            continue
        try:
            pid, tid = int(fields[0]), int(fields[1])
            steps = tuple(
                (int(fields[i]), fields[i + 1], int(fields[i + 2]))
                for i in range(2, len(fields), 3)
            )
        except ValueError:
            continue
        steps_read += len(steps)
        if steps_read > _MOST_STEPS:
            break
        if all(s[1] in STATES or s[1] == "X" for s in steps) and all(
            a[0] <= b[0] for a, b in zip(steps, steps[1:])
        ):
            lanes.append(Lane(pid, tid, steps))
    return lanes, span_us


@dataclass(frozen=True)
class Seen:
    """What a look saw of the workers (``worker_lanes``), summed: each state's share of their
    time, how much of it they were blocked on a lock while another ran, the most of them on a
    core at once and the share of time with two or more, the cores used, and how often a core
    passed from one of them to another with none of the others on one (per second): a GIL's
    hand-over."""

    shares: dict  # letter -> share of the workers' time
    lock_while_another_ran: float  # share of their time blocked on a lock while another ran
    at_once: int
    two_or_more_share: float
    cores: tuple
    handovers_per_s: float
    workers: int
    span_us: int


def worker_lanes(lanes: Sequence[Lane]) -> list[Lane]:
    """The lanes that ran the tasks: the worker processes' threads where there are worker
    processes, else the runner's threads but its main one (which waits for their results),
    else the runner's main thread (a plain loop, or asyncio's)."""
    lanes = [lane for lane in lanes if not _left_over(lane)]
    if not lanes:
        return []
    runner = lanes[0].pid
    others = [lane for lane in lanes if lane.pid != runner]
    if others:
        return others
    threads = [lane for lane in lanes if lane.tid != runner]
    return threads or list(lanes)


def _left_over(lane: Lane) -> bool:
    """A thread of the repeat before, still ending when the look began: it ended within its
    first 2 ms and was seen at the look's start."""
    return lane.steps[0][0] == 0 and lane.steps[-1][1] == "X" and lane.steps[-1][0] <= 2000


def seen(lanes: Sequence[Lane], span_us: int) -> Optional[Seen]:
    """``Seen`` of ``lanes`` over a repeat of ``span_us``; None when there was no worker."""
    workers = worker_lanes(lanes)
    if not workers or span_us <= 0:
        return None
    totals: dict = {}
    events = []  # (time, +1/-1, lane) for the threads on a core
    cores = set()
    for n, lane in enumerate(workers):
        for start, stop, letter, core in lane.spans(span_us):
            totals[letter] = totals.get(letter, 0) + stop - start
            if letter == "C":
                events += [(start, 1, n), (stop, -1, n)]
                cores.add(core)
    whole = sum(totals.values()) or 1
    contended = _lock_while_another_ran(workers, span_us)
    events.sort()
    # ends before starts at one time: a thread leaving as another arrives is a hand-over
    events.sort(key=lambda e: (e[0], e[1]))
    running, most, two_or_more, last_t, handovers, last_off = 0, 0, 0, 0, 0, None
    for t, change, n in events:
        if running >= 2:
            two_or_more += t - last_t
        last_t = t
        if change > 0 and running == 0 and last_off is not None and last_off != n:
            handovers += 1  # the cores were the workers' for one at a time, and it changed
        running += change
        if change < 0 and running == 0:
            last_off = n
        most = max(most, running)
    return Seen(
        shares={letter: total / whole for letter, total in totals.items()},
        lock_while_another_ran=contended / whole,
        at_once=most,
        two_or_more_share=two_or_more / span_us,
        cores=tuple(sorted(cores)),
        handovers_per_s=handovers / (span_us / 1e6),
        workers=len(workers),
        span_us=span_us,
    )


def _lock_while_another_ran(workers: Sequence[Lane], span_us: int) -> int:
    """The workers' time (us) blocked on a lock while another worker was on a core: a lock
    they contended for (the GIL's), not one they waited on for work or results while no
    worker ran."""
    import bisect

    running = []  # each worker's spans on a core, with its number
    for n, lane in enumerate(workers):
        running += [
            (start, stop, n) for start, stop, letter, _ in lane.spans(span_us) if letter == "C"
        ]
    running.sort()
    starts = [r[0] for r in running]
    total = 0
    for n, lane in enumerate(workers):
        for start, stop, letter, _ in lane.spans(span_us):
            if letter != "L":
                continue
            covered, reach = 0, start
            # spans on a core that began before this one ended, in start order
            for other_start, other_stop, m in running[: bisect.bisect_left(starts, stop)]:
                if m == n or other_stop <= reach:
                    continue
                low, high = max(other_start, reach), min(other_stop, stop)
                if high > low:
                    covered += high - low
                    reach = high
            total += covered
    return total
