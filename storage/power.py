"""What a comparison on this machine can see: the smallest change that two runs of a given number
of runner processes tell apart, from how far this machine's stored runs spread between their
processes (each process has its own layout and meets its own minutes of the machine's drift).

Said before a sweep (``conlab run``): "with 6 processes a run, a change of about 6% is seen 4
times in 5; 12 processes: 4%". The figure follows the comparison's own statistics (Yuen's
interval on the log per-process medians, storage.stats): its standard error for two runs of
``n`` processes with the machine's spread, and the t quantile of the interval plus the normal
quantile of the power asked.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Optional

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from storage.stats import TRIM, t_quantile

POWER_Z = 0.8416  # the normal quantile of 0.80: a change this large is seen 4 times in 5
RECENT_RUNS = 50  # the newest finished runs of at least MIN_PROCESSES processes that are read
MIN_PROCESSES = 3


def machine_spread(engine: Engine, fingerprint: Optional[str]) -> tuple[float, int]:
    """The median, over this machine's newest finished runs, of the standard deviation of their
    log per-process medians; and how many runs it comes from (0: nothing to go on)."""
    if not fingerprint:
        return math.nan, 0
    with engine.connect() as connection:
        ids = [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT id FROM run WHERE status = 'ok' AND machine_fingerprint = :m "
                    "AND processes >= :p ORDER BY created_at DESC LIMIT :n"
                ),
                {"m": fingerprint, "p": MIN_PROCESSES, "n": RECENT_RUNS},
            )
        ]
        if not ids:
            return math.nan, 0
        rows = connection.execute(
            text(
                "SELECT run_id, process_index, wall_ns FROM repeat WHERE run_id IN :ids "
                "AND warmup IS NOT TRUE"
            ).bindparams(bindparam("ids", expanding=True)),
            {"ids": ids},
        ).all()
    walls: dict = defaultdict(lambda: defaultdict(list))
    for run_id, process, wall in rows:
        if isinstance(wall, (int, float)) and wall > 0:
            walls[run_id][process].append(wall)
    spreads = []
    for processes in walls.values():
        logs = [math.log(statistics.median(w)) for w in processes.values()]
        if len(logs) >= MIN_PROCESSES:
            spreads.append(statistics.stdev(logs))
    if not spreads:
        return math.nan, 0
    return statistics.median(spreads), len(spreads)


def detectable(spread: float, processes: int) -> float:
    """The change (0.06 = 6%) that two runs of ``processes`` processes each, whose log
    per-process medians spread ``spread``, tell apart 4 times in 5 at 95%."""
    kept = processes - 2 * int(TRIM * processes)
    if kept < 2 or not spread > 0:
        return math.inf
    se = spread * math.sqrt(2 * (processes - 1) / (kept * (kept - 1)))
    return math.exp((t_quantile(2 * (kept - 1)) + POWER_Z) * se) - 1


def note(engine: Engine, fingerprint: Optional[str], processes: int) -> Optional[str]:
    """What a sweep of ``processes`` processes a run can tell apart here, and what more would
    buy; None when this machine has no stored runs to judge by."""
    spread, runs = machine_spread(engine, fingerprint)
    if not runs:
        return None
    more = [n for n in (2 * processes, 4 * processes) if n <= 1000]
    buys = "; ".join(f"{n} processes: {detectable(spread, n):.1%}" for n in more)
    return (
        f"this machine's runs spread {spread:.1%} between their processes (the median over "
        f"its {runs} newest run(s)): with {processes} processes a run, a comparison sees a "
        f"change of about {detectable(spread, processes):.1%} 4 times in 5 (--processes N; "
        f"{buys})"
    )
