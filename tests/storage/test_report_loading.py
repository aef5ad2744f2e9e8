"""The report's loading reads one row per runner process (storage.figures) and no repeat, task
sample or environment text; the summary it gives is the one a plain pandas computation over
every stored repeat gives."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import event

from experiments.spec import ExperimentSpec
from service.present import render
from storage import loading, stats
from storage.database import SCHEMA_VERSION, open_engine
from storage.loading import load_processes, load_repeats, processes_of, select
from storage.queries import CONFIG_COLUMNS
from storage.recorder import RunRecorder
from storage.summaries import BASELINE_KEY, CONFIG, process_groups, summarize
from storage.verdicts import verdicts

MACHINES = {"a" * 20: "alpha", "b" * 20: "beta"}
PYTHONS = {"3.11.7": "k311" * 5, "3.12.1": "k312" * 5}


def record(engine, rng, executor, workers, fingerprint, python, *, processes=3, failed=False):
    """One run through the real recorder: ``processes`` runner processes, each a warm-up and
    three repeats with their samples and costs; a failed run stops in its second process."""
    spec = ExperimentSpec(
        workload="cpu",
        executor=executor,
        workers=workers,
        tasks=2,
        repeats=3,
        warmups=1,
        processes=processes,
    )
    recorder = RunRecorder(
        engine, spec, {"workers": workers, "start_method": None, "chunksize": None, "size": 10}
    )
    recorder.start()
    env = {
        "machine_fingerprint": fingerprint,
        "hostname": MACHINES[fingerprint],
        "interpreter_key": PYTHONS[python],
        "python_version": python,
        "load_average": [rng.random(), 0, 0],
        "logical_cores": 2,
    }
    for process in range(processes):
        recorder.begin_process(process)
        recorder.on_event({"event": "env", "environment": env, "runner_pid": 100 + process})
        for index in range(4):
            wall = rng.randint(5_000_000, 9_000_000) // workers
            recorder.on_event(
                {
                    "event": "repeat",
                    "index": index,
                    "warmup": index == 0,
                    "wall_ns": wall,
                    "cpu_ns": rng.randint(wall // 2, 2 * wall),
                    "start_ns": 10**17,
                    "end_ns": 10**17 + wall,
                    "runner_peak_rss_bytes": rng.randint(10**7, 10**8),
                }
            )
            start = 10**17 + rng.randint(1, 10**6)
            samples = [
                [
                    200 + t % workers,
                    t,
                    start + t,
                    start + t + wall // 3,
                    None,
                    rng.randint(0, 9),
                    rng.randint(0, 3),
                    t % 2,
                    rng.randint(0, 1),
                    rng.randint(10**6, 10**7),
                ]
                for t in range(2)
            ]
            recorder.on_event({"event": "tasks", "repeat": index, "samples": samples})
        if failed and process == 1:
            return recorder.finish("failed", "a task raised ValueError")
        recorder.end_process("")
    return recorder.finish("ok")


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    path = tmp_path_factory.mktemp("loading") / "runs.db"
    engine = open_engine(path, writer=True)
    rng = random.Random(14)
    for fingerprint in MACHINES:
        for python in PYTHONS:
            for executor, workers in (("sequential", 1), ("threads", 2), ("processes", 2)):
                record(engine, rng, executor, workers, fingerprint, python)
            record(engine, rng, "threads", 2, fingerprint, python)  # the same config again
            record(engine, rng, "processes", 2, fingerprint, python, failed=True)
    record(engine, rng, "threads", 2, "a" * 20, "3.11.7", processes=1)  # one process
    engine.dispose()
    return path


def plain_summary(path) -> pd.DataFrame:
    """The summary's figures the plain way: every stored repeat read with pandas, finished runs'
    counted repeats grouped by configuration; intervals from each process's walls; the
    figures beside the wall time the median of each process's median."""
    engine = open_engine(path, create=False)
    with engine.connect() as connection:
        frame = pd.read_sql(
            f"SELECT r.id AS run_id, r.status, {', '.join('r.' + c for c in CONFIG_COLUMNS)}, "
            "m.hostname AS machine, i.version AS python, "
            "p.* FROM repeat p JOIN run r ON r.id = p.run_id "
            "LEFT JOIN machine m ON m.fingerprint = r.machine_fingerprint "
            "LEFT JOIN interpreter i ON i.key = r.interpreter_key",
            connection,
        )
    engine.dispose()
    frame = frame.loc[:, ~frame.columns.duplicated()]
    frame = frame[(frame["status"] == "ok") & (frame["warmup"] == 0)].copy()
    frame["wall_s"] = frame["wall_ns"] / 1e9
    frame["startup_s"] = (frame["first_task_start_ns"] - frame["start_ns"]) / 1e9
    frame["in_flight"] = frame["busy_ns"] / frame["wall_ns"]
    frame["cpu_per_wall"] = frame["cpu_ns"] / frame["wall_ns"]
    rows = []
    for key, group in frame.groupby(CONFIG, dropna=False):
        by_process = group.groupby(["run_id", "process_index"])
        walls = [g["wall_s"].tolist() for _, g in by_process]
        medians = by_process.median(numeric_only=True).median()
        found = stats.interval(walls)
        rows.append(
            {
                **dict(zip(CONFIG, key)),
                "repeats": len(group),
                "processes": len(walls),
                "runs": group["run_id"].nunique(),
                "median_s": group["wall_s"].median(),
                "q1_s": group["wall_s"].quantile(0.25),
                "q3_s": group["wall_s"].quantile(0.75),
                "cv": group["wall_s"].std() / group["wall_s"].mean(),
                "min_s": group["wall_s"].min(),
                "startup_s": medians["startup_s"],
                "in_flight": medians["in_flight"],
                "cpu_per_wall": medians["cpu_per_wall"],
                "peak_rss_bytes": group["peak_rss_bytes"].max(),
                "worker_peak_rss_bytes": group["worker_peak_rss_bytes"].max(),
                "voluntary_switches": medians["voluntary_switches"],
                "involuntary_switches": medians["involuntary_switches"],
                "core_moves": medians["core_moves"],
                "cores_used": group["cores_used"].max(),
                "ci_low_s": found.low,
                "ci_high_s": found.high,
                "spread": found.spread,
                "interval": found,
            }
        )
    plain = pd.DataFrame(rows)
    speedups = []
    for row in plain.itertuples():
        same = plain[
            (plain["executor"] == "sequential")
            & (plain[BASELINE_KEY] == [getattr(row, k) for k in BASELINE_KEY]).all(axis=1)
        ]
        base = same.iloc[0]["interval"]
        ratio = stats.ratio(row.interval, base) if row.executor != "sequential" else None
        speedups.append(ratio.ratio if ratio else 1.0)
    plain["speedup"] = speedups
    return plain.drop(columns=["interval"])


