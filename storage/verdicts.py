"""What a summary means, in words: for each piece of work the fastest configuration and the
ones tied with it (or how many more runner processes would tell them apart), the reasons
(storage.explain's rules over each row's facts) and memory beside speed; and the speedups of
one sweep's runs as the Lab and `conlab run` show them."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

from experiments.executors import EXECUTORS
from experiments.options import BY_NAME
from storage import explain, stats
from storage.loading import cell_text, load_processes, select
from storage.queries import CONFIG_COLUMNS
from storage.summaries import BASELINE_KEY, MIN_EFFECT, across_sweeps, summarize
from storage.text import number_text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def row_interval(row) -> stats.Interval:
    """A summary row's interval, to build ratios from."""
    return stats.Interval(
        row.median_s,
        row.ci_low_s,
        row.ci_high_s,
        int(row.processes),
        row.log_se,
        row.se_df,
        row.processes > 1,
        row.spread,
        row.center_s,
        row.within,
        row.log_sd,
    )


def fastest(rows: pd.DataFrame, min_effect: float = MIN_EFFECT) -> tuple[pd.Series, list]:
    """The fastest configuration among ``rows`` (the same work), and the ones tied with it:
    ``[(row, ratio)]`` for every configuration whose difference from it is inside the intervals
    or under ``min_effect``."""
    ordered = rows.sort_values("median_s")
    best = ordered.iloc[0]
    ties = []
    for _, other in ordered.iloc[1:].iterrows():
        found = stats.ratio(
            row_interval(best),
            row_interval(other),
            min_effect,
            across_sweeps=across_sweeps(best.sweeps, other.sweeps),
        )
        if found.verdict == stats.NO_DIFFERENCE:
            ties.append((other, found))
    return best, ties


def _name(row, apart: Sequence[str] = ()) -> str:
    """``executor xN``, with the options in ``apart`` (``told_apart_by``) by their labels:
    ``joblib x2 with joblib on threading``."""
    from experiments.spec import run_label

    name = run_label(row.executor, row.workers)
    given = [
        f"{BY_NAME[c].label} {cell_text(getattr(row, c))}"
        for c in apart
        if getattr(row, c) is not None and getattr(row, c) == getattr(row, c)
    ]
    return f"{name} with {' and '.join(given)}" if given else name


def told_apart_by(rows: pd.DataFrame, shown: Sequence[str]) -> list[str]:
    """The options of a configuration (not in ``shown``) that some of ``rows`` alike in every
    ``shown`` column differ in: what tells apart two rows that ``shown`` would name alike."""
    found: list[str] = []
    if rows.empty:
        return found
    for column in (c for c in CONFIG_COLUMNS if c not in shown and c in BY_NAME):
        values = rows[[*shown, column]].map(str)
        if values.drop_duplicates().duplicated(subset=list(shown)).any():
            found.append(column)
    return found


# What one more runner process of a configuration costs beyond its repeats (start-up, import,
# environment, storing; as service.advise measured here): for the time that would settle a tie.
PROCESS_OVERHEAD_S = 0.25


@dataclass(frozen=True)
class Undecided:
    """Leaders the intervals cannot tell apart: the rows (fastest first), the runner processes
    each would need in all for every tie to settle (the difference clear of the interval, or
    the whole interval inside ±min_effect), how many more than the fewest now, and the seconds
    those take with the leaders taking turns."""

    leaders: list
    processes: int
    more: int
    seconds: float


def processes_to_settle(found: stats.Ratio, processes: int, min_effect: float) -> int:
    """The runner processes a side would need, from the interval's observed spread, for the
    ratio's interval to settle: shrunk below its difference (a winner) or, for a difference
    under half of ``min_effect``, inside ±``min_effect`` (a tie that stays one). The interval
    narrows as the square root of the processes; the t quantile's shrinking is left out, so
    this is at least enough."""
    half = math.log(found.high / found.low) / 2
    difference = abs(math.log(found.ratio))
    target = max(difference, math.log1p(min_effect) - difference)
    if half <= target:
        return processes
    return math.ceil(processes * (half / target) ** 2)


