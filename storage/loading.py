"""What the stored runs mean: pandas frames, the summary per configuration, verdicts in words,
comparisons of two selections, and stability warnings. Rendering lives in ``render.py``."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from experiments.executors import EXECUTORS
from experiments.options import BY_NAME
from storage import controlled, explain, figures, stats
from storage.errors import SelectionError
from storage.listing import Reading, reading
from storage.queries import (
    CONFIG_COLUMNS,
    OPTION_COLUMNS,
    REPORT_COLUMNS,
    SELECTION_KEYS,
    json_object,
    selection_terms,
)
from storage.target import read_error
from storage.text import number_text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# A configuration: what must be equal for two runs to be repeats of the same measurement.
CONFIG = ["machine", "python", *CONFIG_COLUMNS]
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
# What a repeat's worker threads did (storage.models.Repeat); NULL where it was not observed.
WORKER_COLUMNS = ("worker_span_ns", "on_core_ns", "core_wait_ns")
MIN_EFFECT = 0.05
CV_WARNING = 0.10
HIGH_LOAD_PER_CORE = 0.5


# --- loading ---------------------------------------------------------------------------------


def load_repeats(
    sources: Sequence[tuple[str, Any]], selection: Optional[str] = None
) -> pd.DataFrame:
    """One row per counted repeat (warm-ups left out) of a finished run, with its run's
    configuration and origin.

    ``sources`` are ``(label, database)`` pairs, each database what storage.listing's
    ``open_runs`` opened, or a SQLAlchemy engine; the label is what
    ``db:`` selections match.
    Runs still running, interrupted, failed or cancelled are left out of the figures. The
    database joins and filters; it hands over each run's columns once and of each repeat only
    the numbers a summary reads (REPEAT_NUMBERS), never a task sample. A ``selection`` is
    applied there too (storage.queries' SQL of it picks at least what ``select`` keeps), so
    that a report on a few runs of a big database reads those runs only.
    """
    frames, runs_before = [], 0
    for label, source in sources:
        with reading(source) as connection:
            where, params = _selection_sql(connection, selection, label)
            run_row = _run_row(connection)
            runs = _read_frame(connection, RUNS_SQL.format(run_row=run_row) + where, params)
            run_rows, numbers = _read_numbers(connection, where, params)
        frame = _repeat_rows(runs, run_rows, numbers, runs_before)
        runs_before += len(runs)
        frame["db"] = label
        frames.append(frame)
    if not frames:
        return pd.DataFrame()
    frame = _together(frames) if len(frames) > 1 else frames[0]
    frame = frame.dropna(subset=["wall_ns", "workers"])
    frame = frame[~frame.duplicated(["run_id", "repeat_index"])]
    frame = frame[frame["wall_ns"] > 0]  # no repeat takes no time: a damaged row, not a figure
    if frame.empty:
        return pd.DataFrame()
    frame["wall_s"] = frame["wall_ns"] / 1e9
    return frame


def _together(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames of several databases as one, their stored times in one type (``utc_times``)."""
    frame = pd.concat(frames, ignore_index=True)
    if "created_at" in frame:
        frame["created_at"] = utc_times(frame["created_at"])
    return frame


def utc_times(values: pd.Series) -> pd.Series:
    """Stored times in one type, UTC, whatever each database handed over (SQLite's text, a
    server's datetime), so that runs of several databases sort together; NaT for what is no
    time (a damaged row)."""
    from datetime import datetime

    kept = values.map(lambda v: v if isinstance(v, (str, datetime)) else None)
    return pd.to_datetime(kept, utc=True, errors="coerce", format="ISO8601")


# A run's columns as every frame here carries them (RUNS_SQL adds its stored environment),
# with run_row (``_run_row``) first.
RUN_COLUMNS = {
    "run_id": "r.id",
    **{c: f"r.{c}" for c in ("sweep_id", "tag", *CONFIG_COLUMNS, "created_at")},
    "machine_fingerprint": "r.machine_fingerprint",
    "machine": "coalesce(m.hostname, r.machine_fingerprint)",
    "cores": "coalesce(m.usable_cores, m.logical_cores)",
    "cpu_model": "m.cpu_model",
    "python": "i.version",
    "gil_disabled": "i.gil_disabled",
    "run_order": "coalesce(s.run_order, 'blocks')",
}
RUN_COLUMNS_SQL = "{run_row} AS run_row, " + ", ".join(
    f"{sql} AS {name}" for name, sql in RUN_COLUMNS.items()
)
RUN_JOINS = (
    "LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
    "LEFT JOIN interpreter i ON i.key = r.interpreter_key "
    "LEFT JOIN sweep s ON s.id = r.sweep_id"
)
RUNS_SQL = (
    f"SELECT {RUN_COLUMNS_SQL}, r.environment_json FROM run r {RUN_JOINS} WHERE r.status = 'ok'"
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
    **{column: f"p.{column}" for column in WORKER_COLUMNS},
}
REPEATS_SQL = (
    f"SELECT {{run_row}}, {', '.join(REPEAT_NUMBERS.values())} "
    "FROM repeat p JOIN run r ON r.id = p.run_id {joins}"
    "WHERE r.status = 'ok' AND p.warmup IS NOT TRUE"
)


def _selection_sql(connection: Reading, selection: Optional[str], label: str) -> tuple[str, dict]:
    """`` AND …`` for the runs ``selection`` picks in the database labelled ``label``, and its
    parameters; nothing without a selection."""
    if not selection:
        return "", {}
    from storage.queries import RunFilter, selection_where

    where, params = selection_where(connection.dialect, RunFilter(selection=selection, label=label))
    return f" AND {where}", params


def _rows(connection: Reading, sql: str, params=None) -> tuple[list[str], list[tuple]]:
    """Column names and rows of ``sql`` (``:name`` parameters) through the driver's own cursor
    (SQLAlchemy's row objects cost more than the query)."""
    cursor = connection.connection.cursor()
    if params and connection.dialect != "sqlite":  # psycopg's parameters: %(name)s
        sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
    try:
        cursor.execute(sql, params or ())
        return [d[0] for d in cursor.description], cursor.fetchall()
    except Exception as exc:
        # what SQLAlchemy's handle_error would have made of it (storage.database)
        found = None
        if connection.path is not None:
            found = read_error(connection.path, exc)
        if found is None:
            raise
        raise found from None
    finally:
        cursor.close()


def _read_frame(connection, sql: str, params=None) -> pd.DataFrame:
    names, rows = _rows(connection, sql, params)
    return pd.DataFrame.from_records(rows, columns=names)


def _run_row(connection) -> str:
    """What names a run in both queries: SQLite's rowid, a number (numbers convert to an array
    in one step); elsewhere its id."""
    return "r.rowid" if connection.dialect == "sqlite" else "r.id"


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
    _run_frame(runs)
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


def _run_frame(runs: pd.DataFrame) -> None:
    """RUN_COLUMNS_SQL's columns as a frame's rows hold them: numbers as numbers, the Python
    version as its interpreter is named, missing values as None."""
    for column in ("size", "tasks", "workers"):
        runs[column] = pd.to_numeric(runs[column], errors="coerce")
    # the other options: missing as None, so runs without one are one configuration
    for column in (*(c for c in OPTION_COLUMNS if c not in ("size", "tasks", "workers")), "tag"):
        runs[column] = runs[column].astype(object).where(runs[column].notna(), None)
    runs["python"] = runs["python"].fillna("?")
    # A free-threaded build is its own interpreter in every table: 3.13.0t, as python.org names it.
    free_threaded = runs["gil_disabled"].fillna(False).astype(bool)
    runs.loc[free_threaded, "python"] = runs.loc[free_threaded, "python"] + "t"


PROCESSES = figures.PROCESSES


def load_processes(
    sources: Sequence[tuple[str, Any]], selection: Optional[str] = None
) -> pd.DataFrame:
    """One row per runner process of a finished run: its run's columns (as ``load_repeats``
    gives them), its figures (storage.figures: ``walls``, the medians, peaks and the run's
    facts) and, where its run recorded them, the words behind its facts (``gil_cause``,
    ``machine_problems``). What a summary reads: the stored ``process`` rows, and no
    environment text but of the few runs whose facts have words. A run without readable rows
    is derived from its repeats here. ``sources`` and ``selection`` as ``load_repeats`` takes
    them."""
    frames = []
    for label, source in sources:
        with reading(source) as connection:
            where, params = _selection_sql(connection, selection, label)
            frame = _stored_processes(connection, where, params)
        frame["db"] = label
        frames.append(frame)
    if len(frames) > 1:  # a run merged into several of them is read once
        frame = _together(frames)
        frame = frame[~frame.duplicated(["run_id", "process_index"])]
    else:
        frame = frames[0]
    frame = frame.dropna(subset=["workers"])
    if frame.empty:
        return pd.DataFrame()
    frame = frame.reset_index(drop=True)
    frame["process"] = np.arange(len(frame))
    return frame


# A finished run's own columns as a process row carries them (read from ix_run_report); its
# place (machine, interpreter, the order of its sweep) is looked up once in those small tables
# (``_place``) rather than joined to every row. A run without process rows comes out once,
# its figures NULL.
RUN_KEYS_SQL = "r.id AS run_id, " + ", ".join(
    f"r.{c}" for c in REPORT_COLUMNS if c not in ("status", "id")
)
# The options most runs leave unset (NULL): each is read with every process row only where some
# stored run holds it (``_options_held``); elsewhere it is None in every row, unread.
SPARSE_OPTIONS = tuple(c for c in OPTION_COLUMNS if c not in ("workers", "size", "tasks"))


def _process_sql(held: Sequence[str]) -> str:
    """What a report reads of each process row (``{joins}`` to fill): its run's keys, of the
    SPARSE_OPTIONS only those ``held``, and its figures."""
    keys = [
        c
        for c in REPORT_COLUMNS
        if c not in ("status", "id") and (c not in SPARSE_OPTIONS or c in held)
    ]
    return (
        f"SELECT r.id AS run_id, {', '.join('r.' + c for c in keys)}, "
        + ", ".join(f"p.{c}" for c in figures.COLUMNS[1:])
        + " FROM run r LEFT JOIN process p ON p.run_id = r.id {joins}WHERE r.status = 'ok'"
    )


def _options_held(connection, joins: str, where: str, params: dict) -> list[str]:
    """The SPARSE_OPTIONS some run that ``where`` picks holds (one pass over the report's
    index, or over the runs picked: one run's detail reads one run, not the whole file)."""
    counts = ", ".join(f"count(r.{c})" for c in SPARSE_OPTIONS)
    sql = f"SELECT {counts} FROM run r {joins}WHERE r.status = 'ok'{where}"
    _, rows = _rows(connection, sql, params)
    return [c for c, n in zip(SPARSE_OPTIONS, rows[0]) if n]


def _stored_processes(connection, where: str, params: dict) -> pd.DataFrame:
    """The process rows of the finished runs ``where`` picks in one database; the runs whose
    rows are missing or unreadable derived again from their repeats."""
    joins = SELECTION_JOINS if where else ""
    held = _options_held(connection, joins, where, params)
    names, rows = _rows(connection, _process_sql(held).format(joins=joins) + where, params)
    frame = pd.DataFrame.from_records(rows, columns=names)
    for column in (c for c in SPARSE_OPTIONS if c not in held):
        frame[column] = None
    readable = _sound_rows(frame)
    again = set(frame.loc[~readable, "run_id"].tolist())
    frame = frame[~frame["run_id"].isin(again)] if again else frame
    texts: dict = {}
    if again:
        frame = pd.concat([frame, _derived(connection, sorted(again), texts)], ignore_index=True)
    _place(connection, frame)
    _run_frame(frame)
    _facts_as_numbers(frame)
    _add_words(connection, frame, texts)
    return frame


def _sound_rows(frame: pd.DataFrame) -> np.ndarray:
    """Whether each stored process row can be used as it is: its walls a text of numbers that
    holds a positive finite wall time, its figures numbers (or NULL). A received file's rows
    are read as they are, so any other row is derived again from its run's repeats."""
    texts = frame["walls"].tolist()
    sound = figures.walls_look_readable(texts)
    values, counts, parsed = figures.read_walls(texts)
    owner = np.repeat(np.arange(len(texts)), counts)
    kept = (values > 0) & (values < math.inf)
    sound &= parsed & (np.bincount(owner, weights=kept, minlength=len(texts)) > 0)
    for column in (*figures.MEDIANS, *figures.MAXIMA):
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values):  # as numbers and NULLs alone read
            sound &= np.fromiter(
                (
                    v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                    for v in values
                ),
                dtype=bool,
                count=len(values),
            )
    return sound


