"""What a report reads of each runner process of a run: its counted wall times and the medians
and peaks of its other figures, with its run's facts from the stored environment. ``derive``
makes them from a database's repeats and runs; the ``process`` table keeps them, written when a
run finishes and when an older file is migrated, and carried with their run by merges and
exports (as a repeat carries its busy time; a run that arrives without them gets them derived),
so that a report over 100,000 runs reads one row per process and no environment text. A run
whose rows are missing or unreadable is derived again when read, by the same function, and
`conlab db check` names rows that are not what their run's repeats give."""

from __future__ import annotations

import math
import sqlite3
import statistics
import warnings
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, Optional

import numpy as np

from storage import explain
from storage.queries import json_object

# More runner processes than a run can have (storage.models.Run.processes): what numbers them.
PROCESSES = 2**20
# A process's ``walls``: each counted repeat's wall time in ns, in repeat order, as text
# ("10402231 10377754 …", what the sqlite3 shell and pandas show as it is). Only positive finite
# times are kept.

# The per-repeat figures a process keeps the median of, and how each is had from the repeat
# table (start-up latency on integers in SQL: clock readings past 2**53 ns would lose ns).
MEDIANS = {
    "startup_ns": "first_task_start_ns - start_ns",
    "in_flight": None,  # busy_ns / wall_ns
    "cpu_per_wall": None,  # cpu_ns / wall_ns
    "voluntary_switches": "voluntary_switches",
    "involuntary_switches": "involuntary_switches",
    "core_moves": "core_moves",
    "on_core_share": None,  # on_core_ns / worker_span_ns
    "core_wait_share": None,  # core_wait_ns / worker_span_ns
}
# ... and of the largest.
MAXIMA = ("peak_rss_bytes", "worker_peak_rss_bytes", "cores_used")
# The run's facts, from its stored environment (the same on each of its processes): whether a
# free-threaded build's workers ran with the GIL on (NULL: unknown), the median cores other
# work took during its repeats, the load per core when it began, the --detect it was measured
# for, and how many machine problems it recorded (their words stay in the environment).
# From the run's looked-at repeat (storage.states): the shares of its workers' blocked time
# spent on a lock, in I/O and asleep, and how often a core changed threads (per second).
LOOK = ("look_lock", "look_io", "look_sleep", "handovers_per_s")
FACTS = ("gil_on", "others_cores", "load_per_core", "detect", "problems", *LOOK)
COLUMNS = ("run_id", "process_index", "walls", *MEDIANS, *MAXIMA, *FACTS)

REPEATS_SQL = (
    "SELECT run_id, process_index, repeat_index, wall_ns, cpu_ns, "
    "first_task_start_ns - start_ns, busy_ns, voluntary_switches, involuntary_switches, "
    "core_moves, peak_rss_bytes, worker_peak_rss_bytes, cores_used, worker_span_ns, on_core_ns, "
    "core_wait_ns FROM repeat "
    "WHERE warmup IS NOT TRUE AND run_id IN ({runs})"
)
# REPEATS_SQL's columns after run_id, process_index and repeat_index.
NUMBERS = (
    "wall_ns",
    "cpu_ns",
    "startup_ns",
    "busy_ns",
    "voluntary_switches",
    "involuntary_switches",
    "core_moves",
    *MAXIMA,
    "worker_span_ns",
    "on_core_ns",
    "core_wait_ns",
)


def derive(environments: Mapping[Any, Any], repeats: Sequence[Sequence]) -> list[tuple]:
    """The ``process`` rows (COLUMNS, in order) of some runs: ``environments`` maps each run id
    to its stored environment (text or an already parsed dict), ``repeats`` holds their counted
    repeats as REPEATS_SQL reads them. A repeat whose wall time is not a positive number, or
    whose index its run already used, counts for nothing; a process with no repeat left has no
    row."""
    if not repeats:
        return []
    return derive_with_facts(
        {run_id: run_facts(environments[run_id]) for run_id in environments}, repeats
    )


