"""The Compare pane: two selections (as `conlab report --compare A B`), their comparison with
verdicts, and charts: speedup against workers with the ideal line, time per executor."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, DataTable, Input, Static

BAR = "█"


def speedup_chart(summary, width: int = 48) -> Text:
    """Speedup against workers per executor, as bars, with the ideal (= workers) marked."""
    text = Text()
    rows = summary[summary["speedup"].notna() & (summary["executor"] != "sequential")]
    if rows.empty:
        return Text("no sequential run in the selection: no speedup to draw", style="dim")
    top = max(rows["speedup"].max(), rows["workers"].max())
    for row in rows.sort_values(["workload", "executor", "workers"]).itertuples():
        filled = int(row.speedup / top * width)
        ideal = int(row.workers / top * width)
        bar = [BAR if i < filled else " " for i in range(width)]
        if ideal < width:
            bar[ideal] = "┆"
        text.append(f"{row.workload[:8]:>8} {row.executor[:10]:>10} x{int(row.workers):<3}")
        text.append("".join(bar), style="green")
        text.append(f" {row.speedup:.2f}x (ideal {int(row.workers)}x)\n")
    return text


def time_chart(summary, width: int = 48) -> Text:
    text = Text()
    top = summary["median_s"].max() or 1
    for row in summary.sort_values(["workload", "median_s"]).itertuples():
        text.append(f"{row.workload[:8]:>8} {row.executor[:10]:>10} x{int(row.workers):<3}")
        text.append(BAR * max(1, int(row.median_s / top * width)), style="cyan")
        text.append(f" {row.median_s * 1000:.1f} ms\n")
    return text


class ComparePane(Vertical):
    DEFAULT_CSS = """
    ComparePane { padding: 0 1; }
    #compare-form { height: 3; }
    #compare-form Input { width: 1fr; }
    #compare-table { height: auto; max-height: 40%; }
    #compare-verdict { height: auto; }
    #charts { height: 1fr; }
    .chart { border: round $primary-darken-2; height: auto; padding: 0 1; }
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
        with VerticalScroll(id="charts"):
            yield Static("", id="speedup-chart", classes="chart")
            yield Static("", id="time-chart", classes="chart")

    def on_mount(self) -> None:
        self.query_one("#speedup-chart").border_title = "speedup against workers (┆ ideal)"
        self.query_one("#time-chart").border_title = "time per executor"

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
            self.query_one("#speedup-chart", Static).update("no finished runs yet")
            self.query_one("#time-chart", Static).update("")
            return
        summary = summarize(repeats)
        self.query_one("#speedup-chart", Static).update(speedup_chart(summary))
        self.query_one("#time-chart", Static).update(time_chart(summary))

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
