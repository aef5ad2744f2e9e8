"""An executor's facts are on the executor: one registered in one place, a module of the user's
named in $CONLAB_EXECUTORS, is listed, run, reported, advised and drawn in the Lab, each face
reading what the executor says of itself."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest

from experiments import executors
from tests.tui.conftest import LOOKED_AT, SIZE, choose, statuses, until_it_ends, wait_until

# The one place: a threads executor written by hand, registered when its module is imported.
HAND_THREADS = textwrap.dedent('''
    """One threading.Thread per worker, each taking items from a shared queue."""
    import queue
    import threading

    from experiments.executors import Executor, register
    from experiments.timing import timed_call


    class HandThreads(Executor):
        name = "handthreads"
        description = "one threading.Thread per worker, taking items from a shared queue"
        workers_are = "threads"
        cpu_seen = True
        preference = 15
        lab_ticked = True

        def snippet(self, code):
            return (
                f"import threading\\n\\n{code.imports}\\n\\n{code.items}\\nresults = []\\n"
                "threads = [\\n"
                "    threading.Thread(\\n"
                f"        target=lambda i: results.extend(map({code.func}, "
                f"items[i::{code.workers}])),\\n"
                "        args=(i,),\\n"
                "    )\\n"
                f"    for i in range({code.workers})\\n"
                "]\\n"
                "for thread in threads:\\n    thread.start()\\n"
                "for thread in threads:\\n    thread.join()\\n"
            )

        def run(self, job, items, on_sample):
            todo, done = queue.SimpleQueue(), queue.SimpleQueue()
            for item in items:
                todo.put(item)

            def work():
                while True:
                    try:
                        item = todo.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        done.put((True, timed_call(job.workload.func, item)))
                    except BaseException as exc:
                        done.put((False, exc))
                        return

            threads = [threading.Thread(target=work) for _ in range(job.workers)]
            for thread in threads:
                thread.start()
            try:
                for _ in items:
                    ok, got = done.get()
                    if not ok:
                        raise got
                    on_sample(got)
            finally:
                for thread in threads:
                    thread.join()


    register(HandThreads())
''')
NAME = "handthreads"


@pytest.fixture
def hand_threads(user_dir, monkeypatch):
    """The module in the user's directory, named in $CONLAB_EXECUTORS, and imported here (as
    this module's import of the table would): the table as it was comes back after the test."""
    (user_dir / "handthreads.py").write_text(HAND_THREADS)
    monkeypatch.setenv("CONLAB_EXECUTORS", "handthreads")
    monkeypatch.syspath_prepend(str(user_dir))
    before = dict(executors.EXECUTORS)
    importlib.import_module("handthreads")
    yield {"CONLAB_EXECUTORS": "handthreads"}
    executors.EXECUTORS.clear()
    executors.EXECUTORS.update(before)
    sys.modules.pop("handthreads", None)


def test_listed_run_reported_and_advised(conlab, hand_threads, user_dir):
    # `conlab` started afresh (script=True), as a user's shell starts it: it finds the module
    # through $CONLAB_EXECUTORS alone
    listed = conlab("list", "executors", "--json", script=True, env=hand_threads)
    assert listed.returncode == 0, listed.stderr
    row = {r["name"]: r for r in listed.json()}[NAME]
    assert row["available"] and row["workers_are"] == "threads" and row["lab_ticked"]
    table = conlab("list", "executors", script=True, env=hand_threads).stdout
    assert any(
        NAME in line and "taking items from a shared queue" in line for line in table.splitlines()
    )

    run = conlab(
        *["run", "-w", "usermod:work", "-e", "sequential", "-e", NAME, "--workers", "2"],
        *["--tasks", "8", "--size", "20000", "--repeats", "2", "--warmups", "0"],
        *["--processes", "1", "--json"],
        script=True,
        env=hand_threads,
    )
    assert run.returncode == 0, run.stderr
    assert sorted((r["executor"], r["status"]) for r in run.json()) == [
        (NAME, "ok"),
        ("sequential", "ok"),
    ]

    report = conlab("report", script=True, env=hand_threads)
    assert report.returncode == 0, report.stderr
    # a row of its own, and the rules for threads (its workers_are) speak of it
    assert f"{NAME} x2" in report.stdout
    said = [line for line in report.stdout.splitlines() if line.strip().startswith(f"{NAME} x2 ")]
    assert said, report.stdout

    from service import advise

    # advised: its own snippet, which runs as pasted
    code = advise.snippet("usermod:work", NAME, 2, None, None, 100, 6)
    assert "threading.Thread(" in code
    (user_dir / "snippet.py").write_text(code + "\nprint(len(results))\n")
    pasted = subprocess.run(
        [sys.executable, "snippet.py"], cwd=user_dir, capture_output=True, text=True, timeout=60
    )
    assert pasted.returncode == 0 and pasted.stdout.strip() == "6", pasted.stderr


def test_advise_leaves_it_out_for_the_executor_of_its_kind(conlab, hand_threads):
    found = conlab(
        *["advise", "usermod:work", "--size", "2000", "--tasks", "8", "--time-budget", "30"],
        "--json",
        script=True,
        env=hand_threads,
    )
    assert found.returncode == 0, found.stderr
    left = {c["executor"]: c["reason"] for c in found.json()["candidates"] if c["left_out"]}
    assert left[NAME] == (
        "the same kind of worker threads as threads, which stands for them here (compare "
        f"with conlab run -e threads -e {NAME})"
    )


def test_a_module_that_cannot_be_imported_is_one_line(conlab):
    result = conlab("list", "executors", script=True, env={"CONLAB_EXECUTORS": "nosuchmod"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "conlab: $CONLAB_EXECUTORS names 'nosuchmod', which cannot be imported "
        "(ModuleNotFoundError: No module named 'nosuchmod'); put it on PYTHONPATH, or fix or "
        "unset CONLAB_EXECUTORS"
    ]


async def test_drawn_and_run_in_the_lab(db_path, marked, hand_threads):
    from textual.widgets import SelectionList

    from tui.app import ConlabApp
    from tui.components.lab import LabPane

    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await wait_until(pilot, lambda: lab.form_made)
        listed = app.query_one("#executors", SelectionList)
        names = [listed.get_option_at_index(i).value for i in range(listed.option_count)]
        assert NAME in names and NAME in listed.selected  # drawn, ticked as it says
        await choose(
            pilot,
            lab,
            "sleep",
            [NAME],
            **LOOKED_AT,
        )
        await until_it_ends(pilot, lab, "escape", "r")
        assert "1 run(s) stored, 0 not ok" in str(lab.query_one("#summary").render())
        assert statuses(db_path) == [(NAME, 2, "ok")]
        # the timeline draws what the threads of its run did: the runner's and its workers'
        # (each of which may have found the queue empty before it ran a task, hence "at least")
        lanes, span_us = lab.query_one("#timeline").states
        assert len(lanes) >= 2 and span_us > 0
