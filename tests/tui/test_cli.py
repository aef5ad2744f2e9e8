"""`conlab` as a user runs it: real processes, a real database file, the SPEC's JSON shapes."""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import string
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.executors import EXECUTORS
from experiments.options import MAX_TIMEOUT_S
from storage.database import SCHEMA_VERSION
from tests.conftest import PROCESS_EXECUTORS, assert_one_line_error, run_args
from tests.helpers import environment, record_run
from tests.storage.test_reports import HOSTILE, SHOWN_TEXT, hostile_database

# What a script reads of each run `conlab run --json` prints.
RUN_KEYS = {
    *("run_id", "sweep_id", "status", "error"),  # which run, and how it ended
    *("workload", "executor", "workers", "start_method", "tasks", "size"),  # what it ran
    *("wall_s", "median_s"),  # what it measured
}


def stored(db_path, query, *args):
    connection = sqlite3.connect(db_path)
    try:
        return connection.execute(query, args).fetchall()
    finally:
        connection.close()


def test_user_function_on_three_executors_is_stored_with_its_environment(conlab, db_path):
    options = dict(start_method="spawn", workers=2, tasks=8, size=20000, repeats=5)
    result = conlab(*run_args("usermod:work", "sequential", "threads", "processes", **options))
    assert result.returncode == 0, result.stderr
    runs = result.json()
    assert [r["executor"] for r in runs] == ["sequential", "threads", "processes"]
    assert len({r["sweep_id"] for r in runs}) == 1
    for r in runs:
        assert set(r) >= RUN_KEYS
        assert r["status"] == "ok" and r["error"] is None
        assert len(r["wall_s"]) == 5 and r["median_s"] > 0
        assert r["tasks"] == 8 and r["size"] == 20000
    assert runs[0]["workers"] == 1 and runs[1]["workers"] == 2
    assert runs[2]["start_method"] == "spawn" and runs[2]["chunksize"] == 1

    listed = conlab("runs", "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["run_id"]: r for r in listed.json()}
    for r in runs:
        row = by_id[r["run_id"]]
        assert row["status"] == "ok" and row["wall_s"] == r["wall_s"]
        assert row["python"].count(".") == 2 and row["machine"] and row["created_at"]
    # repeats and task samples are in the file, warm-ups flagged
    assert stored(db_path, "SELECT count(*) FROM repeat WHERE warmup = 1")[0][0] == 3
    assert stored(db_path, "SELECT count(*) FROM task_sample")[0][0] == 3 * 6 * 8
    environment = stored(db_path, "SELECT environment_json FROM run")[0][0]
    assert '"cpu_model"' in environment and '"py_gil_disabled"' in environment


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
def test_each_process_executor_runs_every_task_in_its_own_workers(conlab, db_path, executor):
    result = conlab(
        *run_args("usermod:work", executor, workers=2, tasks=6, size=1000, repeats=2, warmups=1)
    )
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["status"] == "ok" and run["executor"] == executor and len(run["wall_s"]) == 2
    samples = stored(
        db_path,
        "SELECT s.repeat_index, s.pid, s.start_ns, s.end_ns, p.start_ns, p.end_ns "
        "FROM task_sample s JOIN repeat p ON p.run_id = s.run_id "
        "AND p.repeat_index = s.repeat_index WHERE s.run_id = ?",
        run["run_id"],
    )
    assert sorted(collections.Counter(row[0] for row in samples).items()) == [
        (0, 6),
        (1, 6),
        (2, 6),
    ]
    runner_pid = stored(db_path, "SELECT runner_pid FROM run")[0][0]
    for _, pid, start, end, window_start, window_end in samples:
        assert pid != runner_pid  # run in a worker process, not in the runner
        assert window_start <= start <= end <= window_end  # inside the repeat's timed window
    for index in range(3):  # at most --workers processes in one repeat
        assert 1 <= len({row[1] for row in samples if row[0] == index}) <= 2


@pytest.mark.skipif(
    EXECUTORS["dask"].unavailable_reason() is not None, reason="the dask extra is not installed"
)
def test_dask_runs_on_an_existing_cluster_given_by_scheduler(
    conlab, db_path, user_dir, monkeypatch
):
    from distributed import LocalCluster

    monkeypatch.syspath_prepend(str(user_dir))  # the cluster's workers import usermod
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None
    ) as cluster:
        cluster_pids = {nanny.pid for nanny in cluster.workers.values()}
        options = dict(scheduler=cluster.scheduler_address, workers=2, tasks=4, repeats=1)
        result = conlab(*run_args("usermod:work", "dask", "threads", **options))
        assert result.returncode == 0, result.stderr
        assert [(r["executor"], r["status"]) for r in result.json()] == [
            ("dask", "ok"),
            ("threads", "ok"),
        ]
        run_id = result.json()[0]["run_id"]
        pids = stored(db_path, "SELECT DISTINCT pid FROM task_sample WHERE run_id = ?", run_id)
        assert {pid for (pid,) in pids} <= cluster_pids  # the cluster's own worker ran them
        (environment,) = stored(db_path, "SELECT environment_json FROM run WHERE id = ?", run_id)
        assert json.loads(environment[0])["scheduler"] == cluster.scheduler_address


