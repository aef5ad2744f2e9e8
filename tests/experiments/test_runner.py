"""The runner as a process: its event protocol, what it measures, and how it fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import launch
from experiments.executors import EXECUTORS
from experiments.spec import ExperimentSpec, SpecError
from tests.conftest import EVERY_EXECUTOR, add_shadowing_packages

HEAVY = {"pandas", "sqlalchemy", "sqlmodel", "textual", "rich", "typer", "numpy", "pydantic"}


def in_user_dir(monkeypatch, user_dir: Path) -> None:
    """Run from the test's user directory, with its modules (usermod...) importable."""
    monkeypatch.chdir(user_dir)
    monkeypatch.setenv("PYTHONPATH", str(user_dir))


def run_spec(monkeypatch, user_dir: Path, workload: str, executor: str, **fields) -> launch.Launch:
    """Run one spec through a real runner; one measured repeat and no warm-up unless given."""
    in_user_dir(monkeypatch, user_dir)
    fields = {"repeats": 1, "warmups": 0, **fields}
    current = launch.Launch(ExperimentSpec(workload=workload, executor=executor, **fields))
    current.events_seen = current.run()
    return current


def of_kind(events, kind):
    return [e for e in events if e["event"] == kind]


def test_events_follow_the_protocol(monkeypatch, user_dir):
    current = run_spec(
        monkeypatch, user_dir, "tiny", "threads", workers=2, tasks=5, repeats=3, warmups=2
    )
    events = current.events_seen
    assert current.status == "ok" and current.error is None
    assert events[0]["event"] == "env" and events[-1]["event"] == "done"
    assert events[0]["resolved"]["size"] == 1  # the workload's default size, recorded
    repeats = of_kind(events, "repeat")
    assert [r["warmup"] for r in repeats] == [True, True, False, False, False]
    for repeat, tasks in zip(repeats, of_kind(events, "tasks")):
        assert repeat["wall_ns"] == repeat["end_ns"] - repeat["start_ns"] > 0
        assert len(tasks["samples"]) == 5
        for pid, _thread_id, start_ns, end_ns, *_cost in tasks["samples"]:
            # every task ran inside the timed window, in this runner process
            assert repeat["start_ns"] <= start_ns <= end_ns <= repeat["end_ns"]
            assert pid == events[0]["runner_pid"]


def test_process_workers_are_other_processes_and_cpu_time_counts_them(monkeypatch, user_dir):
    current = run_spec(
        monkeypatch,
        user_dir,
        "usermod:work",
        "processes",
        workers=2,
        tasks=4,
        size=3_000_000,
        start_method="spawn",
    )
    events = current.events_seen
    runner_pid = events[0]["runner_pid"]
    pids = {s[0] for s in of_kind(events, "tasks")[0]["samples"]}
    assert runner_pid not in pids and 1 <= len(pids) <= 2
    repeat = of_kind(events, "repeat")[0]
    # The workers' CPU time is part of the run's CPU time (they are reaped before it is read):
    # it covers the four tasks' own CPU, as one task here takes it (CPU time, unlike a task's
    # wall time, does not grow while a busy machine keeps the task waiting for a core).
    namespace: dict = {}
    exec((user_dir / "usermod.py").read_text(), namespace)
    start = time.thread_time_ns()
    namespace["work"](3_000_000)
    one_task_ns = time.thread_time_ns() - start
    assert repeat["cpu_ns"] >= 4 * one_task_ns * 0.6


def test_spawned_worker_imports_nothing_heavy(monkeypatch, user_dir, tmp_path):
    monkeypatch.setenv("MODULES_OUT", str(tmp_path))
    current = run_spec(
        monkeypatch,
        user_dir,
        "usermod:report_modules",
        "processes",
        workers=1,
        tasks=1,
        start_method="spawn",
    )
    assert current.status == "ok", current.error
    reports = list(tmp_path.glob("*.json"))
    assert reports, "the worker did not run"
    modules = {name.split(".")[0] for name in json.loads(reports[0].read_text())}
    assert "experiments" in modules  # it did import the lab's task wrapper (workloads)
    assert modules & HEAVY == set()
    # the cores of its first tasks read from the kernel's stat line, not through ctypes
    assert "ctypes" not in modules


