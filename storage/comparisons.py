"""B against A: two selections of stored runs compared configuration by configuration, each
ratio of medians with its 95% interval over runner processes, raw or controlled
(storage.controlled), and how the selections' environments differ."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from storage import controlled, stats
from storage.errors import SelectionError
from storage.loading import select
from storage.queries import json_object
from storage.summaries import CONFIG, MIN_EFFECT


@dataclass(frozen=True)
class Comparison:
    """B against A for one configuration: ratio of medians (B / A) and what it means."""

    config: dict
    a_median_s: float
    b_median_s: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str
    a_repeats: int
    b_repeats: int
    a_processes: int
    b_processes: int
    # The raw comparison (wall times as measured), shown beside the one the verdict used.
    raw: Optional[stats.Ratio] = None
    # The controlled comparison wherever it could be made (shown even when not used), else None.
    controlled: Optional[stats.Ratio] = None
    basis: str = "raw"  # what the verdict stands on: "controlled" or "raw" (storage.controlled)
    basis_why: str = ""
    tracking: Optional[controlled.Tracking] = None  # how the control followed the work
    # A tie: the largest change the interval leaves possible (0.04: none larger than +-4%).
    detectable: Optional[float] = None
    sweeps_note: str = ""  # how the sides' sweeps were used, when it matters (``_in_sweeps``)


def compare_groups(a, b, min_effect: float = MIN_EFFECT, across: bool = False) -> stats.Ratio:
    """B against A, each given as the counted wall times of its runner processes: the ratio
    with its 95% interval over processes (storage.stats) and the verdict; ``across`` when they
    come from sweeps that did not take turns."""
    return stats.ratio(a, b, min_effect, across_sweeps=across)


def compare(repeats: pd.DataFrame, a: str, b: str, min_effect: float = MIN_EFFECT):
    """Compare selection B against selection A for every configuration present in both.

    Machine and interpreter are part of a configuration unless the selections themselves
    differ in them. Returns (comparisons, geometric mean of ratios, differing environment).
    """
    counted = repeats[~repeats["warmup"]]
    side_a, side_b = select(counted, a), select(counted, b)
    if side_a.empty or side_b.empty:
        empty = a if side_a.empty else b
        raise SelectionError(f"selection {empty!r} matches no finished runs; see `conlab runs`")
    keys = [k for k in CONFIG if not _differs(side_a, side_b, k)]
    # Match on the values as text: missing values (None, NaN) then compare equal.
    side_a = side_a.assign(_key=_text_keys(side_a, keys))
    side_b = side_b.assign(_key=_text_keys(side_b, keys))
    groups_b = dict(list(side_b.groupby("_key")))
    controls = controlled.controls_by_run(counted)
    # How the control followed the work: per kind of execution (executor, workers, start
    # method: each meets the machine's level in its own way) over the sweeps both sides are from.
    sweep_tracking: dict[tuple, controlled.Tracking] = {}
    comparisons = []
    for key, group_a in side_a.groupby("_key"):
        group_b = groups_b.get(key)
        if group_b is None:
            continue
        group_a, group_b, sweeps_note = _in_sweeps(group_a, group_b, a)
        sweeps = frozenset(group_a["sweep_id"]) | frozenset(group_b["sweep_id"])
        kind = tuple(map(str, group_a[list(EXECUTION)].iloc[0]))
        if (sweeps, kind) not in sweep_tracking:
            around = counted[counted["sweep_id"].isin(sweeps)]
            around = around[_text_keys(around, list(EXECUTION)) == "|".join(kind)]
            found = controlled.tracking([controlled.processes(around, controls)])
            sweep_tracking[sweeps, kind] = found
        found = _compare_one(
            group_a, group_b, keys, controls, sweep_tracking[sweeps, kind], min_effect
        )
        comparisons.append(dataclasses.replace(found, sweeps_note=sweeps_note))
    if not comparisons:
        raise SelectionError(
            f"{a!r} and {b!r} share no configuration (workload, size, tasks, executor, "
            "workers); select runs of the same experiment"
        )
    geomean = float(np.exp(np.mean(np.log([c.ratio for c in comparisons]))))
    differences = {
        column: (
            ", ".join(sorted(set(side_a[column].map(str)))),
            ", ".join(sorted(set(side_b[column].map(str)))),
        )
        for column in CONFIG
        if column not in keys
    }
    differences.update(environment_differences(side_a, side_b))
    return comparisons, geomean, differences


def _same_place(group_a, group_b) -> bool:
    """Both sides measured on one machine, under one interpreter."""
    return all(
        group_a[column].nunique(dropna=False) == 1
        and set(group_a[column].map(str)) == set(group_b[column].map(str))
        for column in ("machine_fingerprint", "python")
    )


def _in_sweeps(group_a, group_b, a: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Both sides of one configuration, kept to the sweeps they share when they share one (a
    baseline measured again beside the new runs, `conlab run --against`): there the runs took
    turns and met the same machine. The note says so, or that A could have been."""
    shared = set(group_a["sweep_id"]) & set(group_b["sweep_id"])
    if not shared:
        same_place = all(
            set(group_a[c].map(str)) == set(group_b[c].map(str))
            for c in ("machine_fingerprint", "python")
        )
        return (
            group_a,
            group_b,
            (
                f"A and B were measured in different sweeps: `conlab run … --against {a}` measures "
                "A again beside B, within one sweep"
                if same_place
                else ""
            ),
        )
    kept_a = group_a[group_a["sweep_id"].isin(shared)]
    kept_b = group_b[group_b["sweep_id"].isin(shared)]
    left = group_a["run_id"].nunique() - kept_a["run_id"].nunique()
    left += group_b["run_id"].nunique() - kept_b["run_id"].nunique()
    if not left:
        return group_a, group_b, ""
    return (
        kept_a,
        kept_b,
        (
            f"compared within the sweep(s) A and B share (A measured again beside B); {left} "
            "run(s) from other sweeps left out"
        ),
    )


