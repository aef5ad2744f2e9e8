"""What the stored runs mean: pandas frames, the summary per configuration, verdicts in words,
comparisons of two selections, and stability warnings. Rendering lives in ``render.py``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage.errors import SelectionError
from storage.queries import json_object

# A configuration: what must be equal for two runs to be repeats of the same measurement.
CONFIG = ["machine", "python", "workload", "size", "tasks", "executor", "start_method", "workers",
          "chunksize"]  # fmt: skip
# What a speedup is measured against: the sequential run of the same work in the same place.
BASELINE_KEY = ["machine", "python", "workload", "size", "tasks"]
MIN_EFFECT = 0.05
CV_WARNING = 0.10
HIGH_LOAD_PER_CORE = 0.5


# --- loading ---------------------------------------------------------------------------------


def load_repeats(engines: Sequence[tuple[str, Engine]]) -> pd.DataFrame:
    """One row per stored repeat of a finished run, with its run's configuration and origin.

    ``engines`` are ``(label, engine)`` pairs; the label is what ``db:`` selections match.
    Runs still running, interrupted, failed or cancelled are left out of the figures.
    """
    frames = []
    for label, engine in engines:
        with engine.connect() as connection:
            runs = pd.read_sql(
                text(
                    "SELECT r.id AS run_id, r.sweep_id, r.tag, r.status, r.workload, r.size, "
                    "r.tasks, r.executor, r.start_method, r.workers, r.chunksize, r.created_at, "
                    "r.environment_json, r.machine_fingerprint, "
                    "coalesce(m.hostname, r.machine_fingerprint) AS machine, "
                    "coalesce(m.usable_cores, m.logical_cores) AS cores, m.cpu_model, "
                    "i.version AS python, i.gil_disabled FROM run r "
                    "LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
                    "LEFT JOIN interpreter i ON i.key = r.interpreter_key "
                    "WHERE r.status = 'ok'"
                ),
                connection,
            )
            # Numbers only, one row per repeat: the run's text columns are joined in pandas.
            repeats = pd.read_sql(
                text(
                    "SELECT p.run_id, p.repeat_index, p.warmup, p.wall_ns, p.cpu_ns, p.start_ns, "
                    "p.end_ns, p.first_task_start_ns, p.busy_ns FROM repeat p "
                    "JOIN run r ON r.id = p.run_id WHERE r.status = 'ok'"
                ),
                connection,
            )
        frame = runs.merge(repeats, on="run_id", how="inner")
        frame["db"] = label
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    numeric = ("wall_ns", "cpu_ns", "start_ns", "end_ns", "first_task_start_ns", "busy_ns",
               "size", "tasks", "workers")  # fmt: skip
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=["wall_ns", "workers"]).drop_duplicates(
        subset=["run_id", "repeat_index"]
    )
    frame["warmup"] = frame["warmup"].astype(bool)
    frame["wall_s"] = frame["wall_ns"] / 1e9
    frame["python"] = frame["python"].fillna("?")
    # A free-threaded build is its own interpreter in every table: 3.13.0t, as python.org names it.
    free_threaded = frame["gil_disabled"].fillna(False).astype(bool)
    frame.loc[free_threaded, "python"] = frame.loc[free_threaded, "python"] + "t"
    for column in ("start_method", "chunksize", "tag"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    return frame


def load_timeline(engine: Engine, run_id: str) -> pd.DataFrame:
    """Every task sample of one run, with times relative to its repeat's start, in ms."""
    with engine.connect() as connection:
        frame = pd.read_sql(
            text(
                "SELECT s.repeat_index, s.task_index, s.pid, s.thread_id, "
                "(s.start_ns - p.start_ns) / 1e6 AS start_ms, (s.end_ns - p.start_ns) / 1e6 "
                "AS end_ms, p.warmup FROM task_sample s JOIN repeat p ON p.run_id = s.run_id "
                "AND p.repeat_index = s.repeat_index WHERE s.run_id = :run "
                "ORDER BY s.repeat_index, s.start_ns"
            ),
            connection,
            params={"run": run_id},
        )
    # A sample missing its process, thread or times (a damaged file) cannot be drawn.
    return frame.dropna(subset=["pid", "thread_id", "start_ms", "end_ms"])


# --- selections ------------------------------------------------------------------------------

SELECTION_KEYS = {
    "run": "run_id", "sweep": "sweep_id", "tag": "tag", "machine": "machine", "python": "python",
    "workload": "workload", "executor": "executor", "db": "db",
}  # fmt: skip


