"""A sweep: several specs, each measured in several runner processes, recorded as they go.
Shared by the CLI and the app, so both measure and store runs the same way.

The processes of a sweep take turns: round 1 runs the first process of every run, round 2 the
second, and so on, each round in an order shuffled with the sweep's recorded seed. A machine whose
speed drifts over minutes then slows every configuration alike instead of whichever ran in the
slow minutes. ``order="blocks"`` runs all processes of one run, then the next run.

With ``target_ci`` (``--repeats auto``), rounds go on after the first ``spec.processes`` ones for
the runs whose 95% interval is still wider than the target, until ``max_time_s`` is spent.
``stop`` (``conlab advise``'s rule) is asked before each round whether the sweep has its answer.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from experiments import launch
from experiments.executors import EXECUTORS
from experiments.options import not_taken_by_any, without_refused
from experiments.spec import (
    ExperimentSpec,
    SpecError,
    check_worker_counts,
    new_id,
    normal_workload,
)

if TYPE_CHECKING:  # storage (and SQLAlchemy) load when a sweep runs, not when one is planned
    import pandas as pd
    from sqlalchemy.engine import Engine

    from storage.recorder import RunRecorder

# Asked before each round of turns (round index, recorders by run id): True ends the sweep there.
StopRule = Callable[[int, "dict[str, RunRecorder]"], bool]
# Called with (spec, event) for every runner event, from the thread running the sweep. Each
# event carries ``process``: which of the run's runner processes sent it (0, 1, ...).
OnEvent = Callable[[ExperimentSpec, dict], None]

ORDERS = ("turns", "blocks")
# --repeats auto: processes a run may get at most, and the time a sweep may take by default.
MAX_AUTO_PROCESSES = 30
DEFAULT_MAX_TIME_S = 300.0


def plan(
    workloads: Sequence[str],
    executors: Sequence[str],
    workers: Sequence[int],
    pythons: Sequence[Optional[str]] = (None,),
    **params: Any,
) -> list[ExperimentSpec]:
    """The specs of one sweep: every python x workload x executor x worker count, one sweep id.
    Executors without workers (sequential) run once. Raises SpecError for the first bad spec."""
    check_worker_counts(workers)
    reason = not_taken_by_any([EXECUTORS.get(e) for e in executors], params)
    if reason:
        raise SpecError(reason)
    sweep_id = new_id()
    specs = []
    sizes = params.pop("size", None)  # one size for all, a list, or a list per workload
    for python in pythons:
        for workload in workloads:
            own_sizes = sizes.get(workload) if isinstance(sizes, Mapping) else sizes
            for size in own_sizes if isinstance(own_sizes, list) else [own_sizes]:
                for executor in executors:
                    specs += _configurations(
                        workload, executor, workers, python, sweep_id, dict(params, size=size)
                    )
    return specs


def _configurations(workload, executor, workers, python, sweep_id, params) -> list:
    """The specs of one workload and size on one executor: one per worker count (sequential
    once)."""
    known = EXECUTORS.get(executor)
    params = without_refused(known, params)
    counts = workers if known is None or "workers" in known.options else [1]
    return [
        ExperimentSpec(
            workload=workload,
            executor=executor,
            workers=count,
            python=python,
            sweep_id=sweep_id,
            **params,
        ).validate()
        for count in counts
    ]


def against(
    engine: Engine, selection: str, specs: Sequence[ExperimentSpec]
) -> tuple[list[ExperimentSpec], int, list[str]]:
    """Specs that measure again, in the sweep of ``specs``, the stored finished runs
    ``selection`` picks (``conlab run --against``), with the repeats, warm-ups and processes of
    ``specs``; how many stored configurations could not be (measured on another machine or
    interpreter); and what the stored configurations named that this command does not
    (``named_now``), which is never run. SelectionError when the selection picks no finished
    run."""
    from storage.baseline import configurations, here
    from storage.errors import SelectionError
    from storage.loading import load_repeats, select

    stored = load_repeats([("db", engine)])
    picked = select(stored, selection) if not stored.empty else stored
    if picked.empty:
        raise SelectionError(
            f"--against {selection!r} matches no finished run; see `conlab runs` for what is stored"
        )
    first = specs[0]
    allowed = named_now(specs)
    environments: dict[Optional[str], Optional[dict]] = {}
    found, elsewhere, unnamed = [], 0, []
    for config in configurations(engine, list(picked["run_id"].unique())):
        python = config.pop("python")
        strange = allowed({**config, "python": python})
        if strange:
            unnamed.extend(s for s in strange if s not in unnamed)
            continue
        if python not in environments:
            try:
                environments[python] = launch.environment(python)
            except SpecError:
                environments[python] = None  # that interpreter is not here any more
        if not here(config, environments[python]):
            elsewhere += 1
            continue
        params = {
            k: v for k, v in config.items() if k not in ("machine_fingerprint", "interpreter_key")
        }
        found.append(
            ExperimentSpec(
                python=python,
                sweep_id=first.sweep_id,
                repeats=first.repeats,
                warmups=first.warmups,
                processes=first.processes,
                timeout_s=first.timeout_s,
                **params,
            ).validate()
        )
    return found, elsewhere, unnamed


def named_now(specs: Sequence[ExperimentSpec]) -> Callable[[Mapping[str, Any]], list[str]]:
    """A test of a stored configuration against what the command of ``specs`` names: what in
    it (as ``-w``, ``--python``, ``--scheduler`` or ``--main`` would say) is neither the
    sweep's own nor the lab's. A stored run is data from a file that may come from anywhere:
    only a built-in workload, a workload of this sweep, conlab's own interpreter, one this
    command gives or one discovered on this machine, and this sweep's scheduler and entry
    script are ever run again."""
    import os

    from experiments.pythons import candidates
    from experiments.workloads import WORKLOADS

    workloads = set(WORKLOADS) | {s.workload for s in specs}
    pythons = {os.path.realpath(p) for p in [*candidates(), *(s.python for s in specs)] if p}
    schedulers = {s.scheduler for s in specs}
    mains = {s.main for s in specs}

    def strange(config: Mapping[str, Any]) -> list[str]:
        said = []
        if config.get("workload") not in workloads:
            said.append(f"-w {config.get('workload')}")
        python = config.get("python")
        if python is not None and (
            not isinstance(python, str) or os.path.realpath(python) not in pythons
        ):
            said.append(f"--python {python}")
        if config.get("scheduler") is not None and config.get("scheduler") not in schedulers:
            said.append(f"--scheduler {config.get('scheduler')}")
        if config.get("main") is not None and config.get("main") not in mains:
            said.append(f"--main {config.get('main')}")
        return said

    return strange


def is_auto_size(workload: str, size: Optional[int | str]) -> bool:
    """``--size auto``, which a user function gets when no --size is given: a function called
    at size 1 would be timed at a few microseconds without a word."""
    return size == "auto" or (size is None and ":" in workload)


def choose_sizes(
    workloads: Sequence[str], sizes: Sequence[Optional[int | str]], python: Optional[str] = None
) -> tuple[dict[str, list[Optional[int]]], dict[str, dict]]:
    """Each workload's sizes (several take turns in one sweep), calibrated where the size is
    auto (under ``python``: a sweep over several interpreters keeps one size, so that they
    compare). Returns (sizes by workload, calibrations by workload)."""
    chosen: dict[str, list[Optional[int]]] = {}
    calibrations = {}
    for workload in dict.fromkeys(workloads):
        chosen[workload] = []
        for size in sizes:
            if is_auto_size(workload, size):
                found = launch.calibrate(workload, python)
                keys = ("size", "call_s", "grows", "failed")
                calibrations[workload] = {k: found[k] for k in keys if k in found}
                chosen[workload].append(found["size"])
            else:
                chosen[workload].append(None if size == "auto" else size)  # type: ignore[arg-type]
    return chosen, calibrations


def calibration_note(workload: str, calibration: dict) -> str:
    """What ``--size auto`` chose, in words."""
    if "failed" in calibration:
        return (
            f"{workload}: --size auto could not time one call ({calibration['failed']}); "
            f"it runs at size {calibration['size']}"
        )
    call_ms = calibration["call_s"] * 1000
    if not calibration["grows"]:
        return (
            f"{workload}: its time does not grow with its argument (one call {call_ms:.3f} "
            f"ms at any size), so it runs at size {calibration['size']}"
        )
    return f"{workload}: size {calibration['size']} (--size auto: one call took {call_ms:.1f} ms)"


def check(specs: Sequence[ExperimentSpec]) -> dict[str, dict]:
    """Validate every spec in the interpreter that will run it; resolved parameters by run id."""
    resolved: dict[str, dict] = {}
    for python in dict.fromkeys(spec.python for spec in specs):
        resolved.update(launch.check_specs([s for s in specs if s.python == python], python))
    return resolved


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise SpecError(f"unknown order {order!r}; use one of {', '.join(ORDERS)}")
    return order


class Sweep:
    """Runs the specs' processes in turns, recording each run; ``cancel()`` (any thread) stops
    the current process and skips the rest."""

    def __init__(
        self,
        engine: Engine,
        specs: Sequence[ExperimentSpec],
        resolved: dict[str, dict],
        on_event: Optional[OnEvent] = None,
        progress: bool = False,
        order: str = "turns",
        seed: Optional[int] = None,
        target_ci: Optional[float] = None,
        max_time_s: Optional[float] = None,
        calibrations: Optional[dict[str, dict]] = None,
        stop: Optional[StopRule] = None,
        notes: Optional[dict[str, Any]] = None,
    ):
        self.engine = engine
        self.progress = progress  # ask runners for live progress events (costly while timing)
        self.specs = list(specs)
        self.resolved = resolved
        self.on_event = on_event
        self.order = check_order(order)
        self.seed = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self.target_ci = target_ci  # relative half-width of the 95% interval, e.g. 0.02
        self.max_time_s = max_time_s if max_time_s is not None else DEFAULT_MAX_TIME_S
        self.calibrations = calibrations or {}  # --size auto's findings, by workload
        self.stop = stop
        self.notes = notes or {}  # stored in every run's environment (advise: its probes)
        self.results: list[dict[str, Any]] = []
        self.launched = 0  # runner processes started so far
        self._cancelled = threading.Event()
        self._current: Optional[launch.Launch] = None
        self._rng = random.Random(self.seed)

    @property
    def planned(self) -> int:
        """Runner processes this sweep starts at least (``--repeats auto`` may add some)."""
        return sum(spec.processes for spec in self.specs)

    def cancel(self) -> None:
        self._cancelled.set()
        current = self._current
        if current is not None:
            current.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @contextmanager
    def cancelled_by_signals(self) -> Iterator[None]:
        """Meanwhile Ctrl-C and SIGTERM cancel the sweep: its current run is stopped and stored
        as cancelled. The cancelling runs on a thread of its own, never as an exception raised
        into whatever the sweep was doing (storing a repeat, starting a runner); a second
        Ctrl-C interrupts at once. Only the main thread receives signals: elsewhere, nothing."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.cancelled:
                raise KeyboardInterrupt
            threading.Thread(target=self.cancel, name="conlab-cancel", daemon=True).start()

        # A signal set to be ignored stays so (a shell starts background jobs ignoring SIGINT).
        caught = [
            s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) != signal.SIG_IGN
        ]
        previous = {signum: signal.signal(signum, handler) for signum in caught}
        try:
            yield
        finally:
            for signum, earlier in previous.items():
                signal.signal(signum, earlier)

    def run(self) -> list[dict[str, Any]]:
        """Run every spec's processes; return the runs' objects (the CLI's JSON shape)."""
        from storage.recorder import RunRecorder

        recorders = {}
        for spec in self.specs:
            recorder = RunRecorder(
                self.engine,
                spec,
                self.resolved[spec.run_id],
                sweep={"run_order": self.order, "order_seed": self.seed},
            )
            if spec.workload in self.calibrations:
                recorder.environment_notes["size_calibration"] = self.calibrations[spec.workload]
            if self.target_ci is not None:
                recorder.environment_notes["target_ci"] = self.target_ci
            recorder.environment_notes.update(self.notes)
            recorder.start()
            recorders[spec.run_id] = recorder
        ended: dict[str, launch.Launch] = {}  # runs that failed or were cancelled
        started = time.monotonic()
        try:
            for spec, index in self._schedule(recorders, ended, started):
                if self._cancelled.is_set():
                    break
                current = self._run_process(spec, index, recorders[spec.run_id])
                if current.status != "ok":
                    ended[spec.run_id] = current
        finally:
            self.results = [
                self._finish(recorders[s.run_id], ended.get(s.run_id)) for s in self.specs
            ]
        return self.results

    def _schedule(
        self, recorders: dict[str, RunRecorder], ended: dict, started: float
    ) -> Iterator[tuple[ExperimentSpec, int]]:
        """(spec, process index) in the order they run."""
        if self.order == "blocks":
            for spec in self.specs:
                index = 0
                while spec.run_id not in ended and self._due(spec, index, recorders, started):
                    yield spec, index
                    index += 1
            return
        round_ = 0
        while True:
            if self.stop is not None and self.stop(round_, recorders):
                return
            due = [
                s
                for s in self.specs
                if s.run_id not in ended and self._due(s, round_, recorders, started)
            ]
            if not due:
                return
            self._rng.shuffle(due)
            for spec in due:
                if spec.run_id not in ended:
                    yield spec, round_
            round_ += 1

    def _due(
        self, spec: ExperimentSpec, index: int, recorders: dict[str, RunRecorder], started: float
    ) -> bool:
        """Whether ``spec`` runs its process number ``index``: its first ``spec.processes``
        always; more with ``--repeats auto`` while its interval is wider than the target and
        time is left."""
        if index < spec.processes:
            return True
        if self.target_ci is None or index >= MAX_AUTO_PROCESSES:
            return False
        if time.monotonic() - started >= self.max_time_s:
            return False
        return recorders[spec.run_id].interval().half_width > self.target_ci

    def _run_process(
        self, spec: ExperimentSpec, index: int, recorder: RunRecorder
    ) -> launch.Launch:
        layout = launch.Layout.random(self._rng)
        recorder.begin_process(index, layout.as_dict())
        # The first runner process of each run adds the repeat whose threads are looked at.
        current = launch.Launch(spec, progress=self.progress, layout=layout, look=index == 0)
        self._current = current
        self.launched += 1
        try:
            if self._cancelled.is_set():
                current.cancel()
            for event in current.events():
                recorder.on_event(event)
                if self.on_event is not None:
                    self.on_event(spec, {**event, "process": index})
        except KeyboardInterrupt:
            self._cancelled.set()
        except SpecError as exc:  # the interpreter could not even be started
            current.status, current.error = "failed", str(exc)
        finally:
            self._current = None
            recorder.end_process(current.stderr)
        if current.status is None:
            current.status, current.error = "cancelled", "cancelled by the user"
        return current

    def _finish(self, recorder: RunRecorder, ended: Optional[launch.Launch]) -> dict[str, Any]:
        from storage.queries import run_object

        if ended is not None:
            status = "failed" if ended.status == "invalid" else ended.status
            run = recorder.finish(status, ended.error, ended.detail)
        elif self._cancelled.is_set() and len(recorder.runner_processes) < recorder.spec.processes:
            run = recorder.finish("cancelled", "cancelled by the user before all its processes ran")
        else:
            run = recorder.finish("ok")
        result = run_object(run, recorder.walls_by_process.values(), python=recorder.python)
        if self.target_ci is not None and result["status"] == "ok":
            result["target_ci_met"] = recorder.interval().half_width <= self.target_ci
        if recorder.storage_error is not None:
            result["saved_to"] = recorder.saved_to
            if recorder.saved_to is None:  # nowhere to keep it: what the runner sent goes out
                result["unsaved_error"] = recorder.unsaved_error
                result["events"] = recorder.events
        return result


