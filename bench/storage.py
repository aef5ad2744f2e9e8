"""Storage budgets: recording samples, listing many runs, merging many runs."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from experiments.spec import ExperimentSpec

# Rounds of each storage benchmark, the lab's and the hand-written side in turns.
ROUNDS = 5


# Where the big databases are kept between bench runs: made once (tens of seconds at 100,000
# runs), reused while the schema and the way they are filled stay the same (FILL_VERSION).
CACHE = Path(tempfile.gettempdir()) / "conlab-bench"
FILL_VERSION = 3


def environment_template() -> str:
    """A run's environment as the recorder stores it, this machine's, with ``%d`` where each
    run's own figure goes (the cores other work took): what a report reads of every run, about
    2.5 KB, never the same text twice."""
    from experiments.environment import collect

    env = collect()
    env["others_cores"] = [0.25, 0.5]
    env["gil_enabled_by_worker"] = {str(1000 + w): False for w in range(4)}
    env["runner_processes"] = [
        {"pid": 2000 + p, "control": [[1750000 + p, 1460000 + p]] * 6, "control_version": 1}
        for p in range(6)
    ]
    text = json.dumps(env, sort_keys=True).replace("%", "%%")
    return text.replace('"others_cores": [0.25, 0.5]', '"others_cores": [0.%d, 0.5]')


def fill(path: Path, runs: int, repeats: int = 5, tasks: int = 16) -> None:
    """A lab database with ``runs`` finished runs, as if recorded (synthetic rows, real schema):
    each ``repeats`` counted repeats after one warm-up, ``tasks`` task samples per repeat. Made
    with set-based SQL in one transaction: 10M samples take seconds, not a Python loop's minutes."""
    from storage import figures
    from storage.database import open_engine

    open_engine(path).dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("BEGIN")
    machine, interpreter, sweep = uuid.uuid4().hex[:20], uuid.uuid4().hex[:20], str(uuid.uuid4())
    connection.execute(
        "INSERT INTO machine (fingerprint, hostname, first_seen_at) VALUES (?, 'bench', "
        "'2026-01-01 00:00:00')",
        (machine,),
    )
    connection.execute(
        "INSERT INTO interpreter (key, machine_fingerprint, version) VALUES (?, ?, '3.11.7')",
        (interpreter, machine),
    )
    connection.execute(
        "INSERT INTO sweep (id, created_at) VALUES (?, '2026-01-01 00:00:00')", (sweep,)
    )
    numbers = "WITH RECURSIVE n(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM n WHERE k + 1 < ?) "
    # run ids: random UUIDs, as the recorder makes them (the indexes see them in random order)
    connection.execute(
        f"CREATE TEMP TABLE runs AS {numbers} SELECT k, lower(substr(h, 1, 8) || '-' || "
        "substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' || substr(h, 18, 3) || '-' || "
        "substr(h, 21, 12)) AS id FROM (SELECT k, hex(randomblob(16)) AS h FROM n)",
        (runs,),
    )
    connection.execute(f"CREATE TEMP TABLE repeats AS {numbers} SELECT k FROM n", (repeats + 1,))
    connection.execute(f"CREATE TEMP TABLE tasks AS {numbers} SELECT k FROM n", (tasks,))
    connection.execute(
        "INSERT INTO run (id, sweep_id, status, workload, executor, workers, tasks, size, "
        "repeats, warmups, machine_fingerprint, interpreter_key, created_at, environment_json) "
        "SELECT id, ?, 'ok', 'cpu', CASE k % 2 WHEN 0 THEN 'threads' ELSE 'processes' END, "
        "1 + k % 4, 16, 1000, ?, 1, ?, ?, "
        "printf('2026-01-01 00:%02d:%02d.%06d', k / 600 % 60, k / 10 % 60, k), printf(?, k) "
        "FROM temp.runs ORDER BY k",
        (sweep, repeats, machine, interpreter, environment_template()),
    )
    connection.execute(
        "INSERT INTO repeat (run_id, repeat_index, warmup, wall_ns, cpu_ns, first_task_start_ns, "
        "busy_ns, start_ns, end_ns) SELECT r.id, p.k, p.k = 0, 10000000 + r.k + p.k, 9000000, "
        "0, ?, 0, 10000000 FROM temp.runs r CROSS JOIN temp.repeats p",
        (tasks * 5,),
    )
    connection.execute(
        "INSERT INTO task_sample (run_id, repeat_index, task_index, pid, thread_id, start_ns, "
        "end_ns) SELECT r.id, p.k, t.k, 1000 + t.k % 4, 1, t.k * 10, t.k * 10 + 5 "
        "FROM temp.runs r CROSS JOIN temp.repeats p CROSS JOIN temp.tasks t"
    )
    figures.refresh(connection, "SELECT id FROM run")  # as the recorder does at each finish
    connection.execute("COMMIT")
    connection.close()


