"""The Textual app: Lab, Runs, Compare and Machine, keyboard first."""

from __future__ import annotations

from functools import partial
from typing import Optional

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.widgets import Footer, Header, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from storage.text import printable
from tui.components.compare import ComparePane
from tui.components.lab import LabPane
from tui.components.machine import MachinePane
from tui.components.runs import RunsPane

HELP = """\
# conlab

**For this work, on this machine, with this Python: which way of running it concurrently is
fastest, and why?**

| key | what it does |
|---|---|
| `1` `2` `3` `4` | Lab, Runs, Compare, Machine |
| `r` | run the sweep the Lab describes |
| `escape` | cancel the sweep (the current run is stored as cancelled) |
| `/` | filter the runs |
| `t` / `d` | tag / delete the highlighted run (Runs) |
| `ctrl+p` | command palette: presets, export a report, themes |
| `f8` | save an SVG screenshot |
| `?` / `f1` | this help |
| `q` | quit |

In the Lab: up/down picks the workload, space toggles executors, the fields set the parameters
(empty means the default shown). Bad input is shown under the fields, with how to fix it.
"""

# Presets for the command palette: (name, workload, executors, what it shows).
PRESETS = [
    ("See the GIL", "cpu", ("sequential", "threads", "processes"),
     "pure Python work: threads do not help, processes do"),
    ("Waiting scales", "sleep", ("sequential", "threads", "asyncio"),
     "waiting releases the GIL: threads and asyncio overlap it"),
    ("Dispatch overhead", "tiny", ("sequential", "threads", "processes", "pool"),
     "almost no work: what each executor costs per task"),
]  # fmt: skip


