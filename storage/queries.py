"""Reading stored runs back: the run objects that `conlab run/runs --json` print.

Rows are read as plain values with SQL (not as ORM objects): a database may come from someone
else, so a value of an unexpected type is shown as it is, never trusted or executed.

The SQL and the objects built from its rows are shared by the two ways a list is fetched: over a
SQLAlchemy engine here (a server), and with the standard library's sqlite3 (storage.listing, a
file). So this module loads SQLAlchemy only inside the functions that take an engine.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

from experiments.options import BY_NAME, OPTIONS
from storage.errors import SelectionError, refuses_writes
from storage.stats import interval, moved_between_processes

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


# The option table's dimensions (experiments.options) that are where a run was measured rather
# than a column of its own: the interpreter it ran under is its interpreter row's version, as
# every report names it (``python``); what ``--python`` asked for is only a name of it.
PLACE_OPTIONS = ("python",)
# Every other dimension is a run column of the option's name (storage.models.Run).
OPTION_COLUMNS = tuple(
    option.name for option in OPTIONS if option.dimension and option.name not in PLACE_OPTIONS
)
# The order a report sorts its rows by: the work, the executor, then how it ran.
_SORTED_FIRST = ("workload", "size", "tasks", "executor", "start_method", "workers")
# What a run's own columns say of its configuration (storage.summaries.CONFIG adds its machine
# and Python): two runs that differ in any of these are different measurements.
CONFIG_COLUMNS = (
    *(c for c in _SORTED_FIRST if c in ("workload", "executor") or c in OPTION_COLUMNS),
    *(c for c in OPTION_COLUMNS if c not in _SORTED_FIRST),
)
# The run columns a report reads, in the order its index holds them (status first: a report
# reads finished runs).
REPORT_COLUMNS = (
    "status",
    "id",
    "sweep_id",
    "tag",
    *CONFIG_COLUMNS,
    "created_at",
    "machine_fingerprint",
    "interpreter_key",
)

RUN_COLUMNS = (
    "id",
    "sweep_id",
    "status",
    "workload",
    "executor",
    "workers",
    "start_method",
    "chunksize",
    "tasks",
    "size",
    "repeats",
    "warmups",
    "tag",
    "error",
)


def json_object(text: Any) -> Optional[dict[str, Any]]:
    """``text`` (a stored JSON column) as a dict, or None when it is not a JSON object this
    process can read: not text, not JSON, not an object, or nested too deep to parse."""
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> Optional[float]:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_object(
    run: Mapping[str, Any],
    process_walls: Iterable[Iterable[Any]],
    machine: Optional[str] = None,
    python: Optional[str] = None,
    *,
    stored: bool = False,
) -> dict[str, Any]:
    """One run as the CLI contract's JSON object (``stored`` adds machine, created_at).

    ``run`` maps the run table's column names to values; ``process_walls`` holds the counted
    repeats' wall times (ns) of each runner process; values that are not numbers are left out.
    The median's 95% interval is taken over processes and repeats together (storage.stats).
    """
    groups = [[w / 1e9 for w in walls if _number(w) is not None] for walls in process_walls]
    groups = [g for g in groups if g]
    wall_s = [w for g in groups for w in g]
    spread = interval(groups)
    obj: dict[str, Any] = {"run_id": run["id"]}
    obj.update({name: run.get(name) for name in RUN_COLUMNS[1:]})
    obj["python"] = python
    obj["processes"] = len(groups) or run.get("processes")
    obj["wall_s"] = wall_s
    obj["wall_s_by_process"] = groups
    obj["median_s"] = statistics.median(wall_s) if wall_s else None
    obj["ci_low_s"] = _finite(spread.low)
    obj["ci_high_s"] = _finite(spread.high)
    # the figure per call people compare with pyperf's: a repeat's median wall time per task
    tasks = _number(run.get("tasks"))
    obj["per_task_s"] = obj["median_s"] / tasks if obj["median_s"] is not None and tasks else None
    obj["notes"] = run_notes(obj, spread) + main_notes(run.get("environment_json"))
    obj.update({name: _number(run.get(name)) for name in COST_FIELDS})
    # keep the contract's key order: error last
    obj["error"] = obj.pop("error")
    if stored:
        obj.update(
            machine=machine,
            created_at=iso_utc(run.get("created_at")),
            machine_fingerprint=run.get("machine_fingerprint"),
        )
    return obj


# The cost beyond time in a run object, from its counted repeats (``run_costs``).
COST_FIELDS = (
    "peak_rss_bytes",
    "worker_peak_rss_bytes",
    "involuntary_switches",
    "core_moves",
    "cores_used",
)


def run_costs(repeats: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A run's costs from its counted repeats' columns: the largest peaks and cores used, the
    median switches and core moves per repeat; None when no repeat says."""
    return costs_of([[r.get(name) for name in COST_FIELDS] for r in repeats])


