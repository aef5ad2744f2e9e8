"""The control: stored by every runner process of a real run, read back safely, and used by a
comparison only where it tracks the work (known answers on hand-made frames)."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest

from experiments import control
from storage import controlled, power
from storage.comparisons import compare
from tests.storage.test_reports import frame

# Eight processes' levels of the machine (1.00 = its usual speed): one sweep met all of these.
LEVELS = [1.00, 1.06, 0.97, 1.03, 1.08, 0.99, 1.05, 1.02]
# Each process's own noise on top (memory layout), the same for every side: known answers.
NOISE = [1.000, 0.990, 1.010, 1.004, 0.996, 1.006, 0.994, 1.002]
CONTROL_NS = 2_000_000


def _environment(levels, control_follows=True) -> str:
    """A run's stored environment whose processes timed the control at ``levels``."""
    processes = []
    for index, level in enumerate(levels):
        timed = int(CONTROL_NS * (level if control_follows else 1.0))
        samples = [[timed + 999, timed + 999]] + [[timed + k, timed + k] for k in range(4)]
        processes.append({"index": index, "control_version": control.VERSION, "control": samples})
    return json.dumps({"runner_processes": processes})


def _side(tag, sweep, work_s, level_shift, *, follows=True, executors=("sequential", "threads")):
    """Two runs (one sweep) whose processes met LEVELS x ``level_shift``; the work takes
    ``work_s`` at level 1; with ``follows`` False the control's time moves with the level but
    the work's does not (work bound by something the level does not touch)."""
    levels = [level * level_shift for level in LEVELS]
    rows = []
    for executor in executors:
        walls = [
            [work_s * (level if follows else 1.0) * noise] * 3
            for level, noise in zip(levels, NOISE)
        ]
        rows.append(
            {
                "executor": executor,
                "workers": 1 if executor == "sequential" else 2,
                "process_walls": walls,
                "tag": tag,
                "sweep": sweep,
                "run": f"{tag}-{executor}",
                "environment_json": _environment(levels),
            }
        )
    return rows


def test_a_real_run_times_the_control_in_every_runner_process(conlab, db_path):
    done = conlab(
        *[
            "run",
            "-w",
            "tiny",
            "-e",
            "sequential",
            "--processes",
            "2",
            "--repeats",
            "2",
            "--warmups",
            "1",
        ]
    )
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db_path) as connection:
        (env,) = connection.execute("SELECT environment_json FROM run").fetchone()
    processes = json.loads(env)["runner_processes"]
    assert len(processes) == 2
    for process in processes:
        assert process["control_version"] == control.VERSION
        # before each of the 3 repeats (1 warm-up, 2 counted) and after the last
        assert len(process["control"]) == 4
        assert all(isinstance(v, int) and v > 0 for sample in process["control"] for v in sample)
    found = controlled.process_controls(env)
    assert sorted(found) == [0, 1]
    assert all(version == str(control.VERSION) and t > 0 for version, t in found.values())