def undecided(best, ties: list, min_effect: float = MIN_EFFECT) -> Optional[Undecided]:
    """Whether ``best`` and its ``ties`` (as ``fastest`` found them) are undecided at this noise
    (None: no tie, a tie without intervals, or one that more processes would not change)."""
    open_ties = [
        (row, f) for row, f in ties if not (1 - min_effect <= f.low and f.high <= 1 + min_effect)
    ]
    if not open_ties or not all(math.isfinite(f.low) for _, f in ties):
        return None
    now = min(int(best.processes), *(int(row.processes) for row, _ in open_ties))
    needed = max(
        processes_to_settle(f, min(int(best.processes), int(row.processes)), min_effect)
        for row, f in open_ties
    )
    leaders = [best] + [row for row, _ in ties]
    per_round = sum(
        (row.repeats / max(row.processes, 1) + 1) * row.median_s + PROCESS_OVERHEAD_S
        for row in leaders
    )
    more = max(needed - now, 1)
    return Undecided(leaders, needed, more, more * per_round)


def duration(seconds: float) -> str:
    """A rough length of time, in words."""
    if seconds < 90:
        return f"about {max(seconds, 1):.0f} s"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def leader_text(row, name: Optional[str] = None) -> str:
    """A leader with its speed-up and interval (its time where there is no speed-up)."""
    name = name or _name(row)
    if row.executor == "sequential" and row.speedup == row.speedup:
        return f"{name} 1.00x"
    if row.speedup == row.speedup and math.isfinite(row.speedup_low):
        return f"{name} {row.speedup:.2f}x (95% CI {row.speedup_low:.2f}–{row.speedup_high:.2f})"
    return f"{name} {row.median_s * 1000:.1f} ms"


def undecided_text(found: Undecided, names: Optional[list] = None) -> str:
    """The headline of an undecided answer: the leaders and what would tell them apart."""
    names = names or [_name(row) for row in found.leaders]
    leaders = [leader_text(row, name) for row, name in zip(found.leaders, names)]
    listed = ", ".join(leaders[:-1]) + f" and {leaders[-1]}"
    return (
        f"undecided at this noise: {listed} are tied; {found.processes} runner processes "
        f"each ({found.more} more, {duration(found.seconds)} taking turns) would tell them apart"
    )


def facts_of(row) -> explain.Facts:
    """A summary row as the rules of ``explain`` read it."""
    return explain.Facts(
        executor=row.executor,
        workers=int(row.workers),
        speedup=row.speedup,
        cpu_per_wall=row.cpu_per_wall,
        cores=row.cores,
        cores_used=row.cores_used,
        task_s=row.task_s,
        gil=row.gil_on if isinstance(row.gil_on, bool) else None,
        free_threaded=bool(row.gil_disabled == row.gil_disabled and row.gil_disabled),
        gil_cause=row.gil_cause if isinstance(row.gil_cause, str) else None,
        others_cores=row.others_cores,
        load_per_core=row.load_per_core,
        switches=row.voluntary_switches + row.involuntary_switches,
        involuntary=row.involuntary_switches,
        startup_s=row.startup_s,
        median_s=row.median_s,
        efficiency=row.efficiency,
        karp_flatt=row.karp_flatt,
        shares=observed_shares(row),
    )


def observed_shares(row) -> Optional[explain.Shares]:
    """What a summary row's workers were seen doing: on a core and waiting for one in the
    counted repeats (schedstat); the rest of their time they were blocked, split as the run's
    looked-at repeat saw it (a lock, I/O, sleep); None where neither was observed."""
    on, wait = getattr(row, "on_core_share", None), getattr(row, "core_wait_share", None)
    looked = [getattr(row, name, None) for name in ("look_lock", "look_io", "look_sleep")]
    if not explain.known(on, wait):
        return None
    blocked = max(1 - on - wait, 0.0)
    split = [None] * 3
    if all(explain.known(v) for v in looked):
        # the counted repeats' blocked time, apportioned as the looked-at repeat's divided
        split = [blocked * v for v in looked]
    handovers = getattr(row, "handovers_per_s", None)
    return explain.Shares(
        on_core=on,
        waited_for_core=wait,
        blocked_on_lock=split[0],
        io=split[1],
        sleep=split[2],
        handovers_per_s=handovers if explain.known(handovers) else None,
    )