def _place(connection, frame: pd.DataFrame) -> None:
    """RUN_COLUMNS' machine, cores, CPU model, Python version, build and sweep order of each
    row, from its keys (what RUNS_SQL joins, looked up once per machine, interpreter, sweep)."""
    machines = _rows(
        connection,
        "SELECT fingerprint, hostname, coalesce(usable_cores, logical_cores), cpu_model "
        "FROM machine",
    )[1]
    interpreters = _rows(connection, "SELECT key, version, gil_disabled FROM interpreter")[1]
    orders = dict(_rows(connection, "SELECT id, run_order FROM sweep")[1])
    fingerprint, key = frame["machine_fingerprint"], frame.pop("interpreter_key")
    found = _lookup(fingerprint, {m[0]: m[1:] for m in machines}, 3)
    for column, values in zip(("machine", "cores", "cpu_model"), found):
        frame[column] = values
    frame["cores"] = frame["cores"].infer_objects()
    frame["machine"] = frame["machine"].where(frame["machine"].notna(), fingerprint)
    frame["python"], frame["gil_disabled"] = _lookup(key, {i[0]: i[1:] for i in interpreters}, 2)
    (order,) = _lookup(frame["sweep_id"], {k: (v,) for k, v in orders.items()}, 1)
    frame["run_order"] = order.fillna("blocks")


