"""Every fault ends as a stored run with its reason, no orphan process, an intact database and
a living app. Each case runs the real `conlab` with real processes (see docs/faults.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.spec import ExperimentSpec, SpecError
from tests.conftest import (
    EVERY_EXECUTOR,
    MARK_VAR,
    PROCESS_EXECUTORS,
    REPO,
    add_shadowing_packages,
    assert_one_line_error,
    leftover_processes,
    run_args,
)


def run_one(conlab, workload: str, executor: str, *extra: str) -> dict:
    options = dict(workers=2, tasks=4, size=1, repeats=1, warmups=0, timeout=60)
    result = conlab(*run_args(workload, executor, **options), *extra)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    (run,) = result.json()
    assert run["status"] == "failed"
    return run


def stored_run(db_path, run_id: str) -> dict:
    connection = sqlite3.connect(db_path)
    connection.row_factory = sqlite3.Row
    row = dict(connection.execute("SELECT * FROM run WHERE id = ?", (run_id,)).fetchone())
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return row


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
@pytest.mark.parametrize(
    "workload, words",
    [
        ("usermod:exit3", "exited with code 3"),
        ("usermod:die", "killed by SIGKILL"),
        ("usermod:segfault", "killed by SIGSEGV"),
    ],
)
def test_a_worker_that_dies_ends_the_run_with_how_it_died(
    conlab, db_path, executor, workload, words
):
    run = run_one(conlab, workload, executor)
    assert run["error"].startswith("a worker died: ") and words in run["error"], run["error"]
    assert stored_run(db_path, run["run_id"])["status"] == "failed"


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_sys_exit_and_keyboard_interrupt_in_a_task_are_failures(conlab, executor):
    assert run_one(conlab, "usermod:calls_sys_exit", executor)["error"] == (
        "a task raised SystemExit: 4"
    )
    assert run_one(conlab, "usermod:raises_keyboard_interrupt", executor)["error"] == (
        "a task raised KeyboardInterrupt"
    )


def test_a_pool_worker_that_dies_holding_a_queue_lock_ends_the_run(conlab):
    # Pool.terminate() would wait forever here (its task handler cannot put its end marker on
    # the result queue): the lab stops such a pool without waiting on it.
    run = run_one(conlab, "usermod:dies_holding_result_lock", "pool")
    assert run["error"].startswith("a worker died") and "exited with code 3" in run["error"]


def test_keyboard_interrupt_in_a_pool_worker_is_a_dead_worker(conlab):
    run = run_one(conlab, "usermod:raises_keyboard_interrupt", "pool")
    assert run["error"].startswith("a worker died")


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
def test_an_unpicklable_result_names_the_fix(conlab, executor):
    run = run_one(conlab, "usermod:unpicklable_result", executor)
    assert "could not be pickled" in run["error"] and "return plain data" in run["error"]


def test_a_module_that_starts_processes_at_import_still_runs_under_spawn(conlab):
    # The runner imports user modules by name, never as __main__, so CPython's "bootstrapping
    # phase" error cannot happen; the processes the module starts end with it (the fixture
    # checks that none is left).
    result = conlab(
        *run_args(
            "unguarded:work", "processes", start_method="spawn", workers=2, tasks=2, repeats=1
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.json()[0]["status"] == "ok"


# A module that starts a pool when imported, under spawn, as the seed's program did.
POOL_AT_IMPORT = textwrap.dedent("""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def work(size):
        return size

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(work, [1]))
""")
# ... and one that starts a spawned process (not a pool) when imported: the runner's import ends.
SPAWN_AT_IMPORT = textwrap.dedent("""
    import multiprocessing

    def work(size):
        return size

    multiprocessing.get_context("spawn").Process(target=work, args=(1,)).start()
