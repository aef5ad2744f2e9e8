"""The Compare pane: two selections (as `conlab report --compare A B`), their comparison with
verdicts, and charts of A against B (textual-plotext) whose rows are numbered as the table's.
The comparison runs in a worker: selection -> service -> message -> table and charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.suggester import Suggester
from textual.widgets import Button, DataTable, Input, Static

if TYPE_CHECKING:  # plotext loads when the pane is made, after the first screen
    from textual_plotext import PlotextPlot
from storage.text import as_text, printable
from tui.components.pane import ReportsWorkerErrors

SIDES = ("A", "B")
SIDE_COLOURS = {"A": "blue", "B": "orange"}


def speedup_lines(summary, side: str) -> list[tuple[str, list[int], list[float]]]:
    """(label, workers, speedups) per executor of one side's summary, parallel runs only; runs
    of other interpreters, sizes or machines, or of another value of an option (joblib on loky
    and on threading), are other lines, never points of the same one."""
    from service.present.render import speedup_groups

    if summary.empty:
        return []
    rows = summary[summary["speedup"].notna() & (summary["executor"] != "sequential")]
    keys = ["machine", "python", "workload", "size", "tasks", "executor"]
    varying = [k for k in keys[:-1] if rows[k].map(str).nunique() > 1]
    lines = []
    for values, name, group in speedup_groups(rows, keys):
        label = " ".join([side, *(f"{k} {values[k]}" for k in varying), name])
        lines.append(
            (
                printable(label),
                [int(w) for w in group["workers"]],
                [float(s) for s in group["speedup"]],
            )
        )
    return lines


# What a sequential run is matched on, to give another selection's runs their speedups.
SAME_WORK = ["machine", "python", "workload", "size", "tasks"]


def with_sequential_of(summary, other):
    """``summary`` whose runs without a speedup (no sequential run in their selection) are
    given one against ``other``'s sequential run of the same work on the same machine and
    interpreter: A=executor:sequential against B=executor:threads draws B's speedups."""
    if summary.empty or other.empty or summary["speedup"].notna().all():
        return summary
    sequential = other[other["executor"] == "sequential"]
    if sequential.empty:
        return summary
    keyed = sequential.assign(key=sequential[SAME_WORK].astype(str).agg("|".join, axis=1))
    found = dict(zip(keyed["key"], keyed["median_s"]))
    keys = summary[SAME_WORK].astype(str).agg("|".join, axis=1)
    borrowed = keys.map(found) / summary["median_s"]
    return summary.assign(speedup=summary["speedup"].fillna(borrowed))


def draw_speedup(plot: PlotextPlot, comparison) -> None:
    """Speedup against workers for A and for B, each executor a line, and the ideal (a side
    without a sequential run is measured against the other side's)."""
    plt = plot.plt
    plt.clear_figure()
    plt.title("speedup against workers, A and B")
    plt.xlabel("workers")
    a, b = comparison.summary_a, comparison.summary_b
    sides = {"A": with_sequential_of(a, b), "B": with_sequential_of(b, a)}
    lines = {side: speedup_lines(summary, side) for side, summary in sides.items()}
    if not any(lines.values()):
        plt.title("no sequential run in A or B: no speedup to draw")
        plot.refresh()
        return
    most = max(max(workers) for found in lines.values() for _, workers, _ in found)
    plt.plot([1, most], [1, most], label="ideal", color="gray")
    for side, found in lines.items():
        for label, workers, speedups in found:
            plt.plot(workers, speedups, label=label, marker="dot", color=SIDE_COLOURS[side])
    plot.refresh()


def draw_times(plot: PlotextPlot, comparison) -> None:
    """Median time of A and of B for each row of the comparison table, numbered as there."""
    plt = plot.plt
    plt.clear_figure()
    plt.title("median time, A against B (ms)")
    labels = [printable(f"{n} {row_name(c.config)}") for n, c in enumerate(comparison.rows, 1)]
    plt.multiple_bar(
        labels,
        [
            [c.a_median_s * 1000 for c in comparison.rows],
            [c.b_median_s * 1000 for c in comparison.rows],
        ],
        labels=[printable(f"A {comparison.a}"), printable(f"B {comparison.b}")],
        color=[SIDE_COLOURS["A"], SIDE_COLOURS["B"]],
        orientation="horizontal",
    )
    plot.refresh()


def row_name(config: dict) -> str:
    """A comparison row by what its configuration holds: executor and workers where the two
    selections share them (a comparison of executors has no executor in its rows)."""
    parts = [str(config["executor"])] if "executor" in config else []
    if "workers" in config:
        parts.append(f"x{int(config['workers'])}")
    return " ".join(parts) or str(config.get("workload", ""))


# Said under the comparison when its table is wider than the screen.
CUT_HINT = "the table has more columns than fit: left and right (or shift+wheel) scroll it"

# The comparison's columns, in the order shown: what it found first, how it was found after.
FIRST_COLUMNS = ("workload", "executor", "workers", "A", "B", "B/A", "verdict")