def _lookup(keys: pd.Series, table: dict, width: int) -> list[pd.Series]:
    """The ``width`` values ``table`` holds for each of ``keys`` (None where it has no row),
    one column each, looked up once per distinct key."""
    codes, uniques = pd.factorize(keys)
    rows = [*(table.get(u) or (None,) * width for u in uniques), (None,) * width]
    return [
        pd.Series(np.array([*column], dtype=object)[codes], index=keys.index, dtype=object)
        for column in zip(*rows)
    ]


def _derived(connection, run_ids: list, texts: dict) -> pd.DataFrame:
    """The process rows of these runs derived from their repeats (storage.figures), beside
    their run's columns; ``texts`` gets each one's stored environment."""
    parts = []
    mark = connection.mark
    for start in range(0, len(run_ids), 500):
        chunk = tuple(run_ids[start : start + 500])
        listed = ", ".join([mark] * len(chunk))
        sql = (
            f"SELECT {RUN_KEYS_SQL}, r.environment_json FROM run r "
            f"WHERE r.status = 'ok' AND r.id IN ({listed})"
        )
        runs = _read_frame(connection, sql, chunk)
        _, repeats = _rows(connection, figures.REPEATS_SQL.format(runs=listed), chunk)
        environments = dict(zip(runs["run_id"], runs["environment_json"]))
        texts.update(environments)
        rows = pd.DataFrame.from_records(
            figures.derive(environments, repeats), columns=list(figures.COLUMNS)
        )
        parts.append(runs.drop(columns=["environment_json"]).merge(rows, on="run_id"))
    return pd.concat(parts, ignore_index=True)