def test_http_gets_real_bytes_on_every_kind_of_executor(conlab, db_path):
    # the runner starts the local server for the run and stops it after (no process is left)
    options = dict(workers=2, tasks=6, size=300000, repeats=2)
    result = conlab(*run_args("http", "sequential", "threads", "asyncio", "processes", **options))
    assert result.returncode == 0, result.stderr
    runs = result.json()
    assert [(r["executor"], r["status"]) for r in runs] == [
        ("sequential", "ok"),
        ("threads", "ok"),
        ("asyncio", "ok"),
        ("processes", "ok"),
    ]
    assert stored(db_path, "SELECT count(*) FROM task_sample")[0][0] == 4 * 3 * 6


def two_cpython_minors() -> list[dict]:
    """One interpreter of each of two different 3.x minors found here (or fewer)."""
    from experiments.pythons import discover

    by_minor: dict = {}
    for found in discover():
        if found.get("implementation", "cpython").lower() == "cpython":
            by_minor.setdefault(tuple(found["version_info"][:2]), found)
    return [by_minor[minor] for minor in sorted(by_minor)[-2:]]


def test_one_sweep_under_two_interpreters_is_compared_by_python(conlab):
    pythons = two_cpython_minors()
    if len(pythons) < 2:
        pytest.skip("needs two CPython minor versions on this machine; one was found")
    a, b = (".".join(map(str, p["version_info"][:2])) for p in pythons)
    interpreters = [found["path"] for found in pythons]
    options = dict(workers=2, tasks=4, size=20000, repeats=3, python=interpreters)
    result = conlab(*run_args("usermod:work", "sequential", "threads", **options))
    assert result.returncode == 0, result.stderr
    runs = result.json()
    assert len(runs) == 4 and len({r["sweep_id"] for r in runs}) == 1
    listed = conlab("runs", "--json").json()
    assert sorted(r["python"].rsplit(".", 1)[0] for r in listed) == sorted([a, a, b, b])

    report = conlab("report", "--compare", f"python:{a}", f"python:{b}", "--format", "json")
    assert report.returncode == 0, report.stderr
    comparison = json.loads(report.stdout)["comparison"]
    assert {row["executor"] for row in comparison["rows"]} == {"sequential", "threads"}
    assert all(row["a_repeats"] == row["b_repeats"] == 3 for row in comparison["rows"])
    assert comparison["environment_differences"]["python"][0].startswith(f"{a}.")


def test_json_output_is_only_json_and_default_workers_follow_the_cores(conlab):
    result = conlab(*run_args("tiny", "threads", tasks=2, repeats=1, warmups=0))
    assert result.returncode == 0, result.stderr
    import os

    cores = len(os.sched_getaffinity(0))
    expected = [1]
    while expected[-1] * 2 < cores:
        expected.append(expected[-1] * 2)
    if cores > 1:
        expected.append(cores)
    assert [r["workers"] for r in result.json()] == expected


def test_the_database_is_a_wal_lab_file(conlab, db_path):
    assert conlab("run", "-w", "tiny", "-e", "sequential", "--repeats", "1").returncode == 0
    assert stored(db_path, "PRAGMA journal_mode")[0][0] == "wal"
    assert stored(db_path, "PRAGMA application_id")[0][0] == 0x434C6162
    assert stored(db_path, "PRAGMA user_version")[0][0] == SCHEMA_VERSION