def derive_with_facts(facts: Mapping[Any, tuple], repeats: Sequence[Sequence]) -> list[tuple]:
    """``derive`` given each run's ``run_facts`` in place of its environment."""
    if not repeats:
        return []
    runs = {run_id: at for at, run_id in enumerate(facts)}
    run_at = np.array([runs.get(row[0], -1) for row in repeats], dtype=np.int64)
    process = _numbers([row[1] for row in repeats])
    process = np.clip(np.nan_to_num(process, nan=0, posinf=0, neginf=0), 0, PROCESSES - 1)
    repeat_index = _numbers([row[2] for row in repeats])
    values = {name: _numbers([row[3 + at] for row in repeats]) for at, name in enumerate(NUMBERS)}
    wall = values["wall_ns"]
    kept = (run_at >= 0) & (wall > 0) & (wall < math.inf)
    key = run_at * PROCESSES + process.astype(np.int64)
    # each run's repeat index once (the first row read), and in repeat order within a process
    order = np.lexsort((np.arange(len(wall)), repeat_index, run_at))
    order = order[kept[order]]
    same = (np.diff(run_at[order]) == 0) & (np.diff(repeat_index[order]) == 0)
    order = order[np.concatenate(([True], ~same))] if len(order) else order
    order = order[np.argsort(key[order], kind="stable")]
    if not len(order):
        return []
    key = key[order]
    values = {name: v[order] for name, v in values.items()}
    wall = values["wall_ns"]
    starts = np.flatnonzero(np.diff(key, prepend=-1))
    group = np.cumsum(np.diff(key, prepend=-1) != 0) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        per_repeat = {
            "startup_ns": values["startup_ns"],
            "in_flight": values["busy_ns"] / wall,
            "cpu_per_wall": values["cpu_ns"] / wall,
            **{name: values[name] for name in ("voluntary_switches", "involuntary_switches")},
            "core_moves": values["core_moves"],
            "on_core_share": values["on_core_ns"] / values["worker_span_ns"],
            "core_wait_share": values["core_wait_ns"] / values["worker_span_ns"],
        }
    medians = {name: group_medians(v, group, len(starts)) for name, v in per_repeat.items()}
    maxima = {name: np.fmax.reduceat(values[name], starts) for name in MAXIMA}
    facts_at = list(facts.values())
    ends = [*starts[1:].tolist(), len(wall)]
    rows = []
    run_ids = list(facts)
    for at, (start, end) in enumerate(zip(starts.tolist(), ends)):
        run_number, process_index = divmod(int(key[start]), PROCESSES)
        rows.append(
            (
                run_ids[run_number],
                process_index,
                walls_text(wall[start:end]),
                *(_stored(medians[name][at]) for name in MEDIANS),
                *(_whole(maxima[name][at]) for name in MAXIMA),
                *facts_at[run_number],
            )
        )
    return rows


def walls_text(walls: np.ndarray) -> str:
    return " ".join(str(int(v)) if v.is_integer() else repr(v) for v in walls.tolist())


# What a ``walls`` text is written with (``walls_text``): anything else is not one.
_WALL_CHARACTERS = str.maketrans("", "", "0123456789 .e+-")


def _nonempty_texts(texts: Sequence[Any]) -> np.ndarray:
    """Whether each of ``texts`` is a non-empty str: at C speed when all of them are."""
    if set(map(type, texts)) <= {str} and "" not in texts:
        return np.ones(len(texts), dtype=bool)
    found = (isinstance(t, str) and t != "" for t in texts)
    return np.fromiter(found, dtype=bool, count=len(texts))


def walls_look_readable(texts: Sequence[Any]) -> np.ndarray:
    """Whether each stored ``walls`` is a non-empty text of the characters ``walls_text``
    writes: a check in one pass over them all (a text that passes it and still does not
    parse holds no value for ``read_walls``)."""
    looks = _nonempty_texts(texts)
    if looks.all() and not " ".join(texts).translate(_WALL_CHARACTERS):
        return looks
    return looks & np.fromiter(
        (looks[at] and not t.translate(_WALL_CHARACTERS) for at, t in enumerate(texts)),
        dtype=bool,
        count=len(texts),
    )