def test_the_labs_modules_are_compiled_once_for_workers_to_read(tmp_path):
    # Under PYTHONDONTWRITEBYTECODE (as on this machine) a spawned worker or a worker
    # interpreter compiles from source every module without fresh bytecode.
    import shutil

    lab = tmp_path / "lab"
    shutil.copytree(
        Path(launch.__file__).parent,
        lab / "experiments",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    stale = lab / "experiments" / "timing.py"
    code = "from experiments.bootstrap import cache_own_bytecode; cache_own_bytecode()"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(lab)}
    for _ in range(2):  # none yet; then one changed since
        subprocess.run([sys.executable, "-c", code], env=env, cwd=lab, check=True)
        import importlib.util

        from experiments.bootstrap import _fresh

        sources = sorted((lab / "experiments").glob("*.py"))
        assert all(_fresh(str(f), importlib.util.cache_from_source(str(f))) for f in sources)
        stale.write_text(stale.read_text() + "\n# changed\n")


def test_sleep_overlaps_under_asyncio(monkeypatch, user_dir):
    current = run_spec(monkeypatch, user_dir, "sleep", "asyncio", workers=4, tasks=8, size=50)
    wall_ms = of_kind(current.events_seen, "repeat")[0]["wall_ns"] / 1e6
    assert 100 <= wall_ms < 300  # 8 naps of 50 ms, 4 at a time: two rounds, not eight


def test_pool_uses_pool_map_chunksize(monkeypatch, user_dir):
    current = run_spec(monkeypatch, user_dir, "tiny", "pool", workers=2, tasks=20)
    assert current.status == "ok", current.error
    assert current.events_seen[0]["resolved"]["chunksize"] == 3  # divmod(20, 2 * 4) -> 2 r 4


def test_a_task_that_raises_is_a_failure_with_its_traceback(monkeypatch, user_dir):
    current = run_spec(
        monkeypatch, user_dir, "usermod:boom", "processes", workers=2, tasks=4, size=7
    )
    assert current.status == "failed"
    assert current.error == "a task raised ValueError: boom at size 7"
    assert "usermod.py" in current.detail and "boom at size 7" in current.detail


def test_timeout_kills_the_runner_and_its_workers(monkeypatch, user_dir):
    current = run_spec(
        monkeypatch, user_dir, "usermod:hang", "processes", workers=2, tasks=2, timeout_s=1.5
    )
    assert current.status == "failed"
    assert "timed out after 1.5 s" in current.error


@pytest.mark.parametrize("executor", ["processes", "pool"])
def test_a_worker_killed_by_a_signal_fails_the_run(monkeypatch, user_dir, executor):
    current = run_spec(
        monkeypatch, user_dir, "usermod:die", executor, workers=2, tasks=4, size=1, timeout_s=60
    )
    assert current.status == "failed"
    assert "killed by SIGKILL" in current.error or "terminated abruptly" in current.error


@pytest.mark.parametrize("executor", EVERY_EXECUTOR)
def test_the_runner_killed_mid_repeat_is_reported_and_its_group_ends(
    monkeypatch, user_dir, executor
):
    in_user_dir(monkeypatch, user_dir)
    spec = ExperimentSpec("sleep", executor, workers=2, tasks=8, size=50, repeats=1000, warmups=0)
    current = launch.Launch(spec, progress=True)
    runner_pid = None
    for event in current.events():
        if event["event"] == "env":
            runner_pid = event["runner_pid"]
        elif event["event"] == "progress" and 0 < event["done"] < event["total"]:
            os.kill(runner_pid, 9)  # mid-repeat: its workers are running tasks
    assert current.status == "failed"
    assert current.error == "the runner process died (killed by SIGKILL)"
    assert processes_in_group(runner_pid) == []


def processes_in_group(pgid: int, grace_s: float = 3.0) -> list[int]:
    """Live processes of process group ``pgid`` (after ``grace_s`` for them to go)."""
    deadline = time.monotonic() + grace_s
    while True:
        found = []
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != b"Z":
                found.append(int(entry))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


# Every way a task reaches its workers, each of which must import the user's module.
WAYS = [
    ("sequential", None),
    ("threads", None),
    ("asyncio", None),
    ("processes", "fork"),
    ("processes", "spawn"),
    ("processes", "forkserver"),
    ("pool", "spawn"),
    ("loky", None),
    ("dask", None),
]


