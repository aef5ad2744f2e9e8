"""The Runs pane while a filter is typed: the table is drawn again only for other rows, a run's
detail is read once, and what is shown is what the filter and the cursor pick now, never the
late answer of a read they have moved past (the workers are held to make one late)."""

from __future__ import annotations

import threading

from textual.widgets import Input

import service.runs
from tests.tui.conftest import SIZE, settle, two_sweeps, wait_until
from tui.app import ConlabApp
from tui.components.runs import RunsPane


def held(monkeypatch, name: str, hold) -> tuple[threading.Event, threading.Event]:
    """``service.runs.NAME`` made to wait, where ``hold(*args)`` says so, until the first event
    is set; the second is set once such a held call has returned."""
    real = getattr(service.runs, name)
    release, returned = threading.Event(), threading.Event()

    def call(*args):
        if not hold(*args):
            return real(*args)
        release.wait(60)
        try:
            return real(*args)
        finally:
            returned.set()

    monkeypatch.setattr(service.runs, name, call)
    return release, returned


def detail_of(app) -> str:
    return str(app.query_one("#run-detail").render())


async def runs_described(app, pilot) -> RunsPane:
    """The Runs pane shown (`2`), once it describes its highlighted run."""
    await settle(app, pilot)
    await pilot.press("2")
    await wait_until(pilot, lambda: detail_of(app).startswith("run "))
    return app.query_one(RunsPane)


async def test_a_filter_typed_on_draws_the_rows_and_reads_a_detail_only_when_they_change(
    tmp_path, monkeypatch
):
    details = []
    real = service.runs.run_detail
    monkeypatch.setattr(
        service.runs, "run_detail", lambda db, run: details.append(run["run_id"]) or real(db, run)
    )
    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        pane = await runs_described(app, pilot)
        fills = []
        fill = pane.fill
        pane.fill = lambda: fills.append(pane.query_one("#runs-filter", Input).value) or fill()
        await pilot.press("slash")
        for key in "threads":
            await pilot.press(key)
            await settle(app, pilot)
            await wait_until(pilot, lambda: pane.detail_timer is None)  # a detail, if any, read
            await settle(app, pilot)
        assert {run["executor"] for run in pane.runs} == {"threads"} and len(pane.runs) == 4
    # "t" picks every run, as no filter does; "th" the threads runs, as every longer one does
    assert fills == ["th"]
    # the newest run stays highlighted: its detail is read once
    assert details == [pane.runs[0]["run_id"]]


async def test_a_late_detail_of_a_run_the_cursor_left_is_not_shown(tmp_path, monkeypatch):
    db = str(two_sweeps(tmp_path / "two.db"))
    first, second = service.runs.runs_page(db, limit=2)
    release, returned = held(monkeypatch, "run_detail", lambda db, run: run == first)
    app = ConlabApp(db=db)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")  # the first run highlighted: its detail is read, and held
        await wait_until(pilot, lambda: app.query_one(RunsPane).detail_timer is None)
        await pilot.press("down")
        await wait_until(pilot, lambda: detail_of(app).startswith(f"run {second['run_id']}"))
        release.set()  # the first run's detail comes in now, late
        await wait_until(pilot, returned.is_set)
        await settle(app, pilot)
        await pilot.pause()
        assert detail_of(app).startswith(f"run {second['run_id']}")


async def test_the_late_rows_of_a_filter_typed_over_are_not_shown(tmp_path, monkeypatch):
    release, returned = held(monkeypatch, "runs_page", lambda db, text, *page: text == "t")
    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        pane = app.query_one(RunsPane)
        await wait_until(pilot, lambda: len(pane.runs) == 6)
        await pilot.press("slash", "t", "h")  # the rows of "t" are held
        await wait_until(pilot, lambda: len(pane.runs) == 4)
        release.set()  # every run (what "t" picks) comes in now, late
        await wait_until(pilot, returned.is_set)
        await settle(app, pilot)
        await pilot.pause()
        assert [run["executor"] for run in pane.runs] == ["threads"] * 4
        assert pane.query_one("#runs-table").row_count == 4


async def test_a_filter_that_picks_no_run_describes_none(tmp_path):
    from tui.components.runs import NO_RUN

    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        pane = await runs_described(app, pilot)
        await pilot.press("slash", *"zzz")
        await wait_until(pilot, lambda: pane.loaded and not pane.runs)
        await settle(app, pilot)
        assert detail_of(app) == NO_RUN
