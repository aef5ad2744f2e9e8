"""The controlled comparison: each runner process's wall times divided by its own control time
(experiments.control), which cancels the machine's speed level that process met.

A comparison uses it only where it is sound, and says which one it used and why:

- both sides' processes all timed the same version of the control, on one machine and one
  interpreter (runs from before the control, or from elsewhere, are compared raw);
- the control is seen to track the work: across the processes of the sweeps involved, each
  run's per-process log median and log control time move together (Pearson's r of the values
  centred on their run, at least ``TRACKS``, over at least ``MIN_DEGREES`` degrees of freedom).
  The level is then taken out in proportion: the work's log times less ``slope`` times the
  control's (the least-squares slope of the same values), since a short control and a long
  task need not feel the machine's level alike.
  A workload bound by memory or I/O, which the machine's level moves differently, falls back to
  the raw comparison, and so does a sweep too short to tell.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import pandas as pd

from storage.queries import json_object

# The correlation the control must show with the work, and the evidence it needs (processes less
# one per run): with fewer, r itself is too uncertain to lean on.
TRACKS = 0.5
MIN_DEGREES = 6
PARTS = ("loop_ns", "hash_ns")  # each control sample, as stored: [loop_ns, hash_ns]


def process_controls(environment_json: Any) -> dict[int, tuple[Any, float]]:
    """A run's control per runner process, from its stored environment: ``{process index:
    (version, time)}``, the time the geometric mean of each part's fastest sample in the
    process. Processes without a readable control are left out (a hostile file too)."""
    found: dict[int, tuple[Any, float]] = {}
    env = json_object(environment_json) or {}
    processes = env.get("runner_processes")
    for process in processes if isinstance(processes, list) else ():
        if not isinstance(process, dict) or not _whole(process.get("index")):
            continue
        samples = process.get("control")
        samples = [
            sample
            for sample in (samples if isinstance(samples, list) else ())
            if isinstance(sample, list)
            and len(sample) == len(PARTS)
            and all(_whole(v) and 0 < v < 2**62 for v in sample)
        ]
        if len(samples) >= 3:
            samples = samples[1:]  # the first is timed cold (nothing specialised, caches empty)
        if samples:
            # The fastest sample of each part: what the machine's level allows; a sample cut
            # into by other work is slower, not a level.
            parts = [min(values) for values in zip(*samples)]
            level = math.exp(sum(math.log(v) for v in parts) / len(parts))
            found[process["index"]] = (str(process.get("control_version")), level)
    return found


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Processes:
    """One side's runner processes: each one's wall times and control time (None where it
    timed none), and the control's versions met."""

    walls: list[list[float]]
    controls: list[Optional[float]]
    runs: list[Any]  # each process's run, to centre its values on
    versions: frozenset

    @property
    def complete(self) -> bool:
        """Whether every process timed the control."""
        return bool(self.controls) and all(c is not None for c in self.controls)

    def controlled(self, slope: float) -> list[list[float]]:
        """Each process's wall times with the level its control met taken out: over its
        control time to the power ``slope`` (how far the work moves per unit the control
        moves, on log scales; ``Tracking.slope``). Only for ``complete`` sides."""
        return [[w / c**slope for w in walls] for walls, c in zip(self.walls, self.controls)]


def processes(counted: pd.DataFrame, controls: Mapping[Any, dict]) -> Processes:
    """The runner processes of ``counted`` (counted repeats), with ``controls`` by run id (as
    ``process_controls`` gives them)."""
    walls, found, runs, versions = [], [], [], set()
    ordered = counted.sort_values(["process", "repeat_index"], kind="stable")
    for _, rows in ordered.groupby("process", sort=False):
        values = [w for w in rows["wall_s"] if w > 0 and math.isfinite(w)]
        if not values:
            continue
        run_id, index = rows["run_id"].iloc[0], rows["process_index"].iloc[0]
        walls.append(values)
        runs.append(run_id)
        whole = index == index and float(index).is_integer()
        control = controls.get(run_id, {}).get(int(index)) if whole else None
        found.append(None if control is None else control[1])
        versions.add(None if control is None else control[0])
    return Processes(walls, found, runs, frozenset(versions))