BAD_INPUTS = [
    ["run", "-w", "cpu", "-e", "thread"],
    ["run", "-w", "cpux", "-e", "threads"],
    ["run", "-w", "cpu", "-e", "threads", "--workers", "0"],
    ["run", "-w", "cpu", "-e", "threads", "--workers", "100000"],
    ["run", "-w", "cpu", "-e", "threads", "--workers", "two"],
    ["run", "-w", "cpu", "-e", "threads", "--tasks", "0"],
    ["run", "-w", "cpu", "-e", "threads", "--size", "-5"],
    ["run", "-w", "cpu", "-e", "threads", "--repeats", "0"],
    ["run", "-w", "cpu", "-e", "threads", "--timeout", "-1"],
    ["run", "-w", "cpu", "-e", "processes", "--start-method", "vfork"],
    ["run", "-w", "nosuchmodule:f", "-e", "threads"],
    ["run", "-w", "usermod:nosuch", "-e", "threads"],
    ["run", "-w", "missing/file.py:f", "-e", "threads"],
    ["run", "-w", "usermod:lam", "-e", "processes"],
    ["run", "-w", "usermod:nested", "-e", "pool"],
    ["run", "-w", "cpu", "-e", "asyncio"],
    ["run", "-w", "cpu", "-e", "threads", "--python", "/no/such/python"],
    ["run", "-w", "cpu"],
    ["run", "-w", "cpu", "-e", "threads", "--frobnicate"],
    ["run", "-w", "cpu", "-e", "processes", "--scheduler", "tcp://127.0.0.1:8786"],
    ["run", "-w", "http", "-e", "dask", "--scheduler", "tcp://127.0.0.1:8786"],
    ["runs", "--db", "/no/such/dir/results.db"],
    ["list", "everything"],
    # bad input that was taken as something else
    ["runs", "--db", "://"],
    ["runs", "--db", "sqlite://"],
    ["run", "-w", "tiny", "-e", "threads", "--db", ""],
    ["report", "--format", "html", "--output", "."],
    ["report", "--format", "html", "--output", "/dev/full"],
    ["report", "--format", "html", "--output", "usermod.py/report.html"],
    ["run", "-w", "tiny", "-e", "threads", "--timeout", "1e10"],
    ["run", "-w", "tiny", "-e", "threads", "--python", ""],
    ["run", "-w", "tiny", "-e", "dask", "--scheduler", "not a url"],
    ["report", "--select", "tag:nothing"],
    ["report", "--compare", "tag:a", "tag:b", "--fail-if-slower", "nan"],
    ["report", "--compare", "tag:a", "tag:b", "--fail-if-slower", "-5"],
    ["db", "merge", "."],
    ["db", "merge", "missing.db"],
]


@pytest.mark.parametrize("args", BAD_INPUTS, ids=lambda a: " ".join(a[1:]))
def test_bad_input_is_one_line_exit_2_and_stores_nothing(conlab, db_with_one_run, args):
    db_path = db_with_one_run  # which bad input must leave byte for byte as it was
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    assert_one_line_error(conlab(*args))
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


def test_unpicklable_function_message_names_the_fix(conlab):
    result = conlab("run", "-w", "usermod:lam", "-e", "processes", "--start-method", "spawn")
    assert_one_line_error(result)
    assert "module's top level" in result.stderr


def test_a_path_to_a_file_works_as_a_workload(conlab, user_dir):
    (user_dir / "sub").mkdir()
    (user_dir / "sub" / "jobs.py").write_text("def square(n):\n    return n * n\n")
    options = dict(start_method="spawn", workers=2, tasks=4, repeats=1)
    result = conlab(*run_args("sub/jobs.py:square", "processes", **options))
    assert result.returncode == 0, result.stderr
    assert result.json()[0]["status"] == "ok"


