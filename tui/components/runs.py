"""The Runs pane: every stored run in a sortable table, `/` to filter, details, tag, delete.
Each action is worker -> service call -> message -> render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable, Input, Static

from storage.text import as_text
from tui.components.pane import ReportsWorkerErrors
from tui.components.prompt import Confirm, Prompt
from tui.service import RUN_COLUMNS, run_row


def run_cells(run: dict) -> tuple:
    """The row of ``run`` in the table: text, never markup; numbers stay numbers (to sort)."""
    row = run_row(run)
    return tuple(cell if isinstance(cell, int) else as_text(cell) for cell in row.values())


def sort_key(cell):
    """A table cell as what it sorts by: its text, or the number it is."""
    return getattr(cell, "plain", cell)


def describe(run: dict, detail: dict) -> str:
    """A run's detail in lines of text."""
    env = detail["environment"]
    walls = ", ".join(f"{w * 1000:.1f}" for w in run["wall_s"])
    lines = [
        f"run {run['run_id']}  sweep {run['sweep_id'][:8]}  status {run['status']}",
        f"{run['workload']} size {run['size']} x {run['tasks']} tasks on {run['executor']} "
        f"x{run['workers']}  start method {run['start_method'] or '-'}  chunksize "
        f"{run['chunksize'] or '-'}  repeats {run['repeats']} (+{run['warmups']} warm-up)",
        f"counted repeats (ms): {walls or 'none'}",
        f"machine {run['machine']}: {env.get('cpu_model', '?')}, "
        f"{env.get('usable_cores', '?')} usable cores; Python {run['python']} "
        f"{'(free-threaded)' if env.get('py_gil_disabled') else ''}",
    ]
    lines += [f"warning: {w}" for w in detail["warnings"]]
    if run["error"]:
        lines.append(f"error: {run['error']}")
    if detail["error_detail"]:
        lines.append(str(detail["error_detail"])[-1500:])
    if detail["stderr"]:
        lines.append("stderr: " + str(detail["stderr"])[-800:])
    return "\n".join(lines)


class RunsPane(ReportsWorkerErrors, Vertical):
    """Stored runs, newest first; the detail of the highlighted one below."""

    BINDINGS = [
        Binding("t", "tag", "tag", id="runs.tag", tooltip="set the highlighted run's tag"),
        Binding(
            "d",
            "delete",
            "delete",
            id="runs.delete",
            tooltip="delete the highlighted run (asks first)",
        ),
    ]

    db: reactive[Optional[str]] = reactive(None)
    """The database shown (bound to the app's)."""
    db_ready: reactive[bool] = reactive(False)
    """Whether the database has its tables (bound to the app's): then the pane reads it."""

    @dataclass
    class Loaded(Message):
        """The stored runs, newest first."""

        runs: list[dict]

    @dataclass
    class Detailed(Message):
        """The detail of one run, as text."""

        run_id: str
        text: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: list[dict] = []
        self.loaded = False
        self.sort_column: Optional[str] = None
        self.filter_requested = False

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: text anywhere in the row, e.g. processes or tag:before "
            "(enter or escape: back to the table)",
            id="runs-filter",
        )
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*RUN_COLUMNS)
        yield table
        yield Static("No run selected.", id="run-detail")

    def watch_db_ready(self, ready: bool) -> None:
        if ready:
            self.reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def reload(self) -> None:
        """Read the stored runs again (after a sweep, a merge, a tag...), off the event loop."""
        from tui.service import list_runs

        self.post_message(self.Loaded(list_runs(self.db)))

    @on(Loaded)
    def show_runs(self, message: Loaded) -> None:
        self.runs = message.runs
        self.loaded = True
        self.fill()

    def fill(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        needle = self.query_one("#runs-filter", Input).value.strip().lower()
        for run in self.runs:
            cells = run_cells(run)
            text = " ".join(map(str, cells)) + f" tag:{run['tag']} {run['run_id']}"
            if needle and needle not in text.lower():
                continue
            table.add_row(*cells, key=run["run_id"])
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
            self.show_detail()  # the highlighted row may be the same index with another run

    def focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def shown(self) -> None:
        """The pane came into view: the filter box takes the keys if it was asked for, else
        the table (so that t, d and the arrows act at once)."""
        if self.filter_requested:
            self.filter_requested = False
            box = self.query_one("#runs-filter", Input)
            box.add_class("visible")
            box.focus()
        else:
            self.focus_table()

    @on(Input.Changed, "#runs-filter")
    def refilter(self) -> None:
        self.fill()

    @on(Input.Submitted, "#runs-filter")
    def leave_filter(self) -> None:
        self.focus_table()

    def on_key(self, event) -> None:
        # Escape in the filter goes back to the table, keeping the filter.
        if event.key == "escape" and self.query_one("#runs-filter", Input).has_focus:
            event.stop()
            self.focus_table()

    @on(DataTable.HeaderSelected)
    def sort_by(self, event: DataTable.HeaderSelected) -> None:
        reverse = self.sort_column == event.column_key
        event.data_table.sort(event.column_key, key=sort_key, reverse=reverse)
        self.sort_column = None if reverse else event.column_key

    def selected(self) -> Optional[dict]:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.runs if r["run_id"] == key), None)

    @on(DataTable.RowHighlighted)
    def show_detail(self) -> None:
        run = self.selected()
        if run is not None:
            self.load_detail(run)

    @work(thread=True, exclusive=True, exit_on_error=False, group="run-detail")
    def load_detail(self, run: dict) -> None:
        from tui.service import run_detail

        self.post_message(self.Detailed(run["run_id"], describe(run, run_detail(self.db, run))))

    @on(Detailed)
    def render_detail(self, message: Detailed) -> None:
        # what a database holds: never markup
        self.query_one("#run-detail", Static).update(as_text(message.text, lines=True))

    def action_tag(self) -> None:
        run = self.selected()
        if run is None:
            return

        def save(tag: Optional[str]) -> None:
            if tag is not None:
                self.change("tag_run", run["run_id"], tag)

        self.app.push_screen(
            Prompt(
                "Tag for the highlighted run (empty removes it), enter to save:", run["tag"] or ""
            ),
            save,
        )

    def action_delete(self) -> None:
        run = self.selected()
        if run is None:
            return

        def delete(yes: Optional[bool]) -> None:
            if yes:
                self.change("delete_run", run["run_id"])

        self.app.push_screen(
            Confirm(
                f"Delete run {run['run_id'][:8]} ({run['workload']} on {run['executor']} "
                f"x{run['workers']}) and its measurements? This cannot be undone."
            ),
            delete,
        )

    @work(thread=True, exit_on_error=False, group="runs-change")
    def change(self, action: str, *args) -> None:
        """A service call that changes stored runs (``tag_run``, ``delete_run``), then a
        reload."""
        from tui import service

        getattr(service, action)(self.db, *args)
        self.app.call_from_thread(self.reload)
