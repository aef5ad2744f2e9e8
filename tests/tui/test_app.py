"""The app under Pilot, with the real runner on tiny sizes and real database files."""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input

from tests.conftest import MARK_VAR, leftover_processes
from tests.storage.test_database import make_v1_file
from tui.app import ConlabApp
from tui.components.lab import LabPane
from tui.components.runs import RunsPane

SIZE = (150, 48)


@pytest.fixture
def marked(monkeypatch, user_dir):
    """Mark every process the app starts, and prove none outlives the test."""
    mark = uuid.uuid4().hex
    monkeypatch.setenv(MARK_VAR, mark)
    monkeypatch.setenv("PYTHONPATH", str(user_dir))
    monkeypatch.chdir(user_dir)
    yield
    assert leftover_processes(mark) == [], "a process started by the app outlived its run"


async def choose(pilot, lab: LabPane, workload: str, executors: list[str], **fields: str):
    lab.choose(workload, executors, **fields)
    await pilot.pause()


async def wait_until(pilot, condition, timeout_s: float = 60) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the app did not get there in time")


def statuses(db: Path) -> list[tuple]:
    return (
        sqlite3.connect(db)
        .execute("SELECT executor, workers, status FROM run ORDER BY created_at")
        .fetchall()
    )


async def test_choose_run_and_see_the_runs(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await choose(
            pilot,
            lab,
            "sleep",
            ["sequential", "threads"],
            workers="2",
            tasks="4",
            size="5",
            repeats="2",
            warmups="0",
            processes="1",
        )
        await pilot.press("escape", "r")
        await wait_until(pilot, lambda: lab.busy)
        await wait_until(pilot, lambda: not lab.busy)
        assert "2 run(s) stored, 0 not ok" in str(lab.query_one("#summary").render())
        assert "speedup" in str(lab.query_one("#summary").render())
        assert statuses(db_path) == [("sequential", 1, "ok"), ("threads", 2, "ok")]
        timeline = lab.query_one("#timeline")
        # The runs took turns in a shuffled order: the timeline shows the last one to run,
        # with one lane per worker thread.
        assert len(timeline.lanes()) == (2 if "threads" in timeline.caption else 1)
        await pilot.press("2")
        table = app.query_one(RunsPane).query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)  # runs are read off the loop
        detail = app.query_one("#run-detail")
        await wait_until(pilot, lambda: "sleep size 5 x 4 tasks" in str(detail.render()))
        assert "warning: only 2 repeat(s): too few to trust" in str(detail.render())


async def test_escape_cancels_and_stores_the_run_as_cancelled(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await choose(
            pilot, lab, "sleep", ["processes"], workers="2", tasks="400", size="100", repeats="3"
        )
        await pilot.press("escape", "r")
        await wait_until(pilot, lambda: lab.sweep is not None and len(statuses(db_path)) == 1)
        await pilot.pause(0.5)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not lab.busy)
        assert statuses(db_path) == [("processes", 2, "cancelled")]
        assert "cancelled" in str(lab.query_one("#summary").render())


async def test_bad_input_is_shown_inline_and_nothing_runs(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await choose(pilot, lab, "cpu", ["threads"], workers="0")
        message = str(lab.query_one("#spec-error").render())
        assert message == "workers must be between 1 and 1,024, not 0; change --workers"
        await choose(pilot, lab, "cpu", ["threads"], workers="1", scheduler="tcp://h:8786")
        message = str(lab.query_one("#spec-error").render())
        assert (
            message
            == "--scheduler applies to dask and ray; add -e dask or -e ray or drop --scheduler"
        )
        await pilot.press("escape", "r")
        await pilot.pause(0.3)
        assert not lab.busy
    assert not db_path.exists() or statuses(db_path) == []


async def test_filter_runs_and_compare(tmp_path):
    db = make_v1_file(tmp_path / "fixture.db")
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.query_one(RunsPane).loaded)
        await pilot.press("slash")
        await pilot.press(*"threads")
        table = app.query_one(RunsPane).query_one(DataTable)
        assert table.row_count == 1
        await pilot.press("enter", "3")  # enter leaves the filter for the table
        app.query_one("#selection-a", Input).value = "executor:sequential"
        app.query_one("#selection-b", Input).value = "executor:threads"
        app.query_one("#selection-b", Input).focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        verdict = str(app.query_one("#compare-verdict").render())
        assert "geometric mean of B/A" in verdict
        assert "executor: sequential vs threads" in verdict
        assert app.query_one("#compare-table", DataTable).row_count == 1