def _add_words(connection, frame: pd.DataFrame, texts: dict) -> None:
    """``_words``, reading the environments of the ``_worded`` runs not in ``texts``."""
    wanted = [r for r in _worded(frame) if r not in texts]
    mark = connection.mark
    for start in range(0, len(wanted), 500):
        chunk = tuple(wanted[start : start + 500])
        sql = f"SELECT id, environment_json FROM run WHERE id IN ({', '.join([mark] * len(chunk))})"
        texts.update(_rows(connection, sql, chunk)[1])
    _words(frame, texts)


def processes_of(repeats: pd.DataFrame) -> pd.DataFrame:
    """``load_processes``' rows for the counted repeats ``repeats`` (``load_repeats``' frame):
    what a summary of a selection already loaded reads, derived as the stored rows are."""
    if repeats.empty:
        return pd.DataFrame()
    counted = repeats[~repeats["warmup"]]
    runs = counted.drop_duplicates("run_id")
    environments = dict(zip(runs["run_id"], runs["environment_json"]))
    columns = ["run_id", "process_index", "repeat_index", *figures.NUMBERS]
    rows = figures.derive(environments, list(zip(*(counted[c] for c in columns))))
    derived = pd.DataFrame.from_records(rows, columns=list(figures.COLUMNS))
    if derived.empty:
        return pd.DataFrame()
    frame = runs[[*RUN_COLUMNS, "db"]].merge(derived, on="run_id")
    _facts_as_numbers(frame)
    _words(frame, environments)
    frame["process"] = np.arange(len(frame))
    return frame