def test_the_summary_is_the_plain_computation_over_every_repeat(database):
    engine = open_engine(database, create=False)
    processes = load_processes([("db", engine)])
    repeats = load_repeats([("db", engine)])
    engine.dispose()
    assert not repeats["warmup"].any()
    summary = summarize(processes)
    # the stored rows are the ones derived from the repeats when a selection is summarised
    assert summary.equals(summarize(processes_of(repeats)))
    plain = plain_summary(database)
    assert len(summary) == len(plain) == 2 * 2 * 3  # machines x pythons x configurations
    merged = summary.merge(plain, on=CONFIG, suffixes=("", "_plain"))
    assert len(merged) == len(plain)
    assert set(merged["machine"]) == {"alpha", "beta"}
    assert set(merged["python"]) == {"3.11.7", "3.12.1"}
    threads = merged[
        (merged["executor"] == "threads")
        & (merged["machine"] == "alpha")
        & (merged["python"] == "3.11.7")
    ]
    assert threads["runs"].item() == 3 and threads["processes"].item() == 3 + 3 + 1
    assert (merged.loc[merged["executor"] == "processes", "runs"] == 1).all()  # failed: left out
    for column in plain.columns.difference(CONFIG):
        ours, theirs = merged[column].to_numpy(float), merged[f"{column}_plain"].to_numpy(float)
        assert np.allclose(ours, theirs, rtol=1e-12, equal_nan=True), column
    assert not math.isnan(merged["speedup"].sum())