""")


def test_a_module_that_starts_a_spawn_pool_at_import_is_named_in_seconds(conlab, user_dir):
    # Python itself waits forever here (its queue's feeder thread waits for the module's import
    # lock); the runner's 60 s of silence used to be all the user got. The run's own timeout
    # below is far beyond the ~4 s it takes: a bound on a hang, not a timing.
    (user_dir / "poolatimport.py").write_text(POOL_AT_IMPORT)
    result = conlab(
        *run_args("poolatimport:work", "processes", start_method="spawn", workers=2, tasks=2),
        timeout=45,
    )
    assert_one_line_error(result)
    err = result.stderr
    assert "importing 'poolatimport'" in err and "starts processes at its top level" in err
    assert "Python's ProcessPoolExecutor reports this as BrokenProcessPool" in err
    assert "imports the program's main module again" in err and "__name__ == '__main__'" in err


def test_a_worker_stopped_at_its_start_is_pythons_broken_process_pool(conlab, user_dir):
    # the lab's spawn workers import the function's module first, as a script's workers import
    # the script: one that starts a spawned process there is stopped by Python, as it would be
    (user_dir / "spawnatimport.py").write_text(SPAWN_AT_IMPORT)
    run = run_one(conlab, "spawnatimport:work", "processes", "--start-method", "spawn")
    assert run["error"].startswith("a worker died: ")
    assert "Python's ProcessPoolExecutor reports this as BrokenProcessPool" in run["error"]
    assert "imports the program's main module again" in run["error"]


def test_a_dead_processes_worker_is_named_as_pythons_broken_process_pool(conlab):
    run = run_one(conlab, "usermod:exit3", "processes")
    assert (
        "exited with code 3 (Python's ProcessPoolExecutor reports this as BrokenProcessPool)"
        in (run["error"])
    )


# A program's entry script, importing more than the function's module, as a user's would.
ENTRY_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import decimal, email.mime.multipart, http.client, xml.dom.minidom
    from usermod import work

    with open(os.path.join(os.environ["MAIN_OUT"], f"{os.getpid()}.json"), "w") as out:
        json.dump(__name__, out)

    if __name__ == "__main__":
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2) as pool:
            print(list(pool.map(work, [1, 2])))
""")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_main_names_the_script_every_worker_imports_first(conlab, user_dir, tmp_path, method):
    (user_dir / "app.py").write_text(ENTRY_SCRIPT)
    seen = tmp_path / "main"
    seen.mkdir()
    result = conlab(
        *run_args("usermod:work", "processes", start_method=method, workers=2, tasks=4),
        "--main",
        "app.py",
        env={"MAIN_OUT": str(seen)},
    )
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["status"] == "ok", run["error"]
    # every process that imported it did so as Python's workers do, never as __main__
    names = [json.loads(p.read_text()) for p in seen.glob("*.json")]
    assert names and set(names) == {"__mp_main__"}
    (said,) = [n for n in run["notes"] if n.startswith("--main app.py: ")]
    assert (
        "as __mp_main__, as Python's own do" in said and "with the function's module alone" in said
    )


def test_main_is_refused_when_it_is_not_a_python_file(conlab, user_dir, db_path):
    for script, words in (("nosuch.py", "no such file"), ("usermod.txt", "not a Python file")):
        result = conlab(*run_args("usermod:work", "processes"), "--main", script)
        assert_one_line_error(result)
        assert words in result.stderr and "--main" in result.stderr
    assert not db_path.exists()


def test_warnings_from_a_run_are_kept_with_it(conlab, db_path):
    result = conlab(*run_args("usermod:warns", "processes", workers=1, tasks=1, repeats=1))
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert "UserWarning: careful: this task warns" in stored_run(db_path, run["run_id"])["stderr"]


# --- the runner itself: killed, spoken to, shadowed ---------------------------------------------


def runner_mid_run(db_path, process: subprocess.Popen) -> int:
    """The runner's pid, once its run has stored a repeat (the runner is then mid-run)."""
    deadline = time.monotonic() + 300  # a hang, not a slow machine
    query = "SELECT runner_pid FROM run JOIN repeat ON repeat.run_id = run.id LIMIT 1"
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            row = sqlite3.connect(db_path).execute(query).fetchone()
        except sqlite3.OperationalError:  # no tables yet
            row = None
        if row:
            return row[0]
        time.sleep(0.05)
    raise AssertionError("the run stored no repeat")