def select(frame: pd.DataFrame, selection: str) -> pd.DataFrame:
    """Rows matching ``selection``: comma-joined ``KEY:VALUE`` terms that all apply.

    ``run`` and ``sweep`` match id prefixes, ``python`` a version prefix (``3.12`` matches
    3.12.1), ``machine`` a host name or fingerprint prefix; the other keys match exactly.
    """
    mask = pd.Series(True, index=frame.index)
    for term in filter(None, (t.strip() for t in selection.split(","))):
        key, sep, value = term.partition(":")
        if not sep or key not in SELECTION_KEYS or not value:
            raise SelectionError(
                f"cannot read selection term {term!r}; write KEY:VALUE with KEY one of "
                f"{', '.join(SELECTION_KEYS)} (e.g. tag:before or python:3.12)"
            )
        column = frame[SELECTION_KEYS[key]].map(str)
        if key in ("run", "sweep"):
            mask &= column.str.startswith(value)
        elif key == "python":
            mask &= (column == value) | column.str.startswith(value + ".")
        elif key == "machine":
            mask &= (column == value) | frame["machine_fingerprint"].map(str).str.startswith(value)
        else:
            mask &= column == value
    return frame[mask]


# --- the summary -----------------------------------------------------------------------------


def karp_flatt(speedup: float, workers: float) -> float:
    """The experimentally determined serial fraction e = (1/S - 1/p) / (1 - 1/p), for p > 1."""
    if workers <= 1 or not speedup or not math.isfinite(speedup):
        return math.nan
    return (1 / speedup - 1 / workers) / (1 - 1 / workers)


