"""What the stored runs' figures are, per configuration: the summary of ``loading``'s process
rows (medians and their 95% intervals over runner processes, speedups against the sequential
run of the same work, costs beyond time) and the warnings on each row. What they mean in
words is in ``verdicts``; B against A in ``comparisons``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from storage import figures, stats
from storage.loading import cell_text
from storage.queries import CONFIG_COLUMNS

# A configuration: what must be equal for two runs to be repeats of the same measurement.
CONFIG = ["machine", "python", *CONFIG_COLUMNS]
# What a speedup is measured against: the sequential run of the same work in the same place.
BASELINE_KEY = ["machine", "python", "workload", "size", "tasks"]
# The smallest change a verdict or a comparison calls a difference, unless the user says.
MIN_EFFECT = 0.05
CV_WARNING = 0.10
HIGH_LOAD_PER_CORE = 0.5


def karp_flatt(speedup: float, workers: float) -> float:
    """The experimentally determined serial fraction e = (1/S - 1/p) / (1 - 1/p), for p > 1."""
    if workers <= 1 or not speedup or not math.isfinite(speedup):
        return math.nan
    return (1 / speedup - 1 / workers) / (1 - 1 / workers)


def process_groups(counted: pd.DataFrame) -> list[list[float]]:
    """The counted wall times (s) of each runner process in ``counted``: what intervals use."""
    return _by_process(counted, np.zeros(len(counted), dtype=np.int64), 1)[0]


def _by_process(counted: pd.DataFrame, owner: np.ndarray, owners: int) -> list[list[list[float]]]:
    """For each of ``owners`` sets of rows (``owner`` numbers each row's), the wall times of
    each runner process in it: processes in the order they first appear, each one's times in
    row order. One sort for every set: a groupby per set costs milliseconds each."""
    process = pd.factorize(counted["process"])[0]
    order = np.lexsort((process, owner))
    walls = counted["wall_s"].to_numpy(dtype=float)[order].tolist()
    owner, process = owner[order], process[order]
    starts = np.flatnonzero(np.diff(process, prepend=-1) | np.diff(owner, prepend=-1))
    found: list[list[list[float]]] = [[] for _ in range(owners)]
    for start, end, at in zip(
        starts.tolist(), [*starts[1:].tolist(), len(walls)], owner[starts].tolist()
    ):
        found[at].append(walls[start:end])
    return found


@dataclass(frozen=True)
class Walls:
    """The counted wall times (s) of some process rows, each row's in repeat order: ``values``
    and the row each belongs to (``row``, ascending); positive finite times only."""

    values: np.ndarray
    row: np.ndarray

    @classmethod
    def of(cls, processes: pd.DataFrame) -> Walls:
        values, counts, _ = figures.read_walls(processes["walls"].tolist())
        values = values / 1e9
        row = np.repeat(np.arange(len(counts)), counts)
        kept = (values > 0) & (values < math.inf)
        return cls(values[kept], row[kept])


def _sorted_groups(values: np.ndarray, owner: np.ndarray, owners: int):
    """``values`` sorted within each owner, and where each owner's run starts and ends."""
    order = np.argsort(owner, kind="stable")
    ordered, owned = values[order], owner[order]
    starts = np.searchsorted(owned, np.arange(owners))
    ends = np.searchsorted(owned, np.arange(owners), side="right")
    sizes = ends - starts
    if owners and (sizes == sizes[0]).all() and len(ordered) == owners * sizes[0]:
        # owners of one size, and every value owned: one sort along each row
        ordered.reshape(owners, int(sizes[0])).sort(axis=1)
    elif owners <= SORTED_ONE_BY_ONE:
        for start, end in zip(starts.tolist(), ends.tolist()):
            ordered[start:end].sort()
    else:
        ordered = values[np.lexsort((values, owner))]
    return ordered, starts, ends


# Up to this many groups, each is sorted on its own: faster than one sort by group and value.
SORTED_ONE_BY_ONE = 2000


def _quantiles(ordered: np.ndarray, starts: np.ndarray, ends: np.ndarray, q: float):
    """Each run's ``q`` quantile by linear interpolation (pandas' and numpy's default); NaN
    for an empty one."""
    n = ends - starts
    position = np.maximum(n - 1, 0) * q
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(n - 1, 0))
    last = max(len(ordered) - 1, 0)
    if not len(ordered):
        return np.full(len(starts), math.nan)
    a = ordered[np.clip(starts + low, 0, last)]
    b = ordered[np.clip(starts + high, 0, last)]
    return np.where(n > 0, a + (b - a) * (position - low), math.nan)