def signal_the_runner(conlab, db_path, executor: str, signum: int) -> dict:
    """Start a long run, send ``signum`` to its runner mid-run; the run `conlab` reports."""
    options = dict(workers=2, tasks=8, size=50, repeats=1000, warmups=0)
    process = conlab.start(*run_args("sleep", executor, **options))
    try:
        os.kill(runner_mid_run(db_path, process), signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # only if it hangs: then the test fails below
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    (run,) = json.loads(stdout)
    assert stored_run(db_path, run["run_id"])["status"] == run["status"] == "failed"
    return run


@pytest.mark.parametrize("executor", EVERY_EXECUTOR)
def test_the_runner_killed_fails_its_run_and_takes_its_workers(conlab, db_path, executor):
    # Its workers may hold what the runner held (under fork, everything): the parent waits on
    # the runner itself, then kills its process group; the fixture checks nothing survived.
    run = signal_the_runner(conlab, db_path, executor, signal.SIGKILL)
    # nothing its workers printed as they lost it (broken pipes, leaked semaphores) is the cause
    assert run["error"] == "the runner process died (killed by SIGKILL)"


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_the_runner_terminated_says_sigterm(conlab, db_path, executor):
    run = signal_the_runner(conlab, db_path, executor, signal.SIGTERM)
    assert run["error"] == "the runner process died (killed by SIGTERM)"


@pytest.mark.parametrize("executor", ["sequential", "processes"])
def test_what_a_task_prints_is_kept_and_never_taken_for_an_event(conlab, db_path, executor):
    options = dict(workers=1, tasks=2, repeats=2, warmups=0)
    result = conlab(*run_args("usermod:speaks_protocol", executor, **options))
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["status"] == "ok" and len(run["wall_s"]) == 2
    connection = sqlite3.connect(db_path)
    indexes = connection.execute("SELECT repeat_index FROM repeat ORDER BY repeat_index")
    assert [i for (i,) in indexes] == [0, 1]  # the printed repeat 99 is not one
    printed = stored_run(db_path, run["run_id"])["stderr"]
    # two tasks a repeat and the looked-at one (experiments.look), kept with the run
    assert printed.count('{"event": "done"}') == 6


def test_a_task_that_prints_megabytes_keeps_the_start_and_end_of_it(conlab, db_path):
    options = dict(tasks=4, repeats=1, warmups=0, size=1)
    result = conlab(*run_args("usermod:chatty", "sequential", **options))
    (run,) = result.json()
    printed = stored_run(db_path, run["run_id"])["stderr"]
    assert run["status"] == "ok" and len(printed) < 70_000  # of ~2 MB printed
    assert printed.startswith("line 0 of") and printed.rstrip().endswith("." * 60)
    assert "bytes left out" in printed


LOUD = textwrap.dedent("""
    import sys

    def loud(size):
        block = "y" * (1 << 20) + "\\n"
        for _ in range(size):
            sys.stdout.write(block)  # size MiB
        return size
""")


def test_a_task_printing_hundreds_of_megabytes_leaves_conlab_small(conlab, user_dir, db_path):
    # conlab reads at most the start and end it keeps of what the run printed, never the whole
    (user_dir / "loud.py").write_text(LOUD)
    options = dict(tasks=1, size=200, repeats=1, warmups=0, timeout=300)
    process = conlab.start(*run_args("loud:loud", "sequential", **options))
    peaks = []  # conlab's own high-water mark as it runs (not its runner's: wait4 gives both)

    def watch() -> None:
        while process.poll() is None:
            try:
                status = Path(f"/proc/{process.pid}/status").read_text()
                peaks.append(int(status.split("VmHWM:")[1].split()[0]))  # KiB
            except (OSError, IndexError, ValueError):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    stdout, stderr = process.communicate()
    watcher.join()
    assert process.returncode == 0, stderr
    peak_mib = max(peaks) / 1024
    assert peak_mib < 150, f"conlab grew to {peak_mib:.0f} MiB for a run that printed 200 MiB"
    (run,) = json.loads(stdout)
    printed = stored_run(db_path, run["run_id"])["stderr"]
    assert printed.startswith("y" * 1000) and "left out" in printed and len(printed) < 70_000


@pytest.mark.parametrize("executor", ["sequential", "processes"])
def test_a_task_that_prints_done_then_hangs_still_times_out(conlab, executor):
    options = dict(workers=1, tasks=1, repeats=1, warmups=0, timeout=2)
    result = conlab(*run_args("usermod:speaks_then_hangs", executor, **options))
    assert result.returncode == 1, result.stderr
    (run,) = result.json()
    assert run["status"] == "failed" and run["error"].startswith("timed out after 2 s")


def test_folders_named_like_the_lab_where_the_user_stands_change_nothing(conlab, user_dir):
    add_shadowing_packages(user_dir)
    args = ["run", "-w", "cpu", "-w", "usermod:work", "-w", "usermod.py:work", "-e", "sequential"]
    args += ["-e", "processes", "--workers", "2", "--tasks", "2", "--size", "10", "--repeats", "1"]
    args += ["--processes", "1", "--json"]  # one runner per run: each imports what the rest do
    # as `conlab` is run: from the user's folder, which is not on PYTHONPATH (where it would
    # shadow the CLI itself, see docs/faults.md)
    result = conlab(*args, script=True, env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    assert result.returncode == 0, result.stderr
    assert [r["status"] for r in result.json()] == ["ok"] * 6


SLOW_IMPORT = textwrap.dedent("""
    import subprocess, sys, time

    # a helper process, then a long wait, both at import time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", "{token}"])
    time.sleep(3600)

    def work(size):
        return size
""")


def test_conlab_killed_while_a_user_module_imports_leaves_no_process(conlab, user_dir):
    token = uuid.uuid4().hex
    (user_dir / "slowimport.py").write_text(SLOW_IMPORT.format(token=token))
    process = conlab.start("run", "-w", "slowimport:work", "-e", "threads")
    deadline = time.monotonic() + 120
    while not any(token.encode() in cmdline for cmdline in _cmdlines()):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.kill()  # conlab, while its runner checks the spec (importing the module)
    process.communicate()
    # the fixture checks that the checking runner and the helper it started are gone


def _cmdlines() -> list[bytes]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                found.append(handle.read())
        except OSError:
            continue
    return found


@pytest.mark.parametrize(
    "code, words",
    [
        (
            "import sys\nsys.exit(3)\n",
            "importing 'leaves' for workload 'leaves:work' called sys.exit",
        ),
        ("import os\nos._exit(5)\n", "ended without answering (exit code 5)"),
    ],
)
def test_a_module_that_ends_the_process_at_import_is_named(conlab, user_dir, code, words):
    (user_dir / "leaves.py").write_text(code + "def work(size):\n    return size\n")
    result = conlab("run", "-w", "leaves:work", "-e", "threads")
    assert_one_line_error(result)
    assert words in result.stderr and "CPython 3.9" not in result.stderr.split(";")[0]


# --- bad input anywhere: a valid run or exit 2 with one line ----------------------------------

FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "workload": st.one_of(
            st.sampled_from(["cpu", "tiny", "sleep", "nosuch", "a:b", ""]), st.text(max_size=8)
        ),
        "executor": st.one_of(
            st.sampled_from(["threads", "processes", "pool", "asyncio"]), st.text(max_size=8)
        ),
        "workers": st.one_of(st.integers(-5, 5000), st.text(max_size=3), st.none()),
        "tasks": st.one_of(st.integers(-5, 20_000_000), st.floats(), st.booleans()),
        "size": st.one_of(st.integers(-10, 2**41), st.none(), st.text(max_size=3)),
        "repeats": st.integers(-2, 20_000),
        "warmups": st.integers(-2, 20_000),
        "start_method": st.one_of(
            st.sampled_from(["fork", "spawn", "forkserver", "vfork"]), st.none()
        ),
        "chunksize": st.one_of(st.integers(-2, 5), st.none()),
        "timeout_s": st.one_of(st.floats(allow_nan=True), st.integers(-1, 5), st.none()),
        "colour": st.text(max_size=3),
    },
)


