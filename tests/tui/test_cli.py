"""`conlab` as a user runs it: real processes, a real database file, the SPEC's JSON shapes."""

from __future__ import annotations

import collections
import hashlib
import json
import signal
import sqlite3
import time

import pytest

from experiments.executors import EXECUTORS
from storage.database import SCHEMA_VERSION
from tests.conftest import PROCESS_EXECUTORS, assert_one_line_error, run_args

RUN_KEYS = {
    "run_id",
    "sweep_id",
    "status",
    "workload",
    "executor",
    "workers",
    "start_method",
    "tasks",
    "size",
    "wall_s",
    "median_s",
    "error",
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
        ("sequential", "ok"), ("threads", "ok"), ("asyncio", "ok"), ("processes", "ok")
    ]  # fmt: skip
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
]


@pytest.mark.parametrize("args", BAD_INPUTS, ids=lambda a: " ".join(a[1:]))
def test_bad_input_is_one_line_exit_2_and_stores_nothing(conlab, db_path, args):
    # a database with one run in it, which bad input must leave byte for byte as it was
    assert conlab("run", "-w", "tiny", "-e", "sequential", "--repeats", "1").returncode == 0
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