class LabCommands(Provider):
    """Command palette entries that make sense in the lab."""

    async def search(self, query: str) -> Hits:
        app = self.app
        matcher = self.matcher(query)
        commands = [
            (f"Preset: {name}", partial(app.apply_preset, workload, executors), help_text)
            for name, workload, executors, help_text in PRESETS
        ] + [
            ("Export report (HTML)", app.export_report, "write reports/summary.html"),
            ("Export report (Markdown)", partial(app.export_report, "markdown"),
             "write reports/summary.md"),
            ("Reload runs", app.reload_all, "read the database again"),
            ("Open a database...", app.ask_open_database, "show another result database"),
            ("Merge a database...", app.ask_merge_database,
             "add the runs of another lab database to this one"),
        ]  # fmt: skip
        for name, callback, help_text in commands:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class ConlabApp(App):
    """Pick workloads and executors, run them, watch the workers, compare stored runs."""

    TITLE = "concurrency-lab"
    COMMANDS = App.COMMANDS | {LabCommands}
    CSS = """
    TabbedContent { height: 1fr; }
    TabPane { padding: 0; }
    """
    BINDINGS = [
        Binding("1", "show('lab')", "Lab", id="show.lab", tooltip="choose and run experiments"),
        Binding("2", "show('runs')", "Runs", id="show.runs", tooltip="browse stored runs"),
        Binding("3", "show('compare')", "Compare", id="show.compare",
                tooltip="compare two selections of runs"),
        Binding("4", "show('machine')", "Machine", id="show.machine",
                tooltip="this machine and the machines in the database"),
        Binding("r", "run", "Run", id="lab.run", tooltip="run the sweep the Lab describes"),
        Binding("escape", "cancel", "Cancel", id="lab.cancel",
                tooltip="stop the sweep; the current run is stored as cancelled"),
        Binding("slash", "filter", "Filter", id="runs.filter", tooltip="filter the stored runs"),
        Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="keys and what they do"),
        Binding("f8", "screenshot", "Screenshot", id="app.screenshot",
                tooltip="save an SVG screenshot of the screen"),
        Binding("q", "quit", "Quit", id="app.quit", tooltip="leave conlab"),
    ]  # fmt: skip

    def __init__(self, db: Optional[str] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.db = db

    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="lab"):
            with TabPane("1 Lab", id="lab"):
                yield LabPane(self.db)
            with TabPane("2 Runs", id="runs"):
                yield RunsPane(self.db)
            with TabPane("3 Compare", id="compare"):
                yield ComparePane(self.db)
            with TabPane("4 Machine", id="machine"):
                yield MachinePane(self.db)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = printable(self.db or "default database")
        self.reload_all()
        self.warm_up_reports()

    @work(thread=True, exit_on_error=False, group="warm-up")
    def warm_up_reports(self) -> None:
        # Importing pandas holds the GIL for ~0.3 s: do it now, while the user reads the first
        # screen, rather than on their first look at a run's detail or the Compare charts.
        import storage.reports  # noqa: F401

    def reload_all(self) -> None:
        self.query_one(RunsPane).reload()
        self.query_one(MachinePane).reload()
        if self.query_one(TabbedContent).active == "compare":
            self.query_one(ComparePane).refresh_charts()

    @on(TabbedContent.TabActivated)
    def pane_shown(self, event: TabbedContent.TabActivated) -> None:
        # The charts need pandas: drawn when first looked at, not at start-up.
        if event.pane.id == "compare":
            self.query_one(ComparePane).refresh_charts()

    # --- actions ---

    def action_show(self, pane: str) -> None:
        self.query_one(TabbedContent).active = pane

    def action_run(self) -> None:
        self.action_show("lab")
        self.query_one(LabPane).start()

    def action_cancel(self) -> None:
        if not self.query_one(LabPane).cancel():
            self.screen.set_focus(None)

    def action_filter(self) -> None:
        self.action_show("runs")
        self.query_one(RunsPane).show_filter()

    def action_help(self) -> None:
        from tui.components.help import HelpScreen

        self.push_screen(HelpScreen(HELP))

    def action_screenshot(self) -> None:
        path = self.save_screenshot()
        self.notify(printable(f"saved {path}"), title="screenshot", markup=False)

    def apply_preset(self, workload: str, executors: tuple[str, ...]) -> None:
        self.action_show("lab")
        self.query_one(LabPane).choose(workload, executors)

    def export_report(self, format: str = "html") -> None:
        from pathlib import Path

        from storage import render
        from storage.database import open_engine
        from storage.reports import load_repeats, summarize, verdicts

        engine = open_engine(self.db)
        try:
            repeats = load_repeats([("db", engine)])
            if repeats.empty:
                self.notify("no finished runs to report yet", severity="warning")
                return
            summary = summarize(repeats)
            words = verdicts(summary)
            out = Path("reports") / f"summary.{'html' if format == 'html' else 'md'}"
            out.parent.mkdir(exist_ok=True)
            text = (render.html_page(summary, words) if format == "html"
                    else render.markdown(summary, words))  # fmt: skip
            out.write_text(text, encoding="utf-8")
        finally:
            engine.dispose()
        self.notify(printable(f"wrote {out}"), title="report", markup=False)

    def ask_open_database(self) -> None:
        from tui.components.prompt import Prompt

        def open_database(path: Optional[str]) -> None:
            if not path:
                return
            from storage.database import DatabaseError, open_engine

            try:
                open_engine(path, create=False).dispose()
            except DatabaseError as exc:
                self.notify(printable(exc), severity="error", title="cannot open", markup=False)
                return
            self.db = path
            self.sub_title = printable(path)
            for pane in (LabPane, RunsPane, ComparePane, MachinePane):
                self.query_one(pane).db = path
            self.reload_all()

        self.push_screen(Prompt("Open which result database (a path)?"), open_database)

    def ask_merge_database(self) -> None:
        from tui.components.prompt import Prompt

        def merge_database(path: Optional[str]) -> None:
            if not path:
                return
            from pathlib import Path

            from storage.database import DatabaseError, lab_database
            from storage.sharing import merge

            try:
                (result,) = merge(lab_database(self.db), [Path(path)])
            except DatabaseError as exc:
                self.notify(printable(exc), severity="error", title="nothing merged", markup=False)
                return
            self.notify(f"{result.runs_added} runs added, {result.runs_skipped} skipped",
                        title=printable(f"merged {Path(path).name}"))  # fmt: skip
            self.reload_all()

        self.push_screen(Prompt("Merge which lab database into this one (a path)?"),
                         merge_database)  # fmt: skip

    # --- reactions ---

    @on(LabPane.SweepDone)
    def sweep_done(self) -> None:
        self.reload_all()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # A worker's unexpected error becomes a modal, never a crash.
        if event.state == WorkerState.ERROR:
            from tui.components.help import ErrorScreen

            lab = self.query_one(LabPane)
            lab.busy = False
            lab.sweep = None
            self.push_screen(ErrorScreen(f"{event.worker.name} failed", str(event.worker.error)))


def run_app(db: Optional[str] = None) -> None:
    ConlabApp(db=db).run()