@given(FIELDS)
@settings(max_examples=300, deadline=None)
def test_any_spec_either_validates_or_says_why_in_one_line(fields):
    try:
        ExperimentSpec.from_dict({"workload": "cpu", "executor": "threads", **fields}).validate()
    except SpecError as exc:
        message = str(exc)
        assert message and "\n" not in message and ";" in message  # the problem; the fix
    except TypeError:  # missing required field: impossible here, the defaults are given
        raise


OPTIONS = st.lists(
    st.sampled_from(
        [
            ["--workers", "0"],
            ["--workers", "1,x"],
            ["--tasks", "-1"],
            ["--tasks", "abc"],
            ["--size", "-3"],
            ["--repeats", "0"],
            ["--warmups", "-1"],
            ["--chunksize", "0"],
            ["--start-method", "vfork"],
            ["--timeout", "0"],
            ["--timeout", "nan"],
            ["-e", "nosuch"],
            ["-w", "nosuch"],
            ["-w", "nomodule:f"],
            ["--python", "/nonexistent"],
            ["--bogus"],
            ["--db", "/"],
            ["-w", "cpu", "-e", "asyncio"],
        ]
    ),
    min_size=1,
    max_size=3,
)


@given(OPTIONS)
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_bad_cli_options_are_one_line_and_exit_2(conlab, options):
    args = ["run", "-w", "tiny", "-e", "sequential", "--repeats", "1", "--tasks", "1"]
    for option in options:
        args += option
    assert_one_line_error(conlab(*args))


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs root and unshare to give the database a small disk of its own",
)
def test_a_full_disk_mid_run_loses_no_result(user_dir, tmp_path):
    """The database's disk fills up while a run records: the run finishes, its numbers are
    saved to a file the user is told about, and the database stays sound."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    db = folder / "results.db"
    out, err = tmp_path / "out.json", tmp_path / "err.txt"
    mark = uuid.uuid4().hex
    check = (
        "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("
        "'PRAGMA integrity_check').fetchone()[0], c.execute('SELECT count(*) FROM repeat')"
        ".fetchone()[0])"
    )
    script = (
        f"mount -t tmpfs -o size=2m tmpfs {folder} && "
        f"{sys.executable} -m tui.cli run -w tiny -e threads --workers 2 --tasks 5000 "
        f"--repeats 6 --processes 1 --db {db} --json > {out} 2> {err}; echo $?; "
        f'{sys.executable} -c "{check}" {db}'
    )
    env = dict(os.environ, PYTHONPATH=str(user_dir), NO_COLOR="1", **{MARK_VAR: mark})
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        env=env,
        cwd=user_dir,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "1", (done.stdout, done.stderr, err.read_text())
    integrity, stored_repeats = lines[1].split()
    assert integrity == "ok" and int(stored_repeats) >= 1  # what fitted is kept, and sound
    message = err.read_text().strip().splitlines()
    assert len(message) == 1 and "could not be stored in the database" in message[0]
    (run,) = json.loads(out.read_text())
    assert run["status"] == "ok" and len(run["wall_s"]) == 6  # every repeat measured
    saved = Path(run["saved_to"])
    assert str(saved) in run["error"] and "not stored in the database" in run["error"]
    record = json.loads(saved.read_text())
    tasks = [e for e in record["events"] if e["event"] == "tasks"]
    assert len(tasks) == 7 and all(len(e["samples"]) == 5000 for e in tasks)
    assert "full" in record["storage_error"]
    assert leftover_processes(mark) == []


# A run that fills a 2 MiB disk with its task samples: the database stops taking writes midway.
FILLING_RUN = (
    "run -w tiny -e threads --workers 2 --tasks 5000 --repeats 6 --processes 1 "
    "--db results.db --json"
)


def _full_disk_run(user_dir: Path, tmp_path: Path, mounts: str, before: str = "") -> tuple:
    """`conlab run` (FILLING_RUN) standing in /mnt/db, a 2 MiB disk of its own, after the shell
    commands ``mounts`` and ``before``: (its runs as JSON, its stderr lines before its exit
    code, {path: octal mode} of what is at unsaved folders' names). /mnt itself is a private
    tmpfs, so what the test writes there goes with it."""
    from tests.conftest import in_mount_namespace

    mark = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", **{MARK_VAR: mark})
    done = in_mount_namespace(
        "mount -t tmpfs -o size=64m tmpfs /mnt && mkdir /mnt/db /mnt/tmp && "
        f"mount -t tmpfs -o size=2m tmpfs /mnt/db{mounts}",
        f"cd /mnt/db && {before} {sys.executable} -m tui.cli {FILLING_RUN} > /mnt/out.json; "
        "echo exit=$? >&2; cat /mnt/out.json; "
        "find /mnt/tmp /mnt/db -path '*conlab-unsaved-*' -printf 'left: %m %p\\n' >&2",
        cwd=user_dir,
        env=env,
    )
    assert leftover_processes(mark) == []
    lines = done.stderr.strip().splitlines()
    assert "exit=1" in lines, done.stderr
    said = lines[: lines.index("exit=1")]
    left = dict(line.split()[:0:-1] for line in lines if line.startswith("left: "))
    return json.loads(done.stdout), said, left


def test_when_nowhere_can_be_written_the_results_are_said_and_printed(user_dir, tmp_path):
    """The database's disk and every temporary folder are full: one line says so, and the JSON
    on stdout holds every event the runner sent; no empty file is left behind."""
    # The lab's checkout and interpreter stay reachable where they lie under /tmp (a clone
    # there): their folders are made in the full /tmp and the real ones bound onto them.
    kept = sorted(
        {
            "/tmp/" + Path(path).resolve().relative_to("/tmp").parts[0]
            for path in (REPO, sys.prefix)
            if Path(path).resolve().is_relative_to("/tmp")
        }
    )
    made = "".join(f" && mkdir -p /mnt/tmp{k[4:]}" for k in kept)
    bound = "".join(f" && mount --bind /mnt/realtmp{k[4:]} {k}" for k in kept)
    full = (
        " && mkdir /mnt/realtmp && mount --bind /tmp /mnt/realtmp"
        f" && mount -t tmpfs -o size=64k tmpfs /mnt/tmp{made} && "
        "(dd if=/dev/zero of=/mnt/tmp/fill bs=4k 2>/dev/null || true) && "
        f"mount --bind /mnt/tmp /tmp && mount --bind /mnt/tmp /var/tmp{bound}"
    )
    (run,), said, left = _full_disk_run(user_dir, tmp_path, full, "TMPDIR=/mnt/tmp")
    assert len(said) == 1 and "nor saved to a file" in said[0] and "space" in said[0], said
    assert "Traceback" not in said[0]
    assert run["status"] == "ok" and run["saved_to"] is None and len(run["wall_s"]) == 6
    tasks = [e for e in run["events"] if e["event"] == "tasks"]
    assert len(tasks) == 7 and all(len(e["samples"]) == 5000 for e in tasks)
    assert "nor in a file" in run["error"]
    assert not [path for path in left if path.endswith(".json")]  # no empty or part-written file


@pytest.mark.parametrize("planted", ["nothing", "a file", "another user's folder"])
def test_the_unsaved_folder_is_the_users_own(user_dir, tmp_path, planted):
    """Runs the database could not take are saved in $TMPDIR/conlab-unsaved-UID, mode 0700, each
    file 0600; a file at that name, or another user's folder there, is never written into: the
    results then stay on stdout, and one line says why."""
    if planted == "another user's folder" and os.geteuid() != 0:
        pytest.skip("needs root to make another user's folder")
    folder = f"/mnt/tmp/conlab-unsaved-{os.getuid()}"
    before = {
        "nothing": "",
        "a file": f"echo mine > {folder} &&",
        "another user's folder": f"mkdir -m 777 {folder} && chown 65534:65534 {folder} &&",
    }[planted]
    (run,), said, left = _full_disk_run(user_dir, tmp_path, "", f"{before} TMPDIR=/mnt/tmp")
    assert len(said) == 1 and "Traceback" not in said[0], said
    if planted == "nothing":
        assert run["saved_to"].startswith(folder + "/") and run["saved_to"] in run["error"]
        assert left == {folder: "700", run["saved_to"]: "600"}
        assert run["saved_to"].endswith(f"{run['run_id']}.json")
        return
    assert run["saved_to"] is None and "nor saved to a file" in said[0]
    assert ("not a folder" if planted == "a file" else "another user") in said[0]
    assert len(run["wall_s"]) == 6 and run["events"]
    assert left == {folder: "644" if planted == "a file" else "777"}  # as it was, nothing in it


def test_max_tasks_per_child_deadlock_ends_with_a_reason(conlab):
    """CPython gh-115634: a 1-worker ProcessPoolExecutor with max_tasks_per_child stops running
    tasks (and shutdown waits forever). The lab ends the run instead, naming the cause."""
    options = dict(workers=1, tasks=5, repeats=1, start_method="spawn", max_tasks_per_child=2)
    result = conlab(*run_args("tiny", "processes", "pool", **options), timeout=60)
    processes, pool = result.json()
    assert pool["status"] == "ok"  # multiprocessing.Pool replaces retired workers
    if processes["status"] == "failed":  # this CPython has the bug
        assert "gh-115634" in processes["error"] and result.returncode == 1
    else:  # a CPython with the fix
        assert processes["status"] == "ok" and result.returncode == 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["-e", "processes", "--max-tasks-per-child", "2", "--start-method", "fork"], "fork"),
        (["-e", "threads", "--max-tasks-per-child", "2"], "applies to process pools"),
        (["-e", "pool", "--max-tasks-per-child", "0"], "max_tasks_per_child must be"),
    ],
)
def test_max_tasks_per_child_bad_uses_are_refused(conlab, args, words):
    result = conlab("run", "-w", "tiny", *args)
    assert_one_line_error(result)
    assert words in result.stderr


# --- what a task starts that leaves the runner's process group ----------------------------------

DAEMONS = textwrap.dedent('''
    import os
    import time


    def _started():
        """tells the test this task runs: an empty file named after its pid, in $STARTED_DIR"""
        open(os.path.join(os.environ["STARTED_DIR"], str(os.getpid())), "w").close()


    def daemonises(size):
        """starts a daemon (the double fork: a grandchild in a session of its own), returns"""
        child = os.fork()
        if child == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(3600)
            os._exit(0)
        os.waitpid(child, 0)
        return size


    def leaves_its_session_and_hangs(size):
        os.setsid()
        _started()
        time.sleep(3600)
''')

# Where a task runs in a process it may fork from (not a subinterpreter, not an event loop).
FORKING_EXECUTORS = [
    pytest.param("sequential"),
    pytest.param("threads"),
    *PROCESS_EXECUTORS,
]


def assert_two_small_repeats_ok(conlab, workload: str, executor: str, timeout: int) -> None:
    """Two repeats of two tiny tasks on two workers run, and the run is stored ok."""
    options = dict(workers=2, tasks=2, size=1, repeats=2, warmups=0, timeout=timeout)
    result = conlab(*run_args(workload, executor, **options))
    assert result.returncode == 0, result.stderr
    assert result.json()[0]["status"] == "ok"


@pytest.mark.parametrize("executor", FORKING_EXECUTORS)
def test_a_daemon_a_task_starts_ends_with_its_run(conlab, user_dir, executor):
    # the fixture checks that no process the run started is left, the daemons included
    (user_dir / "daemons.py").write_text(DAEMONS)
    assert_two_small_repeats_ok(conlab, "daemons:daemonises", executor, timeout=120)


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
def test_a_worker_that_leaves_the_runners_session_is_killed_on_timeout(
    conlab, user_dir, tmp_path, executor
):
    (user_dir / "daemons.py").write_text(DAEMONS)
    options = dict(workers=2, tasks=2, size=1, repeats=1, warmups=0, timeout=10)
    env = {"STARTED_DIR": str(tmp_path)}
    result = conlab(*run_args("daemons:leaves_its_session_and_hangs", executor, **options), env=env)
    assert result.returncode == 1, result.stderr
    (run,) = result.json()
    assert list(tmp_path.glob("[0-9]*")), "no task had started (and left its session) in 10 s"
    assert run["error"] == (
        "timed out after 10 s; the runner and every process below it were killed"
    )


def start_daemons(conlab, user_dir, tmp_path, executor: str):
    """`conlab run` started on tasks that leave the runner's session and hang (each writes its
    pid into ``tmp_path`` once it has)."""
    (user_dir / "daemons.py").write_text(DAEMONS)
    options = dict(workers=2, tasks=2, size=1, repeats=1, warmups=0)
    args = run_args("daemons:leaves_its_session_and_hangs", executor, **options)
    return conlab.start(*args, env={"STARTED_DIR": str(tmp_path)})


def wait_for_a_daemon(process, tmp_path) -> int:
    """The pid of the first task that has left the runner's session."""
    deadline = time.monotonic() + 300  # a hang, not a slow machine
    while not list(tmp_path.glob("[0-9]*")):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    return int(next(tmp_path.glob("[0-9]*")).name)


