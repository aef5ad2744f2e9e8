"""The Compare pane's speedup chart tells apart the runs a report tells apart: two runs that
differ only in an option (joblib on loky and on threading) are two lines, each named by it."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input

from tests.helpers import environment, record_run
from tests.tui.conftest import SIZE, settle, wait_until
from tui.app import ConlabApp


def joblib_on_two_backends(path: Path) -> Path:
    """A sequential run, and joblib x2 and x4 on loky and on threading (the loky ones slower)."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine

    engine = open_engine(path, writer=True)
    env = environment("f" * 20, "lab-box", "Example CPU", "3.11.7")
    common = dict(workload="tiny", tasks=4, repeats=3, warmups=0)
    try:
        spec = ExperimentSpec(executor="sequential", **common)
        record_run(engine, spec, env, [10.0, 10.1, 10.2])
        for backend, factor in (("loky", 2.0), ("threading", 1.0)):
            for workers in (2, 4):
                walls = [10 / workers * factor * (1 + n / 100) for n in range(3)]
                spec = ExperimentSpec(executor="joblib", workers=workers, backend=backend, **common)
                record_run(engine, spec, env, walls, resolved={"backend": backend})
    finally:
        engine.dispose()
    return path


def speedup_lines_drawn(chart) -> dict[str, list[float]]:
    """The lines of a plotext chart by label: their y values (the ideal line left out)."""
    monitor = chart.plt._active.monitor  # plotext keeps what was plotted on its monitor
    return {label: list(ys) for label, ys in zip(monitor.label, monitor.y) if label != "ideal"}


async def test_joblib_backends_are_two_speedup_lines(tmp_path):
    app = ConlabApp(db=str(joblib_on_two_backends(tmp_path / "joblib.db")))
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        app.action_show("compare")
        app.query_one("#selection-a", Input).value = "executor:sequential"
        app.query_one("#selection-b", Input).value = "executor:joblib"
        app.query_one("#compare-button").press()
        await settle(app, pilot)
        await wait_until(pilot, lambda: app.query_one("#compare-table", DataTable).row_count)
        lines = speedup_lines_drawn(app.query_one("#speedup-chart"))
    assert sorted(lines) == [
        "B joblib with joblib on loky",
        "B joblib with joblib on threading",
    ]
    # each line is its own runs' speedups: loky's half of threading's
    loky, threading = (
        lines["B joblib with joblib on loky"],
        lines["B joblib with joblib on threading"],
    )
    assert [round(t / k, 1) for k, t in zip(loky, threading)] == [2.0, 2.0]


def test_html_report_draws_joblib_backends_as_two_lines(tmp_path):
    import re

    from service.reports import export_report

    db = joblib_on_two_backends(tmp_path / "joblib.db")
    page = export_report(str(db), "html", tmp_path / "reports").read_text()
    chart = page[page.index("speedup against the sequential run") :].split("</figure>")[0]
    named = set(re.findall(r"<title>([^<:]+): [0-9.]+ at", chart))
    assert named == {"joblib with joblib on loky", "joblib with joblib on threading"}
