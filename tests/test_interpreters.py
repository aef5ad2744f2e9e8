"""The `interpreters` executor (InterpreterPoolExecutor) on real interpreters: a CPython 3.13 with
the PEP 734 backport in a private venv (or a 3.14+), and the free-threaded 3.13t. A sweep runs,
and every way a task can fail ends as a refused spec or a failed run, never a hang."""

from __future__ import annotations

import sqlite3
import subprocess
import textwrap

import pytest

from bench.kinds import SPIN
from tests.conftest import assert_one_line_error, run_args
from tests.helpers import stored_environment as environment

# A cpu-like task of a few ms: long enough to be work, short enough for a busy machine.
SIZE = 20_000


def work_runs(conlab, *executors: str, **options) -> list[dict]:
    """The runs of `conlab run` of usermod:work at SIZE, one repeat, on ``executors``."""
    result = conlab(
        *run_args("usermod:work", *executors, size=SIZE, repeats=1, **options), timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.json()


def failed_run(conlab, python: str, workload: str, **options) -> dict:
    options = {**dict(workers=2, tasks=4, size=1, repeats=1, warmups=0, timeout=60), **options}
    result = conlab(*run_args(workload, "interpreters", python=python, **options), timeout=180)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    (run,) = result.json()
    assert run["status"] == "failed"
    return run


@pytest.fixture(params=["gil", "free-threaded"])
def any_interpreters_python(request) -> str:
    """Each CPython that runs the executor: a GIL build, then the free-threaded one."""
    if request.param == "gil":
        return request.getfixturevalue("interpreters_python")
    return request.getfixturevalue("interpreters_free_threaded")


def test_a_sweep_runs_on_worker_interpreters_and_records_which_implementation(
    conlab, db_path, any_interpreters_python
):
    found = work_runs(
        conlab, "threads", "interpreters", workers="1,2", tasks=4, python=any_interpreters_python
    )
    assert all(r["status"] == "ok" for r in found), found
    ran = [r for r in found if r["executor"] == "interpreters"]
    assert sorted(r["workers"] for r in ran) == [1, 2]
    for run in ran:
        implementation = environment(db_path, run["run_id"])["executor_implementation"]
        assert implementation.startswith(("interpreters_backport", "concurrent.futures"))
    threads = next(r for r in found if r["executor"] == "threads")
    assert "executor_implementation" not in environment(db_path, threads["run_id"])


def test_every_task_of_two_workers_ran_in_the_runner_process_on_two_threads(
    conlab, db_path, interpreters_python
):
    (run,) = work_runs(conlab, "interpreters", workers=2, tasks=8, python=interpreters_python)
    with sqlite3.connect(db_path) as connection:
        pids = {p for (p,) in connection.execute("SELECT DISTINCT pid FROM task_sample")}
        runner = connection.execute("SELECT runner_pid FROM run").fetchone()[0]
    assert pids == {runner}  # interpreters are threads of one process, not processes


def test_a_function_defined_in_main_is_refused_in_one_line_before_the_run(
    conlab, user_dir, interpreters_python
):
    # runpy gives a script's functions the module name "__main__", as `python script.py` does
    (user_dir / "script.py").write_text("def work(size):\n    return size\n")
    (user_dir / "fromscript.py").write_text(
        textwrap.dedent("""
            import os
            import runpy

            here = os.path.dirname(os.path.abspath(__file__))
            work = runpy.run_path(os.path.join(here, "script.py"), run_name="__main__")["work"]
        """)
    )
    result = conlab(
        *run_args("fromscript:work", "interpreters", python=interpreters_python, timeout=60),
        timeout=120,
    )
    assert_one_line_error(result)
    assert "defined in __main__" in result.stderr
    assert "move the function to a module's top level" in result.stderr


def test_a_module_that_cannot_load_in_a_subinterpreter_is_refused_before_the_run(
    conlab, user_dir, interpreters_python
):
    # Extension modules of single-phase init refuse to load in a subinterpreter
    (user_dir / "legacy.py").write_text(
        textwrap.dedent("""
            import importlib.util

            for name in ("readline", "_curses", "_testsinglephase"):
                if importlib.util.find_spec(name) is not None:
                    break
            __import__(name)

            def work(size):
                return size
        """)
    )
    result = conlab(
        *run_args("legacy:work", "interpreters", python=interpreters_python, timeout=60),
        timeout=120,
    )
    assert_one_line_error(result)
    assert "cannot be loaded in a fresh interpreter" in result.stderr
    assert "does not support loading in subinterpreters" in result.stderr


def test_a_task_that_raises_fails_the_run_with_its_error(conlab, interpreters_python):
    run = failed_run(conlab, interpreters_python, "usermod:boom")
    assert run["error"].startswith("a task raised ValueError: boom at size 1"), run["error"]


def test_a_task_calling_sys_exit_fails_the_run_and_not_the_runner(conlab, interpreters_python):
    run = failed_run(conlab, interpreters_python, "usermod:calls_sys_exit")
    assert run["error"].startswith("a task raised SystemExit: 4"), run["error"]


def test_a_result_that_cannot_be_pickled_fails_the_run_instead_of_hanging(
    conlab, interpreters_python
):
    # the backport alone waits forever for such a result (its error is never reported)
    run = failed_run(conlab, interpreters_python, "usermod:unpicklable_result")
    assert run["error"].startswith("a task's result could not be pickled"), run["error"]


def test_a_task_that_never_returns_ends_at_the_timeout_with_no_process_left(
    conlab, interpreters_python
):
    run = failed_run(conlab, interpreters_python, "usermod:hang", timeout=3)
    assert run["error"].startswith("timed out after 3 s"), run["error"]


def test_list_executors_names_the_one_command_that_installs_the_backport(
    conlab, tmp_path, interpreters_python
):
    from experiments.pythons import probe

    info = probe(interpreters_python)
    if tuple(info["version_info"][:2]) >= (3, 14):
        pytest.skip("3.14+ has InterpreterPoolExecutor in its standard library")
    bare = tmp_path / "bare"  # the same 3.13 without the backport
    base = subprocess.run(
        [interpreters_python, "-c", "import sys; print(sys._base_executable)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([base, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = conlab("list", "executors", "--python", str(bare / "bin" / "python"), "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in result.json()}
    assert rows["interpreters"]["available"] is False
    assert rows["interpreters"]["reason"].endswith(
        f"{bare / 'bin' / 'python'} -m pip install interpreters-pep-734"
    )
    result = conlab("list", "executors", "--python", interpreters_python, "--json")
    rows = {row["name"]: row for row in result.json()}
    assert rows["interpreters"]["available"] is True, rows["interpreters"]


def test_advise_snippet_for_interpreters_runs_as_pasted(user_dir, interpreters_python):
    from service.advise import snippet

    code = snippet("usermod:work", "interpreters", 2, None, None, 100, 4)
    (user_dir / "snippet.py").write_text(code + "\nprint(results)\n")
    out = subprocess.run(
        [interpreters_python, "snippet.py"],
        cwd=user_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str([sum(range(100))] * 4)


def test_a_task_that_ends_its_process_ends_the_runner_it_shares(conlab, interpreters_python):
    run = failed_run(conlab, interpreters_python, "usermod:exit3")
    assert run["error"].startswith("the runner process died (exit code 3)"), run["error"]
    assert "worker interpreters run inside the runner's process" in run["error"]


def _advise(conlab, function: str, python: str) -> dict:
    result = conlab(
        "advise",
        function,
        "--python",
        python,
        "--time-budget",
        "30",
        "--tasks",
        "8",
        "--json",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.json()


@pytest.mark.slow
def test_advise_measures_worker_interpreters_where_they_run(conlab, user_dir, interpreters_python):
    (user_dir / "spinning.py").write_text(SPIN)
    found = _advise(conlab, "spinning:spin", interpreters_python)
    measured = {(c["executor"], c["workers"]) for c in found["candidates"] if not c["left_out"]}
    assert ("interpreters", 2) in measured, found["candidates"]


@pytest.mark.slow
def test_advise_leaves_out_interpreters_for_a_module_they_cannot_load(
    conlab, user_dir, interpreters_python
):
    (user_dir / "legacyspin.py").write_text(
        "import importlib.util\n"
        "for name in ('readline', '_curses', '_testsinglephase'):\n"
        "    if importlib.util.find_spec(name) is not None:\n"
        "        break\n"
        "__import__(name)\n" + SPIN
    )
    found = _advise(conlab, "legacyspin:spin", interpreters_python)
    left = {c["executor"]: c["reason"] for c in found["candidates"] if c["left_out"]}
    assert "cannot be loaded in a fresh interpreter" in left["interpreters"], left