async def test_help_and_screenshot(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.press("f8")
        await pilot.pause()
    assert list(tmp_path.glob("*.svg"))


# What the Machine screen says about "this machine" in its snapshot: the screen's own rendering
# of fixed facts, since the real ones (host, CPU, interpreter path) differ from box to box.
FIXED_ENVIRONMENT = {
    "hostname": "lab-box", "os_name": "Linux", "os_release": "6.1.0", "architecture": "x86_64",
    "cpu_model": "Example CPU", "logical_cores": 2, "physical_cores": 2, "usable_cores": 2,
    "cgroup_cpu_quota": None, "memory_total_bytes": 25_276_502_016,
    "python_implementation": "CPython", "python_version": "3.11.7",
    "python_executable": "/opt/python/bin/python3", "py_gil_disabled": False,
    "gil_enabled": True, "machine_fingerprint": "0123456789abcdef0123",
}  # fmt: skip


@pytest.mark.parametrize("pane", ["lab", "runs", "compare", "machine"])
def test_snapshots(snap_compare, tmp_path, pane):
    """Each screen at a fixed size, on a fixed database (the schema-1 fixture, migrated)."""
    from tui.components.machine import MachinePane

    db = make_v1_file(tmp_path / "fixture.db")
    app = ConlabApp(db="fixture.db")

    async def show(pilot):
        await wait_until(pilot, lambda: app.query_one(RunsPane).loaded)
        machine = app.query_one(MachinePane)
        await wait_until(pilot, lambda: machine.described)
        machine.show_this_machine(FIXED_ENVIRONMENT)
        detail = app.query_one("#run-detail")
        await wait_until(pilot, lambda: str(detail.render()).startswith("run "))
        await pilot.pause(0.3)
        await pilot.press("escape")
        app.action_show(pane)
        await pilot.pause(0.3)

    cwd = os.getcwd()
    os.chdir(db.parent)
    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=show)
    finally:
        os.chdir(cwd)


async def test_tag_delete_and_merge_from_the_app(tmp_path):
    db = make_v1_file(tmp_path / "fixture.db")
    other = tmp_path / "other.db"
    other.write_bytes(db.read_bytes())  # same runs: merging adds nothing
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        runs = app.query_one(RunsPane)
        await wait_until(pilot, lambda: runs.loaded)
        await pilot.press("2")
        runs.query_one(DataTable).focus()
        first = runs.selected()["run_id"]
        await pilot.press("t")
        await pilot.pause()
        app.screen.query_one(Input).value = "keep"  # the prompt opens with the current tag
        await pilot.press("enter")
        await wait_until(pilot, lambda: runs.selected() and runs.selected()["tag"] == "keep")
        assert sqlite3.connect(db).execute(
            "SELECT tag FROM run WHERE id = ?", (first,)
        ).fetchone() == ("keep",)
        await pilot.press("d")
        await pilot.click("#yes")
        await wait_until(pilot, lambda: len(runs.runs) == 1)
        assert sqlite3.connect(db).execute(
            "SELECT count(*) FROM repeat WHERE run_id = ?", (first,)
        ).fetchone() == (0,)
        app.ask_merge_database()
        await pilot.pause()
        await pilot.press(*str(other), "enter")
        await wait_until(pilot, lambda: len(runs.runs) == 2)  # the deleted run came back


async def test_hostile_text_in_a_database_is_shown_as_text(tmp_path):
    """Markup (with actions), terminal sequences and HTML in every text column: each pane
    shows them as the characters they are, and nothing crashes or acts."""
    from storage.text import printable
    from tests.storage.test_reports import HOSTILE, hostile_database

    texts = [t for t in HOSTILE if t.startswith(("[", "\x1b", "\x9b", "<"))][:10]
    db = tmp_path / "received.db"
    hostile_database(db, texts)
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        runs = app.query_one(RunsPane)
        await wait_until(pilot, lambda: runs.loaded)
        await pilot.press("2")
        table = runs.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 5)
        shown = {str(cell) for row in range(table.row_count) for cell in table.get_row_at(row)}
        for text in (texts[0], texts[4], texts[5], texts[6], texts[8], texts[9]):
            assert printable(text) in shown  # host, Python, workload, executor, tags
        await pilot.click("DataTable", offset=(60, 0))  # sort by a text column (python)
        detail = app.query_one("#run-detail")
        await wait_until(pilot, lambda: str(detail.render()).startswith("run "))
        await pilot.press("3")
        app.query_one("#selection-a", Input).value = texts[0]  # not KEY:VALUE: refused
        app.query_one("#selection-b", Input).value = "[/x]"
        app.query_one("#selection-b", Input).focus()
        await pilot.press("enter")
        await pilot.pause(0.3)
        assert "cannot read selection term" in str(app.query_one("#compare-verdict").render())
        await pilot.press("4")
        machines = app.query_one("#machines", DataTable)
        await wait_until(pilot, lambda: machines.row_count == 2)
        hosts = {str(machines.get_row_at(row)[0]) for row in range(2)}
        assert hosts == {printable(texts[0]), printable(texts[1]) + " (B)"}
        assert app.is_running and app.screen.__class__.__name__ != "ErrorScreen"
