"""Helpers the app's and the CLI's tests share: databases made through the real recorder, the
app at a fixed size, waiting on its workers, marking the processes it starts."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.conftest import MARK_VAR, leftover_processes
from tests.helpers import environment, made_once, record_run

SIZE = (150, 48)  # the size most app tests run at; the layout tests also use 80x24 and 160x48

# What the Machine screen says about "this machine" in its snapshots: fixed facts, since the
# real ones (host, CPU, interpreter path) differ from box to box. Its fingerprint is that of
# the machine in `two_sweeps`, so that the table marks it.
FIXED_ENVIRONMENT = {
    "hostname": "lab-box",
    "os_name": "Linux",
    "os_release": "6.1.0",
    "architecture": "x86_64",
    "cpu_model": "Example CPU",
    "logical_cores": 2,
    "physical_cores": 2,
    "usable_cores": 2,
    "cgroup_cpu_quota": None,
    "memory_total_bytes": 25_276_502_016,
    "python_implementation": "CPython",
    "python_version": "3.11.7",
    "python_executable": "/opt/python/bin/python3",
    "py_gil_disabled": False,
    "gil_enabled": True,
    "machine_fingerprint": "f" * 20,
}


@pytest.fixture
def marked(monkeypatch, user_dir):
    """Mark every process the app starts, and prove none outlives the test."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK_VAR, mark)
    monkeypatch.setenv("PYTHONPATH", str(user_dir))
    monkeypatch.chdir(user_dir)
    yield
    assert leftover_processes(mark) == [], "a process started by the app outlived its run"


@made_once
def two_sweeps(path: Path) -> Path:
    """A lab database of two sweeps of the same work on one machine, tagged before and after:
    sequential and threads x2, x4 in each (after: the parallel runs are faster)."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine

    engine = open_engine(path, writer=True)
    env = environment("f" * 20, "lab-box", "Example CPU", "3.11.7")
    for tag, factor in (("before", 1.0), ("after", 0.8)):
        sweep = ExperimentSpec(workload="x", executor="x").sweep_id
        common = dict(workload="sleep", tasks=2, repeats=3, warmups=0, tag=tag, sweep_id=sweep)
        record_run(engine, ExperimentSpec(executor="sequential", **common), env, [10, 10.1, 10.2])
        for workers in (2, 4):
            walls = [10 / workers * factor * (1 + n / 100) for n in range(3)]
            spec = ExperimentSpec(executor="threads", workers=workers, **common)
            record_run(engine, spec, env, walls)
    engine.dispose()
    return path


async def settle(app, pilot) -> None:
    """Let every worker the app has started end, then let their messages be handled. Ended
    however: the app cancels a worker when a newer one of its group starts (a second reload
    while the first still reads, as on a busy machine), and a cancelled worker is no failure.
    What a test looks at next, it waits for by that state itself (``wait_until``)."""
    # what is made after the first screen (the hidden panes, the Lab's form and timeline)
    await wait_until(pilot, lambda: not app.query("AfterFirstScreen"))
    for _ in range(2):  # then the workers started by those messages (a reload)
        await wait_until(pilot, lambda: all(worker.is_finished for worker in app.workers))
        await pilot.pause()


async def wait_until(pilot, condition, timeout_s: float = 60) -> None:
    """For what no worker's end says (a sweep's live progress): poll, never a fixed sleep."""
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    app = pilot.app
    screens = [
        type(screen).__name__
        + (f" ({screen.title_text}: {screen.detail})" if hasattr(screen, "detail") else "")
        for screen in app.screen_stack
    ]
    workers = [(worker.name, worker.state.name, str(worker.error or "")) for worker in app.workers]
    raise AssertionError(
        f"the app did not get there in time (screens {screens}, workers {workers}, "
        f"notifications {[n.message for n in app._notifications]}, focused {app.focused!r}, "
        f"shown {app.shown!r}, lab says {[str(w.render()) for w in app.query('#summary')]})"
    )


async def until_it_ends(pilot, lab, *keys: str, timeout_s: float = 60) -> None:
    """Press ``keys`` (they start a sweep or advice), then wait until that sweep has ended. A
    short sweep may end before the keys' handling has returned: what is awaited is the count of
    sweeps ended, never a glimpse of the Lab being busy."""
    ended = lab.sweeps_ended
    await pilot.press(*keys)
    await wait_until(pilot, lambda: lab.sweeps_ended > ended, timeout_s=timeout_s)


# A small sweep whose looked-at repeat takes 80 ms (4 tasks of 40 ms on 2 workers): long enough
# for its progress to be seen on a busy machine, short enough for a test.
LOOKED_AT = dict(workers="2", tasks="4", size="40", repeats="2", warmups="0", processes="1")


async def choose(pilot, lab, workload: str, executors: list[str], **fields: str) -> None:
    lab.choose(workload, executors, **fields)
    await wait_until(pilot, lambda: lab.form_made)  # its fields are made after the first screen
    await pilot.pause()


def statuses(db: Path) -> list[tuple]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(
            "SELECT executor, workers, status FROM run ORDER BY created_at"
        ).fetchall()
    finally:
        connection.close()