def test_loading_reads_no_task_sample(database):
    engine = open_engine(database, create=False)
    engine.dispose()  # new connections get the listener below
    statements: list[str] = []
    event.listen(
        engine, "connect", lambda connection, _: connection.set_trace_callback(statements.append)
    )
    summarize(load_processes([("db", engine)]))
    engine.dispose()
    assert statements
    read = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert not [s for s in read if "task_sample" in s or "environment_json" in s], read
    assert not [s for s in read if "FROM repeat" in s], read


@pytest.mark.parametrize("last_repeat", [True, False])
def test_each_interval_is_stats_interval_of_its_processes_exactly(database, last_repeat):
    """Every figure of the interval, from odd and (without each process's last repeat) even
    counts of repeats."""
    engine = open_engine(database, create=False)
    repeats = load_repeats([("db", engine)])
    engine.dispose()
    if not last_repeat:
        repeats = repeats[repeats["repeat_index"] < repeats["repeat_index"].max()]
    summary = summarize(processes_of(repeats))
    groups = repeats.groupby(CONFIG, dropna=False, sort=True)
    assert len(summary) == groups.ngroups
    for (key, group), row in zip(groups, summary.itertuples()):
        assert (row.machine, row.python, row.executor) == (key[0], key[1], key[5])
        found = stats.interval(process_groups(group))
        assert found.processes == row.processes
        ours = (
            row.ci_low_s,
            row.ci_high_s,
            row.spread,
            row.within,
            row.center_s,
            row.log_se,
            row.log_sd,
            row.se_df,
        )
        theirs = (
            found.low,
            found.high,
            found.spread,
            found.within,
            found.center,
            found.log_se,
            found.log_sd,
            found.df,
        )
        assert ours == theirs, key


def every_format(path) -> dict[str, str]:
    engine = open_engine(path, create=False)
    summary = summarize(load_processes([("db", engine)]))
    engine.dispose()
    words = verdicts(summary)
    return {
        "json": render.json_report(summary, words, None),
        "csv": render.csv_report(summary),
        "markdown": render.markdown(summary, words),
    }


def test_every_format_is_the_same_whether_runs_are_read_by_rowid_or_by_id(database, monkeypatch):
    """SQLite names each repeat's run by its rowid (converted with the numbers in one step); a
    server database names it by id: both give the same report, byte for byte."""
    by_rowid = every_format(database)
    assert all(by_rowid.values()) and "alpha" in by_rowid["csv"]
    monkeypatch.setattr(loading, "_run_row", lambda connection: "r.id")
    assert every_format(database) == by_rowid


def test_a_selection_read_in_sql_keeps_what_selecting_every_repeat_keeps(database):
    """A report's selection is applied by the database (a few runs of a big file read only
    those): for every key of the grammar, the repeats read are those `select` keeps of all."""
    import sqlite3

    from storage.errors import SelectionError

    with sqlite3.connect(database) as connection:
        run_id, sweep_id = connection.execute("SELECT id, sweep_id FROM run").fetchone()
    selections = [
        f"run:{run_id[:6]}",
        f"sweep:{sweep_id}",
        "machine:alpha",
        f"machine:{'b' * 8}",
        "python:3.12",
        "python:3.11.7",
        "python:3.1",
        "executor:threads,workers:2",
        "workload:cpu,size:10",
        "size:1e1",
        "db:db",
        "db:other",
        "tag:'; DROP TABLE run; --",
        "executor:%",
        "run:_",
    ]

    def keys(frame) -> list:
        return sorted(zip(frame["run_id"], frame["process_index"]))

    engine = open_engine(database, create=False)
    try:
        every = load_processes([("db", engine)])
        for selection in selections:
            read = load_processes([("db", engine)], selection)
            kept = select(every, selection)
            assert len(kept) < len(every) or selection in ("workload:cpu,size:10", "db:db")
            if kept.empty:
                assert read.empty or select(read, selection).empty, selection
                continue
            chosen = select(read, selection)
            assert keys(chosen) == keys(kept) and len(read) == len(kept), selection
        with pytest.raises(SelectionError):
            load_processes([("db", engine)], "colour:red")
    finally:
        engine.dispose()
    with sqlite3.connect(database) as connection:
        assert (
            connection.execute("SELECT count(*) FROM run").fetchone()[0] == 21
        )  # nothing a selection held was run