@pytest.mark.parametrize("executor", PROCESS_EXECUTORS)
def test_a_worker_that_leaves_the_runners_session_is_killed_on_cancel(
    conlab, db_path, user_dir, tmp_path, executor
):
    process = start_daemons(conlab, user_dir, tmp_path, executor)
    try:
        wait_for_a_daemon(process, tmp_path)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # only if it hangs: then the test fails below
    assert process.returncode == 1, stderr
    (run,) = json.loads(stdout)
    assert stored_run(db_path, run["run_id"])["status"] == run["status"] == "cancelled"
    # the fixture checks that the worker in its own session is gone


READS_STDIN = textwrap.dedent("""
    import sys

    def reads_stdin(size):
        return len(sys.stdin.read())
""")


@pytest.mark.parametrize("executor", ["sequential", "threads", "processes"])
def test_a_task_reading_stdin_reads_an_empty_file(conlab, user_dir, executor):
    # the runner's control channel is a pipe of its own, never the tasks' stdin
    (user_dir / "stdin_reader.py").write_text(READS_STDIN)
    assert_two_small_repeats_ok(conlab, "stdin_reader:reads_stdin", executor, timeout=30)


ONE_HANGS = textwrap.dedent("""
    import os
    import time

    def first_hangs_then_one_raises(size):
        \"\"\"the first task to start never returns; each other one raises after 0.2 s\"\"\"
        marker = os.path.join(os.environ["MARKER_DIR"], "first")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            time.sleep(0.2)
            raise ValueError("a later task fails")
        time.sleep(3600)
""")