def _medians(ordered: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Each run's median as statistics.median takes it (the mean of the two middle values)."""
    n = ends - starts
    last = max(len(ordered) - 1, 0)
    if not len(ordered):
        return np.full(len(starts), math.nan)
    low = ordered[np.clip(starts + (n - 1) // 2, 0, last)]
    high = ordered[np.clip(starts + n // 2, 0, last)]
    return np.where(n > 0, (low + high) / 2, math.nan)


# What a configuration's row takes of its process rows' own figures: the median of the
# processes' medians, or the largest (peaks, cores, whether a build is free-threaded).
PROCESS_FIGURES = {
    "startup_s": "median",
    "in_flight": "median",
    "cpu_per_wall": "median",
    "cores": "max",
    "gil_disabled": "max",
    "peak_rss_bytes": "max",
    "worker_peak_rss_bytes": "max",
    "voluntary_switches": "median",
    "involuntary_switches": "median",
    "core_moves": "median",
    "cores_used": "max",
    "on_core_share": "median",
    "core_wait_share": "median",
    **dict.fromkeys(figures.LOOK, "median"),
}


def summarize(processes: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (``processes``: ``load_processes``' rows): runner processes,
    counted repeats, median with its 95% interval over processes and repeats (storage.stats),
    IQR, CV, min; speedup against the sequential run of the same work with its interval,
    efficiency, Karp–Flatt; start-up latency, tasks in flight (busy / wall) and CPU / wall; the
    costs beyond time (the largest peak memory of a repeat and of one worker, switches and
    core moves per repeat, the cores used); and the warnings. Wall-time figures are over every
    counted repeat; the other medians are the median of the processes' medians."""
    if processes.empty:
        return pd.DataFrame()
    walls = Walls.of(processes)
    has_walls = np.bincount(walls.row, minlength=len(processes)) > 0
    counted = processes[has_walls].reset_index(drop=True)
    if counted.empty:
        return pd.DataFrame()
    walls = Walls(walls.values, (np.cumsum(has_walls) - 1)[walls.row])
    grouped = counted.groupby(CONFIG, dropna=False, sort=True)
    config = grouped.ngroup().to_numpy()
    groups = int(config.max()) + 1
    counted["startup_s"] = counted["startup_ns"] / 1e9
    summary = grouped.agg(
        processes=("process", "count"),  # numbered one per row
        **{name: (name, how) for name, how in PROCESS_FIGURES.items()},
    ).reset_index()
    pooled = _pooled(walls.values, config[walls.row], groups)
    for name, values in pooled.items():
        summary[name] = values
    first = [*CONFIG, "repeats", "processes", "median_s", "q1_s", "q3_s", "mean_s", "std_s"]
    summary = summary[[*first, *(c for c in summary.columns if c not in first)]]
    first_at = np.searchsorted(walls.row, np.arange(len(counted)))  # values in repeat order
    counted["first_s"] = walls.values[first_at]
    runs, run_config = _add_runs(summary, counted, config, groups)
    intervals = _intervals(config, groups, pooled["median_s"], counted, walls)
    _add_intervals(summary, intervals)
    _add_speedups(summary)
    summary["efficiency"] = summary["speedup"] / summary["workers"]
    summary["karp_flatt"] = [
        karp_flatt(s, p) for s, p in zip(summary["speedup"], summary["workers"])
    ]
    sweep_loads = _sweep_start_loads(runs)
    _add_run_facts(summary, runs, run_config, sweep_loads)
    works = _same_work(summary, counted, config, runs, run_config)
    summary["warnings"] = [
        _warnings(row, work, sweep_loads) for row, work in zip(summary.itertuples(), works)
    ]
    return summary.drop(columns=["interval"])


def _pooled(values: np.ndarray, owner: np.ndarray, groups: int) -> dict[str, np.ndarray]:
    """Each configuration's figures over every counted repeat of it, pooled (``values`` the
    wall times, ``owner`` each one's configuration)."""
    ordered, starts, ends = _sorted_groups(values, owner, groups)
    repeats = ends - starts
    means = np.bincount(owner, weights=values, minlength=groups) / repeats
    squares = np.bincount(owner, weights=(values - means[owner]) ** 2, minlength=groups)
    std = np.sqrt(squares / np.maximum(repeats - 1, 1))
    std[repeats < 2] = math.nan
    return {
        "repeats": repeats,
        "median_s": _medians(ordered, starts, ends),
        "q1_s": _quantiles(ordered, starts, ends, 0.25),
        "q3_s": _quantiles(ordered, starts, ends, 0.75),
        "mean_s": means,
        "std_s": std,
        "min_s": ordered[starts],
    }


def _add_runs(summary, counted, config, groups) -> tuple[pd.DataFrame, np.ndarray]:
    """Each configuration's runs (how many), sweeps (their ids) and run order ("turns" unless
    some of its runs ran in blocks: older runs all did); returns the first process row of each
    run and its configuration."""
    first_of_run = ~counted["run_id"].duplicated().to_numpy()
    runs, run_config = counted[first_of_run], config[first_of_run]
    summary.insert(
        summary.columns.get_loc("cores") + 1, "runs", np.bincount(run_config, minlength=groups)
    )
    sweeps = _distinct(run_config, runs["sweep_id"])
    summary.insert(
        summary.columns.get_loc("peak_rss_bytes"),
        "sweeps",
        [" ".join(sorted(set(map(str, sweeps.get(g, []))))) for g in range(groups)],
    )
    blocks = (runs["run_order"] == "blocks").groupby(run_config).any()
    summary.insert(
        summary.columns.get_loc("peak_rss_bytes"),
        "run_order",
        np.where(blocks.values, "blocks", "turns"),
    )
    return runs, run_config


def _add_intervals(summary: pd.DataFrame, intervals: list[stats.Interval]) -> None:
    """The intervals' columns, with the spread figures derived from the pooled ones."""
    summary["ci_low_s"] = [i.low for i in intervals]
    summary["ci_high_s"] = [i.high for i in intervals]
    summary["spread"] = [i.spread for i in intervals]
    summary["within"] = [i.within for i in intervals]
    summary["iqr_s"] = summary["q3_s"] - summary["q1_s"]
    summary["cv"] = summary["std_s"] / summary["mean_s"]
    summary["task_s"] = summary["median_s"] / summary["tasks"]
    # With center_s and se_df: what ratios between configurations are built from.
    summary["center_s"] = [i.center for i in intervals]
    summary["log_se"] = [i.log_se for i in intervals]
    summary["log_sd"] = [i.log_sd for i in intervals]
    summary["se_df"] = [i.df for i in intervals]
    summary["interval"] = intervals


def _intervals(config, groups, medians, counted, walls) -> list[stats.Interval]:
    """stats.interval_of of each configuration: its processes' medians and max/min minus 1 in
    row order, its pooled median, and (read only when one process ran) its values."""
    by_row, row_starts, row_ends = _sorted_groups(walls.values, walls.row, len(counted))
    process_medians = _medians(by_row, row_starts, row_ends)
    withins = by_row[row_ends - 1] / by_row[row_starts] - 1
    order = np.argsort(config, kind="stable")
    at = np.searchsorted(config[order], np.arange(groups + 1))
    process_medians, withins = process_medians[order].tolist(), withins[order].tolist()
    rows = order.tolist()
    found = []
    for group in range(groups):
        first, last = at[group], at[group + 1]
        pooled = []
        if last - first == 1:
            row = rows[first]
            pooled = walls.values[walls.row == row].tolist()
        found.append(
            stats.interval_of(
                float(medians[group]),
                process_medians[first:last],
                withins[first:last],
                pooled,
            )
        )
    return found


def _add_run_facts(summary, runs, run_config, sweep_loads) -> None:
    """What the rules of ``explain`` read beside the figures, per configuration: whether the
    GIL was on in its workers (any run's; a build with a GIL always had it), what turned it
    on, the cores other work took during its repeats (the median of its runs') and the load
    when its sweeps began (the highest)."""
    free_threaded = runs["gil_disabled"].fillna(False).astype(bool).to_numpy()
    on = np.where(free_threaded, runs["gil_on"].to_numpy(dtype=float), 1.0)
    by_config = pd.DataFrame(
        {
            "config": run_config,
            "on": on,
            "others": runs["others_cores"].to_numpy(dtype=float),
            "load": runs["sweep_id"].map(sweep_loads).to_numpy(dtype=float),
        }
    ).groupby("config")
    rows = pd.RangeIndex(len(summary))
    gil = by_config["on"].max().reindex(rows)
    summary["gil_on"] = [None if g != g else bool(g) for g in gil.tolist()]
    cause = runs["gil_cause"].to_numpy(dtype=object)
    caused = free_threaded & (on == 1) & pd.notna(cause)
    causes = pd.Series(cause[caused]).groupby(run_config[caused]).first().reindex(rows)
    summary["gil_cause"] = [c if isinstance(c, str) else None for c in causes.tolist()]
    summary["others_cores"] = by_config["others"].median().reindex(rows).to_numpy()
    summary["load_per_core"] = by_config["load"].max().reindex(rows).to_numpy()


# What the run-level warnings of a configuration look at: its runs of the same work with the
# same executor and workers (whatever their start method and chunksize).
WORK_KEY = ["workload", "executor", "workers", "machine", "python", "size", "tasks"]


@dataclass(frozen=True)
class SameWork:
    """The counted repeats of one WORK_KEY: how many, the median of each process's first one,
    which sweeps they come from and the machine problems their runs recorded."""

    repeats: int
    first_s: float
    sweep_ids: list
    problems: list


def _same_work(summary, counted, config, runs, run_config) -> list[Optional[SameWork]]:
    """For each summary row (config numbers each process row's and each run's row), the
    SameWork of its WORK_KEY; None where the key has a missing value, which matches nothing."""
    work = summary.groupby(WORK_KEY, sort=False).ngroup().fillna(-1).astype(int).to_numpy()
    process_work = work[config]
    kept = process_work >= 0
    first_s = pd.Series(counted["first_s"].to_numpy()[kept]).groupby(process_work[kept])
    first_s = first_s.median().to_dict()
    run_work = work[run_config]
    sweep_ids = _distinct(run_work, runs["sweep_id"])
    unfit = runs["machine_problems"].notna().to_numpy()
    problems: dict = {}
    for w, found in zip(run_work[unfit].tolist(), runs["machine_problems"][unfit]):
        problems.setdefault(w, {}).update(dict.fromkeys(found))
    return [
        None
        if w < 0
        else SameWork(
            int(summary["repeats"][work == w].sum()),
            first_s.get(w, math.nan),
            sweep_ids.get(w, []),
            list(problems.get(w, ())),
        )
        for w in work
    ]


def _distinct(owner: np.ndarray, values: pd.Series) -> dict[int, list]:
    """Each owner's distinct ``values`` (missing ones included), in the order they first
    appear: one pass over pairs of numbers rather than a group of values per owner."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    pairs = pd.DataFrame({"owner": owner, "value": codes}).drop_duplicates()
    found: dict[int, list] = {}
    for at, code in zip(pairs["owner"].tolist(), pairs["value"].tolist()):
        found.setdefault(at, []).append(uniques[code])
    return found


def _add_speedups(summary: pd.DataFrame) -> None:
    """Speedup of each configuration against the sequential run of the same work (machine,
    Python, workload, size, tasks), with the ratio's 95% interval."""
    baselines = {}
    for key, rows in summary[summary["executor"] == "sequential"].groupby(
        BASELINE_KEY, dropna=False
    ):
        best = rows.loc[rows["median_s"].idxmin()]
        baselines[_key_text(key)] = (best["interval"], best["sweeps"])
    speedups, lows, highs, sequential = [], [], [], []
    for row in summary.itertuples():
        baseline, baseline_sweeps = baselines.get(
            _key_text(tuple(getattr(row, k) for k in BASELINE_KEY)), (None, "")
        )
        if baseline is None:
            speedups.append(math.nan), lows.append(math.nan), highs.append(math.nan)
            sequential.append(math.nan)
            continue
        sequential.append(baseline.median)
        if row.interval is baseline:  # the baseline itself: 1 by definition, no interval
            speedups.append(1.0), lows.append(math.nan), highs.append(math.nan)
            continue
        # speedup = sequential / this: the ratio of B = sequential against A = this run
        found = stats.ratio(
            row.interval, baseline, across_sweeps=across_sweeps(row.sweeps, baseline_sweeps)
        )
        speedups.append(found.ratio), lows.append(found.low), highs.append(found.high)
    summary["sequential_s"] = sequential
    summary["speedup"] = speedups
    summary["speedup_low"] = lows
    summary["speedup_high"] = highs


def across_sweeps(a: str, b: str) -> bool:
    """Whether two configurations (their sweep ids, space-joined) never took turns: they share
    no sweep, so each met the machine's level of its own minutes (storage.stats.ratio)."""
    return not set(a.split()) & set(b.split())


def _key_text(key) -> str:
    return "|".join(cell_text(v) for v in (key if isinstance(key, tuple) else (key,)))


def _sweep_start_loads(runs: pd.DataFrame) -> dict[str, float]:
    """Load per core when each sweep began (its first run): later runs of a sweep see the load
    the sweep itself made, which says nothing about other work on the machine."""
    runs = runs[["created_at", "sweep_id", "load_per_core"]]
    first_at = runs.groupby("sweep_id", sort=False)["created_at"].transform("min")
    firsts = runs[runs["created_at"] == first_at].drop_duplicates("sweep_id")
    return {
        sweep_id: float(load)
        for sweep_id, load in zip(firsts["sweep_id"], firsts["load_per_core"])
        if load == load
    }


def _warnings(row, work: Optional[SameWork], sweep_loads: dict[str, float]) -> list[str]:
    found = []
    if row.repeats < 3:
        found.append(f"only {row.repeats} repeat(s): too few to trust")
    if row.processes == 1:
        found.append("one runner process: the interval leaves out layout and drift")
    if row.run_order == "blocks":
        found.append("measured in blocks, not in turns: drift can favour one configuration")
    elif stats.moved_between_processes(row.spread, row.within):
        found.append(f"moved {row.spread:.0%} between processes (layout, drift)")
    if row.efficiency > 1 and row.workers > 1:
        low = row.speedup_low / row.workers
        found.append(
            f"efficiency over 100% ({row.efficiency:.0%}): noise, or a super-linear effect "
            "such as caches"
            if low <= 1
            else f"super-linear: efficiency {row.efficiency:.0%}, above 100% beyond noise"
        )
    if row.workers > 1 and row.karp_flatt == row.karp_flatt and not 0 <= row.karp_flatt <= 1:
        found.append(
            f"serial fraction {row.karp_flatt:.2f} is outside 0..1 ("
            + ("super-linear speedup" if row.karp_flatt < 0 else "no faster than sequential")
            + "), so Karp–Flatt has no meaning here"
        )
    if row.cv >= CV_WARNING:
        found.append(f"unstable: CV {row.cv:.0%} >= {CV_WARNING:.0%}")
    if row.task_s < 0.001:
        found.append("tasks under 1 ms: dispatch overhead dominates")
    if math.isnan(row.sequential_s) and row.executor != "sequential":
        found.append("no sequential run of this work here: no speedup")
    if work is None:
        return found
    if work.repeats >= 3 and work.first_s > 1.5 * row.median_s:
        found.append(f"first repeat {work.first_s / row.median_s:.1f}x slower than the median")
    loads = [sweep_loads[s] for s in work.sweep_ids if s in sweep_loads]
    if loads and max(loads) >= HIGH_LOAD_PER_CORE:
        found.append(f"machine was busy at start (load {max(loads):.1f} per core)")
    for problem in work.problems:
        found.append(f"measured on an unfit machine: {problem.partition(';')[0]}")
    return found


def min_effect_for(processes: pd.DataFrame) -> float:
    """The smallest change called a difference among ``processes`` (``load_processes``' rows)
    unless the user says: 5%, or half the smallest ``--detect`` their runs were measured for (a
    change of exactly that size must not fall under the threshold half the time)."""
    if processes.empty or "detect" not in processes:
        return MIN_EFFECT
    asked = processes["detect"].to_numpy(dtype=float)
    asked = asked[(asked > 0) & (asked < 1)]
    return float(min(MIN_EFFECT, *(asked / 2))) if len(asked) else MIN_EFFECT
