"""What each thread was doing in a looked-at repeat (storage.states' facts), drawn as one line
of characters per thread, readable without colour: the digit of the core a thread ran on, ``-``
waiting for a core, ``=`` blocked on a lock (the GIL's included), ``~`` in I/O, ``.`` asleep,
``:`` blocked on something else, blank before a thread began or after it ended; and in words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from storage.states import STATES, Lane, Seen

LEGEND = (
    "0-9 on that core   - waiting for a core   = blocked on a lock (the GIL too)   "
    "~ in I/O   . asleep   : blocked"
)
# The legend where the line is too narrow for the one above.
LEGEND_SHORT = "0-9 core  - wait core  = lock/GIL  ~ I/O  . sleep  : blocked"


def draw(lanes: Sequence[Lane], span_us: int, width: int, label=None) -> list[str]:
    """One line per thread, ``width`` characters of time each: in each cell the state that took
    most of it. ``label(lane)`` names a lane (default ``pid/tid``)."""
    width = max(width, 1)
    lines = []
    for lane in lanes:
        cells: list[dict] = [{} for _ in range(width)]
        for start, stop, letter, core in lane.spans(span_us):
            glyph = str(core % 10) if letter == "C" and core >= 0 else STATES[letter][1] or "#"
            first = min(int(start / span_us * width), width - 1)
            last = min(int(max(stop - 1, start) / span_us * width), width - 1)
            for cell in range(first, last + 1):
                cell_start = cell * span_us / width
                cell_stop = (cell + 1) * span_us / width
                overlap = min(stop, cell_stop) - max(start, cell_start)
                cells[cell][glyph] = cells[cell].get(glyph, 0) + max(overlap, 0)
        drawn = "".join(max(c, key=c.get) if c else " " for c in cells)
        name = label(lane) if label else f"{lane.pid}/{lane.tid}"
        lines.append(f"{name} {drawn}")
    return lines


def labels(lanes: Sequence[Lane]) -> dict:
    """Each lane's name: the runner's threads (the first pid) ``runner`` and ``runner tN``, each
    worker process's ``worker N`` and ``worker N tM``, numbered as first seen."""
    names, processes = {}, {}
    runner = lanes[0].pid if lanes else None
    threads: dict = {}
    for lane in lanes:
        if lane.pid != runner and lane.pid not in processes:
            processes[lane.pid] = len(processes) + 1
        base = "runner" if lane.pid == runner else f"worker {processes[lane.pid]}"
        if lane.tid == lane.pid:
            names[(lane.pid, lane.tid)] = base
        else:
            threads[lane.pid] = threads.get(lane.pid, 0) + 1
            names[(lane.pid, lane.tid)] = f"{base} t{threads[lane.pid]}"
    return names


def summary(found: Seen) -> str:
    """What ``found`` says, in words whose figures are its own."""
    shares = ", ".join(
        f"{STATES[letter][0]} {share:.0%}"
        for letter, share in sorted(found.shares.items(), key=lambda i: -i[1])
        if share >= 0.005
    )
    cores = ", ".join(map(str, found.cores))
    at_once = (
        "no thread seen on a core (each ran for less than a look's millisecond at a time)"
        if found.at_once == 0
        else "one thread on a core at a time"
        if found.at_once == 1
        else f"up to {found.at_once} threads on cores at once ({found.two_or_more_share:.0%} "
        "of the time two or more)"
    )
    return (
        f"{found.workers} worker thread(s): {shares}; {at_once}"
        + (f", on core(s) {cores}" if cores else "")
        + f"; one worker handed over to another {found.handovers_per_s:.0f} times a second"
    )


def text_view(lanes: Sequence[Lane], span_us: int, width: int) -> list[str]:
    """The drawing with its lane names, time axis and legend, ``width`` columns wide."""
    names = labels(lanes)
    pad = max((len(n) for n in names.values()), default=6)
    cells = max(width - pad - 1, 10)
    lines = draw(lanes, span_us, cells, label=lambda lane: f"{names[(lane.pid, lane.tid)]:>{pad}}")
    end = f"{span_us / 1000:.1f} ms"
    lines.append(f"{'':>{pad}} 0 ms{end:>{cells - 4}}")
    lines.append(LEGEND if len(LEGEND) <= width else LEGEND_SHORT)
    return lines


def decode(text: Optional[str]) -> tuple[list[Lane], int]:
    """The lanes of a looked-at repeat's stored text and its span in microseconds
    (storage.states.decode): what the drawing above takes."""
    from storage import states

    return states.decode(text)