# --- what the faces call -----------------------------------------------------------------


@dataclass
class SweepRequest:
    """A sweep as a face asks for it (`conlab run`'s flags, the Lab's form), before anything
    is calibrated, checked or opened: what ``prepare`` turns into a Sweep."""

    workloads: Sequence[str]
    executors: Sequence[str]
    workers: Sequence[int]
    pythons: Sequence[Optional[str]] = (None,)
    # Each workload's sizes, taking turns in one sweep; "auto" (and None for a user function)
    # is calibrated (see is_auto_size).
    sizes: Sequence[Optional[int | str]] = (None,)
    params: Mapping[str, Any] = field(default_factory=dict)  # the option table's other values
    order: str = "turns"
    target_ci: Optional[float] = None  # --repeats auto: the 95% interval's relative half-width
    max_time_s: Optional[float] = None
    detect: Optional[float] = None  # the smallest relative change a comparison should see
    against: Optional[str] = None  # a selection of stored runs measured again beside these


@dataclass
class Prepared:
    """A sweep ready to ``run()``, and what the faces say before it runs, in words: what
    --against re-measures and what --size auto chose."""

    sweep: Sweep
    notes: list[str]


def normal(request: SweepRequest) -> SweepRequest:
    """``request`` with its paths as a run stores them (``./jobs.py:work`` is ``jobs.py:work``,
    ``--main ./app.py`` is ``app.py``): one file, one configuration, whichever face named it."""
    import os.path
    from dataclasses import replace

    params = dict(request.params)
    if isinstance(params.get("main"), str) and params["main"]:
        params["main"] = os.path.normpath(params["main"])
    workloads = list(dict.fromkeys(map(normal_workload, request.workloads)))
    return replace(request, workloads=workloads, params=params)


