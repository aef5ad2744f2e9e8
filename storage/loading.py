"""The stored runs as a report reads them: the SQL that loads a database's finished runs into
pandas frames (one row per counted repeat, or per runner process), one run's task samples and
thread states, and the rows a selection picks. What the frames mean is in ``summaries``,
``verdicts`` and ``comparisons``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import pandas as pd

from storage import explain, figures
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

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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
        # numbers, or NULLs alone (a figure its runs did not record), read as they are
        if pd.api.types.is_numeric_dtype(values) or values.isna().all():
            continue
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


def cell_text(value) -> str:
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
        column = frame[SELECTION_KEYS[key]].map(cell_text)
        if key in ("run", "sweep"):
            mask &= column.str.startswith(value)
        elif key == "python":
            mask &= (column == value) | column.str.startswith(value + ".")
        elif key == "machine":
            mask &= (column == value) | frame["machine_fingerprint"].map(str).str.startswith(value)
        else:
            mask &= column == value
    return frame[mask]