@pytest.mark.parametrize("where", ["working directory", "PYTHONPATH", "file path"])
@pytest.mark.parametrize("executor, start_method", WAYS)
def test_folders_named_like_the_lab_shadow_nothing(
    monkeypatch, tmp_path, user_dir, executor, start_method, where
):
    """Packages named experiments, storage and tui where the user stands and on PYTHONPATH
    (each raises if imported): the lab's code stays the lab's, and the user's module beside
    them is still found -- in the runner and in every worker."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    add_shadowing_packages(user_dir)
    add_shadowing_packages(elsewhere)
    module = "usermod:nap" if executor == "asyncio" else "usermod:work"
    if where == "working directory":
        monkeypatch.chdir(user_dir)
        monkeypatch.setenv("PYTHONPATH", str(elsewhere))
    else:
        monkeypatch.chdir(elsewhere)
        monkeypatch.setenv("PYTHONPATH", str(user_dir if where == "PYTHONPATH" else elsewhere))
        if where == "file path":
            module = str(user_dir / "usermod.py") + module[len("usermod") :]
    if EXECUTORS[executor].unavailable_reason():
        pytest.skip(EXECUTORS[executor].unavailable_reason())
    spec = ExperimentSpec(
        module,
        executor,
        workers=2,
        tasks=4,
        size=10,
        repeats=1,
        warmups=0,
        start_method=start_method,
    )
    current = launch.Launch(spec)
    events = current.run()
    assert current.status == "ok", (current.error, current.stderr)
    pids = {sample[0] for sample in of_kind(events, "tasks")[0]["samples"]}
    if executor in ("processes", "pool", "loky", "dask"):
        assert events[0]["runner_pid"] not in pids  # it ran in the workers


@pytest.mark.parametrize(
    "output, returncode, why",
    [
        # the runner's own traceback: its last line says why
        (
            'Traceback (most recent call last):\n  File "x", line 1\nImportError: no x\n',
            1,
            "ImportError: no x",
        ),
        # a worker's broken pipe after the runner's real error is not the cause
        (
            "Traceback (most recent call last):\n  F\nValueError: real\n"
            "Process SpawnProcess-1:\nTraceback (most recent call last):\n  F\nBrokenPipeError: "
            "[Errno 32] Broken pipe\n/usr/lib/python3.11/multiprocessing/resource_tracker.py:254: "
            "UserWarning: resource_tracker: There appear to be 1 leaked semaphore objects\n",
            1,
            "ValueError: real",
        ),
        # killed by a signal: what its workers printed afterwards is never why
        (
            "Traceback (most recent call last):\n  F\nBrokenPipeError: x\nsomething printed\n",
            -9,
            None,
        ),
        ("Traceback (most recent call last):\n  F\nKeyError: 1\n", -15, None),
        (
            "Fatal Python error: Aborted\n\nCurrent thread 0x1 (most recent call first):\n",
            -6,
            "Fatal Python error: Aborted",
        ),
        (
            "conlab: Python 2.7 cannot run the lab's runner; pass --python with CPython 3.9\n",
            2,
            "conlab: Python 2.7 cannot run the lab's runner; pass --python with CPython 3.9",
        ),
        ("a user's print\n", 1, None),
    ],
)
def test_why_a_runner_ended_is_the_line_that_says_so(output, returncode, why):
    assert launch.why_it_ended(output, returncode) == why


def test_check_refuses_what_cannot_be_pickled(monkeypatch, user_dir):
    in_user_dir(monkeypatch, user_dir)
    for name in ("lam", "nested"):
        spec = ExperimentSpec(workload=f"usermod:{name}", executor="processes", workers=2)
        with pytest.raises(SpecError, match="module's top level"):
            launch.check_specs([spec])
    # threads share memory: nothing needs pickling, so the same functions are fine there
    launch.check_specs([ExperimentSpec(workload="usermod:lam", executor="threads", workers=2)])


def test_runner_imports_cheaply():
    code = "import sys, experiments.runner; print(sorted(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    modules = {name.split(".")[0] for name in eval(out)}
    assert modules & HEAVY == set()
    assert "asyncio" not in modules and "multiprocessing" not in modules


def older_interpreters() -> list[dict]:
    from experiments.pythons import discover

    return [p for p in discover() if not p["current"]]


@pytest.mark.parametrize("minor", [9, 10, 11, 12, 13, 14])
def test_runs_under_every_cpython_from_3_9(monkeypatch, user_dir, minor):
    found = [
        p
        for p in older_interpreters()
        + [{"path": sys.executable, "version_info": list(sys.version_info[:3])}]
        if p["version_info"][:2] == [3, minor]
    ]
    if not found:
        pytest.skip(f"no CPython 3.{minor} on this machine")
    current = run_spec(
        monkeypatch,
        user_dir,
        "usermod:work",
        "processes",
        workers=2,
        tasks=2,
        size=10,
        python=found[0]["path"],
        start_method="spawn",
    )
    assert current.status == "ok", (current.error, current.stderr)
    env = current.events_seen[0]["environment"]
    assert env["python_version"].startswith(f"3.{minor}.")


def test_the_http_server_listens_on_loopback_only_and_ends_with_its_stdin():
    server = subprocess.Popen(
        [sys.executable, "-m", "experiments.serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        port = int(server.stdout.readline())
        listening = [
            line.split()[1]
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
            if line.split()[3] == "0A"  # LISTEN
        ]
        assert f"0100007F:{port:04X}" in listening  # 127.0.0.1, nothing wider
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/3000")
        assert connection.getresponse().read() == bytes(3000)
        connection.close()
    finally:
        server.stdin.close()
    assert server.wait(10) == 0  # the runner closing (or dying) ends it


def in_a_watched_runner(script: str) -> subprocess.CompletedProcess:
    """``script`` run in a process that has taken the runner's parent watch, as a runner does."""
    watch = (
        "import os\nfrom experiments import runner\nassert runner._die_with_parent(os.getppid())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", watch + script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent watch is Linux's")
def test_a_forked_worker_stopped_by_sigterm_ends_as_sigterm_ends_it():
    """A pool stops the survivors of a dead worker with SIGTERM, and names the dead by exit
    code: a forked worker must not take the runner's parent watch and "exit with code 3"."""
    script = (
        "import multiprocessing, os, signal, time\n"
        "ready = multiprocessing.get_context('fork').Event()\n"
        "def wait():\n"
        "    ready.set()\n"
        "    time.sleep(60)\n"
        "worker = multiprocessing.get_context('fork').Process(target=wait)\n"
        "worker.start()\n"
        "ready.wait(60)\n"
        "worker.terminate()\n"
        "worker.join(60)\n"
        "print(worker.exitcode)\n"
    )
    done = in_a_watched_runner(script)
    assert done.stdout.split() == ["-15"], done.stderr  # killed by SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent watch is Linux's")
def test_a_worker_forked_from_a_thread_of_the_runner_has_sigterms_default():
    """joblib's multiprocessing backend, called from a thread of the runner (as the Joblib
    executor calls it), terminates its Pool after each call with SIGTERM. A worker that kept the
    runner's SIGTERM handler now and then did not end (measured: a call in ~180 waited forever
    on a loaded machine, none in 900 with the default): a forked worker has the default."""
    script = (
        "import multiprocessing, os, signal, threading\n"
        "context = multiprocessing.get_context('fork')\n"
        "said = context.SimpleQueue()\n"
        "def tell():\n"
        "    said.put(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)\n"
        "def fork():\n"
        "    worker = context.Process(target=tell)\n"
        "    worker.start()\n"
        "    worker.join(60)\n"
        "thread = threading.Thread(target=fork)\n"
        "thread.start()\n"
        "thread.join()\n"
        "print(said.get(), signal.getsignal(signal.SIGTERM) != signal.SIG_DFL)\n"
    )
    done = in_a_watched_runner(script)
    assert done.stdout.split() == ["True", "True"], done.stderr  # the runner keeps its own


def _ended(how: str):
    """A real process, ended as ``how`` says: "sigterm", "sigkill" or "exit3"."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    if how == "exit3":
        process = context.Process(target=sys.exit, args=(3,))
    else:
        process = context.Process(target=time.sleep, args=(60,))
    process.start()
    if how == "sigterm":
        process.terminate()
    elif how == "sigkill":
        process.kill()
    process.join(60)
    return process


def test_a_broken_pool_names_the_worker_that_broke_it_before_the_pools_sigterms():
    from experiments.executors import _name_the_dead

    term, kill, three = _ended("sigterm"), _ended("sigkill"), _ended("exit3")
    said = _name_the_dead({term.pid: term, kill.pid: kill, three.pid: three})
    assert said == (
        f"worker pid {kill.pid} was killed by SIGKILL; worker pid {three.pid} exited with code 3"
    )
    # only the pool's SIGTERMs were seen: the cause is said to be unseen, not the SIGTERM
    said = _name_the_dead({term.pid: term})
    assert said == (
        "a worker process terminated abruptly, unseen; then "
        f"worker pid {term.pid} was killed by SIGTERM"
    )
    assert _name_the_dead({}) == ""  # nothing seen: the pool's own words are used


def test_interpreters_answer_in_parallel_and_are_read_in_the_calling_thread(monkeypatch):
    """`discover` asks every interpreter at once, and reads their answers with
    ``ast.literal_eval`` in its own thread: CPython 3.11's AST conversion fails when several
    threads parse at once ("AST constructor recursion depth mismatch"), which ended the app's
    search for interpreters in a busy run."""
    import ast
    import threading

    from experiments import pythons

    readers, literal_eval = set(), ast.literal_eval

    def reading(text):
        readers.add(threading.get_ident())
        return literal_eval(text)

    monkeypatch.setattr(ast, "literal_eval", reading)
    found = pythons.discover()
    assert any(p["current"] for p in found)
    assert readers == {threading.get_ident()}