def specs_of(request: SweepRequest) -> list[ExperimentSpec]:
    """The specs ``request`` names, each validated (SpecError), sizes still uncalibrated: what
    the Lab checks as its form changes."""
    request = normal(request)
    sizes = [None if size == "auto" else size for size in request.sizes]
    return plan(
        request.workloads,
        request.executors,
        request.workers,
        request.pythons,
        size=list(dict.fromkeys(sizes)),
        **request.params,
    )


def prepare(
    db: Optional[str],
    request: SweepRequest,
    on_event: Optional[OnEvent] = None,
    progress: bool = False,
) -> Prepared:
    """The Sweep ``request`` asks for on ``db``, for both faces: sizes calibrated where auto,
    specs planned and validated, then checked in the interpreters that will run them, the
    database opened for writing and the stored runs --against picks added. SpecError,
    SelectionError, DatabaseError for what cannot run, before any run is stored. The sweep's
    engine is the caller's to dispose once it has run."""
    from storage.database import open_engine

    request = normal(request)
    pythons = list(request.pythons) or [None]
    sizes, calibrations = choose_sizes(request.workloads, request.sizes, pythons[0])
    specs = plan(
        request.workloads,
        request.executors,
        request.workers,
        pythons,
        size=sizes,
        **request.params,
    )
    resolved = check(specs)
    engine = open_engine(db, writer=True)
    notes: list[str] = []
    try:
        if request.against is not None:
            specs, resolved, notes = with_baseline(engine, request.against, specs, resolved)
        sweep = Sweep(
            engine,
            specs,
            resolved,
            on_event=on_event,
            progress=progress,
            order=request.order,
            target_ci=request.target_ci,
            max_time_s=request.max_time_s,
            calibrations=calibrations,
            notes={"detect": request.detect} if request.detect is not None else None,
        )
    except BaseException:
        engine.dispose()
        raise
    notes += [calibration_note(name, found) for name, found in calibrations.items()]
    return Prepared(sweep, notes)