def filled(runs: int, repeats: int = 5, tasks: int = 16) -> Path:
    """``fill``'s database of that size, from CACHE (made there the first time)."""
    from storage.target import SCHEMA_VERSION

    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"lab-{runs}x{repeats}x{tasks}-schema{SCHEMA_VERSION}-fill{FILL_VERSION}.db"
    if not path.exists():
        part = path.with_suffix(f".{os.getpid()}.part")
        start = time.perf_counter()
        fill(part, runs, repeats, tasks)
        os.replace(part, path)
        print(f"  (made {path} in {time.perf_counter() - start:.0f} s)", flush=True)
    return path


def cli(*args: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(conlab_args(*args), env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


# A task sample as the runner sends it: pid, thread, start, end, GIL, voluntary and involuntary
# switches, cores at start and end, the worker's peak memory.
SAMPLES = [
    [1000 + i % 2, 7, i * 1000, i * 1000 + 500, None, 3, 1, i % 2, i % 2, 50_000_000]
    for i in range(100_000)
]
SAMPLE_SQL = (
    "INSERT INTO task_sample (run_id, repeat_index, task_index, pid, thread_id, start_ns, "
    "end_ns, voluntary_switches, involuntary_switches, core_start, core_end) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def record_by_lab(path: Path) -> tuple[float, float]:
    """1,000,000 samples in 10 repeats through the recorder, as `conlab run` stores them.
    Returns the wall time and the CPU time."""
    from storage.database import open_engine
    from storage.recorder import RunRecorder

    engine = open_engine(path, writer=True)
    spec = ExperimentSpec(
        workload="tiny", executor="threads", workers=2, tasks=100_000, repeats=10, warmups=0
    )
    recorder = RunRecorder(
        engine, spec, {"workers": 2, "start_method": None, "chunksize": None, "size": 1}
    )
    recorder.start()
    start, cpu = time.perf_counter(), time.process_time()
    for index in range(10):
        recorder.on_event(
            {
                "event": "repeat",
                "index": index,
                "warmup": False,
                "wall_ns": 1,
                "cpu_ns": 1,
                "start_ns": 0,
                "end_ns": 1,
            }
        )
        recorder.on_event({"event": "tasks", "repeat": index, "samples": SAMPLES})
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert recorder.storage_error is None, recorder.storage_error
    engine.dispose()
    return elapsed, cpu


def record_by_hand(path: Path) -> tuple[float, float]:
    """The same samples by a plain sqlite3 executemany, one transaction per repeat, into the
    same schema (WAL, synchronous=NORMAL, as the lab's writer). A plain script leaves foreign
    keys unchecked: the lab checks them (PRAGMA foreign_keys = ON), within its budget. Returns
    the wall time and the CPU time."""
    from storage.database import open_engine

    open_engine(path).dispose()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = NORMAL")
    run_id = str(uuid.uuid4())
    start, cpu = time.perf_counter(), time.process_time()
    for index in range(10):
        rows = [
            (run_id, index, i, s[0], s[1], s[2], s[3], s[5], s[6], s[7], s[8])
            for i, s in enumerate(SAMPLES)
        ]
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(SAMPLE_SQL, rows)
        connection.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    connection.close()
    return elapsed, cpu


def bench_record_samples(bench) -> None:
    """Issue 14's budget, 1.0 s where the plain executemany takes 0.9 s, held as a ratio to the
    plain executemany measured in the same round: the lab's figure / the hand's <= 1.10."""
    lab, hand = [], []
    for round_ in range(ROUNDS):  # in turns: the machine's speed moves between rounds
        lab.append(record_by_lab(bench.workdir / f"lab{round_}.db"))
        hand.append(record_by_hand(bench.workdir / f"hand{round_}.db"))
        for name in (f"lab{round_}.db", f"hand{round_}.db"):
            for path in bench.workdir.glob(name + "*"):
                path.unlink()
    ratio = statistics.median(a[0] / b[0] for a, b in zip(lab, hand))
    bench.record(
        f"store 1,000,000 task samples: lab / plain executemany, wall (median of {ROUNDS})",
        ratio,
        "<= 1.10",
        ratio <= 1.1,
    )
    bench.show("  the same, CPU time", statistics.median(a[1] / b[1] for a, b in zip(lab, hand)))
    bench.show("  the lab's wall time, s", statistics.median(a[0] for a in lab))
    bench.show("  the plain executemany's wall time, s", statistics.median(b[0] for b in hand))


# The big database of the issue-24 budgets: a team's year, 100,000 runs and 9,600,000 samples.
BIG_RUNS = 100_000
# Rounds at that size (each takes seconds to tens of seconds), the lab and its floor in turns.
BIG_ROUNDS = 3
# A command slower than this is stopped and counted at this figure: over budget either way.
TIMEOUT_S = 300.0


def measured(args: list[str], env: dict) -> tuple[float, float]:
    """Wall time (s) and peak resident memory (MB) of one whole command, its output discarded
    (its stderr kept for the words of a failure); (TIMEOUT_S, nan) when it had to be stopped."""
    import tempfile
    import threading

    with tempfile.TemporaryFile() as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        timer = threading.Timer(TIMEOUT_S, child.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)  # the child's own peak memory with it
        finally:
            timer.cancel()
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if elapsed >= TIMEOUT_S:
            return TIMEOUT_S, math.nan
        if child.returncode != 0:
            stderr.seek(0)
            said = stderr.read().decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"{' '.join(args)} exited with {child.returncode}: {said}")
    return elapsed, usage.ru_maxrss / 1024


def conlab_args(*args: str) -> list[str]:
    """The console script's command line (tui.start, what `conlab` runs)."""
    return [sys.executable, "-m", "tui.start", *args]


# The start-up floor of a whole command: conlab loading its CLI and answering without a
# database: `conlab --version`, which imports nothing of the lab's.
STARTUP = conlab_args("--version")


# What `conlab runs --json --all` is held to: the run table's columns and each run's counted
# wall times, newest first, by a plain sqlite3 query and json.dump (no medians, no intervals).
RUNS_BY_HAND = """
import json, sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
cursor = connection.execute(
    "SELECT r.id AS run_id, r.sweep_id, r.status, r.workload, r.executor, r.workers, "
    "r.start_method, r.chunksize, r.tasks, r.size, r.repeats, r.warmups, r.tag, r.processes, "
    "r.error, r.created_at, r.machine_fingerprint, (SELECT json_group_array(p.wall_ns / 1e9) "
    "FROM repeat p WHERE p.run_id = r.id AND NOT p.warmup) AS wall_s "
    "FROM run r ORDER BY r.created_at DESC"
)
names = [d[0] for d in cursor.description]
json.dump([dict(zip(names, row)) for row in cursor], sys.stdout, indent=2)
"""


def bench_list_runs(bench) -> None:
    """`conlab runs` on 100,000 runs: the default view (the newest 50) against `conlab
    --version`'s own start-up, and `--json --all` against a plain sqlite3 + json.dump of the
    same columns, with its peak memory, in turns. Whatever `conlab runs` does is what is
    measured (its listing is issue 24's point 1)."""
    path = filled(BIG_RUNS)
    env = dict(os.environ, NO_COLOR="1", COLUMNS="160")
    by_hand = bench.workdir / "runs_by_hand.py"
    by_hand.write_text(RUNS_BY_HAND)
    default = conlab_args("runs", "--db", str(path))
    everything = conlab_args("runs", "--db", str(path), "--json", "--all")
    measured(STARTUP, env), measured(default, env)  # warm the file cache
    above, ratios, peaks = [], [], []
    for _ in range(BIG_ROUNDS):
        above.append(measured(default, env)[0] - measured(STARTUP, env)[0])
        lab, peak = measured(everything, env)
        ratios.append(lab / measured([sys.executable, str(by_hand), str(path)], env)[0])
        peaks.append(peak)
    value = statistics.median(above)
    bench.record(
        f"conlab runs over {BIG_RUNS:,} runs, default view: s above --version's start-up",
        value,
        "<= 0.5",
        value <= 0.5,
    )
    value = statistics.median(ratios)
    bench.record(
        "conlab runs --json --all / plain sqlite3 + json.dump, whole commands",
        value,
        "<= 3.0",
        value <= 3.0,
    )
    value = max(peaks)
    bench.record("  its peak resident memory, MB", value, "<= 150", value <= 150)


def merge_by_hand(source: Path, target: Path) -> float:
    """A plain ATTACH + INSERT ... SELECT of every table into a new lab file: the floor."""
    from storage.database import open_engine

    open_engine(target).dispose()
    start = time.perf_counter()
    connection = sqlite3.connect(target, isolation_level=None)
    connection.execute("ATTACH DATABASE ? AS src", (str(source),))
    connection.execute("BEGIN")
    for table in ("machine", "interpreter", "sweep", "run", "repeat", "task_sample"):
        connection.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
    connection.execute("COMMIT")
    connection.close()
    return time.perf_counter() - start


def merge_by_lab(source: Path, target: Path, env: dict) -> float:
    """`conlab db merge` into a new file (made empty beforehand, as the floor's), whole command."""
    from storage.database import open_engine

    open_engine(target).dispose()
    return measured(conlab_args("db", "merge", str(source), "--db", str(target)), env)[0]


def _remove(path: Path) -> None:
    for found in path.parent.glob(path.name + "*"):
        found.unlink()


def record_ratio(bench, name: str, labs: list, hands: list, at_most: float) -> None:
    """The median of the lab's times over the hand's, round by round, held to ``at_most``."""
    value = statistics.median(a / b for a, b in zip(labs, hands))
    bench.record(name, value, f"<= {at_most}", value <= at_most)


def bench_merge(bench) -> None:
    """`conlab db merge` of 100,000 runs into an empty file against a plain ATTACH + INSERT ...
    SELECT of the same tables, in turns."""
    source = filled(BIG_RUNS)
    env = dict(os.environ, NO_COLOR="1")
    labs, hands = [], []
    for round_ in range(BIG_ROUNDS):
        target = bench.workdir / f"merged{round_}.db"
        labs.append(merge_by_lab(source, target, env))
        runs = sqlite3.connect(target).execute("SELECT count(*) FROM run").fetchone()[0]
        assert runs == BIG_RUNS, runs
        _remove(target)
        hands.append(merge_by_hand(source, target))
        _remove(target)
    merged = f"conlab db merge of {BIG_RUNS:,} runs into an empty file / plain ATTACH + INSERT"
    record_ratio(bench, merged, labs, hands, 2.0)
    bench.show("  the merge's wall time, s", statistics.median(labs))
    bench.show("  the plain ATTACH + INSERT ... SELECT's, s", statistics.median(hands))


def report_by_lab(path: Path) -> tuple[float, float]:
    """`conlab report --format json` in process, through the service the command calls: load,
    summarise, verdicts, render. Returns its wall time and its CPU time (what a loaded machine
    moves least)."""
    from service.present import render
    from service.reports import report

    start, cpu = time.perf_counter(), time.process_time()
    found = report([(str(path), str(path))])
    render.json_report(found.summary, found.verdicts, None)
    return time.perf_counter() - start, time.process_time() - cpu


# What a hand-written summary would do: aggregate per run and process in SQL, then take each
# configuration's median of the process means in pandas (no intervals, no costs). Timed in
# process (``summary``) and as a whole command (the script run with the file's path).
REPORT_BY_HAND = """
import sqlite3, sys
import pandas as pd

def summary(path):
    connection = sqlite3.connect(path)
    frame = pd.read_sql(
        "SELECT r.workload, r.size, r.tasks, r.executor, r.workers, p.run_id, p.process_index, "
        "count(*) AS repeats, avg(p.wall_ns) / 1e9 AS wall_s, min(p.wall_ns) / 1e9 AS min_s "
        "FROM repeat p JOIN run r ON r.id = p.run_id WHERE r.status = 'ok' AND NOT p.warmup "
        "GROUP BY p.run_id, p.process_index",
        connection,
    )
    found = frame.groupby(["workload", "size", "tasks", "executor", "workers"]).agg(
        repeats=("repeats", "sum"), median_s=("wall_s", "median"), min_s=("min_s", "min")
    ).reset_index().to_json()
    connection.close()
    return found

if __name__ == "__main__":
    sys.stdout.write(summary(sys.argv[1]))
"""


def bench_report(bench) -> None:
    """`conlab report` over 100,000 runs against the hand-written summary (REPORT_BY_HAND), in
    turns: in process, and as whole commands (the lab's with its CLI, the script with its
    imports), each also shown above `conlab --version`'s start-up."""
    path = filled(BIG_RUNS)
    env = dict(os.environ, NO_COLOR="1")
    by_hand = bench.workdir / "report_by_hand.py"
    by_hand.write_text(REPORT_BY_HAND)
    hand_summary = {}
    exec(compile(REPORT_BY_HAND, str(by_hand), "exec"), hand_summary)
    report_by_lab(path)  # warm the OS file cache and the imports
    lab, lab_cpu, hand = [], [], []
    for _ in range(BIG_ROUNDS):
        elapsed, cpu = report_by_lab(path)
        lab.append(elapsed), lab_cpu.append(cpu)
        start = time.perf_counter()
        hand_summary["summary"](path)
        hand.append(time.perf_counter() - start)
    reported = f"conlab report over {BIG_RUNS:,} runs in process / SQL aggregates then pandas"
    record_ratio(bench, reported, lab, hand, 1.5)
    bench.show("  the report's wall time (in process), s", statistics.median(lab))
    bench.show("  its CPU time, s", statistics.median(lab_cpu))
    bench.show("  SQL aggregates per process, then pandas (by hand), s", statistics.median(hand))
    command = conlab_args("report", "--db", str(path), "--format", "json")
    script = [sys.executable, str(by_hand), str(path)]
    lab_above, hand_above, ratios = [], [], []
    for _ in range(BIG_ROUNDS):
        startup = measured(STARTUP, env)[0]
        lab_whole, hand_whole = measured(command, env)[0], measured(script, env)[0]
        lab_above.append(lab_whole - startup), hand_above.append(hand_whole - startup)
        ratios.append(lab_whole / hand_whole)
    # The "<= 1.0 s above start-up" is below what the hand-written script itself takes
    # at this size (shown beside it): the whole command is held to it as the in-process one is.
    value = statistics.median(ratios)
    bench.record(
        f"conlab report over {BIG_RUNS:,} runs, whole command / the hand-written script's",
        value,
        "<= 1.5",
        value <= 1.5,
    )
    bench.show("  the lab's, s above --version's start-up", statistics.median(lab_above))
    bench.show("  the hand-written script's, s above it", statistics.median(hand_above))


def bench_app_runs(bench) -> None:
    """The app on a 100,000-run file: `2` pressed as soon as the first screen is up, until the
    Runs pane shows rows; then a filter typed, until the rows it picks are shown. Real app,
    Pilot, the bench's file; the worst of the rounds against the budgets."""
    import asyncio

    from textual import events
    from textual.widgets import DataTable, Input

    from tui.app import ConlabApp
    from tui.components.runs import RunsPane

    path = filled(BIG_RUNS)

    async def until(pilot, condition, timeout_s: float = 60) -> float:
        """Seconds until ``condition`` holds, polled every 5 ms."""
        started = time.perf_counter()
        while not condition():
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"not within {timeout_s} s: {condition.__doc__}")
            await asyncio.sleep(0.005)  # the app runs on this loop meanwhile
        return time.perf_counter() - started

    async def one_round() -> tuple[float, list[float]]:
        app = ConlabApp(db=str(path))
        async with app.run_test(size=(140, 46)) as pilot:
            await pilot.pause()
            started = time.perf_counter()
            app.post_message(events.Key("2", "2"))  # as a terminal sends it
            await until(pilot, lambda: app.query(RunsPane) and app.query_one(RunsPane).loaded)
            pane = app.query_one(RunsPane)
            table = pane.query_one(DataTable)
            await until(pilot, lambda: table.row_count > 0 and pane.display)
            first = time.perf_counter() - started
            box = pane.query_one("#runs-filter", Input)
            filters = []
            for text, executor in [("threads", "threads"), ("processes", "processes")] * 2:
                started = time.perf_counter()
                box.value = text  # what typing the last key of it does: Input.Changed
                await until(
                    pilot,
                    lambda e=executor: (
                        pane.runs
                        and all(r["executor"] == e for r in pane.runs)
                        and table.row_count == len(pane.runs)
                    ),
                )
                filters.append(time.perf_counter() - started)
        return first, filters

    firsts, filters = [], []
    for _ in range(BIG_ROUNDS):
        first, some = asyncio.run(one_round())
        firsts.append(first), filters.extend(some)
    bench.record(
        f"app: Runs pane's first rows after `2` on {BIG_RUNS:,} runs, worst of {BIG_ROUNDS}, s",
        max(firsts),
        "<= 0.5",
        max(firsts) <= 0.5,
    )
    bench.record(
        f"app: a filter's rows on {BIG_RUNS:,} runs, worst of {len(filters)}, s",
        max(filters),
        "<= 0.3",
        max(filters) <= 0.3,
    )


# PostgreSQL is held to SQLite's figures at this size.
SERVER_RUNS = 10_000


def bench_postgres(bench) -> None:
    """The same commands on a PostgreSQL server (CONLAB_TEST_POSTGRES_URL, a throwaway database
    made there) at 10,000 runs against the SQLite file they came from, in turns: merge into a
    lab database without runs, runs --json --all, report. Left out without a server."""
    url = os.environ.get("CONLAB_TEST_POSTGRES_URL")
    if not url:
        print("  (PostgreSQL rows left out: set CONLAB_TEST_POSTGRES_URL)", flush=True)
        return
    from storage.database import open_engine

    source = filled(SERVER_RUNS)
    env = dict(os.environ, NO_COLOR="1")
    figures: dict[str, list[float]] = {"merge": [], "runs": [], "report": []}
    for round_ in range(BIG_ROUNDS):
        server = _fresh_server_database(url, f"conlab_bench_{os.getpid()}_{round_}")
        target = bench.workdir / f"pg-beside{round_}.db"
        try:
            open_engine(server).dispose()  # a lab database without runs, as merge_by_lab's file
            on_server = measured(conlab_args("db", "merge", str(source), "--db", server), env)[0]
            on_file = merge_by_lab(source, target, env)
            figures["merge"].append(on_server / on_file)
            for name, args in (
                ("runs", ("runs", "--json", "--all")),
                ("report", ("report", "--format", "json")),
            ):
                on_server = measured(conlab_args(*args, "--db", server), env)[0]
                on_file = measured(conlab_args(*args, "--db", str(target)), env)[0]
                figures[name].append(on_server / on_file)
        finally:
            _drop_server_database(url, server)
            _remove(target)
    for name, ratios in figures.items():
        value = statistics.median(ratios)
        bench.record(
            f"{name} at {SERVER_RUNS:,} runs: PostgreSQL / SQLite, whole commands",
            value,
            "<= 2.0",
            value <= 2.0,
        )


def _fresh_server_database(url: str, name: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _drop_server_database(url: str, database_url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            name = make_url(database_url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


BENCHMARKS = [
    bench_record_samples,
    bench_list_runs,
    bench_merge,
    bench_report,
    bench_app_runs,
    bench_postgres,
]
