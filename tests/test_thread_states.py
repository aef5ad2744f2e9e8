"""What each thread was doing, seen from outside (experiments.look), on real sweeps: the GIL
shows as threads blocked on a lock, taking turns on the cores; a free-threaded build's threads
are never blocked on one. Asserted on shares the kernel reports, which a busy machine moves
between "on a core" and "waiting for a core" but never into "blocked on a lock"."""

from __future__ import annotations

import json
import sqlite3
import sys

from storage import states
from tests.conftest import run_args

SIZE = 300_000  # usermod:work: a pure-Python loop of ~10 ms here, holding the GIL


def looked_at(conlab, db_path, python: str) -> tuple[str, states.Seen]:
    done = conlab(
        *run_args(
            "usermod:work",
            "threads",
            workers=2,
            tasks=16,
            size=SIZE,
            repeats=1,
            warmups=0,
            python=python,
        ),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
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


def test_on_a_gil_build_threads_take_turns_blocked_on_the_gil(conlab, db_path):
    _, found = looked_at(conlab, db_path, sys.executable)
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


def test_report_timeline_draws_each_thread_at_80_columns(conlab, db_path):
    run_id, _ = looked_at(conlab, db_path, sys.executable)
    shown = conlab("report", "--timeline", run_id[:8], env={"COLUMNS": "80"})
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines[1:-2]), lines  # the lanes and the axis
    lanes = [line for line in lines if line.lstrip().startswith(("runner", "worker"))]
    assert len(lanes) >= 3  # the runner's main thread and its two workers
    drawn = "".join(line.split(maxsplit=2)[-1] for line in lanes[1:])
    assert "=" in drawn and any(c.isdigit() for c in drawn)  # the GIL, and cores
    assert states.LEGEND in shown.stdout
    assert "2 worker thread(s):" in shown.stdout
