"""``conlab advise``: characterise one function, measure the executors that can win, answer.

``advise()`` is the whole of it, callable from the CLI, the app or a service; it returns plain
data (the ``--json`` object) and prints nothing. Four steps:

1. probes, in a runner process of their own (experiments.probe): one call's duration, CPU/wall,
   whether two threads overlap, what a process boundary costs, whether an async form exists;
2. a plan from those figures: the candidates, and each executor left out with its reason;
3. one sweep under the lab's rules (processes taking turns, adaptive repeats) within the time
   budget, stopped as soon as the best configuration is clear of the rest (or tied with them
   within ``MIN_EFFECT``, which more processes would not change);
4. the answer: the recommendation (the preferred among the fastest and its ties), its speedup
   with its interval, memory against the runner-up, why, and a snippet.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Optional

from experiments.environment import usable_cores
from experiments.spec import ExperimentSpec, SpecError, normal_workload
from experiments.workloads import WORKLOADS
from service.advise.answering import _probe_reasons, advice_lines, answer, snippet
from service.advise.measuring import _StopRule, budget_repeats, settled, specs_for
from service.advise.planning import Candidate, choose_tasks, plan
from service.advise.probes import AdviseFailed, busy, characterise

__all__ = [
    "DEFAULT_BUDGET_S",
    "AdviseFailed",
    "Candidate",
    "_probe_reasons",
    "advice_lines",
    "advise",
    "answer",
    "budget_repeats",
    "busy",
    "choose_tasks",
    "plan",
    "settled",
    "snippet",
    "specs_for",
]

DEFAULT_BUDGET_S = 60.0


def advise(
    workload: str,
    db: Optional[str],
    size: Optional[int | str] = None,
    tasks: Optional[int] = None,
    time_budget_s: float = DEFAULT_BUDGET_S,
    on_event: Optional[Callable] = None,
    say: Optional[Callable[[str], None]] = None,
    on_sweep: Optional[Callable] = None,
    pythons: Sequence[Optional[str]] = (None,),
) -> dict:
    """Probe ``workload``, measure its candidates as one sweep tagged ``advise`` in ``db`` (a
    path, a URL, or None for the default) within ``time_budget_s``, and return the answer (the
    ``--json`` object).

    ``db`` is opened once the plan stands (bad input then leaves no database behind) and its
    engine disposed before this returns or raises. SpecError for bad input (one line);
    AdviseFailed when the function fails while probed.
    ``on_event`` gets the sweep's runner events, ``say`` a line per step, ``on_sweep`` the
    Sweep once it exists (to cancel it). ``pythons``: the interpreters to advise on (None is
    this one); each is probed, and their candidates take turns in one sweep, at the size the
    first one chose."""
    from service.sweeps import Sweep, check
    from storage.database import open_engine

    started = time.monotonic()
    workload = normal_workload(workload)  # a file path as a run stores it (./jobs.py is jobs.py)
    say = say or (lambda line: None)
    chosen_size, pythons = _checked(workload, size, tasks, time_budget_s, pythons)
    probes, candidates, left_out, tasks = _probe_all(
        workload, chosen_size, tasks, time_budget_s, pythons, say
    )
    remaining = time_budget_s - (time.monotonic() - started)
    repeats, round_s = budget_repeats(candidates, probes, tasks, remaining)
    specs = specs_for(workload, candidates, probes["size"], tasks, repeats)
    resolved = check(specs)
    engine = open_engine(db, writer=True)
    try:
        stop = _StopRule(time_budget_s - (time.monotonic() - started))
        say(f"measuring {len(candidates)} configurations for up to {stop.budget_s:.0f} s")
        sweep = Sweep(
            engine,
            specs,
            resolved,
            on_event=on_event,
            target_ci=0.0,
            max_time_s=stop.budget_s,
            stop=stop,
            notes={"advise": {"probes": probes, "left_out": left_out}},
        )
        if on_sweep is not None:
            on_sweep(sweep)
        with sweep.cancelled_by_signals():
            results = sweep.run()
        if sweep.cancelled:
            stop.reason = "cancelled"
        from storage.verdicts import sweep_verdicts

        summary, words = sweep_verdicts(engine, specs[0].sweep_id)
    finally:
        engine.dispose()
    probes["load_per_core_after"] = _load_per_core(probes["cores"])
    found = answer(
        workload, probes, candidates, left_out, summary, words, results, stop.reason, tasks
    )
    found["elapsed_s"] = time.monotonic() - started
    if found["undecided"]:  # the budget that would measure what tells the leaders apart
        found["undecided"]["time_budget_s"] = math.ceil(
            found["elapsed_s"] + found["undecided"]["seconds"]
        )
    return found


def _checked(workload: str, size, tasks, time_budget_s: float, pythons) -> tuple:
    """The size to probe at and the interpreters to advise on; SpecError for bad input,
    before anything starts."""
    from service.sweeps import is_auto_size

    if not 0 < time_budget_s <= 86400:
        raise SpecError(
            f"--time-budget must be seconds above 0 and at most a day, not "
            f"{time_budget_s:g}; pass e.g. --time-budget 60"
        )
    if tasks is not None:
        ExperimentSpec(workload=workload, executor="sequential", tasks=tasks).validate()
    # an unknown name (a module without its :FUNCTION) is refused before anything looks it up
    ExperimentSpec(workload=workload, executor="sequential").validate()
    auto = is_auto_size(workload, size)
    chosen_size = "auto" if auto else size if size is not None else WORKLOADS[workload].default_size
    ExperimentSpec(
        workload=workload, executor="sequential", size=None if auto else chosen_size
    ).validate()
    pythons = list(dict.fromkeys(pythons)) or [None]
    for python in pythons:  # an empty --python is refused as `conlab run` refuses it
        ExperimentSpec(workload=workload, executor="sequential", python=python).validate()
    return chosen_size, pythons


def _probe_all(workload: str, chosen_size, tasks, time_budget_s: float, pythons, say) -> tuple:
    """(probes, candidates, left out, tasks): each interpreter probed and planned for, the
    first at ``chosen_size``, the others at the size it chose."""
    say(f"probing {workload}")
    probes = characterise(workload, chosen_size, time_budget_s, pythons[0])
    probes["cores"] = probes.get("cores") or usable_cores()
    tasks = choose_tasks(probes, tasks)
    candidates, left_out = plan(workload, probes, tasks)
    candidates = [replace(c, python=pythons[0], label=probes["python"]) for c in candidates]
    left_out = [{**x, "python": probes["python"]} for x in left_out]
    by_python = {probes["python"]: probes}
    for python in pythons[1:]:
        say(f"probing {workload} on {python}")
        more = characterise(workload, probes["size"], time_budget_s, python)
        more["cores"] = more.get("cores") or usable_cores()
        found, left = plan(workload, more, tasks)
        candidates += [replace(c, python=python, label=more["python"]) for c in found]
        left_out += [{**x, "python": more["python"]} for x in left]
        by_python[more["python"]] = more
    if len(by_python) > 1:
        probes = {**probes, "by_python": by_python}
    return probes, candidates, left_out, tasks


def _load_per_core(cores: int) -> Optional[float]:
    try:
        return os.getloadavg()[0] / max(cores, 1)
    except (AttributeError, OSError):  # Windows
        return None