def verdicts(summary: pd.DataFrame, min_effect: float = MIN_EFFECT) -> list[str]:
    """A few sentences per piece of work (machine, Python, workload, size, tasks), each derived
    from the numbers in ``summary``. A winner is named only when it is clear of the rest."""
    lines = []
    if summary.empty:
        return lines
    several_sizes = summary.groupby(["workload"])["size"].nunique().max() > 1
    for key, rows in summary.groupby(BASELINE_KEY, dropna=False):
        machine, python, workload, size, tasks = key
        # rows named alike by executor and workers are named with what tells them apart
        name = functools.partial(_name, apart=told_apart_by(rows, ["executor", "workers"]))
        where = (
            f"{workload}{f' at size {number_text(size)}' if several_sizes else ''} on {machine}, "
            f"Python {python}"
        )
        if rows["speedup"].isna().all():
            lines.append(f"{where}: no sequential run to compare with; add `-e sequential`.")
            continue
        best, ties = fastest(rows, min_effect)
        speedup = ""
        if best.executor != "sequential" and best.speedup == best.speedup:
            speedup = (
                f", {best.speedup:.2f}x the sequential run (95% CI "
                f"{best.speedup_low:.2f}–{best.speedup_high:.2f})"
            )
        if not ties:
            lines.append(
                f"{where}: fastest is {name(best)} ({best.median_s * 1000:.1f} ms"
                f"{speedup}), clear of the rest beyond their intervals."
            )
        else:
            names = ", ".join(name(r) for r, _ in ties)
            differences = ", ".join(f"{f.ratio - 1:+.1%}" for _, f in ties)
            widest = max(max(abs(1 - f.low), abs(f.high - 1)) for _, f in ties)
        if ties and widest != widest:  # a figure without an interval: no verdict, not a tie
            lines.append(
                f"{where}: {name(best)} and {names} cannot be told apart: a run of one repeat "
                "in one process has no interval; run it with --repeats 5 (or more)."
            )
        elif ties and undecided(best, ties, min_effect) is not None:
            found = undecided(best, ties, min_effect)
            said = undecided_text(found, [name(r) for r in found.leaders])
            lines.append(f"{where}: {said} (--processes {found.processes}).")
        elif ties:
            lines.append(
                f"{where}: {name(best)} ({best.median_s * 1000:.1f} ms{speedup}) and {names} "
                f"are tied: their differences ({differences}) are inside the intervals (up to "
                f"±{widest:.0%}) or under {min_effect:.0%}."
            )
        threads_first = rows.sort_values("workers", kind="stable")
        threads_first = threads_first.iloc[
            np.argsort(threads_first["executor"] != "threads", kind="stable")
        ]
        for row in threads_first.itertuples():
            lines += [f"  {sentence}" for _, sentence in explain.explain(facts_of(row))]
        lines += _memory_verdict(rows)
        lines += _interpreters_memory_verdict(rows)
    return lines


def verdicts_by_work(summary: pd.DataFrame, min_effect: float = MIN_EFFECT) -> list[list[str]]:
    """``verdicts`` of each piece of work (BASELINE_KEY) on its own, in the order of
    ``summary.groupby(BASELINE_KEY, dropna=False)``: what a page with a section per work shows."""
    return [verdicts(rows, min_effect) for _, rows in summary.groupby(BASELINE_KEY, dropna=False)]


def workers_are(executors: pd.Series) -> pd.Series:
    """Where each executor's tasks run, as it says of itself (``Executor.workers_are``:
    "processes" for worker processes of its own); None for one not registered here."""
    return executors.map(lambda name: getattr(EXECUTORS.get(name), "workers_are", None))