def _compare_one(group_a, group_b, keys, controls, sweeps, min_effect) -> Comparison:
    """One configuration's B against A: the raw comparison, and the controlled one where
    ``storage.controlled.basis`` allows it (the verdict then stands on it)."""
    across = not set(group_a["sweep_id"]) & set(group_b["sweep_id"])
    pa, pb = controlled.processes(group_a, controls), controlled.processes(group_b, controls)
    raw = compare_groups(pa.walls, pb.walls, min_effect, across)
    basis = controlled.basis(pa, pb, _same_place(group_a, group_b), sweeps)
    with_control = None
    if basis.comparable:
        # The control measured the level each process met: nothing about it is left to assume
        # across sweeps (stats.ratio's across_sweeps term stands for a level not measured).
        with_control = stats.ratio(
            pa.controlled(sweeps.slope),
            pb.controlled(sweeps.slope),
            min_effect,
            extra_variance=sweeps.adjustment_variance(pa, pb),
        )
    found = with_control if basis.name == "controlled" else raw
    detectable = None
    if found.verdict == stats.NO_DIFFERENCE and math.isfinite(found.high - found.low):
        detectable = max(found.high - 1, 1 - found.low)
    return Comparison(
        {k: group_a[k].iloc[0] for k in keys},
        float(group_a["wall_s"].median()),
        float(group_b["wall_s"].median()),
        found.ratio,
        found.low,
        found.high,
        found.p_value,
        found.verdict,
        len(group_a),
        len(group_b),
        group_a["process"].nunique(),
        group_b["process"].nunique(),
        raw,
        with_control,
        basis.name,
        basis.why,
        basis.tracking,
        detectable,
    )


def _text_keys(frame: pd.DataFrame, keys: list[str]) -> np.ndarray:
    return np.array(["|".join(map(str, row)) for row in frame[keys].itertuples(index=False)])


# What makes two runs the same kind of execution, whatever their work and size.
EXECUTION = ["executor", "workers", "start_method"]


def _differs(a: pd.DataFrame, b: pd.DataFrame, column: str) -> bool:
    """True when the selections share no value of ``column``: then it is what is compared (two
    machines, two Pythons, two sizes...), not part of what must match."""
    return not set(a[column].map(str)) & set(b[column].map(str))


ENV_FIELDS = (
    "cpu_model",
    "logical_cores",
    "usable_cores",
    "python_version",
    "os_release",
    "py_gil_disabled",
    "architecture",
)


def environment_differences(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Environment fields whose values differ between two selections: (A's, B's)."""

    def values(frame: pd.DataFrame, field: str) -> str:
        found = set()
        for text_ in frame["environment_json"].dropna().unique():
            env = json_object(text_)
            if env is not None:
                found.add(str(env.get(field)))
        return ", ".join(sorted(found))

    differences = {}
    for field in ENV_FIELDS:
        va, vb = values(a, field), values(b, field)
        if va != vb:
            differences[field] = (va, vb)
    return differences
