"""The app under Pilot, with the real runner on tiny sizes and real database files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from textual import events
from textual.widgets import ContentSwitcher, DataTable, Input

from tests.storage.test_database import make_v1_file
from tests.tui.conftest import (
    FIXED_ENVIRONMENT,
    LOOKED_AT,
    SIZE,
    choose,
    settle,
    statuses,
    two_sweeps,
    until_it_ends,
    wait_until,
)
from tui.app import ConlabApp
from tui.components.lab import LabPane
from tui.components.prompt import Prompt
from tui.components.runs import RunsPane


async def test_choose_run_and_see_the_runs(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await choose(
            pilot,
            lab,
            "sleep",
            ["sequential", "threads"],
            **LOOKED_AT,
        )
        await until_it_ends(pilot, lab, "escape", "r")
        assert "2 run(s) stored, 0 not ok" in str(lab.query_one("#summary").render())
        assert "speedup" in str(lab.query_one("#summary").render())
        assert statuses(db_path) == [("sequential", 1, "ok"), ("threads", 2, "ok")]
        timeline = lab.query_one("#timeline")
        # The runs took turns in a shuffled order: the timeline shows what each thread of the
        # last one to run did (its looked-at repeat): the runner's, and its two workers'.
        lanes, span_us = timeline.states
        assert len(lanes) == (3 if "threads" in timeline.caption else 1) and span_us > 0
        drawn = str(timeline.render())
        assert "0-9 on that core   - waiting for a core   = blocked on a lock" in drawn  # legend
        assert "runner" in drawn and ("runner t2" in drawn) == ("threads" in timeline.caption)
        await pilot.press("2")
        table = app.query_one(RunsPane).query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)  # runs are read off the loop
        detail = app.query_one("#run-detail")
        await wait_until(pilot, lambda: "sleep size 40 x 4 tasks" in str(detail.render()))
        assert "warning: only 2 repeat(s): too few to trust" in str(detail.render())


async def test_escape_cancels_and_stores_the_run_as_cancelled(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        animations = app.animation_level
        await choose(
            pilot, lab, "sleep", ["processes"], workers="2", tasks="400", size="100", repeats="3"
        )
        await pilot.press("escape", "r")
        await wait_until(pilot, lambda: lab.sweep is not None and len(statuses(db_path)) == 1)
        assert app.animation_level == "none"  # nothing animates while a sweep runs
        await pilot.pause(0.5)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not lab.busy)
        assert app.animation_level == animations
        assert statuses(db_path) == [("processes", 2, "cancelled")]
        assert "cancelled" in str(lab.query_one("#summary").render())


async def test_q_during_a_sweep_asks_then_cancels_it_and_quits(db_path, marked):
    from tui.app import QUIT_QUESTION
    from tui.components.prompt import YesNo

    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await choose(
            pilot, lab, "sleep", ["processes"], workers="2", tasks="400", size="100", repeats="3"
        )
        await pilot.press("escape", "r")
        await wait_until(pilot, lambda: lab.sweep is not None and lab.sweep._current is not None)
        await pilot.press("q")  # asks, and the sweep goes on meanwhile
        assert isinstance(app.screen, YesNo) and app.screen.question == QUIT_QUESTION
        await pilot.press("q", "n")  # q again changes nothing; n (or escape, or enter) keeps it
        assert app.is_running and lab.busy and not isinstance(app.screen, YesNo)
        await pilot.press("q", "y")
        await wait_until(pilot, lambda: app.return_code is not None)
    assert statuses(db_path) == [("processes", 2, "cancelled")]
    # (the `marked` fixture: no runner or worker outlives the app)


def test_q_y_in_a_terminal_gives_the_shell_back_with_the_runs_stored(tmp_path):
    # the console script on a pseudo-terminal, as from a shell: the process ends only once the
    # cancelled sweep's runs are stored, its runner's group gone with it
    import sys

    from bench.tui import Terminal, terminal_env

    db = tmp_path / "q.db"
    app = Terminal([sys.executable, "-m", "tui.start", "--db", str(db)], terminal_env(), (140, 46))
    try:
        app.wait_for(b"warm-ups")  # the form is made
        app.type(b"r")
        app.wait_for(b"escape cancels")  # a runner process of the sweep is under way
        app.type(b"q")
        app.wait_for(b"(y/N)")
        app.type(b"y")
        assert app.exited_within(60), "conlab was still there a minute after y"
        assert app.child.returncode == 0
    finally:
        app.close()
    stored = statuses(db)
    assert stored and {status for *_, status in stored} == {"cancelled"}, stored


async def test_q_with_no_sweep_quits_at_once(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("q")
        await wait_until(pilot, lambda: app.return_code is not None)


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
        await settle(app, pilot)
        await pilot.press("slash")
        await pilot.press(*"threads")
        table = app.query_one(RunsPane).query_one(DataTable)
        # the database filters: the table shows what it answered for the whole text
        await settle(app, pilot)
        await wait_until(pilot, lambda: table.row_count == 1)
        await pilot.press("enter")  # enter leaves the filter for the table
        assert app.focused is table
        await pilot.press("3")  # a pane key, not a letter of the filter
        assert app.shown == "compare"
        assert app.query_one("#runs-filter", Input).value == "threads"
        app.query_one("#selection-a", Input).value = "executor:sequential"
        app.query_one("#selection-b", Input).value = "executor:threads"
        app.query_one("#selection-b", Input).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        verdict = str(app.query_one("#compare-verdict").render())
        assert "geometric mean of B/A" in verdict
        assert "executor: sequential vs threads" in verdict
        assert app.query_one("#compare-table", DataTable).row_count == 1


async def test_a_selection_typed_after_3_goes_into_a_and_does_not_quit(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("3")
        await wait_until(pilot, lambda: bool(app.query("#selection-a")))
        await pilot.press(*"executor:sequential")  # its `q` is a letter here, not quit
        assert app.query_one("#selection-a", Input).value == "executor:sequential"
        assert app.is_running


async def test_f8_saves_where_it_says(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shots = tmp_path / "shots"
    app = ConlabApp(db=str(tmp_path / "x.db"), screenshots=shots)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("f8")
        await pilot.pause()
        said = [n.message for n in app._notifications]
    saved = list(shots.glob("*.svg"))
    assert len(saved) == 1 and not list(tmp_path.glob("*.svg"))  # not the current directory
    assert any(str(saved[0]) in message for message in said)


async def show_compared(app, pilot) -> None:
    app.action_show("compare")
    app.query_one("#selection-a", Input).value = "tag:before"
    app.query_one("#selection-b", Input).value = "tag:after"
    app.query_one("#compare-button").press()
    await settle(app, pilot)
    await wait_until(pilot, lambda: app.query_one("#compare-table", DataTable).row_count == 3)
    app.query_one("#compare-table", DataTable).focus()  # the picture is of the comparison
    await pilot.pause()


async def show_lab_end(app, pilot) -> None:
    app.query_one(LabPane).scroll_end(animate=False)
    await pilot.pause()


async def show_delete(app, pilot) -> None:
    await pilot.press("2")
    await wait_until(pilot, lambda: str(app.query_one("#run-detail").render()) != NO_RUN)
    await pilot.press("d")
    await pilot.pause()


async def show_field(app, pilot) -> None:
    app.query_one("#tag", Input).focus()  # a text field has the keys: the footer says so
    await pilot.pause()


NO_RUN = "No run selected."

# (name, terminal size, what to do after the fixed start): one snapshot per meaningful state.
SNAPSHOTS = {
    "lab": (SIZE, None),
    "runs": (SIZE, None),
    "compare": (SIZE, show_compared),
    "machine": (SIZE, None),
    "lab-80x24": ((80, 24), None),
    "lab-80x24-end": ((80, 24), show_lab_end),
    "lab-80x24-field": ((80, 24), show_field),
    "delete-80x24": ((80, 24), show_delete),
    "compare-160x48": ((160, 48), show_compared),
}


@pytest.mark.parametrize("name", list(SNAPSHOTS))
def test_snapshots(snap_compare, tmp_path, name):
    """Each screen at a fixed size, on a fixed database."""
    from tui.components.machine import MachinePane

    size, then = SNAPSHOTS[name]
    # Runs show run ids and times: the schema-1 fixture's are fixed; the tagged sweeps' are not.
    make = make_v1_file if name.split("-")[0] in ("runs", "delete") else two_sweeps
    db = make(tmp_path / "fixture.db")
    app = ConlabApp(db="fixture.db", screenshots=tmp_path)
    app.animation_level = "none"  # a tab's underline mid-slide is no state to compare

    async def show(pilot):
        await settle(app, pilot)
        machine = app.query_one(MachinePane)
        await wait_until(pilot, lambda: machine.described)
        machine.show_this_machine(FIXED_ENVIRONMENT)
        await settle(app, pilot)
        pane = name.split("-")[0]
        if pane in ("runs", "machine"):
            app.action_show(pane)
            await settle(app, pilot)
        # what the panes read, in workers started as the panes were made: the state each
        # picture shows is waited for as such, not as the end of a worker the app may cancel
        await wait_until(pilot, lambda: app.query_one(LabPane).form_made)
        await wait_until(pilot, lambda: app.query_one("#machines", DataTable).row_count == 1)
        await wait_until(pilot, lambda: app.query_one("#runs-table", DataTable).row_count > 0)
        if pane == "runs":  # a hidden Runs pane reads no detail
            await wait_until(pilot, lambda: str(app.query_one("#run-detail").render()) != NO_RUN)
        await settle(app, pilot)
        if then is not None:
            await then(app, pilot)

    cwd = os.getcwd()
    os.chdir(db.parent)
    try:
        assert snap_compare(app, terminal_size=size, run_before=show)
    finally:
        os.chdir(cwd)


async def test_tag_delete_and_merge_from_the_app(tmp_path):
    db = make_v1_file(tmp_path / "fixture.db")
    other = tmp_path / "other.db"
    other.write_bytes(db.read_bytes())  # same runs: merging adds nothing
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        runs = app.query_one(RunsPane)
        await pilot.press("2")
        runs.query_one(DataTable).focus()
        first = runs.selected()["run_id"]
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, Prompt))
        app.screen.query_one(Input).value = "keep"  # the prompt opens with the current tag
        await pilot.press("enter")
        await wait_until(pilot, lambda: runs.selected() and runs.selected()["tag"] == "keep")
        assert sqlite3.connect(db).execute(
            "SELECT tag FROM run WHERE id = ?", (first,)
        ).fetchone() == ("keep",)
        await pilot.press("d", "enter")  # enter answers the focused button: Keep
        await settle(app, pilot)
        assert len(runs.runs) == 2
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
    from tests.storage.test_reports import BIDI, HOSTILE, hostile_database

    texts = [t for t in HOSTILE if BIDI.search(t)]  # first: host names that reorder
    texts = (texts + [t for t in HOSTILE if t.startswith(("[", "\x1b", "\x9b", "<"))])[:10]
    db = tmp_path / "received.db"
    hostile_database(db, texts)
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        runs = app.query_one(RunsPane)
        await pilot.press("2")
        table = runs.query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 5)
        shown = {str(cell) for row in range(table.row_count) for cell in table.get_row_at(row)}
        for text in (texts[0], texts[4], texts[5], texts[6], texts[8], texts[9]):
            assert printable(text) in shown  # host, Python, workload, executor, tags
        assert not [cell for cell in shown if BIDI.search(cell)]  # shown, not obeyed
        await pilot.click("DataTable", offset=(60, 0))  # sort by a text column (python)
        detail = app.query_one("#run-detail")
        await wait_until(pilot, lambda: str(detail.render()).startswith("run "))
        await pilot.press("3")
        app.query_one("#selection-a", Input).value = texts[0]  # not KEY:VALUE: refused
        app.query_one("#selection-b", Input).value = "[/x]"
        app.query_one("#selection-b", Input).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert "cannot read selection term" in str(app.query_one("#compare-verdict").render())
        await pilot.press("4")
        machines = app.query_one("#machines", DataTable)
        await wait_until(pilot, lambda: machines.row_count == 2)
        hosts = {str(machines.get_row_at(row)[0]) for row in range(2)}
        assert hosts == {printable(texts[0]), printable(texts[1]) + " (B)"}
        assert not [host for host in hosts if BIDI.search(host)]
        assert app.is_running and app.screen.__class__.__name__ != "ErrorScreen"


# --- the app as a new user meets it ------------------------------------------------------------


async def test_after_2_the_runs_table_takes_the_keys(tmp_path):
    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        table = app.query_one("#runs-table", DataTable)
        assert app.focused is table
        await pilot.press("down")
        assert table.cursor_row == 1
        await pilot.press("t")  # acts at once: the tag prompt opens
        assert app.screen.__class__.__name__ == "Prompt"


async def test_the_pane_shown_is_the_last_one_chosen_and_stays(tmp_path):
    # Keys faster than the app: a pane's focusing lands after the next key chose another one.
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        for key in "21212":
            app.post_message(events.Key(key, key))
        await settle(app, pilot)
        shown = []
        app.watch(app, "shown", shown.append, init=False)
        await pilot.pause(0.5)  # time for a pane brought back to show (it was shown in turns)
        assert (app.shown, shown) == ("runs", [])
        assert app.query_one("#panes", ContentSwitcher).current == "runs"
        assert app.focused is app.query_one("#runs-table", DataTable)


async def test_r_runs_only_from_the_lab(tmp_path):
    db = tmp_path / "x.db"
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        lab = app.query_one(LabPane)
        for pane in ("2", "3", "4"):
            await pilot.press(pane, "r")
            assert not lab.busy and app.shown != "lab"
    assert statuses(db) == []


async def test_runs_are_newest_first_with_iso_utc_seconds(tmp_path):
    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        table = app.query_one("#runs-table", DataTable)
        created = [str(table.get_row_at(n)[1]) for n in range(table.row_count)]
        tags = [str(table.get_row_at(n)[-1]) for n in range(table.row_count)]
    assert created == sorted(created, reverse=True)
    assert all(len(c) == 20 and c[10] == "T" and c.endswith("Z") for c in created)
    assert tags == ["after"] * 3 + ["before"] * 3


async def test_compare_draws_a_against_b_and_keeps_them_after_a_sweep(tmp_path):
    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_compared(app, pilot)
        table = app.query_one("#compare-table", DataTable)
        assert table.row_count == 3
        rows = [str(table.get_row_at(n)[0]) for n in range(3)]
        assert rows == ["1", "2", "3"]  # the chart's bars carry these numbers

        def labels() -> str:
            speedup = app.query_one("#speedup-chart").plt.build()
            times = app.query_one("#time-chart").plt.build()
            return speedup + times

        drawn = labels()
        for text in ("A threads", "B threads", "A tag:before", "B tag:after", "1 sequential"):
            assert text in drawn
        app.post_message(LabPane.SweepDone([], False, ""))  # what a later sweep makes the app do
        await settle(app, pilot)
        assert table.row_count == 3 and labels() == drawn


async def test_machine_is_described_in_words_and_marked(tmp_path):
    from tui.components.machine import MachinePane

    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        machine = app.query_one(MachinePane)
        machine.show_this_machine(FIXED_ENVIRONMENT)
        await pilot.press("4")
        shown = str(app.query_one("#this-machine").render())
        assert "memory  23.5 GiB" in shown and "memory_total_bytes" not in shown
        assert "cores  2 usable of 2 logical (2 physical)" in shown
        row = app.query_one("#machines", DataTable).get_row_at(0)
        assert str(row[0]) == "▶ lab-box"


async def test_executors_read_ticked_or_not_without_colour(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        executors = app.query_one("#executors")
        lines = [executors.render_line(y).text for y in range(4)]
    assert lines[0].startswith("[x] sequential")
    assert lines[3].startswith("[ ] pool")


async def test_the_footer_shows_the_panes_keys_and_a_click_presses_one(tmp_path):
    from tui.components.footer import KeysFooter

    app = ConlabApp(db=str(two_sweeps(tmp_path / "two.db")))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        footer = app.query_one(KeysFooter)
        lab_keys = str(footer.render())
        assert " r Run " in lab_keys and " t tag " not in lab_keys
        assert lab_keys.rstrip().endswith("^p Commands")  # kept at the right, however narrow
        assert len(lab_keys) == 80
        # A click on a key presses it: "2 Runs" shows the Runs pane, whose keys come in.
        # Drawn as they are: no key is drawn as a link (underlined, in the link colour).
        assert not any(segment.style.underline for segment in footer.render_line(0))
        start, end, key = next(span for span in footer.spans if "stored runs" in span[2].tooltip)
        await pilot.click(KeysFooter, offset=(start + 1, 0))
        await wait_until(pilot, lambda: app.shown == "runs")
        await wait_until(pilot, lambda: " t tag " in str(footer.render()))
        # Hovering a key shows what it does (the Runs pane's keys came first: it moved).
        start, _, key = next(span for span in footer.spans if "delete" in span[2].tooltip)
        await pilot.hover(KeysFooter, offset=(start + 1, 0))
        assert footer.tooltip == key.tooltip == "delete the highlighted run (asks first)"


async def test_the_tabs_mark_the_pane_shown_and_a_click_shows_one(tmp_path):
    from tui.components.tabs import PaneTabs

    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        tabs = app.query_one(PaneTabs)

        def marked() -> list[str]:  # the names drawn bold and underlined: the pane shown
            drawn = [(segment.text, segment.style) for segment in tabs.render_line(0)]
            return [" ".join("".join(t for t, style in drawn if style and style.underline).split())]

        assert marked() == ["1 Lab"]
        await pilot.click(PaneTabs, offset=(tabs.render().plain.index("3 Compare") + 1, 0))
        await wait_until(pilot, lambda: app.shown == "compare")
        assert app.query_one("#panes", ContentSwitcher).current == "compare"
        await wait_until(pilot, lambda: marked() == ["3 Compare"])
        await pilot.press("escape", "1")  # Compare's A field had the keys: left first
        assert marked() == ["1 Lab"] and app.focused is app.query_one("#workloads")


async def test_the_timeline_keeps_its_height_through_a_sweep(tmp_path):
    from tui.components.timeline import Timeline

    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        timeline = app.query_one(Timeline)
        heights = []

        async def show(samples, caption=None):
            timeline.set_samples(samples, caption)
            await settle(app, pilot)  # a busy machine lays the screen out later
            heights.append(timeline.size.height)

        two = [(1, 1, 0, 10), (2, 1, 0, 10)]
        await show(two, "run 1")
        await show(two[:1])  # a repeat whose tasks all went to one worker
        timeline.reset("run 2")  # a new runner process: no samples yet
        await show([])
        assert heights == [2 + 1] * 3  # two lanes and the axis, throughout
        timeline.clear("a new sweep")
        await show([])
        assert heights[-1] < heights[0]


async def test_the_timeline_shows_the_core_each_task_ran_on(tmp_path):
    from tui.components.timeline import Timeline

    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        timeline = app.query_one(Timeline)
        # two threads of one runner, as the runner sends samples: the core a task ended on ninth
        on_two_cores = [
            (7, 1, 0, 10, None, 0, 0, 0, 0, None),
            (7, 2, 0, 10, None, 0, 0, 1, 1, None),
        ]
        timeline.set_samples(on_two_cores, "run 1")
        await pilot.pause()
        lanes = timeline.render().plain.splitlines()
        assert set(lanes[0].split()[-1]) == {"0"} and set(lanes[1].split()[-1]) == {"1"}
        assert "digits: the core each task ended on" in lanes[2]
        # where the platform does not say, a block and no legend
        timeline.set_samples([(7, 1, 0, 10)], "run 2")
        await pilot.pause()
        unknown = timeline.render().plain
        assert "█" in unknown and "digits" not in unknown


def test_the_timeline_counts_warm_ups_and_repeats_apart():
    from experiments.spec import ExperimentSpec
    from tui.components.lab import repeat_caption

    spec = ExperimentSpec(workload="cpu", executor="threads", repeats=5, warmups=1)
    captions = [repeat_caption(spec, n) for n in range(6)]
    assert captions[0] == "warm-up 1 of 1"
    assert captions[1:] == [f"repeat {n} of 5" for n in range(1, 6)]


async def test_palette_offers_presets_before_typing_and_waiting_scales(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.5)  # the palette gathers its hits in a task of its own
        from textual.command import CommandList

        listed = app.screen.query_one(CommandList)
        names = [str(listed.get_option_at_index(n).prompt) for n in range(listed.option_count)]
        assert any("Preset: Waiting scales" in name for name in names)
        await pilot.press("escape")
        from tui.app import PRESETS

        (preset,) = [p for p in PRESETS if p[0] == "Waiting scales"]
        assert preset[3]["workers"] == "1,4,16,64"
        app.apply_preset(*preset[1:4])
        await pilot.pause()
        assert app.query_one("#workers", Input).value == "1,4,16,64"


async def test_the_subinterpreters_preset_sweeps_interpreters_against_threads_and_processes(
    tmp_path,
):
    from tui.app import PRESETS

    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        (preset,) = [p for p in PRESETS if p[0] == "Subinterpreters"]
        app.apply_preset(*preset[1:4])
        await pilot.pause()
        specs = app.query_one(LabPane).build_specs()
        chosen = {(s.executor, s.workers) for s in specs}
        assert {("interpreters", 1), ("interpreters", 2), ("processes", 2)} <= chosen
        assert {("threads", 2), ("pool", 2), ("sequential", 1)} <= chosen
        assert {s.workload for s in specs} == {"cpu"}


async def test_the_runs_detail_is_read_when_the_pane_is_shown_not_behind_the_lab(tmp_path):
    from tui.components.runs import DETAIL_AFTER_S

    db = make_v1_file(tmp_path / "fixture.db")
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        runs = app.query_one(RunsPane)
        await wait_until(pilot, lambda: runs.loaded and runs.runs)
        await pilot.pause(3 * DETAIL_AFTER_S)
        await settle(app, pilot)
        detail = app.query_one("#run-detail")
        assert str(detail.render()) == NO_RUN  # the Lab is shown: no report read for Runs
        await pilot.press("2")
        await wait_until(pilot, lambda: str(detail.render()).startswith("run "))
        # a filter typed: the rows it replaces are not described meanwhile
        await pilot.press("slash")
        await pilot.press(*"zzz-none")
        await wait_until(pilot, lambda: not runs.runs and runs.detail_timer is None)


async def test_the_title_names_the_database_and_its_icon_opens_the_palette(tmp_path):
    from textual.command import CommandPalette

    from tui.components.title import TitleBar

    app = ConlabApp(db=str(tmp_path / "first.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        title = app.query_one(TitleBar)
        assert "concurrency-lab — " in str(title.render()) and "first.db" in str(title.render())
        app.db = str(tmp_path / "second.db")  # another database opened: the title follows
        await settle(app, pilot)
        assert "second.db" in str(title.render())
        await pilot.click(TitleBar, offset=(1, 0))
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette))


async def test_the_lab_runs_the_users_function_with_the_clis_checks(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        fields = dict(workers="2", tasks="2", size="5", repeats="1", warmups="0", processes="1")
        await choose(pilot, lab, "usermod:nothere", ["threads"], **fields)
        await until_it_ends(pilot, lab, "escape", "r")
        said = str(lab.query_one("#summary").render())
        assert "not started:" in said and "nothere" in said
        await choose(pilot, lab, "usermod:work", ["sequential", "threads"], **fields)
        await until_it_ends(pilot, lab, "escape", "r")
        assert "2 run(s) stored, 0 not ok" in str(lab.query_one("#summary").render())
    connection = sqlite3.connect(db_path)
    assert {w for (w,) in connection.execute("SELECT workload FROM run")} == {"usermod:work"}
    connection.close()


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_every_part_of_the_lab_can_be_reached(tmp_path, size):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        lab = app.query_one(LabPane)
        for part in ("#executors", "#start_method", "#python", "#timeline", "#summary"):
            widget = app.query_one(part)
            lab.scroll_to_widget(widget, animate=False)
            await pilot.pause()
            region = widget.region
            assert region.height and lab.region.contains_region(region), part


def test_the_stylesheet_ships_in_the_package():
    from importlib.resources import files

    sheet = files("tui") / "app.tcss"
    assert Path(str(ConlabApp.CSS_PATH)) == Path(str(sheet)) and sheet.is_file()
    assert "#runs-table" in sheet.read_text()


async def test_the_apps_stylesheet_is_applied(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        # #runs-filter is hidden until / (a rule of app.tcss alone)
        assert app.query_one("#runs-filter").styles.display == "none"


def test_garbage_is_collected_again_once_the_first_screen_is_drawn(tmp_path):
    import gc

    seen = {}

    class FirstScreen(ConlabApp):
        def on_ready(self) -> None:
            super().on_ready()
            seen["after the first screen"] = gc.isenabled()
            self.exit()

    FirstScreen(db=str(tmp_path / "x.db")).run(headless=True, size=(80, 24))
    assert seen == {"after the first screen": True} and gc.isenabled()


@pytest.mark.slow
async def test_the_runs_pane_reads_a_page_at_a_time_and_filters_in_the_database(db_with_one_run):
    from tests.tui.test_runs_listing import _copy_runs
    from tui.components.runs import PAGE

    _copy_runs(db_with_one_run, 2 * PAGE + 49)
    app = ConlabApp(db=str(db_with_one_run))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        pane = app.query_one(RunsPane)
        table = pane.query_one(DataTable)
        await pilot.press("2")
        await wait_until(pilot, lambda: table.row_count == PAGE)
        assert pane.more
        for expected in (2 * PAGE, 2 * PAGE + 50):
            table.focus()
            await pilot.press("ctrl+end")  # to the last row shown: the next page comes
            await wait_until(pilot, lambda n=expected: table.row_count == n)
        assert not pane.more  # the last page was not full: nothing more is read
        keys = [row.value for row in table.rows]
        assert len(set(keys)) == len(keys)  # no run twice
        await pilot.press("slash", *"tag:keep")
        await settle(app, pilot)
        await wait_until(pilot, lambda: table.row_count == (2 * PAGE + 49 + 2) // 3)
        assert {r["tag"] for r in pane.runs} == {"keep"}


async def test_compares_fields_complete_from_a_big_database_without_listing_it(tmp_path):
    from bench.storage import fill

    path = tmp_path / "big.db"
    fill(path, 3000, repeats=2, tasks=2)
    with sqlite3.connect(path) as connection:  # tags nightly-1000 ... nightly-3999
        connection.execute("UPDATE run SET tag = 'nightly-' || (rowid + 999)")
    app = ConlabApp(db=str(path))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.action_show("compare")
        field = app.query_one("#selection-a", Input)
        field.focus()
        await pilot.press(*"tag:nightly-")
        await wait_until(pilot, lambda: field._suggestion == "tag:nightly-1000")
        await pilot.press(*"39")
        await wait_until(pilot, lambda: field._suggestion == "tag:nightly-3900")
        await pilot.press("right")  # takes the suggestion
        assert field.value == "tag:nightly-3900"
        field.value = ""
        await pilot.press(*"workload:c")
        await wait_until(pilot, lambda: field._suggestion == "workload:cpu")
        field.value = ""
        await pilot.press(*"tag:nothing-so")
        await settle(app, pilot)
        assert field._suggestion == ""


async def test_compare_suggests_selections_from_the_database(db_with_one_run):
    from tests.tui.test_runs_listing import _copy_runs

    _copy_runs(db_with_one_run, 3)
    app = ConlabApp(db=str(db_with_one_run))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("3")
        box = app.query_one("#selection-a", Input)
        box.focus()
        await pilot.press(*"tag:k")
        await wait_until(pilot, lambda: box._suggestion == "tag:keep")
        await pilot.press("right")  # takes the suggestion
        assert box.value == "tag:keep"


async def test_export_report_replaces_a_link_in_reports_and_spares_its_target(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    victim = tmp_path / "victim.db"
    victim.write_text("precious")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "summary.html").symlink_to(victim)
    db = two_sweeps(tmp_path / "two.db")
    app = ConlabApp(db=str(db))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.export_report("html")  # a worker thread: waited for
        await settle(app, pilot)
        said = [(note.severity, note.message) for note in app._notifications]
    assert victim.read_text() == "precious"
    page = tmp_path / "reports" / "summary.html"
    assert not page.is_symlink() and "<html" in page.read_text(), said


async def test_at_80x24_the_labs_timeline_draws_each_thread_of_the_run(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=(80, 24)) as pilot:
        lab = app.query_one(LabPane)
        await choose(
            pilot,
            lab,
            "cpu",
            ["threads"],
            workers="2",
            tasks="8",
            size="200000",
            repeats="1",
            warmups="0",
            processes="1",
        )
        await until_it_ends(pilot, lab, "escape", "r")
        timeline = lab.query_one("#timeline")
        lanes, _ = timeline.states
        assert len(lanes) == 3  # the runner's main thread and its two workers
        drawn = timeline.render().plain.splitlines()
        assert all(len(line) <= timeline.size.width <= 80 for line in drawn)
        assert [line.split()[0] for line in drawn[:3]] == ["runner", "runner", "runner"]
        assert drawn[-1].startswith("0-9 core  - wait core  = lock/GIL")  # the short legend
        assert "what each thread did" in timeline.caption
