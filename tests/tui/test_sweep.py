"""A sweep as the CLI and the app run it: several runner processes per run, taking turns, each
with a layout of its own; --repeats auto; --size auto. Real runners, a real SQLite file."""

from __future__ import annotations

import json
import sqlite3

import pytest

from experiments.calibrate import calibrate
from experiments.spec import ExperimentSpec
from service import sweeps as sweep_module
from service.sweeps import Sweep, check, plan
from storage.database import open_engine
from tests.conftest import run_args


def run_sweep(db_path, specs, **options) -> tuple[Sweep, list[tuple[str, int]]]:
    """Run ``specs`` through a real Sweep; returns it and the (run id, process) of each runner
    process in the order they started."""
    started = []

    def on_event(spec: ExperimentSpec, event: dict) -> None:
        if event["event"] == "env":
            started.append((spec.run_id, event["process"]))

    engine = open_engine(db_path, writer=True)
    sweep = Sweep(engine, specs, check(specs), on_event=on_event, **options)
    sweep.run()
    engine.dispose()
    return sweep, started


def tiny_specs(executors=("sequential", "threads"), processes=2, **params):
    return plan(
        ["tiny"], list(executors), [2], tasks=2, repeats=1, warmups=0, processes=processes, **params
    )


def test_processes_take_turns_in_a_recorded_shuffled_order(db_path):
    specs = tiny_specs(executors=("sequential", "threads", "asyncio"), processes=3)
    sweep, started = run_sweep(db_path, specs, order="turns", seed=42)
    assert [process for _, process in started] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for round_ in range(3):  # every run once per round
        assert {run for run, _ in started[3 * round_ : 3 * round_ + 3]} == {s.run_id for s in specs}
    # the same seed gives the same order; the order and seed are stored with the sweep
    _, again = run_sweep(
        db_path.with_name("again.db"),
        [s.replace(run_id=s.run_id) for s in specs],
        order="turns",
        seed=42,
    )
    assert again == started
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT run_order, order_seed FROM sweep").fetchall() == [("turns", 42)]
    assert sorted(db.execute("SELECT processes FROM run").fetchall()) == [(3,)] * 3
    rows = db.execute("SELECT run_id, process_index, repeat_index FROM repeat").fetchall()
    assert sorted((p, r) for run, p, r in rows if run == specs[0].run_id) == [
        (0, 0),
        (1, 1),
        (2, 2),
    ]


def test_blocks_run_every_process_of_a_run_before_the_next(db_path):
    specs = tiny_specs()
    _, started = run_sweep(db_path, specs, order="blocks")
    assert started == [
        (specs[0].run_id, 0),
        (specs[0].run_id, 1),
        (specs[1].run_id, 0),
        (specs[1].run_id, 1),
    ]