@pytest.mark.parametrize("executor", ["threads", *PROCESS_EXECUTORS])
def test_a_task_that_raises_is_stored_as_failed(conlab, db_path, executor):
    result = conlab(*run_args("usermod:boom", executor, workers=2, tasks=4, size=3, repeats=1))
    assert result.returncode == 1
    (run,) = result.json()
    assert run["status"] == "failed"
    assert run["error"] == "a task raised ValueError: boom at size 3"
    (detail,) = stored(db_path, "SELECT error_detail FROM run WHERE id = ?", run["run_id"])[0]
    assert "Traceback" in detail and "boom" in detail


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
def test_a_worker_killed_by_a_signal_is_stored_as_failed(conlab, executor):
    result = conlab(
        *run_args("usermod:die", executor, workers=2, tasks=4, size=1, repeats=1, timeout=60)
    )
    assert result.returncode == 1
    (run,) = result.json()
    assert run["status"] == "failed"
    assert "SIGKILL" in run["error"] or "terminated abruptly" in run["error"]


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
def test_an_expired_timeout_is_stored_as_failed(conlab, executor):
    result = conlab(*run_args("usermod:hang", executor, workers=2, tasks=2, repeats=1, timeout=1))
    assert result.returncode == 1
    (run,) = result.json()
    assert run["status"] == "failed" and "timed out after 1 s" in run["error"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stores_the_run_as_cancelled(conlab, db_path, signum):
    process = conlab.start(
        "run",
        "-w",
        "usermod:hang",
        "-e",
        "processes",
        "--workers",
        "2",
        "--tasks",
        "2",
        "--repeats",
        "1",
        "--json",
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the run is recorded as running
        if db_path.exists():
            try:
                if stored(db_path, "SELECT count(*) FROM run WHERE status = 'running'")[0][0]:
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stored(db_path, "SELECT status FROM run") == [("cancelled",)]


def test_list_and_env(conlab):
    executors = {e["name"]: e for e in conlab("list", "executors", "--json").json()}
    assert executors["processes"]["available"] is True
    if not executors["interpreters"]["available"]:
        assert "3.14" in executors["interpreters"]["reason"]
    workloads = {w["name"] for w in conlab("list", "workloads", "--json").json()}
    assert workloads == {"cpu", "hash", "sleep", "io", "tiny", "transfer", "http"}
    pythons = conlab("list", "pythons", "--json").json()
    assert any(p["current"] for p in pythons)
    env = conlab("env", "--json").json()
    assert env["logical_cores"] >= 1 and len(env["machine_fingerprint"]) == 20
    assert conlab("env", "--json").json()["machine_fingerprint"] == env["machine_fingerprint"]


# --- bad input, by class: each a one-line refusal that changes nothing ------------------------

LETTERS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=8)
NOT_UTF8 = st.text(max_size=6).filter(lambda s: "\x00" not in s).map(lambda s: s + "\udc9b")
BAD_RUN_OPTIONS = st.one_of(
    st.tuples(
        st.just("--timeout"),
        st.one_of(
            st.floats(min_value=MAX_TIMEOUT_S, exclude_min=True),
            st.floats(max_value=0),
            st.just(math.nan),
        ).map(str),
    ),
    st.tuples(st.just("--python"), st.text(alphabet=" \t", max_size=3)),
    st.tuples(
        st.just("--scheduler"),
        st.one_of(
            st.sampled_from(["http", "inproc", "udp", "file", "tcp+x"]).map(lambda s: f"{s}://h:1"),
            st.integers(65536, 10**7).map(lambda port: f"tcp://h:{port}"),
            LETTERS.map(lambda s: f"{s} {s}"),
            st.just("tcp://"),
            st.just("h:"),
        ),
    ),
    st.tuples(
        st.just("--db"),
        st.sampled_from(["://", "sqlite://", "sqlite:///:memory:", "", " ", "://results.db"]),
    ),
    st.tuples(st.just("--tag"), NOT_UTF8),
    st.tuples(st.just("-w"), NOT_UTF8.map(lambda s: f"{s}.py:work")),
).map(lambda option: ["run", "-w", "tiny", "-e", "dask", *option])
BAD_REPORT_OPTIONS = st.one_of(
    st.one_of(st.floats(max_value=0, exclude_max=True), st.just(math.inf), st.just(math.nan)).map(
        lambda pct: ["--compare", "tag:a", "tag:b", "--fail-if-slower", str(pct)]
    ),
    st.sampled_from([".", "/", "usermod.py/x.html", "usermod.py/a/b.md", "/dev/full"]).map(
        lambda out: ["--format", "markdown", "--output", out]
    ),
    LETTERS.map(lambda tag: ["--select", f"tag:no-{tag}"]),
).map(lambda options: ["report", *options])
BAD_MERGE_SOURCES = st.one_of(st.just("."), LETTERS.map(lambda s: f"missing-{s}.db")).map(
    lambda source: ["db", "merge", source]
)


@given(st.one_of(BAD_RUN_OPTIONS, BAD_REPORT_OPTIONS, BAD_MERGE_SOURCES))
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_each_class_of_bad_input_is_one_line_and_changes_nothing(conlab, db_with_one_run, args):
    db_path = db_with_one_run  # which no bad input may change
    before = hashlib.sha256(db_path.read_bytes()).hexdigest()
    assert_one_line_error(conlab(*args))
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == before


def test_one_file_is_one_workload_however_its_path_is_written(conlab, user_dir):
    (user_dir / "sub").mkdir()
    (user_dir / "sub" / "jobs.py").write_text("def square(n):\n    return n * n\n")
    for ref in ("sub/jobs.py:square", "./sub/jobs.py:square", "sub/../sub/jobs.py:square"):
        result = conlab(*run_args(ref, "sequential", tasks=2, repeats=1, warmups=0))
        assert result.returncode == 0, result.stderr
    assert {r["workload"] for r in conlab("runs", "--json").json()} == {"sub/jobs.py:square"}


# --- stored text reaches the terminal as text -------------------------------------------------

# C0 and C1 controls, DEL, and the bidirectional controls (storage.text)
RAW_CONTROL = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


@pytest.mark.slow
def test_hostile_text_in_a_database_is_printed_as_text(conlab, tmp_path):
    """Markup, terminal sequences and formulas in every shown column of received databases:
    every command prints them as visible text, and no control character reaches the terminal."""
    dbs = []
    for start in range(0, len(HOSTILE), 10):
        dbs.append(tmp_path / f"received{start}.db")
        hostile_database(dbs[-1], (HOSTILE[start:] + HOSTILE)[:10])
    several = [arg for db in dbs for arg in ("--db", str(db))]
    outputs = [conlab("runs", *several), conlab("report", "--format", "table", *several)]
    outputs += [conlab("report", "--format", f, *several) for f in ("markdown", "csv")]
    outputs += [
        conlab(*command, "--db", str(db)) for db in dbs for command in (["runs"], ["db", "info"])
    ]
    for result in outputs:
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert not RAW_CONTROL.search(result.stdout), repr(result.stdout)
    runs, table, markdown, csv_text = (r.stdout for r in outputs[:4])
    one_by_one = "".join(r.stdout for r in outputs[4:])  # tables as wide as one file needs
    assert "[/x]" in one_by_one and "[@click=app.quit]quit[/]" in one_by_one
    assert "\\x1b]0;retitled\\x07" in one_by_one and "\\x1b[2J\\x1b[31mred" in one_by_one
    assert "lab-\\u202egnp.exe" in one_by_one  # a bidi override shown, not obeyed
    assert "\\\\x9b31m" in markdown  # the escape, itself escaped for Markdown
    assert "\\[bold red\\]loud\\[/\\]" in markdown
    for row in csv.reader(io.StringIO(csv_text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or is_number(cell)
    assert "'@SUM(A1:A2)" in csv_text and "'+1+1" in csv_text


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_csv_neutralises_formulas_and_keeps_negative_numbers(conlab, tmp_path):
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine

    db = tmp_path / "formulas.db"
    engine = open_engine(db, writer=True)
    env = environment("c" * 20, "@host", "=1+1", "-5")
    sweep = ExperimentSpec(workload="x", executor="x").sweep_id
    common = dict(workload='=HYPERLINK("x")', tasks=2, repeats=3, warmups=0, sweep_id=sweep)
    record_run(engine, ExperimentSpec(executor="sequential", **common), env, [10, 10, 10])
    # twice as fast on 2 workers and then some: a negative Karp–Flatt serial fraction
    record_run(engine, ExperimentSpec(executor="+x", workers=2, **common), env, [4, 4, 4])
    engine.dispose()
    result = conlab("report", "--db", str(db), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["machine"] for r in rows} == {"'@host"}
    assert {r["workload"] for r in rows} == {'\'=HYPERLINK("x")'}
    assert {r["executor"] for r in rows} == {"sequential", "'+x"}
    assert {r["python"] for r in rows} == {"-5"}  # a plain number is no formula
    parallel = next(r for r in rows if r["workers"] == "2")
    assert float(parallel["karp_flatt"]) == pytest.approx(-0.2)  # a number, not "'-0.2"


def test_markup_in_paths_and_tags_is_text(conlab, user_dir, tmp_path):
    (user_dir / "w[" / "i]").mkdir(parents=True)
    (user_dir / "w[" / "i]" / "jobs.py").write_text("def work(n):\n    return n\n")
    db = str(tmp_path / "d[" / "i]" / "results.db")
    options = ["--workers", "1", "--tasks", "2", "--repeats", "1", "--db", db]
    run = conlab("run", "-w", "w[/i]/jobs.py:work", "-e", "threads", "--tag", "[/x]", *options)
    assert run.returncode == 0 and "w[/i]/jobs.py:work" in run.stdout, run.stderr
    for args in (["runs"], ["report", "--format", "table"], ["db", "info"], ["db", "check"]):
        result = conlab(*args, "--db", db)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert "[/" in result.stdout
    assert "[/x]" in conlab("runs", "--db", db).stdout
    assert db in conlab("db", "info", "--db", db).stdout


@given(st.lists(SHOWN_TEXT, min_size=1, max_size=3), SHOWN_TEXT)
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_text_in_a_table_or_a_line_prints_without_markup_or_control(capsys, cells, line):
    from tui.cli import print_rows as _print_rows
    from tui.cli import say as _say

    columns = [f"c{n}" for n in range(len(cells))]
    _print_rows([dict(zip(columns, cells))], columns, title=line)
    _say(line)
    out = capsys.readouterr().out
    assert not RAW_CONTROL.search(out.replace("\n", ""))


# --- the commands agree with each other and with the app ---------------------------------------


def test_runs_are_newest_first_with_iso_utc_seconds(conlab, db_path):
    from tests.tui.conftest import two_sweeps

    two_sweeps(db_path)
    listed = json.loads(conlab("runs", "--json").stdout)
    created = [r["created_at"] for r in listed]
    assert created == sorted(created, reverse=True)
    assert [r["tag"] for r in listed] == ["after"] * 3 + ["before"] * 3
    table = conlab("runs").stdout
    shown = re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table)
    assert len(shown) == 6 and shown == sorted(shown, reverse=True)


@pytest.mark.parametrize("command", ["report", "runs"])
def test_a_missing_database_is_one_line_and_exit_2(conlab, tmp_path, command):
    result = conlab(command, "--db", str(tmp_path / "missing.db"))
    assert_one_line_error(result)
    assert "no database at" in result.stderr and not (tmp_path / "missing.db").exists()


def test_csv_and_json_give_chunksize_as_a_whole_number(conlab, db_path):
    from tests.tui.conftest import two_sweeps

    two_sweeps(db_path)
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute("UPDATE run SET chunksize = 1 WHERE workers = 2")
    connection.close()
    rows = list(csv.DictReader(io.StringIO(conlab("report", "--format", "csv").stdout)))
    assert sorted(r["chunksize"] for r in rows) == ["", "", "1"]
    summary = json.loads(conlab("report", "--format", "json").stdout)["summary"]
    assert sorted(str(r["chunksize"]) for r in summary) == ["1", "None", "None"]


def test_the_terminal_table_says_each_warning_once_below_it(conlab, db_path):
    from tests.tui.conftest import two_sweeps

    two_sweeps(db_path)
    lines = conlab("report", "--format", "table").stdout.splitlines()
    warnings = [line for line in lines if line.startswith("warning (row")]
    assert warnings and len(warnings) == len(set(warnings))
    # every row of the table is one line: no warning text wraps it
    rows = [line for line in lines if re.match(r"│ \d ", line)]
    assert len(rows) == 3


def test_compare_on_a_terminal_shows_the_comparison_alone(conlab, db_path):
    from tests.tui.conftest import two_sweeps

    two_sweeps(db_path)
    out = conlab("report", "--format", "table", "--compare", "tag:before", "tag:after").stdout
    assert "tag:after against tag:before" in out and "geometric mean of B/A: 0.8" in out
    assert "summary:" not in out


def test_version_is_said_without_loading_the_lab(conlab):
    said = conlab("--version", script=True)
    assert said.returncode == 0 and said.stdout.startswith("conlab ")


@pytest.mark.parametrize(
    "out",
    ["{db}", "link-to-db", "hard-link.db", "{db}-wal", "{copy}"],
    ids=["the-db", "a-symlink-to-it", "a-hard-link", "its-wal", "the-second-db"],
)
def test_a_report_never_writes_over_a_database_it_reads(conlab, db_with_one_run, out, tmp_path):
    db, copy = db_with_one_run, tmp_path / "copy.db"
    shutil.copy(db, copy)
    (db.parent / "link-to-db").symlink_to(db)
    os.link(db, db.parent / "hard-link.db")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, copy)}
    target = out.format(db=db, copy=copy)
    for extra in ([], ["--timeline", "x"]):
        refused = conlab(
            "report",
            "--db",
            str(db),
            "--db",
            str(copy),
            "--format",
            "html",
            "--output",
            str(db.parent / target),
            *extra,
        )
        assert_one_line_error(refused)
        assert "which this command reads" in refused.stderr
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (db, copy)} == before