def _facts_as_numbers(frame: pd.DataFrame) -> None:
    for column in figures.FACTS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")


def _worded(frame: pd.DataFrame) -> list:
    """The runs whose facts have words in their environment: the GIL on in a free-threaded
    build's workers (what turned it on), machine problems recorded."""
    free_threaded = frame["gil_disabled"].fillna(False).astype(bool)
    worded = (free_threaded & (frame["gil_on"] == 1)) | (frame["problems"] > 0)
    return frame.loc[worded, "run_id"].unique().tolist()


def _words(frame: pd.DataFrame, texts: dict) -> None:
    """``gil_cause`` and ``machine_problems`` of the ``_worded`` runs, from ``texts`` (their
    stored environments by run id)."""
    causes, problems = {}, {}
    worded = _worded(frame)
    if not worded:
        frame["gil_cause"] = frame["machine_problems"] = None
        return
    for run_id in worded:
        env = json_object(texts.get(run_id)) or {}
        causes[run_id] = explain.run_facts(env, False).gil_cause
        found = env.get("problems")
        if isinstance(found, list) and found:
            problems[run_id] = [str(p) for p in found]
    frame["gil_cause"] = frame["run_id"].map(causes).astype(object)
    frame["machine_problems"] = frame["run_id"].map(problems).astype(object)


def load_timeline(engine: Engine, run_id: str) -> pd.DataFrame:
    """Every task sample of one run, with times relative to its repeat's start, in ms."""
    from sqlalchemy import text

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


