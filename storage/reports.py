"""What the stored runs mean: pandas frames, the summary per configuration, verdicts in words,
comparisons of two selections, and stability warnings. Rendering lives in ``render.py``."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage import controlled, explain, stats
from storage.database import read_error
from storage.errors import SelectionError
from storage.queries import SELECTION_KEYS, json_object, selection_terms

# A configuration: what must be equal for two runs to be repeats of the same measurement.
CONFIG = [
    "machine",
    "python",
    "workload",
    "size",
    "tasks",
    "executor",
    "start_method",
    "workers",
    "chunksize",
]
# What a speedup is measured against: the sequential run of the same work in the same place.
BASELINE_KEY = ["machine", "python", "workload", "size", "tasks"]
# A repeat's cost beyond time (storage.models.Repeat); NULL where it was not recorded.
COST_COLUMNS = (
    "peak_rss_bytes",
    "worker_peak_rss_bytes",
    "voluntary_switches",
    "involuntary_switches",
    "core_moves",
    "cores_used",
)
MIN_EFFECT = 0.05
CV_WARNING = 0.10
HIGH_LOAD_PER_CORE = 0.5


# --- loading ---------------------------------------------------------------------------------


def load_repeats(
    engines: Sequence[tuple[str, Engine]], selection: Optional[str] = None
) -> pd.DataFrame:
    """One row per counted repeat (warm-ups left out) of a finished run, with its run's
    configuration and origin.

    ``engines`` are ``(label, engine)`` pairs; the label is what ``db:`` selections match.
    Runs still running, interrupted, failed or cancelled are left out of the figures. The
    database joins and filters; it hands over each run's columns once and of each repeat only
    the numbers a summary reads (REPEAT_NUMBERS), never a task sample. A ``selection`` is
    applied there too (storage.queries' SQL of it picks at least what ``select`` keeps), so
    that a report on a few runs of a big database reads those runs only.
    """
    frames, runs_before = [], 0
    for label, engine in engines:
        where, params = _selection_sql(engine, selection, label)
        with engine.connect() as connection:
            run_row = _run_row(connection)
            runs = _read_frame(connection, RUNS_SQL.format(run_row=run_row) + where, params)
            run_rows, numbers = _read_numbers(connection, where, params)
        frame = _repeat_rows(runs, run_rows, numbers, runs_before)
        runs_before += len(runs)
        frame["db"] = label
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame.dropna(subset=["wall_ns", "workers"])
    frame = frame[~frame.duplicated(["run_id", "repeat_index"])]
    frame = frame[frame["wall_ns"] > 0]  # no repeat takes no time: a damaged row, not a figure
    if frame.empty:
        return pd.DataFrame()
    frame["wall_s"] = frame["wall_ns"] / 1e9
    return frame


RUNS_SQL = (
    "SELECT {run_row} AS run_row, r.id AS run_id, r.sweep_id, r.tag, r.status, r.workload, "
    "r.size, r.tasks, r.executor, "
    "r.start_method, r.workers, r.chunksize, r.created_at, r.environment_json, "
    "r.machine_fingerprint, coalesce(m.hostname, r.machine_fingerprint) AS machine, "
    "coalesce(m.usable_cores, m.logical_cores) AS cores, m.cpu_model, i.version AS python, "
    "i.gil_disabled, coalesce(s.run_order, 'blocks') AS run_order FROM run r "
    "LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
    "LEFT JOIN interpreter i ON i.key = r.interpreter_key "
    "LEFT JOIN sweep s ON s.id = r.sweep_id WHERE r.status = 'ok'"
)
# What a selection's SQL (storage.queries.selection_where) reads besides the run: its machine
# and interpreter, joined as RUNS_SQL joins them.
SELECTION_JOINS = (
    "LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
    "LEFT JOIN interpreter i ON i.key = r.interpreter_key "
)
# What a summary reads of each counted repeat. Start-up latency is taken in SQL, on integers:
# clock readings past 2**53 ns would lose nanoseconds as floats.
REPEAT_NUMBERS = {
    "process_index": "p.process_index",
    "repeat_index": "p.repeat_index",
    "wall_ns": "p.wall_ns",
    "cpu_ns": "p.cpu_ns",
    "startup_ns": "p.first_task_start_ns - p.start_ns",
    "busy_ns": "p.busy_ns",
    **{column: f"p.{column}" for column in COST_COLUMNS},
}
REPEATS_SQL = (
    f"SELECT {{run_row}}, {', '.join(REPEAT_NUMBERS.values())} "
    "FROM repeat p JOIN run r ON r.id = p.run_id {joins}"
    "WHERE r.status = 'ok' AND p.warmup IS NOT TRUE"
)


def _selection_sql(engine: Engine, selection: Optional[str], label: str) -> tuple[str, dict]:
    """`` AND …`` for the runs ``selection`` picks in the database labelled ``label``, and its
    parameters; nothing without a selection."""
    if not selection:
        return "", {}
    from storage.queries import RunFilter, selection_where

    where, params = selection_where(
        engine.dialect.name, RunFilter(selection=selection, label=label)
    )
    return f" AND {where}", params


def _rows(connection, sql: str, params: Optional[dict] = None) -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql`` (``:name`` parameters) through the driver's own cursor
    (SQLAlchemy's row objects cost more than the query)."""
    cursor = connection.connection.driver_connection.cursor()
    if params and connection.dialect.name != "sqlite":  # psycopg's parameters: %(name)s
        sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
    try:
        cursor.execute(sql, params or ())
        return [d[0] for d in cursor.description], cursor.fetchall()
    except Exception as exc:
        # what SQLAlchemy's handle_error would have made of it (storage.database)
        found = None
        if connection.dialect.name == "sqlite":
            found = read_error(Path(connection.engine.url.database or ""), exc)
        if found is None:
            raise
        raise found from None
    finally:
        cursor.close()


def _read_frame(connection, sql: str, params: Optional[dict] = None) -> pd.DataFrame:
    names, rows = _rows(connection, sql, params)
    return pd.DataFrame.from_records(rows, columns=names)


def _run_row(connection) -> str:
    """What names a run in both queries: SQLite's rowid, a number (numbers convert to an array
    in one step); elsewhere its id."""
    return "r.rowid" if connection.dialect.name == "sqlite" else "r.id"


def _read_numbers(connection, where: str = "", params: Optional[dict] = None):
    """Each counted repeat's run (RUNS_SQL's ``run_row``), and its REPEAT_NUMBERS as floats
    (NaN where missing or, in a damaged file whose columns took any type, not a number), of
    the runs ``where`` (a selection's SQL) picks."""
    by_number = _run_row(connection) == "r.rowid"
    sql = REPEATS_SQL.format(run_row=_run_row(connection), joins=SELECTION_JOINS if where else "")
    _, rows = _rows(connection, sql + where, params)
    if by_number:
        try:
            values = np.array(rows, dtype=float).reshape(-1, 1 + len(REPEAT_NUMBERS))
            return values[:, 0].astype(np.int64), values[:, 1:]
        except (TypeError, ValueError):
            pass
    values = [row[1:] for row in rows]
    columns = zip(*values) if values else [()] * len(REPEAT_NUMBERS)
    numbers = np.column_stack(
        [
            pd.to_numeric(pd.Series(c, dtype=object), errors="coerce").to_numpy(dtype=float)
            for c in columns
        ]
    )
    return [row[0] for row in rows], numbers


def _repeat_rows(
    runs: pd.DataFrame, run_rows: Sequence, numbers: np.ndarray, runs_before: int
) -> pd.DataFrame:
    """One row per counted repeat: its numbers beside its run's columns. ``runs_before`` is how
    many runs the databases read before this one hold (for ``process``)."""
    for column in ("size", "tasks", "workers"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    runs["python"] = runs["python"].fillna("?")
    # A free-threaded build is its own interpreter in every table: 3.13.0t, as python.org names it.
    free_threaded = runs["gil_disabled"].fillna(False).astype(bool)
    runs.loc[free_threaded, "python"] = runs.loc[free_threaded, "python"] + "t"
    for column in ("start_method", "chunksize", "tag"):
        runs[column] = runs[column].astype(object).where(runs[column].notna(), None)
    run_at = pd.Index(runs.pop("run_row")).get_indexer(run_rows)
    known = run_at >= 0
    frame = runs.iloc[run_at[known]].reset_index(drop=True)
    frame["warmup"] = False
    for at, column in enumerate(REPEAT_NUMBERS):
        frame[column] = numbers[known, at]
    # The unit of every interval: one runner process of one run (older runs had one process),
    # numbered: the run's place among every database's runs, then the process's index.
    process_index = np.nan_to_num(frame["process_index"].to_numpy(), nan=0, posinf=0, neginf=0)
    process_index = np.clip(process_index, 0, PROCESSES - 1).astype(np.int64)
    frame["process"] = (run_at[known] + runs_before) * PROCESSES + process_index
    return frame


# More runner processes than a run can have (storage.models.Run.processes): what numbers them.
PROCESSES = 2**20


def load_timeline(engine: Engine, run_id: str) -> pd.DataFrame:
    """Every task sample of one run, with times relative to its repeat's start, in ms."""
    with engine.connect() as connection:
        frame = pd.read_sql(
            text(
                "SELECT s.repeat_index, s.task_index, s.pid, s.thread_id, s.core_start, "
                "s.core_end, "
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


def _text(value) -> str:
    """A cell as a selection compares it: whole numbers without a decimal point."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def select(frame: pd.DataFrame, selection: str) -> pd.DataFrame:
    """Rows matching ``selection``: comma-joined ``KEY:VALUE`` terms that all apply.

    ``run`` and ``sweep`` match id prefixes, ``python`` a version prefix (``3.12`` matches
    3.12.1), ``machine`` a host name or fingerprint prefix; the other keys match exactly.
    """
    mask = pd.Series(True, index=frame.index)
    for key, value in selection_terms(selection):
        column = frame[SELECTION_KEYS[key]].map(_text)
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


def _intervals(counted: pd.DataFrame, owner: np.ndarray, owners: int) -> list[stats.Interval]:
    """stats.interval of each of ``owners`` sets of rows (``owner`` numbers each row's), its
    runner processes in the order they first appear: the medians and max/min of every process
    from one sort, instead of a Python list per process."""
    walls = counted["wall_s"].to_numpy(dtype=float)
    process = pd.factorize(counted["process"])[0]
    kept = (walls > 0) & (walls < math.inf)  # the values stats.interval keeps
    walls, owner, process = walls[kept], owner[kept], process[kept]
    order = np.lexsort((walls, process, owner))
    medians, withins, process_owner = _medians(walls[order], owner[order], process[order])
    medians, withins = medians.tolist(), withins.tolist()
    order = np.lexsort((walls, owner))
    pooled_medians, _, pooled_owner = _medians(walls[order], owner[order], owner[order])
    median_of = dict(zip(pooled_owner.tolist(), pooled_medians.tolist()))
    in_rows = np.argsort(owner, kind="stable")  # each set's values in row order
    rows_walls, rows_owner = walls[in_rows], owner[in_rows]
    process_at = np.searchsorted(process_owner, np.arange(owners + 1))
    rows_at = np.searchsorted(rows_owner, np.arange(owners + 1))
    found = []
    for at in range(owners):
        first, last = process_at[at], process_at[at + 1]
        pooled = rows_walls[rows_at[at] : rows_at[at + 1]].tolist() if last - first == 1 else []
        found.append(
            stats.interval_of(
                median_of.get(at, math.nan), medians[first:last], withins[first:last], pooled
            )
        )
    return found


def _medians(walls: np.ndarray, owner: np.ndarray, group: np.ndarray):
    """For rows sorted by owner, group and value: each group's median (as statistics.median
    takes it), its max/min minus 1, and its owner."""
    starts = np.flatnonzero(np.diff(group, prepend=-1) | np.diff(owner, prepend=-1))
    ends = np.append(starts[1:], len(walls))
    middle = starts + (ends - starts) // 2
    odd = (ends - starts) % 2 == 1
    medians = np.where(odd, walls[middle], (walls[middle - 1] + walls[middle]) / 2)
    return medians, walls[ends - 1] / walls[starts] - 1, owner[starts]


def summarize(repeats: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: runner processes, counted repeats, median with its 95%
    interval over processes and repeats (storage.stats), IQR, CV, min; speedup against the
    sequential run of the same work with its interval, efficiency, Karp–Flatt; from samples,
    start-up latency, tasks in flight (busy / wall) and CPU / wall; the costs beyond time (the
    largest peak memory of a repeat and of one worker, the median switches and core moves per
    repeat, the cores used); and the warnings."""
    if repeats.empty:
        return pd.DataFrame()
    counted = repeats[~repeats["warmup"]].copy()
    counted["startup_s"] = counted["startup_ns"] / 1e9
    counted["in_flight"] = counted["busy_ns"] / counted["wall_ns"]
    counted["cpu_per_wall"] = counted["cpu_ns"] / counted["wall_ns"]
    grouped = counted.groupby(CONFIG, dropna=False, sort=True)
    summary = grouped.agg(
        repeats=("wall_s", "size"),
        processes=("process", "nunique"),
        median_s=("wall_s", "median"),
        mean_s=("wall_s", "mean"),
        std_s=("wall_s", "std"),
        min_s=("wall_s", "min"),
        startup_s=("startup_s", "median"),
        in_flight=("in_flight", "median"),
        cpu_per_wall=("cpu_per_wall", "median"),
        cores=("cores", "max"),
        runs=("run_id", "nunique"),
        gil_disabled=("gil_disabled", "max"),
        peak_rss_bytes=("peak_rss_bytes", "max"),
        worker_peak_rss_bytes=("worker_peak_rss_bytes", "max"),
        voluntary_switches=("voluntary_switches", "median"),
        involuntary_switches=("involuntary_switches", "median"),
        core_moves=("core_moves", "median"),
        cores_used=("cores_used", "max"),
    ).reset_index()
    summary.insert(
        summary.columns.get_loc("mean_s"), "q1_s", grouped["wall_s"].quantile(0.25).values
    )
    summary.insert(
        summary.columns.get_loc("mean_s"), "q3_s", grouped["wall_s"].quantile(0.75).values
    )
    config = grouped.ngroup().to_numpy()
    first_of_run = ~counted["run_id"].duplicated().to_numpy()
    runs, run_config = counted[first_of_run], config[first_of_run]
    sweeps = runs.groupby(run_config)["sweep_id"].agg(
        lambda s: " ".join(sorted(set(map(str, s.tolist()))))
    )
    summary.insert(summary.columns.get_loc("peak_rss_bytes"), "sweeps", sweeps.values)
    # "turns" unless some of its runs ran in blocks (older runs all did)
    blocks = (runs["run_order"] == "blocks").groupby(run_config).any()
    summary.insert(
        summary.columns.get_loc("peak_rss_bytes"),
        "run_order",
        np.where(blocks.values, "blocks", "turns"),
    )
    intervals = _intervals(counted, config, len(summary))
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
    _add_speedups(summary)
    summary["efficiency"] = summary["speedup"] / summary["workers"]
    summary["karp_flatt"] = [
        karp_flatt(s, p) for s, p in zip(summary["speedup"], summary["workers"])
    ]
    sweep_loads = _sweep_start_loads(runs)
    facts, unfit = _environment_facts(runs)
    _add_run_facts(summary, facts, runs, run_config, sweep_loads)
    works = _same_work(summary, counted, config, runs, run_config)
    summary["warnings"] = [
        _warnings(row, work, sweep_loads, unfit) for row, work in zip(summary.itertuples(), works)
    ]
    return summary.drop(columns=["interval"])


def _environment_facts(runs: pd.DataFrame) -> tuple[list[explain.RunFacts], dict[str, list[str]]]:
    """What a summary reads of each run's stored environment, each parsed once and let go (a
    run's 2-3 KB of JSON is most of what reading 100,000 runs costs): its ``explain`` facts, in
    row order, and its machine problems (experiments.environment ``problems``) by run id, runs
    with none left out."""
    facts, problems = [], {}
    for run_id, text_, gil_disabled in zip(
        runs["run_id"].tolist(),
        runs["environment_json"].tolist(),
        runs["gil_disabled"].fillna(False).astype(bool).tolist(),
    ):
        env = json_object(text_) or {}
        facts.append(explain.run_facts(env, not gil_disabled))
        found = env.get("problems")
        if isinstance(found, list) and found:
            problems[run_id] = [str(p) for p in found]
    return facts, problems


def _add_run_facts(summary, facts, runs, run_config, sweep_loads) -> None:
    """What the rules of ``explain`` read beside the figures, per configuration: whether the
    GIL was on in its workers (any run's), what turned it on, the cores other work took during
    its repeats (median) and the load when its sweeps began (the highest)."""
    gil, cause, others, load = {}, {}, {}, {}
    for at, found, sweep_id in zip(run_config.tolist(), facts, runs["sweep_id"].tolist()):
        if found.gil is not None:
            gil[at] = gil.get(at, False) or found.gil
        if found.gil_cause and at not in cause:
            cause[at] = found.gil_cause
        others.setdefault(at, []).extend(found.others_cores)
        if sweep_id in sweep_loads:
            load[at] = max(load.get(at, 0.0), sweep_loads[sweep_id])
    rows = range(len(summary))
    summary["gil_on"] = [gil.get(at) for at in rows]
    summary["gil_cause"] = [cause.get(at) for at in rows]
    summary["others_cores"] = [
        float(np.median(others[at])) if others.get(at) else math.nan for at in rows
    ]
    summary["load_per_core"] = [load.get(at, math.nan) for at in rows]


# What the run-level warnings of a configuration look at: its runs of the same work with the
# same executor and workers (whatever their start method and chunksize).
WORK_KEY = ["workload", "executor", "workers", "machine", "python", "size", "tasks"]


@dataclass(frozen=True)
class SameWork:
    """The counted repeats of one WORK_KEY: how many, the median of each process's first one,
    and which sweeps and runs they come from."""

    repeats: int
    first_s: float
    sweep_ids: list
    run_ids: list


def _same_work(summary, counted, config, runs, run_config) -> list[Optional[SameWork]]:
    """For each summary row (config numbers each counted repeat's and each run's row), the
    SameWork of its WORK_KEY; None where the key has a missing value, which matches nothing."""
    work = summary.groupby(WORK_KEY, sort=False).ngroup().fillna(-1).astype(int).to_numpy()
    # each runner process's first counted repeat: its lowest repeat index
    process = pd.factorize(counted["process"])[0]
    order = np.lexsort((counted["repeat_index"].to_numpy(), process))
    first = order[np.diff(process[order], prepend=-1) != 0]
    first_work = work[config[first]]
    kept = first_work >= 0
    first_s = pd.Series(counted["wall_s"].to_numpy()[first][kept]).groupby(first_work[kept])
    first_s = first_s.median().to_dict()
    run_work = work[run_config]
    found = {}
    for w, rows in runs.groupby(run_work):
        if w < 0:
            continue
        found[w] = SameWork(
            int(summary["repeats"][work == w].sum()),
            first_s.get(w, math.nan),
            list(rows["sweep_id"].unique()),
            rows["run_id"].tolist(),
        )
    return [found.get(w) for w in work]


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
    return "|".join(_text(v) for v in (key if isinstance(key, tuple) else (key,)))


def _sweep_start_loads(runs: pd.DataFrame) -> dict[str, float]:
    """Load per core when each sweep began (its first run): later runs of a sweep see the load
    the sweep itself made, which says nothing about other work on the machine."""
    firsts = runs.sort_values("created_at", kind="stable").drop_duplicates("sweep_id")
    loads = {}
    for sweep_id, text_ in zip(firsts["sweep_id"], firsts["environment_json"]):
        load = _load_per_core(text_) if isinstance(text_, str) else None
        if load is not None:
            loads[sweep_id] = load
    return loads


def _warnings(
    row, work: Optional[SameWork], sweep_loads: dict[str, float], unfit: dict[str, list[str]]
) -> list[str]:
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
    problems = dict.fromkeys(p for r in work.run_ids for p in unfit.get(r, ()))
    for problem in problems:
        found.append(f"measured on an unfit machine: {problem.partition(';')[0]}")
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


def _name(row) -> str:
    return "sequential" if row.executor == "sequential" else f"{row.executor} x{int(row.workers)}"


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
        where = (
            f"{workload}{f' at size {size:g}' if several_sizes else ''} on {machine}, "
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
                f"{where}: fastest is {_name(best)} ({best.median_s * 1000:.1f} ms"
                f"{speedup}), clear of the rest beyond their intervals."
            )
        else:
            names = ", ".join(_name(r) for r, _ in ties)
            differences = ", ".join(f"{f.ratio - 1:+.1%}" for _, f in ties)
            widest = max(max(abs(1 - f.low), abs(f.high - 1)) for _, f in ties)
        if ties and widest != widest:  # a figure without an interval: no verdict, not a tie
            lines.append(
                f"{where}: {_name(best)} and {names} cannot be told apart: a run of one repeat "
                "in one process has no interval; run it with --repeats 5 (or more)."
            )
        elif ties:
            lines.append(
                f"{where}: {_name(best)} ({best.median_s * 1000:.1f} ms{speedup}) and {names} "
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
    return lines


# Executors whose tasks run in worker processes of their own (the others run in the runner).
PROCESS_EXECUTORS = ("processes", "pool", "loky", "dask")


def _memory_verdict(rows: pd.DataFrame) -> list[str]:
    """The fastest process executor's speed against the memory it held, next to the threads
    of as many workers (else the lightest configuration of the same work)."""
    measured = rows[rows["peak_rss_bytes"] > 0]
    procs = measured[measured["executor"].isin(PROCESS_EXECUTORS)]
    if procs.empty or not (procs["speedup"] > 0).any():
        return []
    p = procs[procs["speedup"] > 0].sort_values("median_s").iloc[0]
    others = measured[~measured["executor"].isin(PROCESS_EXECUTORS)]
    same = others[(others["executor"] == "threads") & (others["workers"] == p.workers)]
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
    repeats = select(load_repeats([("db", engine)]), f"sweep:{sweep_id}")
    if repeats.empty:
        return pd.DataFrame(), []
    summary = summarize(repeats)
    return summary, verdicts(summary)


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
    a_processes: int
    b_processes: int
    # The raw comparison (wall times as measured), shown beside the one the verdict used.
    raw: Optional[stats.Ratio] = None
    # The controlled comparison wherever it could be made (shown even when not used), else None.
    controlled: Optional[stats.Ratio] = None
    basis: str = "raw"  # what the verdict stands on: "controlled" or "raw" (storage.controlled)
    basis_why: str = ""
    tracking: Optional[controlled.Tracking] = None  # how the control followed the work
    # A tie: the largest change the interval leaves possible (0.04: none larger than +-4%).
    detectable: Optional[float] = None
    sweeps_note: str = ""  # how the sides' sweeps were used, when it matters (``_in_sweeps``)


def compare_groups(a, b, min_effect: float = MIN_EFFECT, across: bool = False) -> stats.Ratio:
    """B against A, each given as the counted wall times of its runner processes: the ratio
    with its 95% interval over processes (storage.stats) and the verdict; ``across`` when they
    come from sweeps that did not take turns."""
    return stats.ratio(a, b, min_effect, across_sweeps=across)


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
    controls = controlled.controls_by_run(counted)
    # How the control followed the work: per kind of execution (executor, workers, start
    # method: each meets the machine's level in its own way) over the sweeps both sides are from.
    sweep_tracking: dict[tuple, controlled.Tracking] = {}
    comparisons = []
    for key, group_a in side_a.groupby("_key"):
        group_b = groups_b.get(key)
        if group_b is None:
            continue
        group_a, group_b, sweeps_note = _in_sweeps(group_a, group_b, a)
        sweeps = frozenset(group_a["sweep_id"]) | frozenset(group_b["sweep_id"])
        kind = tuple(map(str, group_a[list(EXECUTION)].iloc[0]))
        if (sweeps, kind) not in sweep_tracking:
            around = counted[counted["sweep_id"].isin(sweeps)]
            around = around[_text_keys(around, list(EXECUTION)) == "|".join(kind)]
            found = controlled.tracking([controlled.processes(around, controls)])
            sweep_tracking[sweeps, kind] = found
        found = _compare_one(
            group_a, group_b, keys, controls, sweep_tracking[sweeps, kind], min_effect
        )
        comparisons.append(dataclasses.replace(found, sweeps_note=sweeps_note))
    if not comparisons:
        raise SelectionError(
            f"{a!r} and {b!r} share no configuration (workload, size, tasks, executor, "
            "workers); select runs of the same experiment"
        )
    geomean = float(np.exp(np.mean(np.log([c.ratio for c in comparisons]))))
    differences = {
        column: (
            ", ".join(sorted(set(side_a[column].map(str)))),
            ", ".join(sorted(set(side_b[column].map(str)))),
        )
        for column in CONFIG
        if column not in keys
    }
    differences.update(environment_differences(side_a, side_b))
    return comparisons, geomean, differences


def _same_place(group_a, group_b) -> bool:
    """Both sides measured on one machine, under one interpreter."""
    return all(
        group_a[column].nunique(dropna=False) == 1
        and set(group_a[column].map(str)) == set(group_b[column].map(str))
        for column in ("machine_fingerprint", "python")
    )


def min_effect_for(repeats: pd.DataFrame) -> float:
    """The smallest change called a difference among ``repeats`` unless the user says: 5%, or
    half the smallest ``--detect`` their runs were measured for (a change of exactly that size
    must not fall under the threshold half the time)."""
    asked = []
    # per run (its repeats share its environment), by id: comparing 2-3 KB texts costs more
    for text_ in repeats.drop_duplicates("run_id")["environment_json"].tolist():
        if not isinstance(text_, str) or '"detect"' not in text_:
            continue  # recorded without --detect: no need to parse it
        detect = (json_object(text_) or {}).get("detect")
        if isinstance(detect, (int, float)) and 0 < detect < 1:
            asked.append(detect / 2)
    return min([MIN_EFFECT, *asked])


def _in_sweeps(group_a, group_b, a: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Both sides of one configuration, kept to the sweeps they share when they share one (a
    baseline measured again beside the new runs, `conlab run --against`): there the runs took
    turns and met the same machine. The note says so, or that A could have been."""
    shared = set(group_a["sweep_id"]) & set(group_b["sweep_id"])
    if not shared:
        same_place = all(
            set(group_a[c].map(str)) == set(group_b[c].map(str))
            for c in ("machine_fingerprint", "python")
        )
        return (
            group_a,
            group_b,
            (
                f"A and B were measured in different sweeps: `conlab run … --against {a}` measures "
                "A again beside B, within one sweep"
                if same_place
                else ""
            ),
        )
    kept_a = group_a[group_a["sweep_id"].isin(shared)]
    kept_b = group_b[group_b["sweep_id"].isin(shared)]
    left = group_a["run_id"].nunique() - kept_a["run_id"].nunique()
    left += group_b["run_id"].nunique() - kept_b["run_id"].nunique()
    if not left:
        return group_a, group_b, ""
    return (
        kept_a,
        kept_b,
        (
            f"compared within the sweep(s) A and B share (A measured again beside B); {left} "
            "run(s) from other sweeps left out"
        ),
    )


def _compare_one(group_a, group_b, keys, controls, sweeps, min_effect) -> Comparison:
    """One configuration's B against A: the raw comparison, and the controlled one where
    ``storage.controlled.basis`` allows it (the verdict then stands on it)."""
    across = not set(group_a["sweep_id"]) & set(group_b["sweep_id"])
    pa, pb = controlled.processes(group_a, controls), controlled.processes(group_b, controls)
    raw = compare_groups(pa.walls, pb.walls, min_effect, across)
    basis = controlled.basis(pa, pb, _same_place(group_a, group_b), sweeps)
    with_control = None
    if basis.comparable:
        # The control measured the level each process met: nothing about it is left to assume
        # across sweeps (stats.ratio's across_sweeps term stands for a level not measured).
        with_control = stats.ratio(
            pa.controlled(sweeps.slope),
            pb.controlled(sweeps.slope),
            min_effect,
            extra_variance=sweeps.adjustment_variance(pa, pb),
        )
    found = with_control if basis.name == "controlled" else raw
    detectable = None
    if found.verdict == stats.NO_DIFFERENCE and math.isfinite(found.high - found.low):
        detectable = max(found.high - 1, 1 - found.low)
    return Comparison(
        {k: group_a[k].iloc[0] for k in keys},
        float(group_a["wall_s"].median()),
        float(group_b["wall_s"].median()),
        found.ratio,
        found.low,
        found.high,
        found.p_value,
        found.verdict,
        len(group_a),
        len(group_b),
        group_a["process"].nunique(),
        group_b["process"].nunique(),
        raw,
        with_control,
        basis.name,
        basis.why,
        basis.tracking,
        detectable,
    )


def _text_keys(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    return np.array(["|".join(map(str, row)) for row in frame[keys].itertuples(index=False)])


# What makes two runs the same kind of execution, whatever their work and size.
EXECUTION = ["executor", "workers", "start_method"]


def _differs(a: pd.DataFrame, b: pd.DataFrame, column: str) -> bool:
    """True when the selections share no value of ``column``: then it is what is compared (two
    machines, two Pythons, two sizes...), not part of what must match."""
    return not set(a[column].map(str)) & set(b[column].map(str))


ENV_FIELDS = (
    "cpu_model",
    "logical_cores",
    "usable_cores",
    "python_version",
    "os_release",
    "py_gil_disabled",
    "architecture",
)


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