def _memory_verdict(rows: pd.DataFrame) -> list[str]:
    """The fastest process executor's speed against the memory it held, next to the threads
    of as many workers (else the lightest configuration of the same work)."""
    measured = rows[rows["peak_rss_bytes"] > 0]
    kinds = workers_are(measured["executor"])
    procs = measured[kinds == "processes"]
    if procs.empty or not (procs["speedup"] > 0).any():
        return []
    p = procs[procs["speedup"] > 0].sort_values("median_s").iloc[0]
    others = measured[kinds != "processes"]
    same = measured[(kinds == "threads") & (measured["workers"] == p.workers)]
    if same.empty:
        same = others.sort_values("peak_rss_bytes")
    if same.empty:
        return []
    other = same.iloc[0]
    pace = (
        f"{p.speedup:.1f}x faster than" if p.speedup >= 1 else f"{1 / p.speedup:.1f}x slower than"
    )
    return [
        f"  {_name(p)}: {pace} sequential, {p.peak_rss_bytes / other.peak_rss_bytes:.1f}x the "
        f"memory of {_name(other)} ({p.peak_rss_bytes / 2**20:.0f} MiB against "
        f"{other.peak_rss_bytes / 2**20:.0f} MiB, peaks summed over processes)."
    ]


def _interpreters_memory_verdict(rows: pd.DataFrame) -> list[str]:
    """What a worker interpreter held beside what a worker process held: each configuration's
    peak above the sequential run's (the runner alone), per worker. Interpreters share the
    runner's process, so their peak is the runner's; a pool's sums its processes'."""
    measured = rows[rows["peak_rss_bytes"] > 0]
    base = measured[measured["executor"] == "sequential"]
    kinds = workers_are(measured["executor"])
    interpreters = measured[kinds == "interpreters"]
    if base.empty or interpreters.empty:
        return []
    runner = base["peak_rss_bytes"].min()
    i = interpreters.sort_values("median_s").iloc[0]
    procs = measured[(kinds == "processes") & (measured["workers"] == i.workers)]
    procs = procs.sort_values("median_s")

    def per_worker(row) -> str:
        mib = max(0.0, (row.peak_rss_bytes - runner) / row.workers / 2**20)
        return f"{mib:.1f} MiB" if mib < 10 else f"{mib:.0f} MiB"

    against = ""
    if not procs.empty:
        p = procs.iloc[0]
        against = f", against {per_worker(p)} per worker process for {_name(p)}"
    return [
        f"  {_name(i)}: {per_worker(i)} per worker interpreter, all in the runner's process "
        f"({i.peak_rss_bytes / 2**20:.0f} MiB at peak){against} (peaks above the sequential "
        f"run's {runner / 2**20:.0f} MiB)."
    ]


def run_speedups(runs: Sequence[dict]) -> dict[str, str]:
    """Each finished run's speedup against the sequential run of the same work among ``runs``
    (run objects of one sweep), with its 95% interval, as text by run id. The baseline is
    keyed as in every report (BASELINE_KEY); a run object without a machine is of this one."""
    key = BASELINE_KEY
    baselines = {
        tuple(r.get(k) for k in key): r
        for r in runs
        if r["executor"] == "sequential" and r["status"] == "ok" and r["median_s"]
    }
    shown = {}
    for r in runs:
        base = baselines.get(tuple(r.get(k) for k in key))
        if base is None or r["status"] != "ok" or not r["median_s"]:
            continue
        if base is r:
            shown[r["run_id"]] = "baseline"
            continue
        found = stats.ratio(_run_interval(r), _run_interval(base))
        bounds = f" ({found.low:.2f}–{found.high:.2f})" if math.isfinite(found.low) else ""
        shown[r["run_id"]] = f"{found.ratio:.2f}×{bounds}"
    return shown


def _run_interval(run: dict) -> stats.Interval:
    return stats.interval(run.get("wall_s_by_process") or [run["wall_s"]])


def sweep_verdicts(engine: Engine, sweep_id: str) -> tuple[pd.DataFrame, list[str]]:
    """The summary and verdicts of one sweep's stored runs (what `conlab run` and the Lab show
    when a sweep ends)."""
    processes = load_processes([("db", engine)], f"sweep:{sweep_id}")
    if processes.empty:
        return pd.DataFrame(), []
    summary = summarize(select(processes, f"sweep:{sweep_id}"))
    return summary, verdicts(summary)
