"""The Textual app: Lab, Runs, Compare and Machine, keyboard first. Every pane reads and changes
stored runs through ``service``, in workers; the app's stylesheet is ``app.tcss``."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import ContentSwitcher
from textual.worker import Worker, WorkerState

from storage.text import printable
from tui.components.footer import KeysFooter
from tui.components.lab import LabPane
from tui.components.pane import AfterFirstScreen, PaneMounted, WorkerFailed
from tui.components.tabs import PaneTabs
from tui.components.title import TitleBar

if TYPE_CHECKING:  # the hidden panes' modules load when the panes are made, after the first screen
    from tui.components.compare import ComparePane
    from tui.components.machine import MachinePane
    from tui.components.runs import RunsPane

# Presets for the command palette: (name, workload, executors, fields, what it shows).
PRESETS = [
    (
        "See the GIL",
        "cpu",
        ("sequential", "threads", "processes"),
        {},
        "pure Python work: threads do not help, processes do",
    ),
    (
        "Waiting scales",
        "sleep",
        ("sequential", "threads", "asyncio"),
        {"workers": "1,4,16,64", "tasks": "64", "size": "5"},
        "waiting releases the GIL: threads and asyncio overlap it, far beyond the cores",
    ),
    (
        "Dispatch overhead",
        "tiny",
        ("sequential", "threads", "processes", "pool"),
        {},
        "almost no work: what each executor costs per task",
    ),
    (
        "Subinterpreters",
        "cpu",
        ("sequential", "threads", "processes", "pool", "interpreters"),
        {"workers": "1,2"},
        "a GIL per interpreter: pure Python in parallel in one process, its start-up and memory "
        "against processes' (python: 3.14+, or 3.13 with interpreters-pep-734)",
    ),
]

# The panes, by id, and their names on the tabs.
PANES = {"lab": "1 Lab", "runs": "2 Runs", "compare": "3 Compare", "machine": "4 Machine"}


def pane_name(node) -> str:
    """The name of the pane ``node`` is in ("Lab"), "everywhere" outside the panes."""
    for each in node.ancestors_with_self:
        if each.id in PANES:
            return PANES[each.id].partition(" ")[2]
    return "everywhere"


# The widget that takes the keys when a pane is shown (Runs decides for itself).
FIRST_FOCUS = {"lab": "#workloads", "compare": "#compare-table", "machine": "#machines"}

# What `q` asks while a sweep runs.
QUIT_QUESTION = "a sweep is running: cancel it and quit? (y/N)"

# Where reports exported from the palette go (relative to where conlab was started).
REPORTS_FOLDER = Path("reports")


def screenshots_folder() -> Path:
    """Where F8 saves screenshots by default: `screenshots` in the user data directory."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("conlab", appauthor=False)) / "screenshots"


class LabCommands(Provider):
    """Command palette entries that make sense in the lab; the presets show before typing."""

    def commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        return [
            (f"Preset: {name}", partial(app.apply_preset, workload, executors, fields), help_text)
            for name, workload, executors, fields, help_text in PRESETS
        ] + [
            (
                "Export report (HTML)",
                partial(app.export_report, "html"),
                f"write {REPORTS_FOLDER}/summary.html",
            ),
            (
                "Export report (Markdown)",
                partial(app.export_report, "markdown"),
                f"write {REPORTS_FOLDER}/summary.md",
            ),
            ("Reload runs", app.reload_all, "read the database again"),
            ("Open a database...", app.ask_open_database, "show another result database"),
            (
                "Merge a database...",
                app.ask_merge_database,
                "add the runs of another lab database to this one",
            ),
        ]

    async def discover(self) -> Hits:
        for name, callback, help_text in self.commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


