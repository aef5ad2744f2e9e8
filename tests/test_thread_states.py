"""What each thread was doing, seen from outside (experiments.look), on real sweeps: the GIL
shows as threads blocked on a lock, taking turns on the cores; a free-threaded build's threads
are never blocked on one. Asserted on shares the kernel reports, which a busy machine moves
between "on a core" and "waiting for a core" but never into "blocked on a lock"."""

from __future__ import annotations

import json
import sqlite3
import sys

import pytest

from service.present import states as drawing
from storage import states
from tests.conftest import run_args

SIZE = 300_000  # usermod:work: a pure-Python loop of ~10 ms here, holding the GIL


def ran(conlab, workload: str, *executors: str, **options) -> list[dict]:
    """The runs of one `conlab run` of ``workload`` on two workers, no warm-up, each stored."""
    done = conlab(*run_args(workload, *executors, workers=2, warmups=0, **options), timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def looked_at(conlab, db_path, python: str) -> tuple[str, states.Seen]:
    (run,) = ran(conlab, "usermod:work", "threads", tasks=16, size=SIZE, repeats=1, python=python)
    with sqlite3.connect(db_path) as connection:
        (text,) = connection.execute(
            "SELECT thread_states FROM run WHERE id = ?", (run["run_id"],)
        ).fetchone()
        repeats = connection.execute("SELECT count(*) FROM repeat").fetchone()[0]
    assert repeats == 1  # the looked-at repeat is never a repeat of the run
    lanes, span_us = states.decode(text)
    assert len(states.worker_lanes(lanes)) == 2 and span_us > 0
    found = states.seen(lanes, span_us)
    assert found is not None
    return run["run_id"], found


@pytest.fixture(scope="module")
def gil_look(tmp_path_factory, forked_cli):
    """A `conlab` on a database of one looked-at run of the loop on two threads of this (GIL)
    build, the run's id and what was seen of its threads: made once, for the tests that read
    the same run (that none of its processes outlives it is checked here)."""
    from tests.conftest import USER_MODULE, Result, _marked_env, leftover_processes

    folder = tmp_path_factory.mktemp("gil-look")
    (folder / "usermod.py").write_text(USER_MODULE)
    db, marks = folder / "results.db", []

    def conlab(*args: str, timeout: float = 120, env: dict | None = None) -> Result:
        full_env = {**_marked_env(folder, db, marks), **(env or {})}
        return Result(*forked_cli.run(args, cwd=folder, env=full_env, timeout=timeout))

    run_id, found = looked_at(conlab, db, sys.executable)
    assert all(leftover_processes(mark) == [] for mark in marks), "a process outlived its run"
    return conlab, run_id, found


def test_on_a_gil_build_threads_take_turns_blocked_on_the_gil(gil_look):
    _, _, found = gil_look
    # one at a time: barely ever two on cores at once, whatever else the machine runs
    assert found.two_or_more_share < 0.1, found
    # and each waits for the GIL the other holds (45% of their time quiet; 2% at a load of 10
    # on 2 cores, where a waiter that wakes to ask for the GIL mostly waits for a core)
    assert found.shares.get("L", 0) > 0, found


def test_on_a_free_threaded_build_threads_are_never_blocked_on_a_lock(
    conlab, db_path, free_threaded_python
):
    _, found = looked_at(conlab, db_path, free_threaded_python)
    assert found.shares.get("L", 0) < 0.1, found  # only a worker done before the other waits
    # side by side on two cores, unless other work kept the cores (then it waited for one)
    assert found.at_once >= 2 or found.shares.get("W", 0) >= 0.3, found


def test_report_timeline_draws_each_thread_at_80_columns(gil_look):
    conlab, run_id, _ = gil_look
    shown = conlab("report", "--timeline", run_id[:8], env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines[1:-2]), lines  # the lanes and the axis
    lanes = [line for line in lines if line.lstrip().startswith(("runner", "worker"))]
    assert len(lanes) >= 3  # the runner's main thread and its two workers
    drawn = "".join(line.split(maxsplit=2)[-1] for line in lanes[1:])
    assert "=" in drawn and any(c.isdigit() for c in drawn)  # the GIL, and cores
    assert drawing.LEGEND_SHORT in shown.stdout  # the long one is wider than 80 columns
    assert "2 worker thread(s):" in shown.stdout


def sweep_verdicts(conlab, workload: str, size: int, python: str = sys.executable) -> list[str]:
    found = ran(
        conlab, workload, "sequential", "threads", tasks=8, size=size, repeats=2, python=python
    )
    (sweep,) = {r["sweep_id"] for r in found}
    report = conlab("report", "--select", f"sweep:{sweep}", "--format", "json")
    assert report.returncode == 0, report.stderr
    return json.loads(report.stdout)["verdicts"]


def test_hashing_that_releases_the_gil_is_never_blamed_on_it(conlab):
    words = sweep_verdicts(conlab, "hash", 4 * 2**20)
    threads = [w for w in words if "threads x2" in w]
    assert threads, words
    assert not any("GIL serialised" in w or "holds the GIL" in w for w in words), words


def test_a_pure_python_loop_on_threads_is_explained_from_what_its_threads_were_seen_doing(conlab):
    words = sweep_verdicts(conlab, "usermod:work", SIZE)
    (threads,) = [w for w in words if w.lstrip().startswith("threads x2 gave")]
    # the observed split, whichever way the machine went: blocked on the GIL while the other
    # ran (a quiet machine), or runnable but waiting for a core (a crowded one)
    assert "of their time" in threads, words
    assert ("blocked on a lock" in threads) or ("waited for a core" in threads), words


def test_the_html_report_draws_each_thread_of_the_run_it_shows(gil_look, tmp_path):
    conlab, run_id, _ = gil_look
    page = tmp_path / "report.html"
    done = conlab("report", "--format", "html", "--output", str(page), "--timeline", run_id[:8])
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert f"what each thread did, run {run_id[:8]}" in html
    assert "<title>blocked on a lock:" in html and "<title>on core " in html


def test_stored_thread_states_that_are_not_the_labs_text_draw_nothing():
    for text in (
        None,
        "",
        "x|1 2 0 C 0",
        "100|",
        "100|1 2 0 Q 0",
        "100|1 2 5 C 0 3 C 1",
        "-5|1 2 0 C 0",
        "100|a b c d e",
        "1" * 5000 + "|1 2 0 C 0",
        "100|1 2 0 C",
    ):
        lanes, span = states.decode(text)
        assert lanes == [] or span > 0
        assert states.seen(lanes, span) is None or lanes
        assert drawing.draw(lanes, max(span, 1), 40) == [] or lanes
    lanes, span = states.decode("100|1 1 0 C 0 50 L -1;1 2 0 L -1 50 C 1")
    found = states.seen(lanes, span)
    assert found.at_once == 1 and found.shares == {"C": 0.5, "L": 0.5}
    assert drawing.draw(lanes, span, 10, label=lambda lane: str(lane.tid)) == [
        "1 00000=====",
        "2 =====11111",
    ]