def test_a_report_replaces_a_link_at_its_output_and_spares_what_it_pointed_to(
    conlab, db_with_one_run, tmp_path
):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "reports" / "summary.html"
    out.parent.mkdir()
    out.symlink_to(victim)
    done = conlab("report", "--format", "html", "--output", str(out))
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and "<html" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["summary.html"]  # no part left


def test_a_database_named_twice_is_read_once_and_one_adding_nothing_is_named(
    conlab, db_with_one_run, tmp_path
):
    db = db_with_one_run
    (tmp_path / "again.db").symlink_to(db)
    listed = conlab("runs", "--db", str(db), "--db", str(tmp_path / "again.db"), "--json").json()
    assert len(listed) == 1
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    both = conlab("report", "--db", str(db), "--db", str(copy), "--format", "json")
    assert both.returncode == 0, both.stderr
    assert f"{copy} adds no run to the report" in both.stderr
    assert len(both.json()["summary"]) == 1


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_an_async_def_is_refused_on_an_executor_other_than_asyncio(conlab, db_path, executor):
    # called by another executor it would only create coroutines, timed as if it ran
    result = conlab("run", "-w", "usermod:nap", "-e", "asyncio", "-e", executor, "--repeats", "1")
    assert_one_line_error(result)
    assert "only asyncio can run it" in result.stderr and "-e asyncio" in result.stderr
    assert not db_path.exists()