def read_walls(texts: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored ``walls`` texts as (every value in ns, how many each text holds, whether each
    could be read): one parse of them all, or text by text where one is not a list of
    numbers (a damaged or hostile file: ``derive`` never stores an empty one), which then
    holds none."""
    readable = _nonempty_texts(texts)
    if readable.all():
        counts = np.fromiter(map(str.count, texts, repeat(" ")), dtype=np.int64, count=len(texts))
        values = _parsed(" ".join(texts), int(counts.sum()) + len(texts))
        if values is not None:
            return values, counts + 1, readable
    found, counts = [], np.zeros(len(texts), dtype=np.int64)
    for at, text in enumerate(texts):
        try:
            values = np.array(text.split(" "), dtype=float) if readable[at] else None
        except ValueError:
            values = None
        if values is None:
            readable[at] = False
            continue
        found.append(values)
        counts[at] = len(values)
    return (np.concatenate(found) if found else np.zeros(0)), counts, readable


# What a whole-number parse saturates at: a text holding it is read as floats instead.
_INT64_ENDS = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)


def _parsed(text: str, expected: int) -> Optional[np.ndarray]:
    """The ``expected`` numbers of a space-separated ``text`` as floats, or None where it does
    not hold exactly that many. Whole numbers (what ``walls_text`` writes of nanoseconds) are
    read as integers, ten times faster than numpy's float parse and exact the same way."""
    for dtype in (np.int64, float):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                values = np.fromstring(text, dtype=dtype, sep=" ")  # noqa: NPY201 (text mode)
            except (ValueError, DeprecationWarning):
                continue
        if len(values) != expected:
            return None
        if dtype is float:
            return values
        if not len(values) or _INT64_ENDS[0] < values.min() <= values.max() < _INT64_ENDS[1]:
            return values.astype(float)
    return None


def group_medians(values: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """The median (as statistics.median takes it) of each group's values that are numbers;
    NaN for a group with none. ``group`` numbers each value's group, 0 to ``groups`` - 1."""
    order = np.lexsort((values, group))  # NaN sorts last within its group
    ordered, grouped = values[order], group[order]
    counted = np.bincount(group, weights=~np.isnan(values), minlength=groups).astype(np.int64)
    starts = np.searchsorted(grouped, np.arange(groups))
    low = np.clip(starts + (counted - 1) // 2, 0, max(len(values) - 1, 0))
    high = np.clip(starts + counted // 2, 0, max(len(values) - 1, 0))
    if not len(values):
        return np.full(groups, math.nan)
    return np.where(counted > 0, (ordered[low] + ordered[high]) / 2, math.nan)


def run_facts(environment: Any) -> tuple:
    """A run's FACTS from its stored environment (text or parsed); None for what it does not
    say. Whether the GIL was on is read as for a free-threaded build: the report knows the
    build, and a build with a GIL always had it on."""
    env = environment if isinstance(environment, dict) else json_object(environment) or {}
    facts = explain.run_facts(env, build_has_gil=False)
    gil = None if facts.gil is None else bool(facts.gil)
    others = statistics.median(facts.others_cores) if facts.others_cores else None
    detect = env.get("detect")
    detect = float(detect) if _number(detect) and 0 < detect < 1 else None
    problems = env.get("problems")
    look = env.get("look") if isinstance(env.get("look"), dict) else {}
    of_blocked = look.get("of_blocked") if isinstance(look.get("of_blocked"), dict) else {}
    return (
        gil,
        others,
        load_per_core(env),
        detect,
        len(problems) if isinstance(problems, list) else 0,
        *(_fraction(of_blocked.get(k)) for k in ("lock", "io", "sleep")),
        _rate(look.get("handovers_per_s")),
    )


def _fraction(value: Any) -> Optional[float]:
    return float(value) if _number(value) and 0 <= value <= 1 else None


def _rate(value: Any) -> Optional[float]:
    return float(value) if _number(value) and 0 <= value < 1e9 else None


def load_per_core(env: dict) -> Optional[float]:
    """The load average per usable core when the run began, if the environment says."""
    try:
        load = env["load_average"][0]
        cores = env.get("usable_cores") or env.get("logical_cores") or 1
        found = float(load) / float(cores)
    except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError, OverflowError):
        return None
    return found if math.isfinite(found) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stored(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None


def _whole(value: float) -> Optional[int]:
    """A count or byte size as the table's integer column holds it; None past its range."""
    return int(value) if math.isfinite(value) and abs(value) < 2**63 else None


def _numbers(column: Iterable) -> np.ndarray:
    """Stored values as floats: NaN where missing or, in a damaged file whose columns took any
    type, not a number."""
    column = list(column)
    try:
        return np.array(column, dtype=float).reshape(len(column))
    except (TypeError, ValueError, OverflowError):
        return np.array([_float(v) for v in column], dtype=float)


def _float(value: Any) -> float:
    if value is None or isinstance(value, (str, bytes)):
        try:
            return float(value) if isinstance(value, str) else math.nan
        except ValueError:
            return math.nan
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan


# --- the process table -------------------------------------------------------------------------


# The runs of a table of run ids (``{runs}``) that have no process row: what a merge derives
# (a run recorded by this lab arrives with its rows, as its repeats carry their busy time).
UNFIGURED_SQL = (
    "SELECT id FROM {runs} n WHERE NOT EXISTS (SELECT 1 FROM process p WHERE p.run_id = n.id)"
)


def refresh(connection, runs: str, params: Any = ()) -> int:
    """Derive again, and store, the ``process`` rows of the runs ``runs`` lists (SQL giving
    their ids, with ``params`` in the driver's style) from the repeats and environments
    ``connection`` holds: a sqlite3 connection or a SQLAlchemy one, inside the caller's
    transaction. Returns how many rows were stored."""
    raw = isinstance(connection, sqlite3.Connection)
    execute = connection.execute if raw else connection.exec_driver_sql
    mark = parameter_mark(connection)
    environments = dict(
        execute(f"SELECT id, environment_json FROM run WHERE id IN ({runs})", params).fetchall()
    )
    repeats = execute(REPEATS_SQL.format(runs=runs), params).fetchall()
    execute(f"DELETE FROM process WHERE run_id IN ({runs})", params)
    rows = derive(environments, repeats)
    if rows:
        insert = (
            f"INSERT INTO process ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join([mark] * len(COLUMNS))})"
        )
        if raw:
            connection.executemany(insert, rows)
        else:
            execute(insert, rows)
    return len(rows)


def refresh_ids(connection, run_ids: Sequence[str]) -> int:
    """``refresh`` of the runs with these ids, a few hundred at a time."""
    mark, stored = parameter_mark(connection), 0
    for start in range(0, len(run_ids), 500):
        chunk = tuple(run_ids[start : start + 500])
        stored += refresh(connection, ", ".join([mark] * len(chunk)), chunk)
    return stored


def parameter_mark(connection) -> str:
    """A positional parameter in the style of ``connection``'s driver (a sqlite3 connection
    or a SQLAlchemy one)."""
    if isinstance(connection, sqlite3.Connection) or connection.dialect.paramstyle == "qmark":
        return "?"
    return "%s"