class ConlabApp(App):
    """Pick workloads and executors, run them, watch the workers, compare stored runs."""

    TITLE = "concurrency-lab"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # beside this module, for subclasses too
    COMMANDS = App.COMMANDS | {LabCommands}
    BINDINGS = [
        Binding("1", "show('lab')", "Lab", id="show.lab", tooltip="choose and run experiments"),
        Binding("2", "show('runs')", "Runs", id="show.runs", tooltip="browse stored runs"),
        Binding(
            "3",
            "show('compare')",
            "Compare",
            id="show.compare",
            tooltip="compare two selections of runs",
        ),
        Binding(
            "4",
            "show('machine')",
            "Machine",
            id="show.machine",
            tooltip="this machine and the machines in the database",
        ),
        Binding("r", "run", "Run", id="lab.run", tooltip="run the sweep the Lab describes (Lab)"),
        Binding(
            "escape",
            "leave_field",
            "Leave field",
            id="app.leave_field",
            tooltip="leave the text field: in a field, digits are typed; out of it, 1-4 "
            "choose the screens",
        ),
        Binding(
            "escape",
            "cancel",
            "Cancel",
            id="lab.cancel",
            tooltip="stop the sweep; the current run is stored as cancelled",
        ),
        Binding("slash", "filter", "Filter", id="runs.filter", tooltip="filter the stored runs"),
        Binding(
            "ctrl+p",
            "command_palette",
            "Commands",
            id="app.palette",
            show=False,
            tooltip="command palette: presets, export a report, open or merge a database",
        ),
        Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="keys and what they do"),
        Binding(
            "f8",
            "screenshot",
            "Screenshot",
            id="app.screenshot",
            tooltip="save an SVG screenshot (in the screenshots folder; says where)",
        ),
        Binding(
            "q",
            "quit",
            "Quit",
            id="app.quit",
            tooltip="leave conlab (while a sweep runs, asks first: y cancels it and quits)",
        ),
    ]

    db: reactive[Optional[str]] = reactive(None)
    """The database shown and recorded into (None: the default); every pane is bound to it."""
    shown: reactive[str] = reactive("lab", repaint=False)
    """The id of the pane on screen: the one the user chose last (1-4, a name clicked)."""
    db_ready: reactive[bool] = reactive(False)
    """Whether ``db`` has its tables: panes read it side by side only then."""

    def __init__(
        self, db: Optional[str] = None, screenshots: Optional[Path] = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.set_reactive(ConlabApp.db, db)
        # (the default, in the user data directory, is found when F8 is first pressed: looking
        # for it loads platformdirs, a cost the first screen need not pay)
        self.screenshots = Path(screenshots) if screenshots else None
        self.collect_after_first_screen = False
        # set once a sweep cancelled on the way out has its runs stored (LabPane.stored)
        self.stored_before_return: Optional[threading.Event] = None

    def run(self, *args, **kwargs):
        """Run the app; its first screen is made with the cyclic garbage collector paused.

        Textual makes over a hundred thousand objects for the first screen, and collecting as they
        come (a full collection among them) takes about a tenth of the time to it. Collection
        resumes once the screen is drawn (``on_ready``), or when the app ends before that."""
        self.collect_after_first_screen = gc.isenabled()
        gc.disable()
        try:
            return super().run(*args, **kwargs)
        finally:
            self.resume_collection()

    def resume_collection(self) -> None:
        if self.collect_after_first_screen:
            self.collect_after_first_screen = False
            gc.enable()

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield PaneTabs(PANES).data_bind(active=ConlabApp.shown)
        with ContentSwitcher(initial="lab", id="panes"):
            with Vertical(id="lab"):
                yield LabPane().data_bind(ConlabApp.db)
            # The hidden panes (and their modules) are made after the first screen is drawn.
            with Vertical(id="runs"):
                yield AfterFirstScreen(self.make_runs)
            with Vertical(id="compare"):
                yield AfterFirstScreen(self.make_compare)
            with Vertical(id="machine"):
                yield AfterFirstScreen(self.make_machine)
        yield KeysFooter()

    def make_runs(self) -> RunsPane:
        from tui.components.runs import RunsPane

        return RunsPane().data_bind(ConlabApp.db, ConlabApp.db_ready)

    def make_compare(self) -> ComparePane:
        from tui.components.compare import ComparePane

        return ComparePane().data_bind(ConlabApp.db)

    def make_machine(self) -> MachinePane:
        from tui.components.machine import MachinePane

        return MachinePane().data_bind(ConlabApp.db, ConlabApp.db_ready)

    def on_mount(self) -> None:
        self.sub_title = printable(self.db or "default database")

    def on_ready(self) -> None:
        self.resume_collection()
        # The database is opened (SQLAlchemy imported) once the first screen is up.
        self.reload_all()

    def watch_db(self) -> None:
        self.sub_title = printable(self.db or "default database")
        self.db_ready = False
        self.reload_all()

    @work(thread=True, exclusive=True, exit_on_error=False, group="reload")
    def reload_all(self) -> None:
        """Read the database again in every pane (after a sweep, a merge, another --db)."""
        from service.databases import open_database

        open_database(self.db)  # a new database gets its tables once, before the panes read it
        self.call_from_thread(self.reload_panes)

    def reload_panes(self) -> None:
        if not self.db_ready:
            # What is loaded by now (Textual, the panes, SQLAlchemy) lives as long as the app:
            # frozen, a full collection walks only what came after it, and the app does not
            # stop for a tenth of a second at a keystroke while it does.
            gc.freeze()
            self.db_ready = True  # the panes, bound to it, read the database (when mounted)
            return
        # (by type name: a pane's class is loaded only once the pane is made)
        for pane in self.query("RunsPane"):
            pane.reload()
        for pane in self.query("MachinePane"):
            pane.reload()
        for pane in self.query("ComparePane"):
            pane.refresh_comparison()

    # --- actions ---

    def check_action(self, action: str, parameters: tuple) -> Optional[bool]:
        # `r` runs what the Lab shows, from the Lab only: elsewhere it would start a sweep
        # the user is not looking at.
        if action == "run":
            return self.shown == "lab"
        # In a text field a digit is typed: the footer offers no screen for it, and escape
        # leaves the field (while a sweep runs, escape cancels it, as everywhere).
        if action == "show":
            return not self.in_text_field()
        if action == "leave_field":
            return self.in_text_field() and not self.query_one(LabPane).busy
        return True

    def in_text_field(self) -> bool:
        # No field exists before Input's module is loaded (the first screen has none): the
        # check, made at every footer refresh, imports nothing.
        module = sys.modules.get("textual.widgets._input")
        return module is not None and isinstance(self.focused, module.Input)

    def action_show(self, pane: str) -> None:
        self.shown = pane  # the tabs are bound to it
        self.query_one("#panes", ContentSwitcher).current = pane
        # The pane's main widget takes the keys, not whatever had the focus before; Compare's
        # A field, while nothing is compared yet (a selection typed there is no key).
        self.focus_pane(pane)
        if pane == "compare":
            for a in self.query("#selection-a"):
                if not a.value:
                    a.focus()
        self.refresh_bindings()

    @on(PaneTabs.Chosen)
    def pane_chosen(self, message: PaneTabs.Chosen) -> None:
        self.action_show(message.pane)

    @on(PaneMounted)
    def pane_mounted(self, message: PaneMounted) -> None:
        # A pane shown (2, 3, 4) before it was made takes the keys once it is.
        active = self.shown
        if message.pane.parent is not None and message.pane.parent.id == active:
            self.focus_pane(active)

    def focus_pane(self, pane_id: str) -> None:
        """Give the keys to the shown pane's main widget, if the pane is made yet; nothing
        when ``pane_id`` is no longer shown (a later key chose another pane)."""
        if pane_id != self.shown:
            return
        if pane_id == "runs":
            made = list(self.query("RunsPane"))
            for runs in made:
                runs.shown()
        else:
            made = list(self.query(FIRST_FOCUS[pane_id]))
            for widget in made:
                widget.focus()
        if not made:  # the pane is not made yet: no key goes to the pane just left
            self.screen.set_focus(None)

    def action_run(self) -> None:
        self.query_one(LabPane).start()

    def action_quit(self) -> None:
        """Quit; while a sweep runs, first ask whether to cancel it (a sweep is never left to
        run on behind a closed screen)."""
        from tui.components.prompt import YesNo

        if not self.query_one(LabPane).busy:
            self.exit()
        elif not isinstance(self.screen, YesNo):

            def answered(yes: Optional[bool]) -> None:
                if yes:
                    self.cancel_and_quit()

            question = YesNo(QUIT_QUESTION, yes="Cancel it and quit", no="Keep running")
            self.push_screen(question, answered)

    def cancel_and_quit(self) -> None:
        """Cancel the sweep as escape does (the runner's group is killed, not waited for) and
        exit: the terminal is given back while its runs are stored, and the app returns once
        they are (``on_unmount``)."""
        lab = self.query_one(LabPane)
        lab.cancel(closing=True)
        self.stored_before_return = lab.stored
        self.exit()

    async def on_unmount(self) -> None:
        if self.stored_before_return is not None:
            await asyncio.to_thread(self.stored_before_return.wait)

    def action_cancel(self) -> None:
        if not self.query_one(LabPane).cancel():
            self.focus_pane(self.shown)  # its main widget: its keys (the Lab's `a`) work at once

    def action_leave_field(self) -> None:
        self.focus_pane(self.shown)

    def action_filter(self) -> None:
        runs = self.query_one("RunsPane")
        runs.filter_requested = True
        if self.shown == "runs":
            runs.shown()
        else:
            self.action_show("runs")  # the pane shows the filter when it comes into view

    def action_help(self) -> None:
        from tui.components.help import INTRO, OUTRO, HelpScreen, binding_groups, bindings_table

        table = bindings_table(binding_groups(self, pane_name), self.get_key_display_for)
        self.push_screen(HelpScreen(f"{INTRO}\n{table}\n\n{OUTRO}\n"))

    def get_key_display_for(self, key: str) -> str:
        return self.get_key_display(Binding(key, ""))

    def action_screenshot(self) -> None:
        if self.screenshots is None:
            self.screenshots = screenshots_folder()
        self.screenshots.mkdir(parents=True, exist_ok=True)
        path = self.save_screenshot(path=str(self.screenshots))
        self.notify(printable(f"saved {path}"), title="screenshot", markup=False)

    def apply_preset(self, workload: str, executors: tuple[str, ...], fields: dict) -> None:
        self.action_show("lab")
        self.query_one(LabPane).choose(workload, executors, **fields)

    @work(thread=True, exit_on_error=False, group="export")
    def export_report(self, format: str = "html") -> None:
        from service.reports import export_report
        from storage.errors import OutputError

        try:
            out = export_report(self.db, format, REPORTS_FOLDER)
        except OutputError as exc:
            self.notify(printable(exc), severity="error", title="report", markup=False)
            return
        if out is None:
            self.notify("no finished runs to report yet", severity="warning")
        else:
            self.notify(printable(f"wrote {out.absolute()}"), title="report", markup=False)

    def ask_path(self, question: str, then) -> None:
        """Ask for a path; ``then(path)`` once one is written (nothing when none is)."""
        from tui.components.prompt import Prompt

        self.push_screen(Prompt(question), lambda path: then(path) if path else None)

    def ask_open_database(self) -> None:
        self.ask_path("Open which result database (a path)?", self.open_database)

    def ask_merge_database(self) -> None:
        self.ask_path("Merge which lab database into this one (a path)?", self.merge_database)

    def refused(self, title: str, exc: Exception) -> None:
        """A database the user named cannot be used: why and the fix, in a notification."""
        self.notify(printable(exc), severity="error", title=title, markup=False)

    @work(thread=True, exit_on_error=False, group="open-database")
    def open_database(self, path: str) -> None:
        from service.databases import engine_for
        from storage.errors import DatabaseError

        try:
            with engine_for(path, create=False):
                pass
        except DatabaseError as exc:
            self.refused("cannot open", exc)
            return
        self.call_from_thread(setattr, self, "db", path)

    @work(thread=True, exit_on_error=False, group="merge-database")
    def merge_database(self, path: str) -> None:
        from service.databases import merge
        from storage.errors import DatabaseError

        try:
            (result,) = merge(self.db, [Path(path)])
        except DatabaseError as exc:
            self.refused("nothing merged", exc)
            return
        self.notify(
            f"{result.runs_added} runs added, {result.runs_skipped} skipped",
            title=printable(f"merged {Path(path).name}"),
        )
        self.call_from_thread(self.reload_all)

    # --- reactions ---

    @on(LabPane.SweepDone)
    def sweep_done(self) -> None:
        self.reload_all()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.post_message(WorkerFailed(event.worker.name, str(event.worker.error)))

    @on(WorkerFailed)
    def worker_failed(self, message: WorkerFailed) -> None:
        # A worker's unexpected error (the app's or a pane's) becomes a dialog, never a crash.
        from tui.components.help import ErrorScreen

        self.push_screen(ErrorScreen(f"{message.name} failed", message.error))


def run_app(db: Optional[str] = None, screenshots: Optional[Path] = None) -> None:
    ConlabApp(db=db, screenshots=screenshots).run()
    # The shell is back when the process ends: Python's last full collection, over every object
    # the app loaded (Textual, SQLAlchemy, pandas), would keep it waiting some 0.3 s more. What
    # the app made is freed with the process; frozen, it is not walked first.
    gc.freeze()