@pytest.mark.parametrize(
    "env",
    [
        None,
        "not json",
        "[1, 2]",
        '{"runner_processes": "all of them"}',
        '{"runner_processes": [{"index": true, "control": [[1, 1]]}]}',
        '{"runner_processes": [{"index": 0, "control": [["1", 1], [-5, 3], [true, 2]]}]}',
        '{"runner_processes": [{"index": 0, "control": [[1e300, 1]]}]}',
        '{"runner_processes": [{"index": 0, "control": [[99999999999999999999, 1]]}]}',
        '{"runner_processes": [{"index": 0, "control": {"loop_ns": 5}}]}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_a_control_that_cannot_be_read_is_no_control(env):
    assert controlled.process_controls(env) == {}


def test_across_sweeps_the_control_cancels_the_level_each_sweep_met():
    # B's sweep met a machine 8% slower throughout, and B's code is 10% slower on top: the raw
    # figures say +18.8%, the controlled ones the +10% that is B's own.
    repeats = frame(_side("a", "s1", 0.1, 1.0) + _side("b", "s2", 0.11, 1.08))
    rows, _, _ = compare(repeats, "tag:a", "tag:b")
    for row in rows:
        assert row.basis == "controlled"
        # the level comes out in proportion to how the work followed the control within the
        # sweeps (a slope fitted over 16 processes, each with its own noise): near 1.10
        assert row.ratio == pytest.approx(1.10, rel=0.02)
        assert row.verdict == "slower"
        assert row.raw.ratio == pytest.approx(1.188, rel=0.005)
        assert (
            "tracked the work" in row.basis_why and "over 16 processes" in row.basis_why
        )  # its own executor's, both sweeps
        assert "different sweeps" in row.sweeps_note


def test_a_level_alone_is_no_difference_with_the_control():
    repeats = frame(_side("a", "s1", 0.1, 1.0) + _side("b", "s2", 0.1, 1.08))
    rows, _, _ = compare(repeats, "tag:a", "tag:b")
    for row in rows:
        assert row.basis == "controlled"
        assert row.verdict == "no significant difference"
        assert row.ratio == pytest.approx(1.0, abs=0.02)
        # a tie says what it rules out
        assert 0 < row.detectable < 0.05


def test_work_the_control_does_not_track_is_compared_raw_and_says_why():
    repeats = frame(
        _side("a", "s1", 0.1, 1.0, follows=False) + _side("b", "s2", 0.1, 1.08, follows=False)
    )
    rows, _, _ = compare(repeats, "tag:a", "tag:b")
    for row in rows:
        assert row.basis == "raw"
        assert "did not track" in row.basis_why
        assert row.ratio == row.raw.ratio
        # the control alone says B's machine was 8% slower: dividing by it would call B faster
        assert row.verdict == "no significant difference"
        # the controlled figure is shown beside, not used; its fitted slope (near 0: the work
        # did not follow the control) keeps it near the raw one
        assert row.controlled is not None
        assert row.controlled.ratio == pytest.approx(row.raw.ratio, abs=0.03)


def test_runs_without_a_control_or_from_elsewhere_are_compared_raw():
    old = _side("a", "s1", 0.1, 1.0)
    for row in old:
        row["environment_json"] = "{}"  # recorded before the control existed
    rows, _, _ = compare(frame(old + _side("b", "s2", 0.1, 1.0)), "tag:a", "tag:b")
    assert {r.basis for r in rows} == {"raw"}
    assert all("timed no control" in r.basis_why for r in rows)

    other_python = _side("b", "s2", 0.1, 1.0)
    for row in other_python:
        row["python"] = "3.13.1"
    rows, _, _ = compare(frame(_side("a", "s1", 0.1, 1.0) + other_python), "tag:a", "tag:b")
    assert all("across machines or interpreters" in r.basis_why for r in rows)


def test_a_baseline_measured_again_beside_the_new_runs_is_compared_within_that_sweep():
    # tag:a has an old run (sweep s1) and one measured again in B's sweep (s2)
    old = _side("a", "s1", 0.2, 1.0, executors=("sequential",))
    again = _side("a", "s2", 0.1, 1.0, executors=("sequential",))
    again[0]["run"] = "a-again"
    new = _side("b", "s2", 0.11, 1.0, executors=("sequential",))
    (row,), _, _ = compare(frame(old + again + new), "tag:a", "tag:b")
    assert row.ratio == pytest.approx(1.10, rel=0.005)
    assert row.verdict == "slower"
    assert "within the sweep(s) A and B share" in row.sweeps_note
    assert "1 run(s) from other sweeps left out" in row.sweeps_note


def test_the_detectable_change_shrinks_with_processes_and_grows_with_spread():
    assert power.detectable(0.03, 12) < power.detectable(0.03, 6)
    assert power.detectable(0.03, 24) < power.detectable(0.03, 12)
    assert power.detectable(0.05, 12) > power.detectable(0.03, 12)
    assert power.detectable(0.03, 1) == math.inf
    # a 3% spread between processes, 12 a side: Yuen keeps 8 of 12, se = 0.03 sqrt(2 x 11 /
    # (8 x 7)) = 1.88%, times t(14) 2.145 + z(0.8) 0.842: 5.6% on the log scale, 5.8% as a ratio
    assert power.detectable(0.03, 12) == pytest.approx(0.0578, abs=0.0005)
