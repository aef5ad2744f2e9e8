"""The Compare pane: two selections (as `conlab report --compare A B`), their comparison with
verdicts, and charts (textual-plotext): speedup against workers with the ideal line, time per
executor."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Input, Static
from textual_plotext import PlotextPlot


def draw_speedup(plot, summary) -> None:
    """Speedup against workers, one line per executor, and the ideal (speedup = workers)."""
    plt = plot.plt
    plt.clear_figure()
    plt.title("speedup against workers")
    plt.xlabel("workers")
    rows = summary[summary["speedup"].notna() & (summary["executor"] != "sequential")]
    if rows.empty:
        plt.title("no sequential run in the selection: no speedup to draw")
        plot.refresh()
        return
    most = int(rows["workers"].max())
    plt.plot([1, most], [1, most], label="ideal", color="gray")
    # One line per piece of work and executor: runs of other interpreters, sizes or machines
    # are other lines, never points of the same one.
    keys = ["machine", "python", "workload", "size", "tasks", "executor"]
    varying = [k for k in keys[:-1] if rows[k].map(str).nunique() > 1]
    for key, group in rows.groupby(keys, dropna=False):
        values = dict(zip(keys, key))
        group = group.sort_values("workers")
        label = " ".join(
            [
                str(values["workload"]),
                *(f"{k} {values[k]}" for k in varying if k != "workload"),
                values["executor"],
            ]
        )
        plt.plot([int(w) for w in group["workers"]], [float(s) for s in group["speedup"]],
                 label=label, marker="dot")  # fmt: skip
    plot.refresh()


def draw_times(plot, summary) -> None:
    """Median time per executor and worker count, as bars."""
    plt = plot.plt
    plt.clear_figure()
    plt.title("median time per executor (ms)")
    ordered = summary.sort_values(["workload", "median_s"])
    labels = [f"{r.workload} {r.executor} x{int(r.workers)}" for r in ordered.itertuples()]
    plt.bar(labels, [float(r.median_s) * 1000 for r in ordered.itertuples()],
            orientation="horizontal")  # fmt: skip
    plot.refresh()


class ComparePane(Vertical):
    DEFAULT_CSS = """
    ComparePane { padding: 0 1; }
    #compare-form { height: 3; }
    #compare-form Input { width: 1fr; }
    #compare-table { height: auto; max-height: 40%; }
    #compare-verdict { height: auto; }
    #charts { height: 1fr; min-height: 14; }
    .chart { width: 1fr; height: 1fr; }
    """

    def __init__(self, db: Optional[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.db = db

    def compose(self) -> ComposeResult:
        with Horizontal(id="compare-form"):
            yield Input(placeholder="A, e.g. tag:before", id="selection-a")
            yield Input(placeholder="B, e.g. tag:after or python:3.12", id="selection-b")
            yield Button("Compare", id="compare-button", variant="primary")
        table = DataTable(id="compare-table", cursor_type="row")
        yield table
        yield Static(
            "Write two selections (KEY:VALUE, keys run, sweep, tag, machine, python, "
            "workload, executor) and press enter.",
            id="compare-verdict",
        )
        with Horizontal(id="charts"):
            yield PlotextPlot(id="speedup-chart", classes="chart")
            yield PlotextPlot(id="time-chart", classes="chart")

    def refresh_charts(self, selection: Optional[str] = None) -> None:
        """Draw the charts for the runs in ``selection`` (all finished runs by default)."""
        from storage.database import open_engine
        from storage.reports import load_repeats, select, summarize

        engine = open_engine(self.db)
        try:
            repeats = load_repeats([("db", engine)])
        finally:
            engine.dispose()
        if selection and not repeats.empty:
            repeats = select(repeats, selection)
        if repeats.empty:
            for chart in self.query(PlotextPlot):
                chart.plt.clear_figure()
                chart.plt.title("no finished runs yet")
                chart.refresh()
            return
        summary = summarize(repeats)
        draw_speedup(self.query_one("#speedup-chart", PlotextPlot), summary)
        draw_times(self.query_one("#time-chart", PlotextPlot), summary)

    @on(Input.Submitted)
    @on(Button.Pressed, "#compare-button")
    def run_compare(self) -> None:
        from storage import render
        from storage.database import open_engine
        from storage.errors import SelectionError
        from storage.reports import compare, load_repeats

        a = self.query_one("#selection-a", Input).value.strip()
        b = self.query_one("#selection-b", Input).value.strip()
        verdict = self.query_one("#compare-verdict", Static)
        if not a or not b:
            verdict.update("write both selections, A and B")
            return
        engine = open_engine(self.db)
        try:
            repeats = load_repeats([("db", engine)])
        finally:
            engine.dispose()
        try:
            if repeats.empty:
                raise SelectionError("no finished runs stored yet; run a sweep first")
            comparisons, geomean, differences = compare(repeats, a, b)
        except SelectionError as exc:
            verdict.update(f"[b red]{exc}[/]")
            return
        rows = render.comparison_rows(comparisons)
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        table.add_columns(*rows[0])
        for row in rows:
            table.add_row(*row.values())
        differ = "; ".join(f"{k}: {va} vs {vb}" for k, (va, vb) in differences.items())
        verdict.update(
            f"B against A, geometric mean of B/A: {geomean:.3f}"
            + (f"\nthe selections differ in {differ}" if differ else "")
        )
        self.refresh_charts(f"{a}")