def test_each_process_gets_its_own_recorded_layout(db_path, user_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(user_dir)
    monkeypatch.syspath_prepend(str(user_dir))
    monkeypatch.setenv("PYTHONPATH", str(user_dir))
    monkeypatch.setenv("LAYOUT_OUT", str(tmp_path))
    specs = plan(
        ["usermod:layout"], ["sequential"], [1], tasks=1, repeats=1, warmups=0, processes=4, size=1
    )
    run_sweep(db_path, specs)
    seen = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    (env,) = sqlite3.connect(db_path).execute("SELECT environment_json FROM run").fetchone()
    recorded = json.loads(env)["runner_processes"]
    assert [r["index"] for r in recorded] == [0, 1, 2, 3]
    # what each runner saw is what was recorded for it
    assert sorted(seen) == sorted([str(r["hash_seed"]), r["padding"]] for r in recorded)
    assert len({r["hash_seed"] for r in recorded}) == 4


def test_repeats_auto_adds_processes_until_the_target_or_the_limit(db_path, monkeypatch):
    monkeypatch.setattr(sweep_module, "MAX_AUTO_PROCESSES", 4)
    specs = tiny_specs()
    sweep, started = run_sweep(db_path, specs, target_ci=1e-12, max_time_s=600)
    assert len(started) == 8  # an unreachable target: every run up to the limit
    assert all(r["processes"] == 4 and r["target_ci_met"] is False for r in sweep.results)
    # in blocks too: every process of one run, then the next
    _, started = run_sweep(db_path, specs := tiny_specs(), order="blocks", target_ci=1e-12)
    assert [run for run, _ in started] == [specs[0].run_id] * 4 + [specs[1].run_id] * 4
    # a target met at once: no process beyond the minimum
    sweep, started = run_sweep(db_path, tiny_specs(), target_ci=1e9, max_time_s=600)
    assert len(started) == 4 and all(r["target_ci_met"] for r in sweep.results)


def test_repeats_auto_stops_when_time_is_up(db_path):
    sweep, started = run_sweep(db_path, tiny_specs(), target_ci=1e-12, max_time_s=0.001)
    assert len(started) == 4  # the minimum processes run; none added past the time limit
    assert all(r["target_ci_met"] is False for r in sweep.results)


def test_run_json_carries_the_configuration_and_the_interval(conlab):
    result = conlab(
        *run_args(
            "sleep",
            "sequential",
            "threads",
            workers=2,
            tasks=2,
            size=5,
            repeats=3,
            warmups=0,
            processes=2,
        )
    )
    assert result.returncode == 0, result.stderr
    for run in result.json():
        assert run["python"].startswith("3.") and run["processes"] == 2
        assert 0 < run["ci_low_s"] < run["ci_high_s"]
        assert len(run["wall_s"]) == 6
    table = conlab("run", "-w", "tiny", "-e", "sequential", "--processes", "1", "--repeats", "2")
    assert "under 1 ms" in table.stdout  # said when the run ends, not only in reports


def test_a_user_function_is_sized_automatically(conlab):
    result = conlab(*run_args("usermod:work", "sequential", repeats=1, warmups=0))
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["size"] > 1000 and "--size auto" in result.stderr
    assert run["median_s"] / run["tasks"] >= 0.005  # no longer microseconds
    flat = conlab(*run_args("usermod:flat", "sequential", repeats=1, warmups=0))
    assert flat.json()[0]["size"] == 1
    assert "does not grow with its argument" in flat.stderr
    given = conlab(*run_args("usermod:work", "sequential", repeats=1, warmups=0, size=7))
    assert given.json()[0]["size"] == 7 and "--size auto" not in given.stderr


def test_calibration_finds_the_smallest_power_of_two_that_takes_the_target():
    import time

    sizes = []

    def nap(n):  # at least n * 0.1 ms: 128 -> 12.8 ms, past the 10 ms target however busy
        sizes.append(n)
        time.sleep(n * 1e-4)

    found = calibrate(nap)
    assert found["grows"] and found["call_s"] >= 0.010
    assert found["size"] <= 128  # on a quiet machine 64 or 128; a busy one oversleeps sooner
    # powers of two from 1 up, and the first one that took the target is the answer
    assert sorted(set(sizes)) == [2**k for k in range(found["size"].bit_length())]
    flat = calibrate(lambda n: None, fallback_size=3)
    assert flat == {**flat, "size": 3, "grows": False}
    # never flat against its first call (as a busy machine's noise can make a flat function
    # look), yet short of the target at 2**40: it does not grow with its argument either
    uneven = calibrate(lambda n: time.sleep(0 if n == 1 else 5e-4), fallback_size=3)
    assert uneven == {**uneven, "size": 3, "grows": False}


@pytest.mark.parametrize("order", ["sideways", ""])
def test_a_bad_order_is_refused(conlab, order):
    from tests.conftest import assert_one_line_error

    assert_one_line_error(conlab("run", "-w", "tiny", "-e", "sequential", "--order", order))


def test_several_sizes_take_turns_in_one_sweep_and_compare(conlab):
    result = conlab(
        *run_args("sleep", "sequential", size="5,10", tasks=2, repeats=2, warmups=0, processes=2)
    )
    assert result.returncode == 0, result.stderr
    runs = result.json()
    assert sorted(r["size"] for r in runs) == [5, 10] and len({r["sweep_id"] for r in runs}) == 1
    report = conlab("report", "--compare", "size:5", "size:10", "--format", "json")
    (row,) = report.json()["comparison"]["rows"]
    assert row["ratio"] > 1.5  # 10 ms naps against 5 ms ones
