"""A sweep: several specs run one after another through the runner and recorded as they go.
Shared by the CLI and the app, so both measure and store runs the same way."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Optional

from experiments import launch
from experiments.executors import EXECUTORS
from experiments.spec import ExperimentSpec, SpecError, check_worker_counts, new_id

if TYPE_CHECKING:  # storage (and SQLAlchemy) load when a sweep runs, not when one is planned
    from sqlalchemy.engine import Engine

# Called with (spec, event) for every runner event, from the thread running the sweep.
OnEvent = Callable[[ExperimentSpec, dict], None]


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
    if params.get("scheduler") is not None and not any(
        getattr(EXECUTORS.get(e), "takes_scheduler", False) for e in executors
    ):
        raise SpecError("--scheduler applies to dask; add -e dask or drop --scheduler")
    sweep_id = new_id()
    specs = []
    for python in pythons:
        for workload in workloads:
            for executor in executors:
                known = EXECUTORS.get(executor)
                takes_workers = getattr(known, "takes_workers", True)
                own = dict(params)
                if not getattr(known, "takes_scheduler", False):
                    own.pop("scheduler", None)  # the cluster's address is dask's alone
                for count in workers if takes_workers else [1]:
                    spec = ExperimentSpec(
                        workload=workload,
                        executor=executor,
                        workers=count,
                        python=python,
                        sweep_id=sweep_id,
                        **own,
                    )
                    specs.append(spec.validate())
    return specs


def check(specs: Sequence[ExperimentSpec]) -> dict[str, dict]:
    """Validate every spec in the interpreter that will run it; resolved parameters by run id."""
    resolved: dict[str, dict] = {}
    for python in dict.fromkeys(spec.python for spec in specs):
        resolved.update(launch.check([s for s in specs if s.python == python], python))
    return resolved


class Sweep:
    """Runs specs in order, recording each; ``cancel()`` (any thread) stops the current run and
    skips the rest."""

    def __init__(
        self,
        engine: Engine,
        specs: Sequence[ExperimentSpec],
        resolved: dict[str, dict],
        on_event: Optional[OnEvent] = None,
        progress: bool = False,
    ):
        self.engine = engine
        self.progress = progress  # ask runners for live progress events (costly while timing)
        self.specs = list(specs)
        self.resolved = resolved
        self.on_event = on_event
        self.results: list[dict[str, Any]] = []
        self._cancelled = threading.Event()
        self._current: Optional[launch.Launch] = None

    def cancel(self) -> None:
        self._cancelled.set()
        current = self._current
        if current is not None:
            current.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self) -> list[dict[str, Any]]:
        """Run every spec; return their run objects (the CLI's JSON shape)."""
        for spec in self.specs:
            if self._cancelled.is_set():
                break
            self.results.append(self.run_one(spec))
        return self.results

    def run_one(self, spec: ExperimentSpec) -> dict[str, Any]:
        from storage.queries import run_object
        from storage.recorder import RunRecorder

        recorder = RunRecorder(self.engine, spec, self.resolved[spec.run_id])
        recorder.start()
        current = launch.Launch(spec, progress=self.progress)
        self._current = current
        try:
            if self._cancelled.is_set():
                current.cancel()
            for event in current.events():
                recorder.on_event(event)
                if self.on_event is not None:
                    self.on_event(spec, event)
        except KeyboardInterrupt:
            self._cancelled.set()
        except SpecError as exc:  # the interpreter could not even be started
            current.status, current.error = "failed", str(exc)
        finally:
            self._current = None
            status = "failed" if current.status == "invalid" else (current.status or "cancelled")
            run = recorder.finish(status, current.error, current.detail, current.stderr)
        result = run_object(run, recorder.walls_ns)
        if recorder.saved_to:
            result["saved_to"] = recorder.saved_to
        return result