def costs_of(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """``run_costs`` of repeats given as rows of values in COST_FIELDS' order."""
    found: dict[str, Any] = dict.fromkeys(COST_FIELDS)
    # _number inlined: a listing of 100,000 runs reads these for every repeat
    for name, column in zip(COST_FIELDS, zip(*rows)):
        values = [v for v in column if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not values:
            found[name] = None
        elif name in ("involuntary_switches", "core_moves"):
            found[name] = statistics.median(values)
        else:
            found[name] = max(values)
    return found


# A task shorter than this measures the executor's dispatch more than the work.
SHORT_TASK_S = 0.001


def run_notes(obj: Mapping[str, Any], spread) -> list[str]:
    """What a person should know about one run's figures, said when it ends."""
    notes = []
    tasks = _number(obj.get("tasks"))
    if obj["median_s"] is not None and tasks and obj["median_s"] / tasks < SHORT_TASK_S:
        notes.append(
            f"tasks took {obj['median_s'] / tasks * 1e6:.0f} us each, under 1 ms: the executor's "
            "dispatch dominates; pass a larger --size to measure the work"
        )
    if obj["median_s"] is not None and spread.processes == 1:
        notes.append("one runner process: its interval leaves out layout and drift (--processes)")
    elif spread.processes > 1 and moved_between_processes(spread.spread, spread.within):
        notes.append(
            f"this figure moved {spread.spread:.0%} between processes, more than between "
            "repeats of one: the interval holds it"
        )
    return notes


def main_notes(environment: Any) -> list[str]:
    """What ``--main`` added to each worker's start, as the runner measured it (nothing when the
    stored environment does not say, or says it in figures that are not numbers)."""
    from experiments.mainmodule import cost_words

    found = json_object(environment) if isinstance(environment, str) else None
    main = (found or {}).get("main")
    if not isinstance(main, dict) or not isinstance(main.get("script"), str):
        return []
    figures = ("start_s", "start_s_without", "added_s")
    if any(k in main and _number(main[k]) is None for k in figures):
        return []
    if "exit_code" in main and _number(main["exit_code"]) is None:
        return []
    return [cost_words(main)]


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def iso_utc(moment: Any) -> Optional[str]:
    """A stored time as every output writes it: ISO 8601, UTC, to the second
    (``2026-11-25T21:03:07Z``). A time without a zone is UTC (the lab writes UTC; SQLite keeps
    no zone); text that is no time is shown as the text it is."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return moment
    if not isinstance(moment, datetime):
        return None if moment is None else str(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# Runs left `running` by a recorder on this host (``:h``), and marking one (``:id``) interrupted.
RUNNING_SQL = "SELECT id, recorder_pid FROM run WHERE status = 'running' AND recorder_host = :h"
MARK_SQL = (
    "UPDATE run SET status = 'interrupted', finished_at = :now, error = "
    "coalesce(error, 'the recording process ended before the run finished') "
    "WHERE id = :id AND status = 'running'"
)


def this_host() -> dict[str, str]:
    """RUNNING_SQL's parameters."""
    return {"h": socket.gethostname()}


def stale_marks(candidates: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """MARK_SQL's parameters for each of ``candidates`` (rows of RUNNING_SQL) whose recorder
    process no longer exists."""
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    return [{"id": run_id, "now": now} for run_id, pid in candidates if not _pid_alive(pid)]


def mark_interrupted(engine: Engine) -> int:
    """Runs left `running` by a recorder process that no longer exists on this host become
    `interrupted`. Returns how many changed."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with engine.connect() as connection:
        marks = stale_marks(connection.execute(text(RUNNING_SQL), this_host()).all())
        if marks and connection.dialect.name == "sqlite":
            from storage.target import foreign_schema

            found = foreign_schema(connection.connection.driver_connection)
            if any(kind == "trigger" for kind, _ in found):
                return 0  # a trigger would run on the marks: shown as it is stored
    if marks:
        try:
            with engine.begin() as connection:
                connection.execute(text(MARK_SQL), marks)
        except DBAPIError as exc:
            if not refuses_writes(exc):
                raise
            return 0  # a database that takes no writes: shown as it is stored
    return len(marks)


def list_runs(engine: Engine, tag: Optional[str] = None) -> list[dict[str, Any]]:
    """Every stored run (optionally with ``tag``), newest first, as run objects."""
    return list(stream_runs(engine, RunFilter(tag=tag)))


@dataclass(frozen=True)
class RunFilter:
    """Which stored runs a list shows: ``tag``, a ``selection`` in the reports' grammar
    (storage.loading.select; ``db:`` matches ``label``), runs created at or after ``since``
    (naive UTC), the newest ``limit`` (None: all)."""

    tag: Optional[str] = None
    selection: Optional[str] = None
    since: Optional[datetime] = None
    limit: Optional[int] = None
    label: Optional[str] = None
    # The app's filter: text anywhere in a run's id, workload, executor, workers, status, tag,
    # machine or Python (``tag:X`` is the tag X); and how many of the newest to skip (a page).
    text: Optional[str] = None
    offset: int = 0


# Runs read at a time when a list streams: their repeats are read for that batch only.
BATCH = 500


def stream_runs(engine: Engine, chosen: RunFilter) -> Iterator[dict[str, Any]]:
    """The runs ``chosen`` picks, newest first, as run objects, read ``BATCH`` at a time: the
    first is out before the last is read, and memory does not grow with the number of runs.
    Figures come from the repeats of the runs shown only."""
    from sqlalchemy import bindparam, text

    repeats = text(repeats_sql(":ids")).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as connection:
        rows = connection.execute(
            text(list_sql(chosen, engine.dialect.name)), list_params(chosen, engine.dialect.name)
        )
        for batch in rows.mappings().partitions(BATCH):
            ids = [run["id"] for run in batch]
            yield from run_objects(batch, connection.execute(repeats, {"ids": ids}))


def count_runs(engine: Engine, chosen: RunFilter) -> int:
    """How many runs ``chosen`` picks, whatever its limit."""
    from sqlalchemy import text

    dialect = engine.dialect.name
    with engine.connect() as connection:
        return connection.execute(
            text(count_sql(chosen, dialect)), list_params(chosen, dialect)
        ).scalar_one()


LIST_SQL = (
    f"SELECT {', '.join('r.' + c for c in RUN_COLUMNS)}, r.created_at, r.machine_fingerprint, "
    "m.hostname AS machine_name, i.version AS python_version, "
    "i.gil_disabled AS python_gil_disabled "
    "FROM run r LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
    "LEFT JOIN interpreter i ON i.key = r.interpreter_key"
)
LIST_ORDER = "ORDER BY r.created_at DESC, r.id DESC"
# What the app's filter text is looked for in (besides the workers).
TEXT_COLUMNS = (
    "r.id",
    "r.workload",
    "r.executor",
    "r.status",
    "r.tag",
    "m.hostname",
    "i.version",
)


def list_sql(chosen: RunFilter, dialect: str) -> str:
    """The query of the runs ``chosen`` picks, newest first, in SQL of ``dialect`` (a
    SQLAlchemy dialect name) with ``list_params``' named parameters."""
    where, _ = selection_where(dialect, chosen)
    limit = f" LIMIT {int(chosen.limit)}" if chosen.limit is not None else ""
    if chosen.offset:
        if not limit and dialect == "sqlite":
            limit = " LIMIT -1"  # SQLite takes an OFFSET only after a LIMIT
        limit += f" OFFSET {int(chosen.offset)}"
    return f"{LIST_SQL} WHERE {where} {LIST_ORDER}{limit}"


def count_sql(chosen: RunFilter, dialect: str) -> str:
    """How many runs ``chosen`` picks, whatever its limit (``list_params``' parameters). The
    machine and interpreter are joined only when the filter reads them: counting 100,000 runs
    through the joins takes a tenth of a second, the run table alone a few milliseconds."""
    where = selection_where(dialect, chosen)[0]
    joined = re.search(r"\b[mi]\.", where)
    source = LIST_SQL[LIST_SQL.index(" FROM ") :] if joined else " FROM run r"
    return f"SELECT count(*){source} WHERE {where}"


def list_params(chosen: RunFilter, dialect: str) -> dict[str, Any]:
    """The named parameters of ``list_sql`` and ``count_sql``."""
    return selection_where(dialect, chosen)[1]


def repeats_sql(ids: str) -> str:
    """The counted repeats of some runs, ``ids`` the SQL that lists them (``IN {ids}``): rows of
    run id, process index, wall time (ns), then COST_FIELDS, as ``run_objects`` takes them."""
    return (
        f"SELECT p.run_id, p.process_index, p.wall_ns, {', '.join(COST_FIELDS)} "
        f"FROM repeat p WHERE p.run_id IN {ids} AND NOT p.warmup "
        "ORDER BY p.run_id, p.repeat_index"
    )


def run_objects(
    runs: Sequence[Mapping[str, Any]], repeats: Iterable[Sequence[Any]]
) -> list[dict[str, Any]]:
    """Run objects of ``runs`` (rows of LIST_SQL) from ``repeats`` (rows of ``repeats_sql``
    over them). Whichever way the rows were fetched, this builds what a list shows."""
    walls: dict[Any, dict[Any, list]] = {}
    costs: dict[Any, list] = {}
    for run_id, process_index, wall_ns, *cost in repeats:
        walls.setdefault(run_id, {}).setdefault(process_index, []).append(wall_ns)
        costs.setdefault(run_id, []).append(cost)
    return [
        run_object(
            {**run, **costs_of(costs.get(run["id"], ()))},
            walls[run["id"]].values() if run["id"] in walls else (),
            run["machine_name"],
            _python(run),
            stored=True,
        )
        for run in runs
    ]


def selection_where(dialect: str, chosen: RunFilter) -> tuple[str, dict[str, Any]]:
    """The SQL condition (over LIST_SQL's ``r``, ``m``, ``i``) and parameters for ``chosen``.
    SelectionError for a selection that cannot be read."""
    terms, params = ["1 = 1"], {}
    if chosen.tag is not None:
        terms.append("r.tag = :tag")
        params["tag"] = chosen.tag
    if chosen.since is not None:
        terms.append("r.created_at >= :since")
        since = chosen.since.replace(tzinfo=None)
        params["since"] = since if dialect != "sqlite" else since.isoformat(" ")
    needle = (chosen.text or "").strip()
    if needle.startswith("tag:"):
        terms.append("r.tag = :text_tag")
        params["text_tag"] = needle[4:]
    elif needle:
        params["text"] = f"%{_like(needle.lower())}%"
        columns = [*TEXT_COLUMNS, "CAST(r.workers AS VARCHAR)"]
        terms.append("(" + " OR ".join(f"lower({c}) LIKE :text ESCAPE '\\'" for c in columns) + ")")
    for n, (key, value) in enumerate(selection_terms(chosen.selection or "")):
        name = f"v{n}"
        params[name] = value
        prefix = f"{_like(value)}%"
        if key in ("run", "sweep"):
            column = "r.id" if key == "run" else "r.sweep_id"
            terms.append(f"{column} LIKE :{name}p ESCAPE '\\'")
            params[f"{name}p"] = prefix
        elif key == "machine":
            terms.append(
                f"(m.hostname = :{name} OR r.machine_fingerprint LIKE :{name}p ESCAPE '\\')"
            )
            params[f"{name}p"] = prefix
        elif key == "python":
            free = value.endswith("t")
            version = value[:-1] if free else value
            params[name], params[f"{name}p"] = version, f"{_like(version)}.%"
            gil = " AND i.gil_disabled" if free else ""
            terms.append(f"((i.version = :{name} OR i.version LIKE :{name}p ESCAPE '\\'){gil})")
        elif key in NUMBER_KEYS:
            if not value.lstrip("-").isdigit():
                terms.append("1 = 0")  # no run has a size that is not a number
                continue
            params[name] = int(value)
            terms.append(f"r.{SELECTION_KEYS[key]} = :{name}")
        elif key == "db":
            terms.append("1 = 1" if value == chosen.label else "1 = 0")
        else:  # tag, workload, executor and the options that are text
            terms.append(f"r.{SELECTION_KEYS[key]} = :{name}")
    return " AND ".join(terms), params


# The keys of a selection (``KEY:VALUE[,KEY:VALUE]``) and the report column each one reads:
# every dimension of the option table by its name on the command line (``start_method``).
SELECTION_KEYS = {
    "run": "run_id",
    "sweep": "sweep_id",
    "tag": "tag",
    "machine": "machine",
    "python": "python",
    "workload": "workload",
    "executor": "executor",
    "db": "db",
    **{BY_NAME[name].key: name for name in OPTION_COLUMNS},
}
# The options whose values are whole numbers, and their selection keys (``workers:2``).
NUMBER_COLUMNS = tuple(name for name in OPTION_COLUMNS if BY_NAME[name].type is int)
NUMBER_KEYS = tuple(BY_NAME[name].key for name in NUMBER_COLUMNS)


def selection_terms(selection: str) -> list[tuple[str, str]]:
    """``selection``'s terms as (key, value); SelectionError for one that cannot be read."""
    terms = []
    for term in filter(None, (t.strip() for t in selection.split(","))):
        key, sep, value = term.partition(":")
        if not sep or key not in SELECTION_KEYS or not value:
            raise SelectionError(
                f"cannot read selection term {term!r}; write KEY:VALUE with KEY one of "
                f"{', '.join(SELECTION_KEYS)} (e.g. tag:before or python:3.12)"
            )
        terms.append((key, value))
    return terms


# Where a selection key's values are stored, for completing them (``key_values``).
KEY_VALUES = {
    "run": ("run", "id"),
    "sweep": ("run", "sweep_id"),
    "tag": ("run", "tag"),
    "workload": ("run", "workload"),
    "executor": ("run", "executor"),
    "machine": ("machine", "hostname"),
    "python": ("interpreter", "version"),
    # the options that are text (LIKE reads text only, on a server)
    **{
        key: ("run", column)
        for key, column in SELECTION_KEYS.items()
        if column in OPTION_COLUMNS and BY_NAME[column].type is str
    },
}


def key_values(engine: Engine, key: str, prefix: str, limit: int = 5) -> list[str]:
    """Stored values of selection ``key`` that start with ``prefix``, in order: the database
    searches, so a picker never lists every run."""
    from sqlalchemy import text

    if key not in KEY_VALUES:
        return []
    table, column = KEY_VALUES[key]
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                f"SELECT DISTINCT {column} FROM {table} WHERE {column} LIKE :p ESCAPE '\\' "
                f"ORDER BY {column} LIMIT {int(limit)}"
            ),
            {"p": f"{_like(prefix)}%"},
        )
        return [str(value) for (value,) in rows if value is not None]


def _like(value: str) -> str:
    """``value`` as a LIKE pattern that matches only itself."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _python(run: Mapping[str, Any]) -> Optional[str]:
    version = run["python_version"]
    if version is not None and run["python_gil_disabled"]:
        return f"{version}t"
    return version


# The machines a database holds, by host name, with their number of runs; and each machine's
# interpreters. Joined in Python (machine_objects), not with group_concat/string_agg: one pair
# of queries for SQLite and servers alike.
MACHINES_SQL = (
    "SELECT m.hostname, m.fingerprint, m.cpu_model, m.usable_cores, m.memory_total_bytes, "
    "m.os_name, m.os_release, "
    "(SELECT count(*) FROM run r WHERE r.machine_fingerprint = m.fingerprint) AS runs "
    "FROM machine m ORDER BY m.hostname"
)
INTERPRETER_VERSIONS_SQL = "SELECT DISTINCT machine_fingerprint, version FROM interpreter"


def machine_objects(names: list[str], rows, versions) -> list[dict[str, Any]]:
    """MACHINES_SQL's ``rows`` (columns ``names``) as dicts, each with ``pythons``: the
    versions INTERPRETER_VERSIONS_SQL found for it, sorted."""
    pythons: dict[Any, list[str]] = {}
    for fingerprint, version in sorted(versions, key=lambda row: str(row[1])):
        pythons.setdefault(fingerprint, []).append(str(version))
    machines = [dict(zip(names, row)) for row in rows]
    return [{**m, "pythons": pythons.get(m["fingerprint"], [])} for m in machines]