def summary_of(path, selection=None) -> pd.DataFrame:
    engine = open_engine(path, create=False)
    try:
        return summarize(load_processes([("db", engine)], selection))
    finally:
        engine.dispose()


def test_runs_whose_process_rows_are_missing_or_unreadable_are_derived_again(database, tmp_path):
    """The process table makes a report fast, never different: rows a file lacks, or holds as
    something other than a list of numbers, are derived from the run's repeats when read."""
    import shutil
    import sqlite3

    expected = summary_of(database)
    copy = tmp_path / "damaged.db"
    shutil.copy(database, copy)
    with sqlite3.connect(copy) as connection:
        run_ids = [
            r[0] for r in connection.execute("SELECT id FROM run WHERE status = 'ok' ORDER BY id")
        ]
        connection.execute("DELETE FROM process WHERE run_id = ?", (run_ids[0],))
        connection.execute("UPDATE process SET walls = 'x; DROP' WHERE run_id = ?", (run_ids[1],))
        connection.execute("UPDATE process SET walls = x'00ff' WHERE run_id = ?", (run_ids[2],))
        connection.execute("UPDATE process SET walls = '' WHERE run_id = ?", (run_ids[3],))
    assert_same_summary(summary_of(copy), expected)
    copy.unlink()  # damaged on purpose: `db check` names its rows (the next test)


