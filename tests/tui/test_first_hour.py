"""A newcomer's first hour in the app (issue 38): at 80x24 the keys reach the sweep's progress
and results, a digit typed in a field is not mistaken for a screen's key, presets set the whole
form, Compare names both executors, the Lab answers its own function and interpreters."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input

from tests.helpers import made_once
from tests.tui.conftest import SIZE, choose, settle, until_it_ends, wait_until
from tui.app import PRESETS, ConlabApp
from tui.components.lab import LabPane


async def test_a_preset_sets_every_field_and_asks_no_more_workers_than_tasks(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        lab = app.query_one(LabPane)
        for name, workload, executors, fields, _ in PRESETS:
            app.query_one("#tag", Input).value = "2"  # typed there before, by mistake
            app.query_one("#repeats", Input).value = "9"
            app.apply_preset(workload, executors, fields)
            await pilot.pause()
            assert app.query_one("#tag", Input).value == "", name
            assert app.query_one("#repeats", Input).value == fields.get("repeats", ""), name
            specs = lab.build_specs()
            assert {s.tag for s in specs} == {None}, name
            assert all(s.workers <= s.tasks for s in specs), (name, fields)


async def test_the_runs_detail_says_how_many_counted_repeats_in_all(db_with_one_run):
    # one real `conlab run --repeats 1`: six runner processes, one counted repeat in each
    app = ConlabApp(db=str(db_with_one_run))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await pilot.press("2")
        table = app.query_one("#runs-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        detail = app.query_one("#run-detail")
        await wait_until(pilot, lambda: str(detail.render()).startswith("run "))
        said = str(detail.render())
        assert "repeats 1 (+1 warm-up) in each of 6 runner processes" in said, said
        assert "6 counted repeats in all, from 6 processes (ms): " in said, said


def test_list_pythons_finds_a_build_in_the_cache_the_readme_names(tmp_path):
    import glob
    import json
    import os
    import subprocess

    from tests.conftest import CLI

    home = os.path.expanduser("~")
    builds = glob.glob(os.path.join(home, ".cache", "conlab-cpython", "*", "bin", "python3.*t"))
    if not builds:
        pytest.skip("no CPython build cached in ~/.cache/conlab-cpython here")
    # the same build, cached where $XDG_CACHE_HOME points: found there, by that path
    cached = tmp_path / "cache" / "conlab-cpython" / "cpython-3.13-t" / "bin"
    cached.mkdir(parents=True)
    (cached / "python3.13t").symlink_to(builds[0])
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    listed = subprocess.run(
        [*CLI, "list", "pythons", "--json"], capture_output=True, text=True, env=env, check=True
    )
    found = {p["path"]: p for p in json.loads(listed.stdout)}
    assert str(cached / "python3.13t") in found, listed.stdout
    assert found[str(cached / "python3.13t")]["free_threaded"]


def on_screen(app, selector: str) -> bool:
    """Whether the widget is drawn inside the Lab's visible part, at least its first line."""
    lab = app.query_one(LabPane)
    region = app.query_one(selector).region
    return bool(region.height) and lab.region.contains(region.x, region.y)


async def test_at_80x24_r_brings_the_progress_into_view_and_keys_reach_the_verdict(db_path, marked):
    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=(80, 24)) as pilot:
        lab = app.query_one(LabPane)
        slow = dict(workers="2", tasks="400", size="100", repeats="3", processes="1")
        await choose(pilot, lab, "sleep", ["threads"], **slow)
        await pilot.press("escape")
        assert not on_screen(app, "#overall")  # below the fold before the sweep
        await pilot.press("r")
        await wait_until(pilot, lambda: lab.sweep is not None)  # under way (for seconds)
        await pilot.pause()
        assert on_screen(app, "#overall") and on_screen(app, "#current")
        assert app.focused is app.query_one("Results")
        await pilot.press("escape")
        await wait_until(pilot, lambda: not lab.busy)

        fields = dict(workers="2", tasks="2", size="5", repeats="1", warmups="0", processes="1")
        await choose(pilot, lab, "sleep", ["sequential", "threads"], **fields)
        workloads = app.query_one("#workloads")
        highlighted = workloads.highlighted
        await until_it_ends(pilot, lab, "r")
        summary = app.query_one("#summary")
        await wait_until(pilot, lambda: on_screen(app, "#summary"))  # the verdict, in view
        assert "2 run(s) stored" in str(summary.render())
        await pilot.press("home")
        assert lab.scroll_y == 0
        await pilot.press("end")  # the keys scroll the Lab, not the list of workloads
        await pilot.pause()
        assert workloads.highlighted == highlighted
        assert lab.scroll_y == lab.max_scroll_y > 0
        assert lab.region.contains_region(summary.region), (summary.region, lab.region)
        await pilot.press("pageup")
        assert lab.scroll_y < lab.max_scroll_y
        # tab from the last menu comes to the results too
        app.query_one("#python").focus()
        await pilot.press("tab")
        assert app.focused is app.query_one("Results")


def footer_keys(app) -> dict[str, str]:
    from tui.components.footer import KeysFooter

    keys, _ = app.query_one(KeysFooter).shown_keys()
    return {shown.display: shown.description for shown in keys if shown.enabled}


