"""The Runs pane: every stored run in a sortable table, `/` to filter, details, tag, delete."""

from __future__ import annotations

from typing import Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Label, Static

from storage.text import as_text
from tui.components.prompt import Prompt

COLUMNS = ("run", "created", "machine", "python", "workload", "executor", "workers", "status",
           "median", "tag")  # fmt: skip


def run_cells(run: dict) -> tuple:
    """The row of ``run`` in the table: text, never markup; numbers stay numbers (to sort)."""
    median = run["median_s"]
    shown = (run["run_id"][:8], (run["created_at"] or "")[:19].replace("T", " "),
             run["machine"] or "?", run["python"] or "?", run["workload"], run["executor"],
             run["workers"], run["status"],
             f"{median * 1000:.1f} ms" if median is not None else "", run["tag"] or "")  # fmt: skip
    return tuple(cell if isinstance(cell, int) else as_text(cell) for cell in shown)


def sort_key(cell):
    """A table cell as what it sorts by: its text, or the number it is."""
    return getattr(cell, "plain", cell)


class Confirm(ModalScreen[bool]):
    """Yes or no, before something that cannot be undone."""

    DEFAULT_CSS = """
    Confirm { align: center middle; }
    Confirm > Vertical { width: 60; height: auto; border: thick $error; padding: 1 2;
                         background: $surface; }
    Confirm Horizontal { height: auto; margin-top: 1; }
    """
    BINDINGS = [Binding("escape", "dismiss(False)", "cancel", id="confirm.cancel",
                        tooltip="keep everything as it is")]  # fmt: skip

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(as_text(self.question))
            with Horizontal():
                yield Button("Delete", variant="error", id="yes")
                yield Button("Keep", id="no")

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class RunsPane(Vertical):
    """Stored runs; the detail of the highlighted one below."""

    DEFAULT_CSS = """
    RunsPane { padding: 0 1; }
    #runs-filter { display: none; height: 3; }
    #runs-filter.visible { display: block; }
    #runs-table { height: 1fr; }
    #run-detail { height: auto; max-height: 45%; border: round $primary-darken-2; padding: 0 1;
                  overflow-y: auto; }
    """
    BINDINGS = [
        Binding("t", "tag", "tag", id="runs.tag", tooltip="set the highlighted run's tag"),
        Binding("d", "delete", "delete", id="runs.delete",
                tooltip="delete the highlighted run (asks first)"),
    ]  # fmt: skip

    def __init__(self, db: Optional[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.db = db
        self.runs: list[dict] = []
        self.loaded = False
        self.sort_column: Optional[str] = None

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter: text anywhere in the row, e.g. processes or tag:before",
            id="runs-filter",
        )
        table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("No run selected.", id="run-detail")

    def engine(self):
        from storage.database import open_engine

        return open_engine(self.db)

    @work(thread=True, exclusive=True, exit_on_error=False, group="runs")
    def reload(self) -> None:
        """Read the stored runs again (after a sweep, a merge, a tag...), off the event loop."""
        from storage.queries import list_runs, mark_interrupted

        engine = self.engine()
        try:
            mark_interrupted(engine)
            runs = list_runs(engine)
        finally:
            engine.dispose()
        self.app.call_from_thread(self.show_runs, runs)

    def show_runs(self, runs: list[dict]) -> None:
        self.runs = runs
        self.loaded = True
        self.fill()

    def fill(self) -> None:
        table = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        needle = self.query_one("#runs-filter", Input).value.strip().lower()
        for run in reversed(self.runs):  # newest first
            cells = run_cells(run)
            text = " ".join(map(str, cells)) + f" tag:{run['tag']} {run['run_id']}"
            if needle and needle not in text.lower():
                continue
            table.add_row(*cells, key=run["run_id"])
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))
            self.show_detail()  # the highlighted row may be the same index with another run

    def show_filter(self) -> None:
        box = self.query_one("#runs-filter", Input)
        box.add_class("visible")
        box.focus()

    @on(Input.Changed, "#runs-filter")
    def refilter(self) -> None:
        self.fill()

    @on(Input.Submitted, "#runs-filter")
    def leave_filter(self) -> None:
        self.query_one(DataTable).focus()

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
        text = as_text(self.describe(run), lines=True)  # what a database holds: never markup
        self.app.call_from_thread(self.query_one("#run-detail", Static).update, text)

    def describe(self, run: dict) -> str:
        from sqlalchemy import text

        engine = self.engine()
        try:
            with engine.connect() as connection:
                row = connection.execute(
                    text("SELECT environment_json, error_detail, stderr FROM run WHERE id = :id"),
                    {"id": run["run_id"]},
                ).one()
        finally:
            engine.dispose()
        from storage.queries import json_object

        env = json_object(row[0]) or {}
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
        lines += [f"warning: {w}" for w in self.warnings(run)]
        if run["error"]:
            lines.append(f"error: {run['error']}")
        if row[1]:
            lines.append(str(row[1])[-1500:])
        if row[2]:
            lines.append("stderr: " + str(row[2])[-800:])
        return "\n".join(lines)

    def warnings(self, run: dict) -> list[str]:
        """The reports layer's stability warnings for this run's configuration."""
        if run["status"] != "ok":
            return []
        from storage.reports import load_repeats, select, summarize

        engine = self.engine()
        try:
            repeats = select(load_repeats([("db", engine)]), f"run:{run['run_id']}")
        finally:
            engine.dispose()
        summary = summarize(repeats)
        if summary.empty:
            return []
        # Alone, any run lacks its sequential baseline: that one says nothing about this run.
        return [w for w in summary.iloc[0]["warnings"] if "no sequential run" not in w]

    def action_tag(self) -> None:
        run = self.selected()
        if run is None:
            return

        def save(tag: Optional[str]) -> None:
            if tag is None:
                return
            self.update_run(run["run_id"], "UPDATE run SET tag = :tag WHERE id = :id",
                            {"tag": tag or None})  # fmt: skip

        self.app.push_screen(
            Prompt("Tag for the highlighted run (empty removes it), enter to save:",
                   run["tag"] or ""), save)  # fmt: skip

    def action_delete(self) -> None:
        run = self.selected()
        if run is None:
            return

        def delete(yes: Optional[bool]) -> None:
            if yes:
                for table in ("task_sample", "repeat"):
                    self.update_run(run["run_id"], f"DELETE FROM {table} WHERE run_id = :id", {},
                                    reload=False)  # fmt: skip
                self.update_run(run["run_id"], "DELETE FROM run WHERE id = :id", {})

        self.app.push_screen(
            Confirm(f"Delete run {run['run_id'][:8]} ({run['workload']} on {run['executor']} "
                    f"x{run['workers']}) and its measurements?"), delete)  # fmt: skip

    def update_run(self, run_id: str, sql: str, params: dict, reload: bool = True) -> None:
        from sqlalchemy import text

        from storage.database import open_engine

        engine = open_engine(self.db, writer=True)
        try:
            with engine.begin() as connection:
                connection.execute(text(sql), {"id": run_id, **params})
        finally:
            engine.dispose()
        if reload:
            self.reload()