def with_baseline(
    engine: Engine, selection: str, specs: list[ExperimentSpec], resolved: dict
) -> tuple[list[ExperimentSpec], dict, list[str]]:
    """``specs`` with the stored runs ``selection`` picks measured again beside them
    (``conlab run --against``), their resolved parameters, and what could not be, in words.
    SelectionError when none of them can be measured again here."""
    from storage.errors import SelectionError

    found, elsewhere, unnamed = against(engine, selection, specs)
    named = f"runs naming {', '.join(unnamed)} are re-run only when this command names those too"
    if not found:
        reasons = [named] if unnamed else []
        if elsewhere:
            reasons.append(
                f"{elsewhere} configuration(s) were measured on another machine or interpreter"
            )
        raise SelectionError(
            f"--against {selection!r}: none of its runs can be measured again here "
            f"({'; '.join(reasons)}); compare them as stored with `conlab report --compare`"
        )
    notes = [f"--against {selection}: {named}"] if unnamed else []
    if elsewhere:
        notes.append(
            f"--against {selection}: {elsewhere} configuration(s) were measured on another "
            "machine or interpreter and are compared as stored"
        )
    return specs + found, {**resolved, **check(found)}, notes


def process_label(spec: ExperimentSpec, event: dict) -> str:
    """One runner process of a run, as progress displays name it."""
    workers = event.get("resolved", {}).get("workers", spec.workers)
    return (
        f"{spec.workload} · {spec.executor} × {workers} · process {event['process'] + 1}"
        f"/{spec.processes}"
    )


