"""ExperimentSpec: everything that defines one run, validated, and round-tripped through JSON.

``validate()`` makes the checks that need nothing but the spec (it runs in the parent, before any
process starts); ``prepare()`` makes the ones that need the target interpreter: importing the
user's function and proving the executor can ship it to its workers. It runs in the runner.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Optional

from experiments import executors as executors_module
from experiments import options as options_module
from experiments import workloads as workloads_module
from experiments.environment import usable_cores
from experiments.options import (
    MAX_WORKERS,
    SpecError,
    check_int,
    check_stored_text,
    not_taken,
    with_option_fields,
)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
@with_option_fields
class ExperimentSpec:
    """One run: a workload, an executor and its parameters. ``None`` means "the default here".

    Between ``executor`` and ``run_id``: one field per row of the option table
    (experiments/options.py), with its default: workers, tasks, size, repeats, warmups,
    processes, start_method, chunksize, max_tasks_per_child, scheduler, python, timeout_s, tag.
    """

    workload: str
    executor: str
    run_id: str = field(default_factory=new_id)
    sweep_id: str = field(default_factory=new_id)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> ExperimentSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(
                f"unknown spec field(s) {', '.join(unknown)}; "
                f"known fields are {', '.join(sorted(names))}"
            )
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> ExperimentSpec:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"the spec is not JSON ({exc}); send one JSON object") from None
        if not isinstance(data, dict):
            raise SpecError("the spec must be a JSON object; send one object per run")
        return cls.from_dict(data)

    def replace(self, **changes) -> ExperimentSpec:
        return dataclasses.replace(self, **changes)

    def validate(self) -> ExperimentSpec:
        """Raise SpecError unless the spec can run; checks that need no user code. Returns self."""
        for option in options_module.OPTIONS:
            option.validate(getattr(self, option.name))
        check_stored_text("workload", self.workload, "-w")
        if not isinstance(self.workload, str) or not self.workload.strip():
            raise SpecError("no workload given; pass -w with a name from `conlab list workloads`")
        if ":" not in self.workload and self.workload not in workloads_module.WORKLOADS:
            raise SpecError(
                f"unknown workload {self.workload!r}"
                f"{workloads_module._suggest(self.workload, workloads_module.WORKLOADS)}"
                "; see `conlab list workloads`, or pass MODULE:FUNCTION"
            )
        executor = executors_module.EXECUTORS.get(self.executor)
        if executor is None:
            raise SpecError(
                f"unknown executor {self.executor!r}"
                f"{workloads_module._suggest(str(self.executor), executors_module.EXECUTORS)}"
                "; see `conlab list executors`"
            )
        if executor.pickles_tasks and self.workers > max(64, 8 * usable_cores()):
            raise SpecError(
                f"{self.workers} worker processes on a {usable_cores()}-core machine "
                "would only measure the OS scheduler; pass fewer --workers"
            )
        return self


def run_label(executor: str, workers, bare_sequential: bool = True) -> str:
    """A configuration as every report, list and message names it: ``threads x4``; the
    sequential run is ``sequential`` alone (``sequential x1`` with ``bare_sequential=False``,
    where each row of a list names its worker count)."""
    if bare_sequential and executor == "sequential":
        return "sequential"
    return f"{executor} x{int(workers)}"


def normal_workload(ref: str) -> str:
    """``ref`` as a run stores it: a file path in its normal form, so that ``./jobs.py:work``
    and ``jobs.py:work`` are one workload; names and ``MODULE:FUNCTION`` stay as given."""
    module, colon, func = ref.rpartition(":")
    if colon and (module.endswith(".py") or "/" in module or os.sep in module):
        return f"{os.path.normpath(module)}:{func}"
    return ref


def check_worker_counts(counts) -> None:
    """Refuse a bad --workers list even for executors that ignore it (sequential)."""
    if not counts:
        raise SpecError("no worker count given; pass e.g. --workers 1,2,4")
    for count in counts:
        check_int("workers", count, 1, MAX_WORKERS, "--workers")


@dataclass(frozen=True)
class PreparedRun:
    """A validated spec, its workload imported, its defaults filled in for this interpreter.
    The executor options (``workers``, ``start_method`` ...) read as attributes: the value used,
    None for an option this executor does not take."""

    spec: ExperimentSpec
    workload: workloads_module.Workload
    executor: executors_module.Executor
    size: int
    options: dict = field(default_factory=dict)

    def __getattr__(self, name: str):
        options = self.__dict__.get("options", {})
        if name in options:
            return options[name]
        raise AttributeError(name)

    def resolved(self) -> dict:
        """The parameters actually used, as recorded with the run."""
        return {
            "size": self.size,
            **self.options,
            "workload": self.spec.workload,
            "executor": self.executor.name,
            "tasks": self.spec.tasks,
            "repeats": self.spec.repeats,
            "warmups": self.spec.warmups,
            "processes": self.spec.processes,
            "description": self.workload.description,
        }


def executor_options(spec: ExperimentSpec, executor: executors_module.Executor) -> dict:
    """The value of each executor option for ``executor``: the spec's, else the executor's
    default; None where the executor does not take it, and one worker for one that has none."""
    values = {}
    for option in options_module.OPTIONS:
        if option.for_executors:
            taken = option.name in executor.options
            value = getattr(spec, option.name) if taken else None
            if taken and value is None:
                value = executor.default(option.name, spec.tasks, values.get("workers") or 1)
            values[option.name] = value
    values["workers"] = values.get("workers") or 1
    return values


def prepare(spec: ExperimentSpec) -> PreparedRun:
    """Validate ``spec`` fully in this interpreter: import the workload, check the executor can
    run it here and ship it to its workers. Raises SpecError naming the fix; a user's file
    that stood in for a standard module (``pickle.py`` in the working directory) is named as
    the cause of whatever else broke."""
    try:
        return _prepare(spec)
    except (SpecError, TypeError):
        raise
    except Exception:
        shadowing = workloads_module.shadowed_standard_module()
        if shadowing is None:
            raise
        raise SpecError(shadowing) from None


def _prepare(spec: ExperimentSpec) -> PreparedRun:
    spec.validate()
    executor = executors_module.EXECUTORS[spec.executor]
    reason = executor.unavailable_reason()
    if reason:
        raise SpecError(f"executor {executor.name!r} is unavailable: {reason}")
    try:
        workload = workloads_module.resolve(spec.workload)
    except workloads_module.WorkloadError as exc:
        raise SpecError(str(exc)) from None
    reason = executor.check_workload(workload)
    if reason:
        raise SpecError(reason)
    if workload.func is workload.async_func and executor.name != "asyncio":
        # Called by any other executor, it would only create coroutines, never run them.
        raise SpecError(
            f"{workload.name} is an async def, so only asyncio can run it; pass -e asyncio, "
            "or give a plain def f(size)"
        )
    options = executor_options(spec, executor)
    if executor.pickles_tasks:
        _check_picklable(workload, executor, options["start_method"])
    size = spec.size if spec.size is not None else workload.default_size
    prepared = PreparedRun(spec, workload, executor, size, options)
    reason = not_taken(executor, dataclasses.asdict(spec)) or executor.unsupported_option(prepared)
    if reason:
        raise SpecError(reason)
    return prepared


def _check_picklable(workload, executor, start_method: Optional[str]) -> None:
    import pickle

    func = workload.func
    where = f"executor {executor.name!r}"
    if getattr(func, "__module__", None) == "__main__" and start_method != "fork":
        raise SpecError(
            f"workload {workload.name!r} is defined in __main__, which {where} "
            f"with start method {start_method!r} cannot import in its workers; "
            "move the function to a module's top level"
        )
    try:
        pickle.dumps(func)
    except Exception as exc:
        shadowing = workloads_module.shadowed_standard_module()
        if shadowing is not None:  # a user's pickle.py, or a module pickle needs
            raise SpecError(shadowing) from None
        raise SpecError(
            f"workload {workload.name!r} cannot be pickled for {where} "
            f"({type(exc).__name__}: {exc}); move it to a module's top level "
            "as a plain def (not a lambda or nested function)"
        ) from None