def test_advise_on_a_module_without_its_function_is_one_line(conlab, db_path):
    result = conlab("advise", "usermod")
    assert_one_line_error(result)
    assert "MODULE:FUNCTION" in result.stderr
    assert not db_path.exists()


def test_a_python_on_path_that_never_answers_is_left_out_and_ended(conlab, tmp_path):
    # a shell script named like an interpreter, whose `sleep` is a child of its own
    folder = tmp_path / "bin"
    folder.mkdir()
    silent = folder / "python3.19"
    silent.write_text("#!/bin/sh\nsleep 3600\n")
    silent.chmod(0o755)
    path = f"{folder}{os.pathsep}{os.environ['PATH']}"
    # waited for 60 s, and its sleep left running (the fixture checks none is)
    result = conlab("list", "pythons", "--json", env={"PATH": path}, timeout=45)
    assert result.returncode == 0, result.stderr
    found = result.json()
    assert found and str(silent) not in [p["path"] for p in found]


def test_db_before_the_command_is_the_commands_database(conlab, db_path, tmp_path):
    other = tmp_path / "other.db"
    result = conlab("--db", str(other), *run_args("tiny", "sequential", tasks=2, repeats=1))
    assert result.returncode == 0, result.stderr
    (stored,) = conlab("--db", str(other), "runs", "--json").json()
    assert stored["run_id"] == result.json()[0]["run_id"]
    assert not db_path.exists() or conlab("runs", "--json").json() == []  # not the default's