def process_tasks(spec: ExperimentSpec) -> int:
    """The tasks one runner process of ``spec`` runs, warm-ups included: its progress total."""
    return (spec.warmups + spec.repeats) * spec.tasks


@dataclass
class SweepReport:
    """A finished sweep: its summary (one row per configuration) and verdicts in words."""

    summary: pd.DataFrame
    verdicts: list[str]


def sweep_report(engine, results: Sequence[dict]) -> Optional[SweepReport]:
    """The report of the sweep that gave ``results`` (the runs' objects), keyed as every report
    is (machine, Python, size and tasks); None when no run finished."""
    from storage.verdicts import sweep_verdicts

    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        return None
    summary, words = sweep_verdicts(engine, ok[0]["sweep_id"])
    return None if summary.empty else SweepReport(summary, words)


def detectable_note(engine, specs) -> list[str]:
    """Before a sweep: the smallest change its runs can tell apart on this machine, from the
    spread of the runs stored here (storage.power); nothing when none are."""
    from experiments.environment import collect, machine_fingerprint
    from storage.power import note

    if not specs:
        return []
    found = note(engine, machine_fingerprint(collect()), max(s.processes for s in specs))
    return [found] if found else []


def speedups(results: Sequence[dict]) -> dict[str, str]:
    """Each finished run's speedup among a sweep's ``results`` (run objects), with its 95%
    interval, as text by run id (storage.verdicts.run_speedups)."""
    from storage.verdicts import run_speedups

    return run_speedups(results)