def controls_by_run(counted: pd.DataFrame) -> dict[Any, dict]:
    """Every run's controls (``process_controls``) in ``counted``, by run id."""
    runs = counted.drop_duplicates("run_id")
    return {
        run_id: process_controls(env)
        for run_id, env in zip(runs["run_id"], runs["environment_json"])
    }


@dataclass(frozen=True)
class Tracking:
    """How the control moved with the work in some sweeps: Pearson's r of each process's log
    median wall time against its log control time, both centred on their run, and the degrees
    of freedom behind it."""

    r: float
    degrees: int
    processes: int
    # How far the work's log time moves per unit of the control's (least squares, centred on
    # each run): the control need not feel the machine's level exactly as the work does.
    slope: float = math.nan
    slope_variance: float = math.nan  # the slope's squared standard error

    def adjustment_variance(self, a: Processes, b: Processes) -> float:
        """What the slope's uncertainty adds to the variance of the log ratio of B's to A's
        controlled values: their mean log control times differ by d, and d x slope is taken
        out."""
        d = _mean_log(b.controls) - _mean_log(a.controls)
        return d * d * self.slope_variance

    @property
    def tracks(self) -> bool:
        return self.degrees >= MIN_DEGREES and self.r >= TRACKS


def tracking(sides: Iterable[Processes]) -> Tracking:
    """The tracking over every run of ``sides`` with at least two processes with a control."""
    xs, cs, degrees, processes_ = [], [], 0, 0
    for side in sides:
        by_run: dict[Any, list[tuple[float, float]]] = {}
        for walls, control, run in zip(side.walls, side.controls, side.runs):
            if control is not None:
                middle = _median(sorted(walls))
                by_run.setdefault(run, []).append((math.log(middle), math.log(control)))
        for pairs in by_run.values():
            if len(pairs) < 2:
                continue
            mx = sum(x for x, _ in pairs) / len(pairs)
            mc = sum(c for _, c in pairs) / len(pairs)
            xs += [x - mx for x, _ in pairs]
            cs += [c - mc for _, c in pairs]
            degrees += len(pairs) - 1
            processes_ += len(pairs)
    sxx, scc = sum(x * x for x in xs), sum(c * c for c in cs)
    if degrees == 0 or sxx == 0 or scc == 0:
        return Tracking(math.nan, degrees, processes_)
    sxc = sum(x * c for x, c in zip(xs, cs))
    slope = sxc / scc
    residual = sum((x - slope * c) ** 2 for x, c in zip(xs, cs)) / max(degrees - 1, 1)
    return Tracking(sxc / math.sqrt(sxx * scc), degrees, processes_, slope, residual / scc)


def _mean_log(values: list) -> float:
    return sum(math.log(v) for v in values) / len(values)


@dataclass(frozen=True)
class Basis:
    """Which comparison a verdict stands on: ``controlled`` or ``raw``, and why, in words."""

    name: str
    why: str
    tracking: Optional[Tracking] = None
    comparable: bool = False  # whether the controlled comparison can be made at all


def basis(a: Processes, b: Processes, same_place: bool, sweeps: Tracking) -> Basis:
    """Whether B against A is judged on the controlled values (see the module's rules).
    ``same_place``: one machine and one interpreter on both sides; ``sweeps``: the tracking in
    every run of the sweeps both sides come from."""
    if not (a.complete and b.complete):
        return Basis("raw", "raw: some of these runs timed no control (recorded before it)")
    if len(a.versions | b.versions) != 1:
        return Basis("raw", "raw: the two sides timed different versions of the control")
    if not same_place:
        return Basis("raw", "raw: the control cannot carry across machines or interpreters")
    seen = f"r = {sweeps.r:.2f} over {sweeps.processes} processes"
    if sweeps.degrees < MIN_DEGREES or not math.isfinite(sweeps.slope):
        return Basis("raw", "raw: too few runner processes to see whether the control tracks")
    if not sweeps.tracks:
        why = f"raw: the control did not track this work ({seen})"
        return Basis("raw", why, sweeps, comparable=True)
    why = f"controlled: the control tracked the work in these sweeps ({seen})"
    return Basis("controlled", why, sweeps, comparable=True)