def summarize(repeats: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: counted repeats, median, IQR, CV, min; speedup against the
    sequential run of the same work, efficiency, Karp–Flatt; from samples, start-up latency,
    effective parallelism (busy / wall) and CPU / wall; and the stability warnings."""
    if repeats.empty:
        return pd.DataFrame()
    counted = repeats[~repeats["warmup"]].copy()
    counted["startup_s"] = (counted["first_task_start_ns"] - counted["start_ns"]) / 1e9
    counted["parallelism"] = counted["busy_ns"] / counted["wall_ns"]
    counted["cpu_per_wall"] = counted["cpu_ns"] / counted["wall_ns"]
    keys = [k for k in CONFIG]
    grouped = counted.groupby(keys, dropna=False, sort=True)
    summary = grouped.agg(
        repeats=("wall_s", "size"),
        median_s=("wall_s", "median"),
        q1_s=("wall_s", lambda s: s.quantile(0.25)),
        q3_s=("wall_s", lambda s: s.quantile(0.75)),
        mean_s=("wall_s", "mean"),
        std_s=("wall_s", "std"),
        min_s=("wall_s", "min"),
        startup_s=("startup_s", "median"),
        parallelism=("parallelism", "median"),
        cpu_per_wall=("cpu_per_wall", "median"),
        cores=("cores", "max"),
        runs=("run_id", "nunique"),
        gil_disabled=("gil_disabled", "max"),
    ).reset_index()
    summary["iqr_s"] = summary["q3_s"] - summary["q1_s"]
    summary["cv"] = summary["std_s"] / summary["mean_s"]
    summary["task_s"] = summary["median_s"] / summary["tasks"]
    baseline = (
        summary[summary["executor"] == "sequential"]
        .groupby(BASELINE_KEY, dropna=False)["median_s"]
        .min()
    )
    summary = summary.join(baseline.rename("sequential_s"), on=BASELINE_KEY)
    summary["speedup"] = summary["sequential_s"] / summary["median_s"]
    summary["efficiency"] = summary["speedup"] / summary["workers"]
    summary["karp_flatt"] = [
        karp_flatt(s, p) for s, p in zip(summary["speedup"], summary["workers"])
    ]
    sweep_loads = _sweep_start_loads(repeats)
    summary["warnings"] = [_warnings(row, repeats, sweep_loads) for row in summary.itertuples()]
    return summary


def _sweep_start_loads(repeats: pd.DataFrame) -> dict[str, float]:
    """Load per core when each sweep began (its first run): later runs of a sweep see the load
    the sweep itself made, which says nothing about other work on the machine."""
    firsts = repeats.sort_values("created_at").drop_duplicates("sweep_id")
    loads = {}
    for sweep_id, text_ in zip(firsts["sweep_id"], firsts["environment_json"]):
        load = _load_per_core(text_) if isinstance(text_, str) else None
        if load is not None:
            loads[sweep_id] = load
    return loads


def _warnings(row, repeats: pd.DataFrame, sweep_loads: dict[str, float]) -> list[str]:
    found = []
    if row.repeats < 3:
        found.append(f"only {row.repeats} repeat(s): too few to trust")
    if row.cv >= CV_WARNING:
        found.append(f"unstable: CV {row.cv:.0%} >= {CV_WARNING:.0%}")
    if row.task_s < 0.001:
        found.append("tasks under 1 ms: dispatch overhead dominates")
    if math.isnan(row.sequential_s) and row.executor != "sequential":
        found.append("no sequential run of this work here: no speedup")
    mine = repeats[
        (repeats["workload"] == row.workload) & (repeats["executor"] == row.executor)
        & (repeats["workers"] == row.workers) & (repeats["machine"] == row.machine)
        & (repeats["python"] == row.python) & (repeats["size"] == row.size)
    ]  # fmt: skip
    counted = mine[~mine["warmup"]].sort_values(["run_id", "repeat_index"])
    if len(counted) >= 3:
        first = counted.groupby("run_id")["wall_s"].first().median()
        if first > 1.5 * row.median_s:
            found.append(f"first repeat {first / row.median_s:.1f}x slower than the median")
    loads = [sweep_loads[s] for s in mine["sweep_id"].unique() if s in sweep_loads]
    if loads and max(loads) >= HIGH_LOAD_PER_CORE:
        found.append(f"machine was busy at start (load {max(loads):.1f} per core)")
    return found


def _load_per_core(environment_json: str) -> Optional[float]:
    env = json_object(environment_json)
    try:
        load = env["load_average"][0]
        cores = env.get("usable_cores") or env.get("logical_cores") or 1
        return float(load) / float(cores)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


# --- why, in words ---------------------------------------------------------------------------


def verdicts(summary: pd.DataFrame) -> list[str]:
    """A few sentences per workload, each derived from the numbers in ``summary``."""
    lines = []
    if summary.empty:
        return lines
    for (machine, python, workload), rows in summary.groupby(["machine", "python", "workload"]):
        where = f"{workload} on {machine}, Python {python}"
        rows = rows[rows["speedup"].notna()]
        if rows.empty:
            lines.append(f"{where}: no sequential run to compare with; add `-e sequential`.")
            continue
        best = rows.loc[rows["speedup"].idxmax()]
        lines.append(
            f"{where}: fastest is {best.executor} x{int(best.workers)} "
            f"({best.median_s * 1000:.1f} ms, {best.speedup:.2f}x the sequential run)."
        )
        threads = rows[(rows["executor"] == "threads") & (rows["workers"] > 1)]
        for t in threads.itertuples():
            if t.speedup < 1.2 and t.cpu_per_wall == t.cpu_per_wall and t.cpu_per_wall < 1.2:
                lines.append(
                    f"  threads x{t.workers} gave {t.speedup:.2f}x while CPU time stayed about "
                    f"equal to wall time ({t.cpu_per_wall:.2f}x): one thread ran at a time, "
                    "the GIL serialised the work."
                )
                break
            if t.speedup >= 0.8 * t.workers:
                free_threaded = t.gil_disabled == t.gil_disabled and bool(t.gil_disabled)
                busy = t.cpu_per_wall == t.cpu_per_wall and t.cpu_per_wall >= 0.8 * t.workers
                why = (
                    f"CPU time {t.cpu_per_wall:.2f}x wall time: on this free-threaded build the "
                    "threads ran Python in parallel, no GIL between them"
                    if free_threaded and busy
                    else "the work releases the GIL (waiting, I/O or C code)"
                )
                lines.append(f"  threads x{t.workers} scaled ({t.speedup:.2f}x): {why}.")
                break
        procs = rows[rows["executor"].isin(["processes", "pool"]) & (rows["workers"] > 1)]
        for p in procs.itertuples():
            if p.startup_s == p.startup_s and p.startup_s > 0.3 * p.median_s:
                lines.append(
                    f"  {p.executor} x{p.workers}: start-up took {p.startup_s * 1000:.0f} ms of "
                    f"{p.median_s * 1000:.0f} ms ({p.startup_s / p.median_s:.0%}): the run is "
                    "too short for processes to pay off."
                )
                break
            if p.karp_flatt == p.karp_flatt and p.efficiency < 0.7:
                lines.append(
                    f"  {p.executor} x{p.workers}: efficiency {p.efficiency:.0%}, serial "
                    f"fraction {p.karp_flatt:.2f} (Karp–Flatt): overhead grows with workers."
                )
                break
    return lines


# --- comparisons -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """B against A for one configuration: ratio of medians (B / A) and what it means."""

    config: dict
    a_median_s: float
    b_median_s: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str
    a_repeats: int
    b_repeats: int


def bootstrap_ratio_ci(a: np.ndarray, b: np.ndarray, rounds: int = 2000, seed: int = 0):
    """95% bootstrap confidence interval of median(b) / median(a); deterministic (seeded)."""
    rng = np.random.default_rng(seed)
    a_medians = np.median(rng.choice(a, size=(rounds, len(a)), replace=True), axis=1)
    b_medians = np.median(rng.choice(b, size=(rounds, len(b)), replace=True), axis=1)
    ratios = b_medians / a_medians
    return float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def compare_samples(a: Sequence[float], b: Sequence[float], min_effect: float = MIN_EFFECT):
    """(ratio, ci_low, ci_high, p_value, verdict) for B against A; works for unequal sizes.

    "slower" or "faster" needs all three: the Mann–Whitney test rejects equality (p < 0.05),
    the 95% interval excludes 1, and the change is at least ``min_effect``.
    """
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ratio = float(np.median(b) / np.median(a))
    low, high = bootstrap_ratio_ci(a, b)
    p_value = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    if p_value < 0.05 and low > 1 and ratio >= 1 + min_effect:
        verdict = "slower"
    elif p_value < 0.05 and high < 1 and ratio <= 1 - min_effect:
        verdict = "faster"
    else:
        verdict = "no significant difference"
    return ratio, low, high, p_value, verdict


def compare(repeats: pd.DataFrame, a: str, b: str, min_effect: float = MIN_EFFECT):
    """Compare selection B against selection A for every configuration present in both.

    Machine and interpreter are part of a configuration unless the selections themselves
    differ in them. Returns (comparisons, geometric mean of ratios, differing environment).
    """
    counted = repeats[~repeats["warmup"]]
    side_a, side_b = select(counted, a), select(counted, b)
    if side_a.empty or side_b.empty:
        empty = a if side_a.empty else b
        raise SelectionError(f"selection {empty!r} matches no finished runs; see `conlab runs`")
    keys = [k for k in CONFIG if not _differs(side_a, side_b, k)]
    # Match on the values as text: missing values (None, NaN) then compare equal.
    side_a = side_a.assign(_key=_text_keys(side_a, keys))
    side_b = side_b.assign(_key=_text_keys(side_b, keys))
    groups_b = dict(list(side_b.groupby("_key")))
    comparisons = []
    for key, group_a in side_a.groupby("_key"):
        group_b = groups_b.get(key)
        if group_b is None:
            continue
        ratio, low, high, p, verdict = compare_samples(
            group_a["wall_s"].to_numpy(), group_b["wall_s"].to_numpy(), min_effect
        )
        comparisons.append(Comparison(
            {k: group_a[k].iloc[0] for k in keys},
            float(group_a["wall_s"].median()), float(group_b["wall_s"].median()), ratio, low,
            high, p, verdict, len(group_a), len(group_b),
        ))  # fmt: skip
    if not comparisons:
        raise SelectionError(
            f"{a!r} and {b!r} share no configuration (workload, size, tasks, executor, "
            "workers); select runs of the same experiment"
        )
    geomean = float(np.exp(np.mean(np.log([c.ratio for c in comparisons]))))
    differences = {
        column: (", ".join(sorted(set(side_a[column].map(str)))),
                 ", ".join(sorted(set(side_b[column].map(str)))))
        for column in CONFIG if column not in keys
    }  # fmt: skip
    differences.update(environment_differences(side_a, side_b))
    return comparisons, geomean, differences


def _text_keys(frame: pd.DataFrame, keys: list[str]) -> list[str]:
    return ["|".join(map(str, row)) for row in frame[keys].itertuples(index=False)]


def _differs(a: pd.DataFrame, b: pd.DataFrame, column: str) -> bool:
    """True when the selections share no value of ``column``: then it is what is compared (two
    machines, two Pythons, two sizes...), not part of what must match."""
    return not set(a[column].map(str)) & set(b[column].map(str))


ENV_FIELDS = ("cpu_model", "logical_cores", "usable_cores", "python_version", "os_release",
              "py_gil_disabled", "architecture")  # fmt: skip


def environment_differences(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Environment fields whose values differ between two selections: (A's, B's)."""

    def values(frame: pd.DataFrame, field: str) -> str:
        found = set()
        for text_ in frame["environment_json"].dropna().unique():
            env = json_object(text_)
            if env is not None:
                found.add(str(env.get(field)))
        return ", ".join(sorted(found))

    differences = {}
    for field in ENV_FIELDS:
        va, vb = values(a, field), values(b, field)
        if va != vb:
            differences[field] = (va, vb)
    return differences