@pytest.mark.parametrize(
    "executor", [p for p in PROCESS_EXECUTORS if p.values[0] in ("processes", "pool", "loky")]
)
def test_a_task_that_raises_while_an_earlier_one_hangs_fails_the_run(
    conlab, user_dir, tmp_path, executor
):
    # The results are awaited in order: the hanging first task must not hide a later failure.
    (user_dir / "one_hangs.py").write_text(ONE_HANGS)
    options = dict(workers=2, tasks=4, size=1, repeats=1, warmups=0, timeout=120)
    args = run_args("one_hangs:first_hangs_then_one_raises", executor, **options)
    result = conlab(*args, env={"MARKER_DIR": str(tmp_path)})
    assert result.returncode == 1, result.stderr
    assert result.json()[0]["error"] == "a task raised ValueError: a later task fails"


SPEECHLESS = textwrap.dedent("""
    class Speechless(Exception):
        def __str__(self):
            raise RuntimeError("no words for this")

    def raises_speechless(size):
        raise Speechless("x")
""")


@pytest.mark.parametrize("executor", ["sequential", "processes"])
def test_an_exception_whose_str_raises_is_stored_by_its_name(conlab, db_path, user_dir, executor):
    (user_dir / "speechless.py").write_text(SPEECHLESS)
    run = run_one(conlab, "speechless:raises_speechless", executor)
    assert run["error"] == (
        "a task raised Speechless: <its message could not be read: str() raised RuntimeError>"
    )
    assert "raises_speechless" in stored_run(db_path, run["run_id"])["error_detail"]