async def test_a_digit_in_a_field_is_typed_there_and_the_footer_says_so(tmp_path):
    app = ConlabApp(db=str(tmp_path / "x.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await wait_until(pilot, lambda: app.query_one(LabPane).form_made)
        assert footer_keys(app)["2"] == "Runs"
        app.query_one("#tag", Input).focus()  # where tab had left the focus, in the issue
        await pilot.pause()
        shown = footer_keys(app)
        assert "2" not in shown and shown["esc"] == "Leave field", shown  # not a screen here
        await pilot.press("2")
        assert app.shown == "lab" and app.query_one("#tag", Input).value == "2"
        await pilot.press("escape")  # out of the field: digits choose screens again
        assert app.focused is app.query_one("#workloads")
        assert footer_keys(app)["2"] == "Runs" and footer_keys(app)["esc"] == "Cancel"
        assert "a" in app.screen.active_bindings  # the Lab's own keys work at once (advise)
        app.query_one("#executors").focus()
        await pilot.press("escape")  # no sweep to cancel: the Lab keeps the keys
        assert "a" in app.screen.active_bindings
        await pilot.press("2")
        assert app.shown == "runs"


class NoticesKept(ConlabApp):
    """The app, keeping every notice it shows (a notice leaves the screen after a few
    seconds, and a busy machine can take that long between two looks)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.notices: list[str] = []

    def notify(self, message, *args, **kwargs) -> None:
        self.notices.append(str(message))
        super().notify(message, *args, **kwargs)


async def test_enter_on_the_users_function_says_whether_it_is_found(tmp_path, marked):
    app = NoticesKept(db=str(tmp_path / "x.db"))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        lab = app.query_one(LabPane)
        await wait_until(pilot, lambda: lab.form_made)
        summary = app.query_one("#summary")
        for typed, answer in (("usermod:work", "usermod:work: found"), ("usermod:nap2", "nap2")):
            field = app.query_one("#function", Input)
            field.value = ""
            field.focus()
            await pilot.press(*typed, "enter")
            await wait_until(pilot, lambda answer=answer: answer in str(summary.render()))
            # at 80x24 the summary is below the fold: the notice is what is seen at once
            assert any(answer in notice for notice in app.notices), app.notices
        assert "has no function 'nap2'" in str(summary.render())


@made_once
def executors_sweep(path):
    """One sweep of sleep on sequential, threads x1 and x2 (the threads faster at x2)."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine
    from tests.helpers import environment, record_run

    engine = open_engine(path, writer=True)
    env = environment("f" * 20, "lab-box", "Example CPU", "3.11.7")
    sweep = ExperimentSpec(workload="x", executor="x").sweep_id
    common = dict(workload="sleep", tasks=2, repeats=3, warmups=0, sweep_id=sweep)
    record_run(engine, ExperimentSpec(executor="sequential", **common), env, [10, 10.1, 10.2])
    for workers in (1, 2):
        walls = [10 / workers * (1 + n / 100) for n in range(3)]
        record_run(
            engine, ExperimentSpec(executor="threads", workers=workers, **common), env, walls
        )
    engine.dispose()
    return path


@pytest.mark.parametrize("size", [(120, 40), (90, 30)])  # (at 90 columns the verdict is cut)
async def test_compare_sequential_with_threads_at_120x40(tmp_path, size):
    app = ConlabApp(db=str(executors_sweep(tmp_path / "x.db")))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot.press("3")
        app.query_one("#selection-a", Input).value = "executor:sequential"
        app.query_one("#selection-b", Input).value = "executor:threads"
        app.query_one("#compare-button").press()
        table = app.query_one("#compare-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1)
        columns = [str(column.label) for column in table.columns.values()]
        row = dict(zip(columns, map(str, table.get_row_at(0))))
        assert row["executor"] == "sequential → threads" and "None" not in row.values(), row
        # the verdict is drawn whole in the table's box, or the pane says how to reach it
        verdict = app.query_one("#compare-verdict")
        await pilot.pause()
        widths = [column.get_render_width(table) for column in table.columns.values()]
        verdict_ends = sum(widths[: columns.index("verdict") + 1])
        fits = verdict_ends <= table.scrollable_content_region.width
        assert fits or size[0] < 120, verdict_ends  # a tie's verdict, whole at 120 columns
        hint = "the table has more columns than fit: left and right (or shift+wheel) scroll it"
        assert fits or f"\n{hint}" in str(verdict.render()), (verdict_ends, table.size)
        if not fits:
            table.focus()
            await pilot.press("right")
            assert table.scroll_x > 0  # as the hint says
        # the sequential run of A gives B's threads their speedups
        drawn = app.query_one("#speedup-chart").plt.build()
        assert "no sequential run" not in drawn and "B threads" in drawn


def test_the_clis_comparison_of_two_executors_shows_no_none(tmp_path):
    import os
    import subprocess

    from tests.conftest import CLI

    db = executors_sweep(tmp_path / "x.db")
    for format in ("table", "markdown"):
        shown = subprocess.run(
            [
                *CLI,
                "report",
                "--db",
                str(db),
                "--compare",
                "executor:sequential",
                "executor:threads",
                "--format",
                format,
            ],
            capture_output=True,
            text=True,
            env=dict(os.environ, COLUMNS="200"),
            check=True,
        ).stdout
        assert "None" not in shown and "differ in" in shown, shown
