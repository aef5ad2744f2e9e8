"""The Runs pane: the stored runs in a sortable table, a page at a time (more as the cursor nears
the end), `/` to filter (in the database), details, tag, delete. Each action is worker ->
service call -> message -> render."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.timer import Timer
from textual.widgets import DataTable, Input, Static

from service.runs import RUN_COLUMNS, run_row
from storage.text import as_text
from tui.components.pane import ReportsWorkerErrors
from tui.components.prompt import Confirm, Prompt


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
    processes = run.get("processes") or 0  # the runner processes that gave counted repeats
    lines = [
        f"run {run['run_id']}  sweep {run['sweep_id'][:8]}  status {run['status']}",
        f"{run['workload']} size {run['size']} x {run['tasks']} tasks on {run['executor']} "
        f"x{run['workers']}  start method {run['start_method'] or '-'}  chunksize "
        f"{run['chunksize'] or '-'}  repeats {run['repeats']} (+{run['warmups']} warm-up) in each "
        f"of {plural(processes, 'runner process', 'runner processes')}",
        f"{plural(len(run['wall_s']), 'counted repeat', 'counted repeats')} in all, from "
        f"{plural(processes, 'process', 'processes')} (ms): {walls or 'none'}",
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


def plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


# Runs read at a time: a screenful and some (a table takes ~1 ms a row, the database less), and
# the next page as the cursor nears the end.
PAGE = 60
# How long the cursor rests on a row before its detail is read.
DETAIL_AFTER_S = 0.15
# What the detail says while no row is highlighted.
NO_RUN = "No run selected."


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
        """A page of the stored runs that match the filter ``text``, newest first, from
        ``offset``."""

        runs: list[dict]
        offset: int = 0
        text: str = ""

    @dataclass
    class Detailed(Message):
        """The detail of one run (a run object as the table has it), as text."""

        run: dict
        text: str

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: list[dict] = []
        self.more = False  # whether the database may hold more runs than ``runs`` (a page)
        self.loaded = False
        self.sort_column: Optional[str] = None
        self.filter_requested = False
        self.detail_timer: Optional[Timer] = None
        self.detailed: Optional[dict] = None  # the run whose detail is shown
        self.detailing: Optional[dict] = None  # the run whose detail is being read

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: text anywhere in the row, e.g. processes or tag:before "
            "(enter or escape: back to the table)",
            id="runs-filter",
        )
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*RUN_COLUMNS)
        yield table
        yield Static(NO_RUN, id="run-detail")

    def watch_db_ready(self, ready: bool) -> None:
        if ready:
            self.reload()

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def reload(self, offset: int = 0) -> None:
        """Read the first page of the runs that match the filter again (after a sweep, a merge,
        a tag, a change of filter...), or the page from ``offset`` on, off the event loop. The
        database filters and pages: a database of any size shows its first rows at once."""
        from textual.worker import get_current_worker

        from service.runs import runs_page

        text = self.filter_text()
        page = runs_page(self.db, text, offset, PAGE)
        if not get_current_worker().is_cancelled:  # else a newer reload reads the rows
            self.post_message(self.Loaded(page, offset, text))

    def filter_text(self) -> str:
        return self.query_one("#runs-filter", Input).value

    @on(Loaded)
    def show_runs(self, message: Loaded) -> None:
        if message.text != self.filter_text():
            return  # the rows of a filter typed over since: the newer one's are on the way
        if message.offset:
            if message.offset != len(self.runs):
                return  # a page of an older list
            self.runs += message.runs
            self.add_rows(message.runs)
        elif not self.loaded or message.runs != self.runs:
            # the table is drawn again only for other rows: a filter typed on that picks
            # the same runs ("thr", "thre"...) leaves it, its cursor and its detail as they are
            self.runs = message.runs
            self.fill()
        self.more = len(message.runs) == PAGE  # a full page: there may be another
        self.loaded = True

    def fill(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        self.add_rows(self.runs)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
            self.show_detail()  # the highlighted row may be the same index with another run
        else:
            self.stop_detail()
            self.detailed = None
            self.query_one("#run-detail", Static).update(NO_RUN)

    def add_rows(self, runs: list[dict]) -> None:
        table = self.query_one(DataTable)
        for run in runs:
            table.add_row(*run_cells(run), key=run["run_id"])

    def more_wanted(self) -> None:
        """Near the end of the rows shown, the next page is read (once)."""
        table = self.query_one(DataTable)
        if self.more and table.cursor_row >= table.row_count - PAGE // 2:
            self.reload(len(self.runs))

    def focus_table(self) -> None:
        self.query_one(DataTable).focus()

    def shown(self) -> None:
        """The pane came into view: the filter box takes the keys if it was asked for, else
        the table (so that t, d and the arrows act at once); the highlighted run's detail is
        read now if it was not while the pane was hidden."""
        if self.filter_requested:
            self.filter_requested = False
            box = self.query_one("#runs-filter", Input)
            box.add_class("visible")
            box.focus()
        else:
            self.focus_table()
        if self.selected() != self.detailed:
            self.show_detail()

    @on(Input.Changed, "#runs-filter")
    def refilter(self) -> None:
        self.stop_detail()  # the rows it would describe are about to be replaced
        self.reload()

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
        # The detail of the row the cursor rests on: rows passed over while scrolling, or shown
        # for a moment while a filter is typed, cost nothing (a detail reads a report).
        self.stop_detail()
        self.detail_timer = self.set_timer(DETAIL_AFTER_S, self.detail_of_selected)
        self.more_wanted()

    def stop_detail(self) -> None:
        if self.detail_timer is not None:
            self.detail_timer.stop()
            self.detail_timer = None

    def detail_of_selected(self) -> None:
        self.detail_timer = None
        run = self.selected()
        # a hidden pane reads no report: the detail is read when the pane is shown (shown());
        # the run described already, or being described (as the table has it), is not read
        # again
        if run is not None and run not in (self.detailed, self.detailing) and self.is_on_screen:
            self.detailing = run
            self.load_detail(run)

    @work(thread=True, exclusive=True, exit_on_error=False, group="run-detail")
    def load_detail(self, run: dict) -> None:
        from textual.worker import get_current_worker

        from service.runs import run_detail

        text = describe(run, run_detail(self.db, run))
        if not get_current_worker().is_cancelled:  # else the cursor has moved on
            self.post_message(self.Detailed(run, text))

    @on(Detailed)
    def render_detail(self, message: Detailed) -> None:
        if message.run != self.selected():
            return  # the detail of a run the cursor has left (or that has changed since)
        self.detailed, self.detailing = message.run, None
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

        from experiments.spec import run_label

        def delete(yes: Optional[bool]) -> None:
            if yes:
                self.change("delete_run", run["run_id"])

        self.app.push_screen(
            Confirm(
                f"Delete run {run['run_id'][:8]} ({run['workload']} on "
                f"{run_label(run['executor'], run['workers'], False)}) and its measurements? "
                "This cannot be undone."
            ),
            delete,
        )

    @work(thread=True, exit_on_error=False, group="runs-change")
    def change(self, action: str, *args) -> None:
        """A service call that changes stored runs (``tag_run``, ``delete_run``), then a
        reload."""
        from service import runs

        getattr(runs, action)(self.db, *args)
        self.app.call_from_thread(self.reload)