def test_a_file_in_the_users_folder_named_like_a_standard_module_is_named(conlab, user_dir):
    # pickle.py where the user stands stands in for Python's pickle, which the process
    # executors need (multiprocessing's reduction subclasses pickle.Pickler)
    (user_dir / "pickle.py").write_text("# the user's notes on pickling\n")
    result = conlab(*run_args("usermod:work", "threads", "processes", size=1, repeats=1))
    assert_one_line_error(result)
    assert str(user_dir / "pickle.py") in result.stderr and "rename it" in result.stderr


def test_an_interpreter_without_ctypes_runs_every_run(conlab, tmp_path):
    # ctypes is optional in a CPython build: the parent-death signal and the subreaper need it,
    # and without them the runner watches its control pipe instead
    missing = tmp_path / "no-ctypes" / "ctypes"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text("raise ImportError('built without ctypes')\n")
    python = tmp_path / "python-without-ctypes"
    python.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{missing.parent}${{PYTHONPATH:+:$PYTHONPATH}}" exec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    options = dict(workers=2, tasks=2, size=100, repeats=1, warmups=0, python=str(python))
    result = conlab(*run_args("cpu", "sequential", "processes", **options))
    assert result.returncode == 0, result.stderr
    assert [run["status"] for run in result.json()] == ["ok", "ok"]


@pytest.mark.parametrize("executor", ["processes", "pool"])
def test_a_worker_that_left_the_runners_session_ends_when_the_runner_is_killed(
    conlab, db_path, user_dir, tmp_path, executor
):
    # the runner, killed -9, cannot end its workers, and its orphans go to init: the parent
    # finds them by the mark the runner gave every process it started
    process = start_daemons(conlab, user_dir, tmp_path, executor)
    try:
        worker = wait_for_a_daemon(process, tmp_path)
        with open(f"/proc/{worker}/stat", "rb") as stat:
            runner = int(stat.read().rpartition(b")")[2].split()[1])  # its parent
        os.kill(runner, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()  # only if it hangs: then the test fails below
    assert process.returncode == 1, stderr
    (run,) = json.loads(stdout)
    assert run["error"] == "the runner process died (killed by SIGKILL)"
    # the fixture checks that the workers in their own sessions are gone
