"""A free-threaded CPython for real: sweeps on a 3.13t build, and the "why" each one gets.

The interpreter comes from the ``free_threaded_python`` fixture (`.ci/run` builds one); the
sentences are asserted by which rule of storage/explain.py spoke, never by a speed a busy
machine could change: with the GIL off no sentence may blame a GIL, whatever the timings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_args
from tests.helpers import stored_environment as environment

# The cpu-like tasks take ~5 ms each on 3.13t here, five times explain.SHORT_TASK_S: on a faster
# machine they stay long enough that handing them out does not decide the time. The rules, not
# the figures, matter.
SIZE = 100_000


def runs(conlab, *args: str, env: dict | None = None) -> list[dict]:
    result = conlab(*args, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert all(r["status"] == "ok" for r in found), found
    return found


def verdicts(conlab, sweep_id: str) -> str:
    result = conlab("report", "--select", f"sweep:{sweep_id}", "--format", "json")
    assert result.returncode == 0, result.stderr
    return "\n".join(json.loads(result.stdout)["verdicts"])


def threads_sweep(conlab, python: str, env: dict | None = None, **options) -> list[dict]:
    return runs(
        conlab,
        *run_args(
            "usermod:work",
            "sequential",
            "threads",
            workers=2,
            tasks=8,
            size=SIZE,
            repeats=2,
            python=python,
            **options,
        ),
        env=env,
    )


def test_every_executor_runs_on_the_free_threaded_build_with_the_gil_off(
    conlab, db_path, free_threaded_python
):
    found = runs(
        conlab,
        *run_args(
            "usermod:work",
            "sequential",
            "threads",
            "processes",
            "pool",
            workers=2,
            tasks=4,
            size=SIZE,
            repeats=1,
            python=free_threaded_python,
        ),
    )
    found += runs(
        conlab,
        *run_args(
            "usermod:nap",
            "asyncio",
            workers=2,
            tasks=4,
            size=1,
            repeats=1,
            python=free_threaded_python,
        ),
    )
    assert {r["executor"] for r in found} == {
        "sequential",
        "threads",
        "processes",
        "pool",
        "asyncio",
    }
    assert all(r["python"].endswith("t") for r in found), [r["python"] for r in found]
    for run in found:
        env = environment(db_path, run["run_id"])
        assert env["py_gil_disabled"] is True and env["gil_at_start"] is False
        workers = env["gil_enabled_by_worker"]
        assert workers and not any(workers.values()), (run["executor"], workers)


def test_one_sweep_takes_turns_between_the_default_python_and_the_free_threaded_one(
    conlab, free_threaded_python
):
    found = threads_sweep(conlab, [sys.executable, free_threaded_python], processes=2)
    assert len({r["sweep_id"] for r in found}) == 1
    labels = {r["python"] for r in found}
    assert len(labels) == 2 and sum(label.endswith("t") for label in labels) == 1, labels
    words = verdicts(conlab, found[0]["sweep_id"])
    # each interpreter's threads get their own reason: the GIL build's from its GIL, never the
    # free-threaded build's
    for line in words.splitlines():
        if "Python " in line and line.split("Python ")[1].split(":")[0].endswith("t"):
            assert "GIL" not in line or "no GIL" in line


def test_with_the_gil_off_no_sentence_blames_a_gil(conlab, free_threaded_python):
    found = threads_sweep(conlab, free_threaded_python)
    words = verdicts(conlab, found[0]["sweep_id"])
    threads = [line for line in words.splitlines() if line.strip().startswith("threads x2")]
    assert threads, words
    assert "serialised" not in words and "GIL on" not in words and "GIL was on" not in words
    assert any(
        said in words
        for said in (
            "the threads ran Python in parallel on this free-threaded build",
            "only one core was free",
            "not even one core was free",
            "the threads contended",
            "the GIL off",
            "waited for a core",  # seen: runnable, no core free (experiments.timing's split)
        )
    ), words


def test_python_gil_1_is_said_to_have_turned_the_gil_back_on(conlab, db_path, free_threaded_python):
    found = threads_sweep(conlab, free_threaded_python, env={"PYTHON_GIL": "1"})
    env = environment(db_path, found[1]["run_id"])
    assert env["gil_at_start"] is True and env["gil_setting"] == "1"
    words = verdicts(conlab, found[0]["sweep_id"])
    assert "the GIL was re-enabled on this free-threaded build" in words
    assert "PYTHON_GIL=1" in words and "in parallel" not in words


@pytest.fixture
def gil_needing_module(user_dir: Path, free_threaded_python: str) -> str:
    """A user module importing a C extension that does not declare free-threading support,
    compiled here for the free-threaded build; its workload's name."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler here to build an extension module (install gcc)")
    asked = subprocess.run(
        [
            free_threaded_python,
            "-c",
            "import sysconfig as s; print(s.get_paths()['include']); "
            "print(s.get_config_var('EXT_SUFFIX'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = user_dir / "needsgil.c"
    source.write_text(
        textwrap.dedent("""
        #include <Python.h>
        static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "needsgil", NULL, 0, NULL};
        PyMODINIT_FUNC PyInit_needsgil(void) { return PyModuleDef_Init(&module); }
    """)
    )
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            f"-I{asked[0]}",
            str(source),
            "-o",
            str(user_dir / f"needsgil{asked[1]}"),
        ],
        check=True,
    )
    (user_dir / "withext.py").write_text(
        "import needsgil\n\n\ndef work(size):\n    total = 0\n    for i in range(size):\n"
        "        total += i\n    return total\n"
    )
    return "withext:work"