def assert_same_summary(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """The same rows and figures; sums taken over processes in another order may differ in
    their last bit."""
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
    for column in ours.columns:
        if pd.api.types.is_float_dtype(ours[column]):
            assert np.allclose(ours[column], theirs[column], rtol=1e-12, equal_nan=True), column
        else:
            assert ours[column].equals(theirs[column]), column


def test_a_merge_carries_process_rows_and_derives_those_a_source_lacks(database, tmp_path):
    """Rows travel with their run (as a repeat's busy time does); a run that arrives without
    them gets the ones its repeats give; a source whose rows lie fails `db check`, so its
    merge is refused and the target stays as it was."""
    import shutil
    import sqlite3

    from storage import merge, sharing
    from storage.errors import DatabaseError

    with sqlite3.connect(database) as connection:
        original = connection.execute(
            "SELECT * FROM process ORDER BY run_id, process_index"
        ).fetchall()
    lying_run, bare_run = sorted({row[0] for row in original})[:2]
    source, lying = tmp_path / "source.db", tmp_path / "lying.db"
    shutil.copy(database, source)
    with sqlite3.connect(source) as connection:
        connection.execute("DELETE FROM process WHERE run_id = ?", (bare_run,))
    shutil.copy(source, lying)
    with sqlite3.connect(lying) as connection:
        connection.execute("UPDATE process SET walls = '1 1 1' WHERE run_id = ?", (lying_run,))
    target = tmp_path / "target.db"
    open_engine(target).dispose()
    before = target.read_bytes()
    with pytest.raises(DatabaseError, match="does not pass `conlab db check` \\(process figures"):
        merge.merge(target, [lying])
    assert target.read_bytes() == before
    merge.merge(target, [source])
    with sqlite3.connect(target) as connection:
        stored = connection.execute("SELECT * FROM process ORDER BY run_id, process_index")
        assert stored.fetchall() == original
    assert sharing.check(target) == []
    lying.unlink()  # lying on purpose


def test_a_version_3_file_gets_its_process_rows_when_opened(database, tmp_path):
    import shutil
    import sqlite3

    old = tmp_path / "v3.db"
    shutil.copy(database, old)
    with sqlite3.connect(old) as connection:
        connection.execute("DROP TABLE process")
        connection.execute("DROP INDEX ix_run_report")
        connection.execute("PRAGMA user_version = 3")
    open_engine(old, writer=True).dispose()
    with sqlite3.connect(old) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        migrated = connection.execute("SELECT * FROM process ORDER BY run_id, process_index")
        migrated = migrated.fetchall()
    with sqlite3.connect(database) as connection:
        original = connection.execute("SELECT * FROM process ORDER BY run_id, process_index")
        assert migrated == original.fetchall()


def test_deleting_a_run_deletes_its_process_rows(database, tmp_path):
    import shutil
    import sqlite3

    from storage.browse import delete_run

    copy = tmp_path / "delete.db"
    shutil.copy(database, copy)
    with sqlite3.connect(copy) as connection:
        run_id = connection.execute("SELECT run_id FROM process").fetchone()[0]
    engine = open_engine(copy, writer=True)
    delete_run(engine, run_id)
    engine.dispose()
    with sqlite3.connect(copy) as connection:
        assert not connection.execute(
            "SELECT count(*) FROM process WHERE run_id = ?", (run_id,)
        ).fetchone()[0]


def test_db_check_names_process_rows_that_are_not_what_their_repeats_give(database, tmp_path):
    import shutil
    import sqlite3

    from storage.sharing import check

    assert check(database) == []
    copy = tmp_path / "lying.db"
    shutil.copy(database, copy)
    with sqlite3.connect(copy) as connection:
        run_id = connection.execute("SELECT run_id FROM process ORDER BY 1").fetchone()[0]
        connection.execute("UPDATE process SET walls = '1 1 1' WHERE run_id = ?", (run_id,))
    (problem,) = check(copy)
    assert "not what their runs' repeats give" in str(problem) and run_id in str(problem)
    copy.unlink()


@pytest.mark.parametrize(
    "texts",
    [
        ["10402231 10377754", "9 8 7"],  # whole nanoseconds, as the recorder writes them
        ["10.5 3", "2e3"],  # fractions and exponents: read as floats
        ["99999999999999999999 1", "-5"],  # past a 64-bit integer: read as floats, not clipped
    ],
)
def test_stored_walls_are_read_as_the_numbers_they_hold(texts):
    from storage.figures import read_walls

    values, counts, readable = read_walls(texts)
    every = [float(v) for text in texts for v in text.split(" ")]
    assert values.tolist() == every and counts.tolist() == [len(t.split(" ")) for t in texts]
    assert readable.all()


def test_stored_walls_that_are_not_numbers_hold_none():
    from storage.figures import read_walls

    values, counts, readable = read_walls(["5 6", "x; DROP", "", b"\x00", None, "1  2", "7"])
    assert values.tolist() == [5.0, 6.0, 7.0]
    assert counts.tolist() == [2, 0, 0, 0, 0, 0, 1]
    assert readable.tolist() == [True, False, False, False, False, False, True]


def test_a_version_4_file_gains_the_worker_split_as_not_observed(database, tmp_path):
    import shutil
    import sqlite3

    old = tmp_path / "v4.db"
    shutil.copy(database, old)
    with sqlite3.connect(old) as connection:
        for table, column in (
            ("repeat", "worker_span_ns"),
            ("repeat", "on_core_ns"),
            ("repeat", "core_wait_ns"),
            ("repeat", "worker_split"),
            ("run", "thread_states"),
            ("process", "on_core_share"),
            ("process", "core_wait_share"),
            ("process", "look_lock"),
            ("process", "look_io"),
            ("process", "look_sleep"),
            ("process", "handovers_per_s"),
        ):
            connection.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        connection.execute("PRAGMA user_version = 4")
    open_engine(old, writer=True).dispose()
    with sqlite3.connect(old) as connection:
        assert connection.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        shares = connection.execute("SELECT on_core_share, core_wait_share FROM process")
        assert set(shares.fetchall()) == {(None, None)}  # not observed: never a guess
        spans = connection.execute("SELECT worker_span_ns FROM repeat").fetchall()
        assert set(spans) == {(None,)}
        assert connection.execute("SELECT thread_states FROM run").fetchall()[0] == (None,)