def load_look(engine: Engine, run_id: str) -> Optional[str]:
    """What each thread of one run did in its looked-at repeat (``run.thread_states``), or
    None when it has none (recorded before, or where the platform does not let a parent look)."""
    from sqlalchemy import text

    with engine.connect() as connection:
        found = connection.execute(
            text("SELECT thread_states FROM run WHERE id = :run"), {"run": run_id}
        ).scalar()
    return found if isinstance(found, str) else None


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
        startup_s=("startup_s", "median"),
        in_flight=("in_flight", "median"),
        cpu_per_wall=("cpu_per_wall", "median"),
        cores=("cores", "max"),
        gil_disabled=("gil_disabled", "max"),
        peak_rss_bytes=("peak_rss_bytes", "max"),
        worker_peak_rss_bytes=("worker_peak_rss_bytes", "max"),
        voluntary_switches=("voluntary_switches", "median"),
        involuntary_switches=("involuntary_switches", "median"),
        core_moves=("core_moves", "median"),
        cores_used=("cores_used", "max"),
        on_core_share=("on_core_share", "median"),
        core_wait_share=("core_wait_share", "median"),
        **{name: (name, "median") for name in figures.LOOK},
    ).reset_index()
    # every counted repeat of a configuration, pooled
    owner = config[walls.row]
    ordered, starts, ends = _sorted_groups(walls.values, owner, groups)
    repeats = ends - starts
    sums = np.bincount(owner, weights=walls.values, minlength=groups)
    means = sums / repeats
    squares = np.bincount(owner, weights=(walls.values - means[owner]) ** 2, minlength=groups)
    pooled = {
        "repeats": repeats,
        "median_s": _medians(ordered, starts, ends),
        "q1_s": _quantiles(ordered, starts, ends, 0.25),
        "q3_s": _quantiles(ordered, starts, ends, 0.75),
        "mean_s": means,
        "std_s": np.sqrt(squares / np.maximum(repeats - 1, 1)),
        "min_s": ordered[starts],
    }
    pooled["std_s"][repeats < 2] = math.nan
    for name, values in pooled.items():
        summary[name] = values
    first = [*CONFIG, "repeats", "processes", "median_s", "q1_s", "q3_s", "mean_s", "std_s"]
    summary = summary[[*first, *(c for c in summary.columns if c not in first)]]
    # each process's own
    by_row, row_starts, row_ends = _sorted_groups(walls.values, walls.row, len(counted))
    process_medians = _medians(by_row, row_starts, row_ends)
    withins = by_row[row_ends - 1] / by_row[row_starts] - 1
    first_at = np.searchsorted(walls.row, np.arange(len(counted)))  # values in repeat order
    counted["first_s"] = walls.values[first_at]
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
    # "turns" unless some of its runs ran in blocks (older runs all did)
    blocks = (runs["run_order"] == "blocks").groupby(run_config).any()
    summary.insert(
        summary.columns.get_loc("peak_rss_bytes"),
        "run_order",
        np.where(blocks.values, "blocks", "turns"),
    )
    intervals = _intervals(
        config, groups, pooled["median_s"], process_medians, withins, walls, by_row
    )
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
    _add_run_facts(summary, runs, run_config, sweep_loads)
    works = _same_work(summary, counted, config, runs, run_config)
    summary["warnings"] = [
        _warnings(row, work, sweep_loads) for row, work in zip(summary.itertuples(), works)
    ]
    return summary.drop(columns=["interval"])


def _intervals(config, groups, medians, process_medians, withins, walls, by_row):
    """stats.interval_of of each configuration: its processes' medians and max/min minus 1 in
    row order, its pooled median, and (read only when one process ran) its values."""
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
    return "|".join(_text(v) for v in (key if isinstance(key, tuple) else (key,)))


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


def _name(row, apart: Sequence[str] = ()) -> str:
    """``executor xN``, with the options in ``apart`` (``told_apart_by``) by their labels:
    ``joblib x2 with joblib on threading``."""
    from experiments.spec import run_label

    name = run_label(row.executor, row.workers)
    given = [
        f"{BY_NAME[c].label} {_text(getattr(row, c))}"
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


def min_effect_for(processes: pd.DataFrame) -> float:
    """The smallest change called a difference among ``processes`` (``load_processes``' rows)
    unless the user says: 5%, or half the smallest ``--detect`` their runs were measured for (a
    change of exactly that size must not fall under the threshold half the time)."""
    if processes.empty or "detect" not in processes:
        return MIN_EFFECT
    asked = processes["detect"].to_numpy(dtype=float)
    asked = asked[(asked > 0) & (asked < 1)]
    return float(min(MIN_EFFECT, *(asked / 2))) if len(asked) else MIN_EFFECT


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