def named_both(row: dict[str, str], differences: dict) -> dict[str, str]:
    """A comparison row with the verdict after the times, and a column the selections differ
    in (no value of its own: A=executor:sequential, B=executor:threads) naming both sides."""
    for column in ("workload", "executor"):
        if row.get(column) in ("None", "–"):
            a, b = differences.get(column, ("–", "–"))
            row[column] = f"{a} → {b}" if column in differences else "–"
    first = {column: row[column] for column in FIRST_COLUMNS if column in row}
    return first | {column: value for column, value in row.items() if column not in first}


def clear_charts(charts, title: str) -> None:
    for chart in charts:
        chart.plt.clear_figure()
        chart.plt.title(title)
        chart.refresh()


class SelectionSuggester(Suggester):
    """Completes a selection as it is written, from what the pane's database holds (the
    database searches: nothing lists every run)."""

    def __init__(self, pane: ComparePane) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.pane = pane

    async def get_suggestion(self, value: str) -> Optional[str]:
        import asyncio

        from service.runs import complete_selection
        from storage.errors import DatabaseError

        try:
            return await asyncio.to_thread(complete_selection, self.pane.db, value)
        except DatabaseError:
            return None  # no database yet, or one that cannot be read: no suggestion


class ComparePane(ReportsWorkerErrors, Vertical):
    db: reactive[Optional[str]] = reactive(None)
    """The database compared in (bound to the app's)."""

    @dataclass
    class Compared(Message):
        """B against A (a service.reports.Comparison)."""

        comparison: object

    @dataclass
    class Refused(Message):
        """The selections could not be compared: why, and how to fix it."""

        reason: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shown: Optional[tuple[str, str]] = None  # the selections the table and charts show

    def compose(self) -> ComposeResult:
        with Horizontal(id="compare-form"):
            suggester = SelectionSuggester(self)
            yield Input(placeholder="A, e.g. tag:before", id="selection-a", suggester=suggester)
            yield Input(
                placeholder="B, e.g. tag:after or python:3.12",
                id="selection-b",
                suggester=suggester,
            )
            yield Button("Compare", id="compare-button", variant="primary")
        yield DataTable(id="compare-table", cursor_type="row")
        yield Static(
            "Write two selections (KEY:VALUE, keys run, sweep, tag, machine, python, "
            "workload, executor) and press enter.",
            id="compare-verdict",
        )
        from textual_plotext import PlotextPlot

        with Horizontal(id="charts"):
            yield PlotextPlot(id="speedup-chart", classes="chart")
            yield PlotextPlot(id="time-chart", classes="chart")

    def on_mount(self) -> None:
        clear_charts(self.query(".chart"), "compare A and B to draw them")

    def refresh_comparison(self) -> None:
        """Compare the shown selections again (after a sweep): table and charts stay A and B."""
        if self.shown is not None:
            self.compare(*self.shown)

    @on(Input.Submitted)
    @on(Button.Pressed, "#compare-button")
    def submitted(self) -> None:
        a = self.query_one("#selection-a", Input).value.strip()
        b = self.query_one("#selection-b", Input).value.strip()
        if not a or not b:
            self.query_one("#compare-verdict", Static).update(
                as_text("write both selections, A and B")
            )
            return
        self.query_one("#compare-verdict", Static).update(as_text(f"comparing {b} against {a}..."))
        self.compare(a, b)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def compare(self, a: str, b: str) -> None:
        from service.reports import report
        from storage.errors import SelectionError

        try:
            found = report([("db", self.db)], compare=(a, b), summarise_all=False)
            if found.empty:
                raise SelectionError("no finished runs stored yet; run a sweep first")
        except SelectionError as exc:
            self.post_message(self.Refused(str(exc)))
            return
        self.post_message(self.Compared(found.comparison))

    def hint_if_cut(self, text) -> None:
        """When the table is wider than its box, say how to see the rest (the verdict comes
        first after the times, the details after it)."""
        table = self.query_one("#compare-table", DataTable)
        if table.virtual_size.width > table.scrollable_content_region.width:
            hint = as_text(f"\n{CUT_HINT}", "italic", lines=True)
            self.query_one("#compare-verdict", Static).update(text + hint)

    @on(Refused)
    def refused(self, message: Refused) -> None:
        self.query_one("#compare-verdict", Static).update(as_text(message.reason, "bold red"))

    @on(Compared)
    def show(self, message: Compared) -> None:
        from service.present import render

        comparison = message.comparison
        self.shown = (comparison.a, comparison.b)
        rows = [
            named_both(row, comparison.differences)
            for row in render.comparison_rows(comparison.rows)
        ]
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        table.add_columns("#", *rows[0])
        for n, row in enumerate(rows, 1):
            table.add_row(str(n), *map(as_text, row.values()))
        differ = "; ".join(f"{k}: {va} vs {vb}" for k, (va, vb) in comparison.differences.items())
        said = render.basis_lines(comparison.rows)
        if differ:
            said.append(f"the selections differ in {differ}")
        text = as_text(
            f"B ({comparison.b}) against A ({comparison.a}), geometric mean of B/A: "
            f"{comparison.geomean:.3f}"
        )
        for line in said:
            text += as_text(f"\n{line}", lines=True)
        self.query_one("#compare-verdict", Static).update(text)
        self.call_after_refresh(self.hint_if_cut, text)
        draw_speedup(self.query_one("#speedup-chart"), comparison)
        draw_times(self.query_one("#time-chart"), comparison)
