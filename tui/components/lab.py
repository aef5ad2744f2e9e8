"""The Lab pane: choose workloads, executors and parameters, run the sweep, watch it live."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import (
    Input,
    Label,
    OptionList,
    ProgressBar,
    Select,
    SelectionList,
    Static,
)
from textual.widgets.option_list import Option
from textual.widgets.selection_list import Selection

from experiments import options as sweep_options
from experiments.executors import describe as describe_executors
from experiments.options import SweepOption, parse_workers
from experiments.spec import ExperimentSpec, SpecError
from experiments.workloads import WORKLOADS
from storage.text import as_text, printable
from tui.components.timeline import Timeline

# The form's fields, one per row of the option table: a menu for an option of a few values and
# for the interpreter (``find_pythons`` fills it), a text field for the others.
MENUS = ("python",)


def menu_prompt(option: SweepOption) -> str:
    return f"{option.label}: {option.placeholder}"


class LabPane(Vertical):
    """Pick and run a sweep; progress, a live timeline per worker, then the verdict."""

    DEFAULT_CSS = """
    LabPane { padding: 0 1; }
    #lab-top { height: auto; max-height: 65%; }
    #lab-choices { width: 1fr; height: auto; }
    #lab-params { width: 46; height: auto; }
    #workloads, #executors { height: auto; max-height: 10; border: round $primary-darken-2; }
    .param { height: 1; margin: 0 0 1 0; }
    .param Label { width: 12; }
    .param Input { width: 1fr; height: 1; border: none; padding: 0 1; }
    #start_method, #backend, #loop, #python { border: none; height: auto; }
    #spec-error { color: $error; height: auto; }
    #progress-row { height: auto; }
    #elapsed { width: 12; }
    .bar-label { margin: 0 1 0 2; }
    #summary { height: auto; border: round $success-darken-2; padding: 0 1; }
    """

    BINDINGS = [
        Binding("a", "advise", "Advise", id="lab.advise", show=False,
                tooltip="probe the chosen workload, measure what can win, recommend one"),
    ]  # fmt: skip

    ADVISE_BUDGET_S = 60.0  # `conlab advise`'s default --time-budget

    @dataclass
    class SweepEvent(Message):
        """A runner event of the sweep in progress (sent from the worker thread)."""

        spec: ExperimentSpec
        event: dict

    @dataclass
    class SweepDone(Message):
        """The sweep ended: every run object, whether it was cancelled, and the summary text."""

        results: list[dict]
        cancelled: bool
        summary: str

    @dataclass
    class SweepFailed(Message):
        """The sweep could not start or stopped with an error (bad input or a bug)."""

        error: str

    def __init__(self, db: Optional[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.db = db
        self.sweep = None  # the Sweep in progress, once its runs have been checked
        self.busy = False
        self.cancel_requested = threading.Event()
        self.started_at: Optional[float] = None
        self.specs: list[ExperimentSpec] = []
        self.finished_processes = 0  # runner processes of the sweep that have ended

    def compose(self) -> ComposeResult:
        with Horizontal(id="lab-top"):
            with Vertical(id="lab-choices"):
                workloads = OptionList(
                    *[
                        Option(f"{w.name:<9} {w.description}", id=w.name)
                        for w in WORKLOADS.values()
                    ],
                    id="workloads",
                )
                workloads.border_title = "workload"
                yield workloads
                executors = SelectionList[str](
                    *[
                        Selection(
                            as_text(
                                e["name"]
                                + ("" if e["available"] else f"  (unavailable: {e['reason']})")
                            ),
                            e["name"],
                            e["name"] in ("sequential", "threads", "processes"),
                            disabled=not e["available"],
                        )
                        for e in describe_executors()
                    ],
                    id="executors",
                )
                executors.border_title = "executors (space to toggle)"
                yield executors
            with VerticalScroll(id="lab-params"):
                menus = []
                for option in sweep_options.OPTIONS:
                    if option.choices or option.name in MENUS:
                        choices = [(c, c) for c in option.choices]
                        menus.append(Select(choices, prompt=menu_prompt(option), id=option.key))
                        continue
                    with Horizontal(classes="param"):
                        yield Label(option.label)
                        yield Input(placeholder=option.placeholder, id=option.key)
                yield from menus
                yield Static("", id="spec-error")
        with Horizontal(id="progress-row"):
            yield Label("sweep", classes="bar-label")
            yield ProgressBar(total=1, id="overall", show_eta=False)  # still until a run
            yield Label("run", classes="bar-label")
            yield ProgressBar(total=1, id="current", show_eta=False)
            yield Label("", id="elapsed")
        yield Timeline(id="timeline")
        yield Static("Choose a workload and executors, then press r.", id="summary")

    def on_mount(self) -> None:
        self.query_one("#workloads", OptionList).highlighted = 0
        # Probing every interpreter starts a process each: after the first screen, not before.
        self.set_timer(1.0, self.find_pythons)
        self.set_interval(0.5, self.tick)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pythons")
    def find_pythons(self) -> None:
        from experiments.pythons import discover

        found = discover()
        options = [
            (as_text(f"{p['version']}{' (free-threaded)' * p['free_threaded']}  {p['path']}"),
             p["path"]) for p in found if not p.get("current")
        ]  # fmt: skip
        self.app.call_from_thread(self.query_one("#python", Select).set_options, options)

    def choose(self, workload: str, executors, **fields: str) -> None:
        """Fill the form: a workload, the executors to run, and parameter fields by id."""
        workloads = self.query_one("#workloads", OptionList)
        workloads.highlighted = workloads.get_option_index(workload)
        chosen = self.query_one("#executors", SelectionList)
        chosen.deselect_all()
        for name in executors:
            chosen.select(name)
        for name, value in fields.items():
            self.query_one(f"#{name}", Input).value = value

    # --- the spec the form describes ---

    def selected_workload(self) -> str:
        workloads = self.query_one("#workloads", OptionList)
        index = workloads.highlighted or 0
        return workloads.get_option_at_index(index).id

    def build_specs(self) -> list[ExperimentSpec]:
        """The sweep the form describes; SpecError with the CLI's message when it cannot run."""
        from tui.sweep import plan

        executors = list(self.query_one("#executors", SelectionList).selected)
        if not executors:
            raise SpecError("no executor chosen; select at least one (space toggles)")
        params: dict[str, Any] = {}
        for option in sweep_options.OPTIONS:
            field = self.query_one(f"#{option.key}")
            if isinstance(field, Select):
                chosen = field.value
                params[option.name] = chosen if isinstance(chosen, str) else None
            elif option.name == "workers":
                params[option.name] = field.value
            else:
                params[option.name] = option.from_text(field.value)
        workers = parse_workers(params.pop("workers"))
        pythons = [params.pop("python")]
        params = {name: value for name, value in params.items() if value is not None}
        return plan([self.selected_workload()], executors, workers, pythons, **params)

    @on(Input.Changed)
    @on(SelectionList.SelectedChanged)
    @on(OptionList.OptionHighlighted)
    @on(Select.Changed)
    def validate_form(self) -> None:
        message = ""
        try:
            self.build_specs()
        except SpecError as exc:
            message = str(exc)
        self.query_one("#spec-error", Static).update(as_text(message))

    # --- running ---

    def start(self) -> None:
        if self.busy:
            self.app.notify("a sweep is already running; escape cancels it", severity="warning")
            return
        try:
            specs = self.build_specs()
        except SpecError as exc:
            self.query_one("#spec-error", Static).update(as_text(exc))
            self.app.notify(printable(exc), severity="error", title="cannot run", markup=False)
            return
        self.specs = specs
        self.finished_processes = 0
        self.started_at = time.monotonic()
        total = sum(spec.processes for spec in specs)
        self.query_one("#overall", ProgressBar).update(total=total, progress=0)
        self.query_one("#current", ProgressBar).update(total=None, progress=0)
        self.query_one("#summary", Static).update(f"checking {len(specs)} run(s)...")
        self.busy = True
        self.cancel_requested.clear()
        self.run_sweep(specs)

    def cancel(self) -> bool:
        """Stop the sweep in progress (its current run is stored as cancelled)."""
        if not self.busy:
            return False
        self.cancel_requested.set()
        if self.sweep is not None:
            self.sweep.cancel()
        self.query_one("#summary", Static).update("cancelling...")
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    def run_sweep(self, specs: list[ExperimentSpec]) -> None:
        from storage.database import open_engine
        from tui.sweep import Sweep, check

        try:
            resolved = check(specs)
            engine = open_engine(self.db, writer=True)
        except Exception as exc:  # bad input (SpecError, DatabaseError): shown, not raised
            self.post_message(self.SweepFailed(str(exc)))
            return
        sweep = Sweep(
            engine,
            specs,
            resolved,
            # No mid-repeat progress: redrawing while a repeat is timed took CPU from the run
            # (a 2-process cpu run measured ~25% slower under tmux). The timeline and the bars
            # move once per repeat, between timings, from the `tasks` events.
            progress=False,
            on_event=lambda spec, event: self.post_message(self.SweepEvent(spec, event)),
        )
        self.sweep = sweep
        if self.cancel_requested.is_set():  # escape while the specs were being checked
            sweep.cancel()
        results = sweep.run()
        summary = sweep_summary(engine, results)
        engine.dispose()
        self.post_message(self.SweepDone(results, sweep.cancelled, summary))

    def action_advise(self) -> None:
        """`conlab advise` on the chosen workload; the answer shows in the summary area."""
        if self.busy:
            self.app.notify("a sweep is already running; escape cancels it", severity="warning")
            return
        workload = self.selected_workload()
        try:  # the form's size and tasks, when given, as `conlab advise --size --tasks`
            values = [self.query_one(f"#{n}", Input).value.strip() for n in ("size", "tasks")]
            size, tasks = (int(v) if v else None for v in values)
        except ValueError:
            self.app.notify("size and tasks must be whole numbers (or empty)", severity="error")
            return
        self.busy, self.specs, self.finished_processes = True, [], 0
        self.started_at = time.monotonic()
        self.cancel_requested.clear()
        self.query_one("#overall", ProgressBar).update(total=None, progress=0)
        self.query_one("#summary", Static).update(
            as_text(
                f"advise: probing {workload}, then measuring what can win (up to "
                f"{self.ADVISE_BUDGET_S:.0f} s)"
            )  # fmt: skip
        )
        self.run_advice(workload, size, tasks)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    def run_advice(self, workload: str, size: Optional[int], tasks: Optional[int]) -> None:
        from storage.database import open_engine
        from tui.advise import advice_lines, advise

        def adopt(sweep) -> None:  # escape cancels it, events count its processes
            self.sweep, self.specs = sweep, sweep.specs
            if self.cancel_requested.is_set():
                sweep.cancel()

        try:
            engine = open_engine(self.db, writer=True)
            found = advise(workload, engine, size, tasks, self.ADVISE_BUDGET_S, on_sweep=adopt,
                           on_event=lambda spec, event: self.post_message(
                               self.SweepEvent(spec, event)))  # fmt: skip
        except Exception as exc:  # bad input, a failing function: shown, not raised
            self.post_message(self.SweepFailed(str(exc)))
            return
        engine.dispose()
        sweep = self.sweep
        results = sweep.results if sweep is not None else []
        cancelled = sweep is not None and sweep.cancelled
        self.post_message(self.SweepDone(results, cancelled, "\n".join(advice_lines(found))))

    def on_lab_pane_sweep_event(self, message: SweepEvent) -> None:
        event, spec = message.event, message.spec
        kind = event.get("event")
        timeline = self.query_one(Timeline)
        current = self.query_one("#current", ProgressBar)
        if kind == "env":
            from tui.cli import run_label

            label = run_label(spec, event)
            timeline.reset(label)
            current.update(total=(spec.warmups + spec.repeats) * spec.tasks, progress=0)
            total = sum(s.processes for s in self.specs)
            self.query_one("#summary", Static).update(
                as_text(
                    f"process {self.finished_processes + 1} of {total}: {label} (escape cancels)"
                )
            )
        elif kind == "tasks":
            repeat = event["repeat"]
            caption = timeline.caption.split(" (repeat")[0]
            warmup = " warm-up" if repeat < spec.warmups else ""
            timeline.set_samples(event["samples"], f"{caption} (repeat {repeat + 1}{warmup})")
            current.update(progress=(repeat + 1) * spec.tasks)
        elif kind in ("done", "error"):
            self.finished_processes += 1
            self.query_one("#overall", ProgressBar).update(progress=self.finished_processes)

    def on_lab_pane_sweep_done(self, message: SweepDone) -> None:
        self.sweep = None
        self.busy = False
        self.started_at = None
        failed = [r for r in message.results if r["status"] != "ok"]
        head = ("cancelled: the run in progress was stored as cancelled\n" if message.cancelled
                else f"{len(message.results)} run(s) stored, {len(failed)} not ok\n")  # fmt: skip
        errors = "".join(f"{r['executor']} x{r['workers']}: {r['error']}\n" for r in failed)
        self.query_one("#summary", Static).update(
            as_text(head + errors + message.summary, lines=True)
        )
        # the message bubbles on to the app, which refreshes the other panes

    def on_lab_pane_sweep_failed(self, message: SweepFailed) -> None:
        self.sweep = None
        self.busy = False
        self.started_at = None
        self.query_one("#summary", Static).update(as_text(f"not started: {message.error}"))
        self.app.notify(printable(message.error), severity="error", title="cannot run",
                        markup=False)  # fmt: skip

    def tick(self) -> None:
        if self.started_at is not None:
            elapsed = time.monotonic() - self.started_at
            self.query_one("#elapsed", Label).update(f"  {elapsed:5.1f} s")


def sweep_summary(engine, results: list[dict]) -> str:
    """The sweep's times with their intervals, speedups and verdicts in words, and what each
    run's figures need said (short tasks, one process), from the reports layer."""
    from storage.reports import sweep_verdicts

    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        return ""
    summary, words = sweep_verdicts(engine, ok[0]["sweep_id"])
    if summary.empty:
        return ""
    lines = [
        f"{row.executor:>12} x{int(row.workers):<3} {row.median_s * 1000:9.1f} ms "
        f"({row.ci_low_s * 1000:.1f}–{row.ci_high_s * 1000:.1f})   "
        + (f"speedup {row.speedup:5.2f}x  efficiency {row.efficiency:4.0%}"
           if row.speedup == row.speedup else "no sequential run to compare with")
        + (f"  peak memory {row.peak_rss_bytes / 2**20:.0f} MiB"
           if row.peak_rss_bytes == row.peak_rss_bytes else "")
        for row in summary.itertuples()
    ]  # fmt: skip
    notes = [f"{r['executor']} x{r['workers']}: {note}" for r in ok for note in r["notes"]]
    return "\n".join(lines + [""] + words + notes)
