"""The Lab pane: choose workloads, executors and parameters, run the sweep, watch it live."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial, wraps
from typing import TYPE_CHECKING, Any, Optional

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import (
    OptionList,
)
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState

from service.catalogue import workloads as builtin_workloads
from storage.text import as_text, printable
from tui.components.pane import AfterFirstScreen, ReportsWorkerErrors

if TYPE_CHECKING:  # the sweep's modules load with the form, after the first screen
    from experiments.spec import ExperimentSpec


def made_later(part: str) -> Callable[[], Any]:
    """How to make a part of the Lab (a class of ``lab_form``) once the first screen is drawn:
    its module, and the widgets that loads, are imported then."""

    def make():
        from tui.components import lab_form

        return getattr(lab_form, part)()

    return make


def _then_stored(body: Callable[..., None]) -> Callable[..., None]:
    """A sweep's (or advice's) thread: the Lab's ``stored`` is set once it ends, however."""

    @wraps(body)
    def run(self: LabPane, *args: Any) -> None:
        try:
            body(self, *args)
        finally:
            self.stored.set()

    return run


# The timeline's caption while it shows what each thread of a run did.
LOOKED = "drawn: what each thread did in the run's looked-at repeat"


class LabPane(ReportsWorkerErrors, VerticalScroll):
    """Pick and run a sweep; progress, a live timeline per worker, then the verdict. It scrolls
    as a whole: on a small terminal every field and the results stay reachable."""

    db: reactive[Optional[str]] = reactive(None)
    """The database sweeps are stored in (bound to the app's)."""
    busy: reactive[bool] = reactive(False)
    """Whether a sweep is being checked or run."""

    BINDINGS = [
        Binding(
            "a",
            "advise",
            "Advise",
            id="lab.advise",
            tooltip="probe the chosen workload, measure what can win, recommend one",
        ),
    ]

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

    @dataclass
    class FunctionChecked(Message):
        """The user's function was checked as a sweep checks it: what to say, and whether it
        can run."""

        said: str
        ok: bool

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sweep = None  # the Sweep in progress, once its runs have been checked
        self.cancel_requested = threading.Event()
        self.started_at: Optional[float] = None
        self.specs: list[ExperimentSpec] = []
        self.finished_processes = 0  # runner processes of the sweep that have ended
        self.looks: dict[str, str] = {}  # run id -> what its threads did (run.thread_states)
        self.app_animation_level: Optional[str] = None  # put back when the sweep ends
        self.form_made = False  # whether the parameter fields and the results are there yet
        self.parts_to_come = {"Executors", "Parameters", "Results"}  # after the first screen
        self.sweeps_ended = 0  # sweeps (and advice) that ended, however, since the app began
        self.closing = False  # the app quits once the sweep is cancelled: no report to make
        # clear while a sweep's (or advice's) thread is under way, set once it has stored its
        # runs and ended, however it ended
        self.stored = threading.Event()
        self.stored.set()
        self.when_form_made: list[Callable[[], None]] = []  # what waits for them
        self.pythons: list[tuple] = []  # the python menu's interpreters: (label, path)

    def compose(self) -> ComposeResult:
        with Horizontal(id="lab-top"):
            with Vertical(id="lab-choices"):
                workloads = OptionList(
                    *[
                        Option(f"{w.name:<9} {w.description}", id=w.name)
                        for w in builtin_workloads().values()
                    ],
                    id="workloads",
                )
                workloads.border_title = "workload"
                yield workloads
                # The first screen is the list of workloads: the rest of the form (the executors
                # are each asked whether they can run here), the parameter fields (some sixty
                # widgets), the progress bars, the timeline and the summary are made just after.
                yield AfterFirstScreen(made_later("Executors"))
            yield AfterFirstScreen(made_later("Parameters"), id="lab-params-to-come")
        yield AfterFirstScreen(made_later("Results"), id="lab-results-to-come")

    def on_mount(self) -> None:
        # The form is checked once its fields are made (the check loads the sweep planner).
        with self.prevent(OptionList.OptionHighlighted):
            self.query_one("#workloads", OptionList).highlighted = 0
        # Probing every interpreter starts a process each: after the first screen, not before.
        self.set_timer(1.0, self.find_pythons)
        self.set_interval(0.5, self.tick)

    @work(thread=True, exclusive=True, exit_on_error=False, group="pythons")
    def find_pythons(self) -> None:
        from service.catalogue import interpreters

        found = interpreters()
        options = [python_option(p) for p in found if not p.get("current")]
        self.app.call_from_thread(self.once_form_made, self.set_pythons, options)

    def set_pythons(self, options: list) -> None:
        """The interpreters found (and any given by path), then the entry that asks for one."""
        from tui.components.lab_form import ANOTHER_PYTHON, ANOTHER_PYTHON_LABEL

        menu = self.query_one("#python")
        chosen = menu.value
        paths = {path for _, path in options}
        self.pythons = options + [o for o in self.pythons if o[1] not in paths]
        menu.set_options([*self.pythons, (ANOTHER_PYTHON_LABEL, ANOTHER_PYTHON)])
        if any(value == chosen for _, value in self.pythons):
            menu.value = chosen

    def ask_for_python(self) -> None:
        from tui.components.prompt import Prompt

        def answered(path: Optional[str]) -> None:
            if path:
                self.add_python(path)
            else:
                self.query_one("#python").clear()  # this interpreter, as before

        question = "Which interpreter (the path to a CPython 3.9 or newer)?"
        self.app.push_screen(Prompt(question, placeholder="/path/to/python3.13t"), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="python-path")
    def add_python(self, path: str) -> None:
        """The interpreter at ``path`` asked what it is: added to the menu and chosen, or
        refused in a notice naming the path."""
        from service.catalogue import interpreter

        found = interpreter(path)
        self.app.call_from_thread(self.python_added, path, found)

    def python_added(self, path: str, found: Optional[dict]) -> None:
        menu = self.query_one("#python")
        if found is None:
            menu.clear()
            said = f"{path} is not a Python this lab can run (CPython 3.9 or newer); give its path"
            self.app.notify(printable(said), severity="error", title="python", markup=False)
            return
        option = python_option(found)
        self.set_pythons([o for o in self.pythons if o[1] != path] + [option])
        menu.value = path

    def on_part_made(self, message) -> None:  # lab_form.PartMade, from each part
        self.parts_to_come.discard(message.part)
        if not self.parts_to_come:
            self.form_is_made()

    def form_is_made(self) -> None:
        self.form_made = True
        waiting, self.when_form_made = self.when_form_made, []
        for action in waiting:
            action()
        self.validate_form()

    def once_form_made(self, action: Callable, *args) -> None:
        """``action(*args)`` now if the parameter fields are made, else as soon as they are (a
        key, a preset or a test may come before them)."""
        if self.form_made:
            action(*args)
        elif not args:
            if action not in self.when_form_made:  # `r` twice is one sweep
                self.when_form_made.append(action)
        else:
            self.when_form_made.append(partial(action, *args))

    def choose(self, workload: str, executors, **fields: str) -> None:
        """Fill the form: a workload, the executors to run, and parameter fields by id (once
        they are made); every field not given is put back to its default (empty, the tag too)."""
        self.once_form_made(self.fill_form, workload, executors, fields)

    def fill_form(self, workload: str, executors, fields: dict[str, str]) -> None:
        from experiments import options as sweep_options
        from tui.components.lab_form import MENUS

        workloads = self.query_one("#workloads", OptionList)
        own = workload not in builtin_workloads()
        self.query_one("#function").value = workload if own else ""
        if not own:
            workloads.highlighted = workloads.get_option_index(workload)
        chosen = self.query_one("#executors")
        chosen.deselect_all()
        for name in executors:
            chosen.select(name)
        for option in sweep_options.OPTIONS:
            field = self.query_one(f"#{option.key}")
            if option.key in fields:
                field.value = fields[option.key]
            elif option.choices or option.name in MENUS:
                field.clear()  # a menu: its blank is the default
            else:
                field.value = ""

    # --- the spec the form describes ---

    def selected_workload(self) -> str:
        """The user's own function when one is written, else the highlighted workload."""
        own = self.query_one("#function").value.strip()
        if own:
            return own
        workloads = self.query_one("#workloads", OptionList)
        index = workloads.highlighted or 0
        return workloads.get_option_at_index(index).id

    def build_request(self):
        """The sweep the form describes (service.sweeps.SweepRequest), as `conlab run` would
        ask for it; SpecError with the CLI's message when it cannot run."""
        from experiments import options as sweep_options
        from experiments.options import parse_workers
        from experiments.spec import SpecError
        from service.sweeps import SweepRequest
        from tui.components.lab_form import ANOTHER_PYTHON, MENUS

        executors = list(self.query_one("#executors").selected)
        if not executors:
            raise SpecError("no executor chosen; select at least one (space toggles)")
        params: dict[str, Any] = {}
        for option in sweep_options.OPTIONS:
            field = self.query_one(f"#{option.key}")
            if option.choices or option.name in MENUS:  # a menu (Select)
                chosen = field.value
                usable = isinstance(chosen, str) and chosen != ANOTHER_PYTHON
                params[option.name] = chosen if usable else None
            elif option.name == "workers":
                params[option.name] = field.value
            else:
                params[option.name] = option.from_text(field.value)
        workers = parse_workers(params.pop("workers"))
        pythons = [params.pop("python")]
        sizes = [params.pop("size")]
        params = {name: value for name, value in params.items() if value is not None}
        return SweepRequest([self.selected_workload()], executors, workers, pythons, sizes, params)

    def build_specs(self) -> list[ExperimentSpec]:
        """The specs of the sweep the form describes, sizes not yet calibrated; SpecError with
        the CLI's message when it cannot run."""
        from service.sweeps import specs_of

        return specs_of(self.build_request())

    # (by handler name: the form's widget classes load after the first screen)
    def on_input_changed(self) -> None:
        self.validate_form()

    def on_input_submitted(self, message) -> None:
        if message.input.id == "function":
            self.check_function()

    def check_function(self) -> None:
        """Enter in the function field: the function is looked for as a sweep would (in the
        interpreter chosen), and the answer shown (the summary, and a notice)."""
        from experiments.spec import SpecError

        if not self.query_one("#function").value.strip():
            self.say_checked(
                self.FunctionChecked("no function written: r runs the highlighted workload", True)
            )
            return
        try:
            specs = self.build_specs()
        except SpecError as exc:
            self.say_checked(self.FunctionChecked(str(exc), False))
            return
        self.app.notify(printable(f"checking {specs[0].workload}..."), markup=False)
        self.run_check(specs[:1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="check")
    def run_check(self, specs: list[ExperimentSpec]) -> None:
        from service.sweeps import check

        workload = specs[0].workload
        try:
            check(specs)
        except Exception as exc:  # bad input: said, not raised
            self.post_message(self.FunctionChecked(str(exc), False))
            return
        said = f"{workload}: found; r runs it, a advises on it"
        self.post_message(self.FunctionChecked(said, True))

    def on_lab_pane_function_checked(self, message: FunctionChecked) -> None:
        self.say_checked(message)

    def say_checked(self, message: FunctionChecked) -> None:
        if not self.busy:  # a sweep's progress keeps the summary
            self.query_one("#summary").update(as_text(message.said))
        severity = "information" if message.ok else "error"
        self.app.notify(printable(message.said), severity=severity, markup=False)

    def on_selection_list_selected_changed(self) -> None:
        self.validate_form()

    def on_select_changed(self, message) -> None:
        from tui.components.lab_form import ANOTHER_PYTHON

        if message.select.id == "python" and message.value == ANOTHER_PYTHON:
            self.ask_for_python()
        self.validate_form()

    @on(OptionList.OptionHighlighted)
    def validate_form(self) -> None:
        if not self.form_made:
            return  # checked once it is
        from experiments.spec import SpecError

        message = ""
        try:
            self.build_specs()
        except SpecError as exc:
            message = str(exc)
        self.query_one("#spec-error").update(as_text(message))

    # --- running ---

    def can_start(self, action) -> bool:
        """Whether ``action`` (start, advise) can run now: not before the form is made (it
        runs then), not while a sweep runs (the user is told)."""
        if not self.form_made:
            self.once_form_made(action)
            return False
        if self.busy:
            self.app.notify("a sweep is already running; escape cancels it", severity="warning")
            return False
        return True

    def start(self) -> None:
        if not self.can_start(self.start):
            return
        from experiments.spec import SpecError
        from service.sweeps import specs_of

        try:
            request = self.build_request()
            specs = specs_of(request)
        except SpecError as exc:
            self.query_one("#spec-error").update(as_text(exc))
            self.app.notify(printable(exc), severity="error", title="cannot run", markup=False)
            return
        self._begin(specs)
        total = sum(spec.processes for spec in specs)
        self.query_one("#overall").update(total=total, progress=0)
        self.query_one("#current").update(total=None, progress=0)
        self.query_one("#summary").update(f"checking {len(specs)} run(s)...")
        self.query_one("#timeline").clear("starting")
        self.query_one("Results").show_progress()
        self.run_sweep(request)

    def _begin(self, specs: list[ExperimentSpec]) -> None:
        """A sweep or an advice starts: nothing finished, nothing asked to stop or stored yet."""
        self.specs, self.finished_processes, self.looks = specs, 0, {}
        self.started_at = time.monotonic()
        self.busy = True
        self.cancel_requested.clear()
        self.stored.clear()

    def cancel(self, closing: bool = False) -> bool:
        """Stop the sweep in progress (its current run is stored as cancelled); ``closing``:
        the app quits as soon as the runs are stored, so no report is made of them."""
        if not self.busy:
            return False
        self.closing = self.closing or closing
        self.cancel_requested.set()
        if self.sweep is not None:
            self.sweep.cancel()
        self.query_one("#summary").update("cancelling...")
        return True

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    @_then_stored
    def run_sweep(self, request) -> None:
        from service.sweeps import prepare, sweep_report

        try:
            # No mid-repeat progress: redrawing while a repeat is timed takes CPU from the run.
            # The timeline and the bars move once per repeat, between timings.
            prepared = prepare(
                self.db,
                request,
                progress=False,
                on_event=lambda spec, event: self.post_message(self.SweepEvent(spec, event)),
            )
        except Exception as exc:  # bad input (SpecError, DatabaseError): shown, not raised
            self.post_message(self.SweepFailed(str(exc)))
            return
        sweep, notes = prepared.sweep, prepared.notes
        self.sweep, self.specs = sweep, sweep.specs
        if self.cancel_requested.is_set():  # escape while the specs were being checked
            sweep.cancel()
        try:
            with collecting_only_new_objects():
                results = sweep.run()
            if self.closing:
                return  # the runs are stored; the app is gone before a report could show
            found = sweep_report(sweep.engine, results)
        finally:
            sweep.engine.dispose()
        summary = "\n".join(notes + ([sweep_summary(found, results)] if found else []))
        self.post_message(self.SweepDone(results, sweep.cancelled, summary))

    def action_advise(self) -> None:
        """`conlab advise` on the chosen workload; the answer shows in the summary area."""
        if not self.can_start(self.action_advise):
            return
        workload = self.selected_workload()
        try:  # the form's size and tasks, when given, as `conlab advise --size --tasks`
            values = [self.query_one(f"#{n}").value.strip() for n in ("size", "tasks")]
            size, tasks = (int(v) if v else None for v in values)
        except ValueError:
            self.app.notify("size and tasks must be whole numbers (or empty)", severity="error")
            return
        self._begin([])
        self.query_one("#overall").update(total=None, progress=0)
        self.query_one("Results").show_progress()
        self.query_one("#summary").update(
            as_text(
                f"advise: probing {workload}, then measuring what can win (up to "
                f"{self.ADVISE_BUDGET_S:.0f} s)"
            )
        )
        self.run_advice(workload, size, tasks)

    @work(thread=True, exclusive=True, exit_on_error=False, group="sweep")
    @_then_stored
    def run_advice(self, workload: str, size: Optional[int], tasks: Optional[int]) -> None:
        from service.advise import advice_lines, advise

        def adopt(sweep) -> None:  # escape cancels it, events count its processes
            self.sweep, self.specs = sweep, sweep.specs
            if self.cancel_requested.is_set():
                sweep.cancel()

        try:
            with collecting_only_new_objects():
                found = advise(
                    workload,
                    self.db,
                    size,
                    tasks,
                    self.ADVISE_BUDGET_S,
                    on_sweep=adopt,
                    on_event=lambda spec, event: self.post_message(self.SweepEvent(spec, event)),
                )
        except Exception as exc:  # bad input, a failing function: shown, not raised
            self.post_message(self.SweepFailed(str(exc)))
            return
        sweep = self.sweep
        results = sweep.results if sweep is not None else []
        cancelled = sweep is not None and sweep.cancelled
        self.post_message(self.SweepDone(results, cancelled, "\n".join(advice_lines(found))))

    @on(Worker.StateChanged)
    def worker_ended(self, event: Worker.StateChanged) -> None:
        # A sweep that met a bug is over: the app shows the error, the Lab is free again.
        if event.worker.group == "sweep" and event.state == WorkerState.ERROR:
            self.sweep_ended()

    def on_lab_pane_sweep_event(self, message: SweepEvent) -> None:
        from service.sweeps import process_label, process_tasks

        event, spec = message.event, message.spec
        kind = event.get("event")
        timeline = self.query_one("#timeline")
        current = self.query_one("#current")
        if kind == "env":
            label = process_label(spec, event)
            timeline.reset(label)
            current.update(total=process_tasks(spec), progress=0)
            total = sum(s.processes for s in self.specs)
            self.query_one("#summary").update(
                as_text(
                    f"process {self.finished_processes + 1} of {total}: {label} (escape cancels)"
                )
            )
        elif kind == "tasks":
            repeat = event["repeat"]  # warm-ups first, then the counted repeats
            caption = timeline.caption.split(" (")[0]
            caption = f"{caption} ({repeat_caption(spec, repeat)})"
            if spec.run_id in self.looks:  # what its threads did beats when its tasks ran
                timeline.set_states(self.looks[spec.run_id], f"{caption}; {LOOKED}")
            else:
                timeline.set_samples(event["samples"], caption)
            current.update(progress=(repeat + 1) * spec.tasks)
        elif kind == "looked" and isinstance(event.get("thread_states"), str):
            self.looks[spec.run_id] = event["thread_states"]
            caption = timeline.caption.split(" (")[0]
            timeline.set_states(event["thread_states"], f"{caption} ({LOOKED})")
        elif kind in ("done", "error"):
            self.finished_processes += 1
            self.query_one("#overall").update(progress=self.finished_processes)

    def sweep_ended(self) -> None:
        """The Lab is free again (whether the sweep ran, failed, or met a bug)."""
        self.sweep = None
        self.busy = False
        self.started_at = None
        self.sweeps_ended += 1

    def on_lab_pane_sweep_done(self, message: SweepDone) -> None:
        self.sweep_ended()
        overall = self.query_one("#overall")
        if overall.total is None:  # advice: how many processes its sweeps take is known now
            done = self.finished_processes
            overall.update(total=max(done, 1), progress=done)
        failed = [r for r in message.results if r["status"] != "ok"]
        head = (
            "cancelled: the run in progress was stored as cancelled\n"
            if message.cancelled
            else f"{len(message.results)} run(s) stored, {len(failed)} not ok\n"
        )
        from experiments.spec import run_label

        errors = "".join(
            f"{run_label(r['executor'], r['workers'], False)}: {r['error']}\n" for r in failed
        )
        self.query_one("#summary").update(as_text(head + errors + message.summary, lines=True))
        self.call_after_refresh(self.query_one("Results").show_summary)  # once it is laid out
        # the message bubbles on to the app, which refreshes the other panes

    def on_lab_pane_sweep_failed(self, message: SweepFailed) -> None:
        self.sweep_ended()
        self.query_one("#summary").update(as_text(f"not started: {message.error}"))
        self.app.notify(
            printable(message.error), severity="error", title="cannot run", markup=False
        )

    def watch_busy(self, busy: bool) -> None:
        # While a sweep runs the app's CPU is taken from the runs, and keys wait behind every
        # redraw: nothing animates (the tabs' underline alone redraws the screen some 18 times
        # in the 0.3 s after a pane is shown).
        if busy:
            self.app_animation_level, self.app.animation_level = self.app.animation_level, "none"
        elif self.app_animation_level is not None:
            self.app.animation_level, self.app_animation_level = self.app_animation_level, None

    def tick(self) -> None:
        if self.started_at is not None and self.form_made:
            elapsed = time.monotonic() - self.started_at
            # a fixed-width field: its text changes, its size does not (no layout)
            self.query_one("#elapsed").update(f"  {elapsed:5.1f} s", layout=False)


def python_option(found: dict) -> tuple:
    """An interpreter in the python menu: its version, marked when free-threaded, and path."""
    mark = " (free-threaded)" if found["free_threaded"] else ""
    return as_text(f"{found['version']}{mark}  {found['path']}"), found["path"]


@contextmanager
def collecting_only_new_objects() -> Iterator[None]:
    """While a sweep runs, the garbage collector walks only the objects made since it began.
    A full collection over all the app has loaded (Textual, SQLAlchemy, pandas: some 150,000
    objects) holds the GIL for 0.1-0.2 s, every few seconds of a live view, and a key waits
    behind it. Frozen (``gc.freeze``) they are left out; afterwards they are collected again."""
    gc.collect()  # what is garbage now is freed, not kept frozen
    gc.freeze()
    # Python collects everything once the long-lived objects have grown by a quarter: with
    # them frozen, after every tenth collection of the middle generation (every second or
    # so of a live view). A hundred of those make it every few seconds, each over what the
    # sweep has added.
    thresholds = gc.get_threshold()
    gc.set_threshold(*thresholds[:2], max(thresholds[2], 100))
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def repeat_caption(spec: ExperimentSpec, repeat: int) -> str:
    """Which repeat a runner process is at, counting warm-ups and counted repeats apart."""
    if repeat < spec.warmups:
        return f"warm-up {repeat + 1} of {spec.warmups}"
    return f"repeat {repeat - spec.warmups + 1} of {spec.repeats}"


def sweep_summary(found, results: list[dict]) -> str:
    """The sweep's times with their intervals, speedups and verdicts in words, and what each
    run's figures need said (short tasks, one process), from its report."""
    ok = [r for r in results if r["status"] == "ok"]
    lines = [
        f"{row.executor:>12} x{int(row.workers):<3} {row.median_s * 1000:9.1f} ms "
        f"({row.ci_low_s * 1000:.1f}–{row.ci_high_s * 1000:.1f})   "
        + (
            f"speedup {row.speedup:5.2f}x  efficiency {row.efficiency:4.0%}"
            if row.speedup == row.speedup
            else "no sequential run to compare with"
        )
        + (
            f"  peak memory {row.peak_rss_bytes / 2**20:.0f} MiB"
            if row.peak_rss_bytes == row.peak_rss_bytes
            else ""
        )
        for row in found.summary.itertuples()
    ]
    from experiments.spec import run_label

    notes = [
        f"{run_label(r['executor'], r['workers'], False)}: {note}"
        for r in ok
        for note in r["notes"]
    ]
    return "\n".join(lines + [""] + found.verdicts + notes)