def test_an_extension_that_turns_the_gil_back_on_is_named(
    conlab, db_path, free_threaded_python, gil_needing_module
):
    found = runs(
        conlab,
        *run_args(
            gil_needing_module,
            "sequential",
            "threads",
            workers=2,
            tasks=4,
            size=SIZE,
            repeats=1,
            python=free_threaded_python,
        ),
    )
    env = environment(db_path, found[1]["run_id"])
    assert env["gil_at_start"] is False and env["gil_enabled"] is True
    assert env["gil_enabled_by"] == ["needsgil"]
    words = verdicts(conlab, found[0]["sweep_id"])
    assert "importing needsgil, which does not declare that it runs without the GIL" in words


def test_a_busy_core_is_blamed_not_a_gil(conlab, free_threaded_python):
    # Two busy loops on two cores: whatever else runs, the threads get about one core between
    # them, and the runner sees the others' CPU time around every repeat.
    cores = os.cpu_count() or 1
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(cores, 2))
    ]
    try:
        found = threads_sweep(conlab, free_threaded_python, warmups=0)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    words = verdicts(conlab, found[0]["sweep_id"])
    # one core free or none, as the busy loops left it: the others' CPU is named either way,
    # from the ratios ("not a GIL") or from what the threads were seen doing
    assert "other work took" in words, words
    assert "not a GIL" in words or "waited for a core" in words, words
    assert "mostly wait" not in words and "serialised" not in words and "GIL was on" not in words


@pytest.mark.slow
def test_advise_names_the_interpreter_of_its_answer_and_of_every_row(conlab, free_threaded_python):
    result = conlab(
        "advise",
        "usermod:work",
        "--size",
        str(SIZE),
        "--tasks",
        "8",
        "--time-budget",
        "40",
        "--python",
        sys.executable,
        "--python",
        free_threaded_python,
        "--json",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    measured = [c for c in found["candidates"] if not c["left_out"]]
    labels = {c["python"] for c in measured}
    assert len(labels) == 2 and any(label.endswith("t") for label in labels), labels
    assert found["recommendation"]["python"] in labels
    assert all(t["python"] in labels for t in found["ties"])
    free = next(label for label in labels if label.endswith("t"))
    assert all(c.get("median_s") for c in measured), measured
    assert {c["executor"] for c in measured if c["python"] == free} >= {"sequential", "processes"}


def test_list_pythons_marks_the_free_threaded_build_and_its_default_gil(
    conlab, free_threaded_python
):
    path = os.pathsep.join([str(Path(free_threaded_python).parent), os.environ.get("PATH", "")])
    result = conlab("list", "pythons", "--json", env={"PATH": path, "PYTHON_GIL": "1"})
    assert result.returncode == 0, result.stderr
    free = [p for p in json.loads(result.stdout) if p["free_threaded"]]
    assert free and all(p["gil_enabled"] is False for p in free), free
    table = conlab("list", "pythons", env={"PATH": path}).stdout
    assert "free-threaded" in table and "gil by default" in table
