"""Reports: known answers on hand-made frames, and real runs through `conlab report`."""

from __future__ import annotations

import collections
import functools
import json
import math
import re
import tempfile
import uuid
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage import stats, summaries
from storage.comparisons import compare, compare_groups
from storage.loading import COST_COLUMNS, WORKER_COLUMNS, processes_of, select
from storage.queries import OPTION_COLUMNS
from storage.summaries import karp_flatt
from storage.verdicts import (
    PROCESS_OVERHEAD_S,
    duration,
    fastest,
    processes_to_settle,
    undecided,
    verdicts,
    verdicts_by_work,
)
from tests.conftest import assert_one_line_error, run_args
from tests.helpers import environment, record_run


def summarize(repeats: pd.DataFrame) -> pd.DataFrame:
    """The summary of hand-made repeats, through their process rows as a report reads them."""
    return summaries.summarize(processes_of(repeats))


def min_effect_for(repeats: pd.DataFrame) -> float:
    return summaries.min_effect_for(processes_of(repeats))


def frame(rows: list[dict]) -> pd.DataFrame:
    """Repeats as load_repeats returns them, from (executor, workers, walls...) descriptions;
    ``walls`` are one runner process's, ``process_walls`` a list of several processes' walls."""
    records = []
    for n, row in enumerate(rows):
        run_id = row.get("run", f"run{n}")
        process_walls = row.get("process_walls", [row.get("walls")])
        walls = [(p, w) for p, group in enumerate(process_walls) for w in group]
        for index, (process, wall_s) in enumerate(walls):
            records.append(
                {
                    "process_index": process,
                    "process": f"{run_id}/{process}",
                    "run_order": row.get("order", "turns"),
                    "run_id": run_id,
                    "sweep_id": row.get("sweep", "s1"),
                    "tag": row.get("tag"),
                    "status": "ok",
                    "workload": row.get("workload", "cpu"),
                    "size": row.get("size", 100),
                    "tasks": 16,
                    "executor": row["executor"],
                    "start_method": None,
                    "workers": row["workers"],
                    "chunksize": None,
                    # every other option a run stores: not given
                    **{c: None for c in OPTION_COLUMNS if c not in ("size", "tasks", "workers")},
                    "created_at": f"2026-01-01 00:00:{n:02d}",
                    "environment_json": row.get("environment_json", "{}"),
                    "machine_fingerprint": "abc",
                    "machine": row.get("machine", "box"),
                    "cores": 4,
                    "cpu_model": "x",
                    "python": row.get("python", "3.12.1"),
                    "gil_disabled": row.get("gil_disabled", False),
                    "repeat_index": index,
                    "warmup": False,
                    "wall_ns": int(wall_s * 1e9),
                    "cpu_ns": int(row.get("cpu", 1.0) * wall_s * 1e9),
                    "db": "test",
                    "wall_s": wall_s,
                    "startup_ns": 1_000_000,
                    "busy_ns": int(wall_s * 1e9),
                    **{c: row.get(c, math.nan) for c in (*COST_COLUMNS, *WORKER_COLUMNS)},
                }
            )
    return pd.DataFrame(records)


KNOWN_ROWS = [
    {"executor": "sequential", "workers": 1, "walls": [1.00, 1.00, 1.00, 1.00, 1.00]},
    {"executor": "processes", "workers": 2, "walls": [0.50, 0.50, 0.50, 0.50, 0.50], "cpu": 2},
    {
        "executor": "processes",
        "workers": 4,
        "walls": [0.40, 0.40, 0.40, 0.40, 0.40],
        "cpu": 2.5,
    },
    {"executor": "threads", "workers": 4, "walls": [1.05, 1.05, 1.05, 1.05, 1.05], "cpu": 1.0},
]
KNOWN = frame(KNOWN_ROWS)


def row(summary: pd.DataFrame, executor: str, workers: int) -> pd.Series:
    match = summary[(summary["executor"] == executor) & (summary["workers"] == workers)]
    assert len(match) == 1
    return match.iloc[0]


def test_speedup_efficiency_and_karp_flatt_have_the_known_values():
    summary = summarize(KNOWN)
    perfect = row(summary, "processes", 2)
    assert perfect["speedup"] == pytest.approx(2.0) and perfect["efficiency"] == pytest.approx(1)
    assert perfect["karp_flatt"] == pytest.approx(0.0)
    four = row(summary, "processes", 4)
    assert four["speedup"] == pytest.approx(2.5) and four["efficiency"] == pytest.approx(0.625)
    # e = (1/2.5 - 1/4) / (1 - 1/4) = 0.2
    assert four["karp_flatt"] == pytest.approx(0.2)
    assert karp_flatt(2.5, 4) == pytest.approx(0.2) and math.isnan(karp_flatt(1.0, 1))
    assert row(summary, "sequential", 1)["speedup"] == pytest.approx(1.0)
    assert row(summary, "sequential", 1)["cv"] == pytest.approx(0.0)


def test_words_say_what_the_numbers_show():
    words = " ".join(verdicts(summarize(KNOWN)))
    assert "fastest is processes x4" in words and "2.50x" in words
    assert "threads x4 gave 0.95x" in words and "the GIL" in words


def test_each_piece_of_work_has_its_own_verdicts_in_the_summary_order():
    two = frame(
        [
            *({**r, "workload": "cpu"} for r in KNOWN_ROWS),
            {"executor": "threads", "workers": 2, "walls": [1, 1, 1], "workload": "a" * 80},
        ]
    )
    summary = summarize(two)
    by_work = verdicts_by_work(summary)
    assert [line for lines in by_work for line in lines] == verdicts(summary)
    assert [lines[0].split(" on ")[0] for lines in by_work] == ["a" * 80, "cpu"]
    assert "no sequential run" in by_work[0][0] and "fastest is processes x4" in by_work[1][0]
    assert all(not line.startswith(" ") for line in (lines[0] for lines in by_work))
    assert verdicts_by_work(summarize(KNOWN)) == [verdicts(summarize(KNOWN))]


def test_sizes_and_counts_are_written_out_never_in_scientific_notation():
    from storage.text import number_text

    assert number_text(4 * 2**20) == number_text(4194304.0) == "4,194,304"
    assert number_text(16) == "16" and number_text(2.5) == "2.5"
    assert number_text(1e21) == "1,000,000,000,000,000,000,000"
    assert number_text(None) == number_text(float("nan")) == number_text(math.inf) == "–"


def test_no_sequential_run_is_said_plainly():
    summary = summarize(frame([{"executor": "threads", "workers": 2, "walls": [1, 1, 1]}]))
    assert math.isnan(summary.iloc[0]["speedup"])
    assert any("no sequential run" in w for w in summary.iloc[0]["warnings"])
    assert "no sequential run" in verdicts(summary)[0]


def test_stability_warnings():
    noisy = frame(
        [
            {"executor": "sequential", "workers": 1, "walls": [1.0, 1.5]},
            {"executor": "threads", "workers": 2, "walls": [3.0, 1.0, 1.0, 1.0, 1.0]},
            {"executor": "processes", "workers": 2, "walls": [0.0005] * 5, "workload": "tiny"},
        ]
    )
    summary = summarize(noisy)
    sequential = " ".join(row(summary, "sequential", 1)["warnings"])
    assert "only 2 repeat(s)" in sequential and "CV" in sequential
    threads = " ".join(row(summary, "threads", 2)["warnings"])
    assert "first repeat 3.0x slower" in threads
    assert "dispatch overhead" in " ".join(row(summary, "processes", 2)["warnings"])


def test_verdicts_set_the_memory_of_a_worker_interpreter_against_a_worker_process():
    mib = 2**20
    summary = summarize(
        frame(
            [
                {
                    "executor": "sequential",
                    "workers": 1,
                    "walls": [1.0] * 5,
                    "peak_rss_bytes": 20 * mib,
                },
                {
                    "executor": "interpreters",
                    "workers": 2,
                    "walls": [0.55] * 5,
                    "cpu": 2,
                    "peak_rss_bytes": 36 * mib,
                },
                {
                    "executor": "processes",
                    "workers": 2,
                    "walls": [0.5] * 5,
                    "cpu": 2,
                    "peak_rss_bytes": 60 * mib,
                },
            ]
        )
    )
    words = "\n".join(verdicts(summary))
    assert (
        "interpreters x2: 8.0 MiB per worker interpreter, all in the runner's process (36 MiB at "
        "peak), against 20 MiB per worker process for processes x2 (peaks above the sequential "
        "run's 20 MiB)." in words
    )


def test_verdicts_weigh_memory_and_switches_and_warn_of_an_unfit_machine():
    mib = 2**20
    walls = [1.0] * 5
    costly = frame(
        [
            {
                "executor": "sequential",
                "workers": 1,
                "walls": walls,
                "peak_rss_bytes": 50 * mib,
                "voluntary_switches": 2,
                "involuntary_switches": 1,
            },
            {
                "executor": "threads",
                "workers": 2,
                "walls": [1.02] * 5,
                "peak_rss_bytes": 100 * mib,
                "voluntary_switches": 900,
                "involuntary_switches": 41_000,
            },
            {
                "executor": "processes",
                "workers": 2,
                "walls": [0.5] * 5,
                "cpu": 2,
                "peak_rss_bytes": 380 * mib,
                "voluntary_switches": 10,
                "involuntary_switches": 5,
            },
        ]
    )
    unfit = {
        "problems": [
            "CPU frequency governor is 'powersave', so the clock speed varies; "
            "set it with `sudo cpupower frequency-set -g performance`"
        ]
    }
    costly.loc[costly["executor"] == "processes", "environment_json"] = json.dumps(unfit)
    summary = summarize(costly)
    words = "\n".join(verdicts(summary))
    assert "processes x2: 2.0x faster than sequential, 3.8x the memory of threads x2" in words
    assert (
        "the GIL serialised the work, 41,900 context switches a repeat (41,000 involuntary)"
        in words
    )
    warned = " ".join(row(summary, "processes", 2)["warnings"])
    assert "measured on an unfit machine: CPU frequency governor is 'powersave'" in warned
    assert "unfit" not in " ".join(row(summary, "threads", 2)["warnings"])
    assert row(summary, "processes", 2)["peak_rss_bytes"] == 380 * mib
    # runs recorded before costs were: no figure and no sentence made up
    assert "memory" not in "\n".join(verdicts(summarize(KNOWN)))


def test_same_configuration_twice_is_no_significant_difference():
    rng = np.random.default_rng(1)
    a = [0.1 * (1 + rng.normal(0, 0.01, 7)) for _ in range(3)]
    b = [0.1 * (1 + rng.normal(0, 0.01, 5)) for _ in range(4)]  # unequal processes and repeats
    found = compare_groups(a, b)
    assert found.verdict == "no significant difference"
    assert found.low <= 1 <= found.high and found.p_value > 0.05


def test_a_doubled_time_is_slower_and_a_halved_one_faster():
    a = [[0.050, 0.051, 0.0505], [0.0502, 0.0508, 0.0503]]
    b = [[0.100, 0.1004, 0.1009], [0.1001, 0.1003, 0.1006]]
    assert compare_groups(a, b).verdict == "slower"
    assert compare_groups(b, a).verdict == "faster"
    assert compare_groups(a, b).ratio == pytest.approx(2.0, rel=0.02)


def test_a_small_change_below_the_minimum_effect_is_no_difference():
    a = [[1.000, 1.001], [1.002, 1.000], [1.001, 1.0]]
    b = [[1.020, 1.021], [1.022, 1.020], [1.021, 1.02]]  # 2% slower, consistently
    assert compare_groups(a, b).verdict == "no significant difference"
    assert compare_groups(a, b, min_effect=0.01).verdict == "slower"


def test_a_difference_inside_the_between_process_spread_is_a_tie():
    # Every process is steady, but the processes disagree by ~7% (layout): B's 4% is inside.
    a = [[1.00] * 5, [1.07] * 5, [1.03] * 5]
    b = [[1.04] * 5, [1.11] * 5, [1.06] * 5]
    assert compare_groups(a, b, min_effect=0.0).verdict == "no significant difference"


def test_a_winner_inside_the_noise_is_called_a_tie():
    summary = summarize(
        frame(
            [
                {
                    "executor": "sequential",
                    "workers": 1,
                    "process_walls": [[1.0, 1.01], [0.99, 1.0]],
                },
                {
                    "executor": "threads",
                    "workers": 2,
                    "process_walls": [[0.161, 0.162], [0.165, 0.160]],
                },
                {
                    "executor": "asyncio",
                    "workers": 2,
                    "process_walls": [[0.162, 0.163], [0.161, 0.166]],
                },
            ]
        )
    )
    words = " ".join(verdicts(summary))
    assert "fastest" not in words and "are tied" in words
    assert "threads x2" in words and "asyncio x2" in words


def test_runs_without_an_interval_are_no_verdict_not_a_tie():
    # one repeat in one process each: 8 ms against 0.01 ms is no tie, and no winner either
    summary = summarize(
        frame(
            [
                {"executor": "sequential", "workers": 1, "process_walls": [[0.00001]]},
                {"executor": "threads", "workers": 2, "process_walls": [[0.0082]]},
            ]
        )
    )
    words = " ".join(verdicts(summary))
    assert "are tied" not in words and "fastest" not in words
    assert "sequential and threads x2 cannot be told apart" in words and "--repeats" in words


def test_speedups_and_verdicts_keep_interpreters_and_sizes_apart():
    summary = summarize(
        frame(
            [
                {"executor": "sequential", "workers": 1, "walls": [1.0] * 3, "python": "3.11.7"},
                {"executor": "processes", "workers": 2, "walls": [0.5] * 3, "python": "3.11.7"},
                {"executor": "sequential", "workers": 1, "walls": [0.8] * 3, "python": "3.12.1"},
                {"executor": "processes", "workers": 2, "walls": [0.8] * 3, "python": "3.12.1"},
                {"executor": "sequential", "workers": 1, "walls": [0.01] * 3, "size": 1},
                {"executor": "threads", "workers": 2, "walls": [1.0] * 3, "size": 1},
            ]
        )
    )
    speedups = {(r.python, r.size, r.executor): r.speedup for r in summary.itertuples()}
    assert speedups[("3.11.7", 100, "processes")] == pytest.approx(2.0)
    assert speedups[("3.12.1", 100, "processes")] == pytest.approx(1.0)
    assert speedups[("3.12.1", 100, "sequential")] == pytest.approx(1.0)
    assert speedups[("3.12.1", 1, "threads")] == pytest.approx(0.01)
    words = verdicts(summary)
    # one verdict per interpreter and size: 3.12's two equal times are a tie
    assert sum("fastest is" in w for w in words) == 2
    assert sum("are tied" in w and "3.12.1" in w for w in words) == 1
    assert any("at size 1 " in w for w in words)


def test_figures_that_cannot_mean_what_their_name_says_are_flagged():
    summary = summarize(
        frame(
            [
                {"executor": "sequential", "workers": 1, "walls": [1.0] * 5},
                {"executor": "processes", "workers": 2, "walls": [0.45] * 5},  # 111% efficient
                {"executor": "threads", "workers": 2, "walls": [1.3] * 5},  # slower than sequential
            ]
        )
    )
    fast = " ".join(row(summary, "processes", 2)["warnings"])
    assert "super-linear" in fast and "outside 0..1" in fast
    slow = " ".join(row(summary, "threads", 2)["warnings"])
    assert "outside 0..1" in slow and "no faster than sequential" in slow


def test_a_configuration_measured_in_blocks_says_so():
    summary = summarize(
        frame(
            [
                {"executor": "sequential", "workers": 1, "walls": [1.0] * 3, "order": "blocks"},
                {"executor": "threads", "workers": 2, "walls": [1.0] * 3},
            ]
        )
    )
    assert "measured in blocks" in " ".join(row(summary, "sequential", 1)["warnings"])
    assert "measured in blocks" not in " ".join(row(summary, "threads", 2)["warnings"])


def test_between_process_spread_is_shown_where_it_dominates():
    summary = summarize(
        frame(
            [
                # steady repeats, processes 15% apart: said
                {"executor": "sequential", "workers": 1, "process_walls": [[1.0] * 4, [1.15] * 4]},
                # repeats as spread as the processes: nothing to add
                {"executor": "threads", "workers": 2, "process_walls": [[1.0, 1.15], [1.01, 1.16]]},
            ]
        )
    )
    assert summary.iloc[0]["processes"] == 2
    assert "moved 15% between processes" in " ".join(row(summary, "sequential", 1)["warnings"])
    assert "between processes" not in " ".join(row(summary, "threads", 2)["warnings"])


def test_threads_scaling_is_explained_by_the_gil_state_the_workers_recorded():
    runs = [
        {"executor": "sequential", "workers": 1, "walls": [1.0] * 5},
        {"executor": "threads", "workers": 2, "walls": [0.52] * 5, "cpu": 1.95},
    ]
    free = frame([{**r, "gil_disabled": True} for r in runs])
    free["environment_json"] = json.dumps({"gil_enabled_by_worker": {"101": False}})
    words = verdicts(summarize(free))
    assert any("the threads ran Python in parallel on this free-threaded build" in v for v in words)
    with_gil = verdicts(summarize(frame(runs)))  # the same figures with a GIL: C code or I/O
    assert any("the work releases the GIL (C code or I/O)" in v for v in with_gil)
    assert not any("in parallel" in v for v in with_gil)
    # a free-threaded build whose runs recorded no GIL state: no claim about the GIL either way
    unknown = verdicts(summarize(frame([{**r, "gil_disabled": True} for r in runs])))
    assert any("its GIL state not recorded" in v for v in unknown)
    assert not any("in parallel" in v or "serialised" in v for v in unknown)


def test_compare_matches_configurations_and_names_what_differs():
    common = {"workers": 2, "walls": [1.0] * 5, "tag": "before", "python": "3.11.7"}
    before = frame([{**common, "executor": "threads"}, {**common, "executor": "processes"}])
    changed = {"walls": [2.0] * 5, "tag": "after", "python": "3.12.1", "run": "other"}
    after = frame([{**common, "executor": "threads", **changed}])
    both = pd.concat([before, after], ignore_index=True)
    comparisons, geomean, differences = compare(both, "python:3.11", "python:3.12")
    assert len(comparisons) == 1 and comparisons[0].config["executor"] == "threads"
    assert geomean == pytest.approx(2.0)
    assert differences["python"] == ("3.11.7", "3.12.1")
    assert len(select(both, "tag:before,executor:threads")) == 5


@pytest.mark.parametrize("bad", ["tag", "colour:red", "tag:", "python3.12"])
def test_bad_selections_are_refused(bad):
    from storage.errors import SelectionError

    with pytest.raises(SelectionError, match="KEY:VALUE"):
        select(KNOWN, bad)


# --- real runs through the CLI ---------------------------------------------------------------


def test_report_over_real_runs(conlab, tmp_path):
    # naps of 50 ms: a busy machine's late wake-ups (some ms each) stay small beside them
    args = dict(workers=4, tasks=4, repeats=5, warmups=0)
    assert (
        conlab(*run_args("sleep", "sequential", "threads", **args, size=50, tag="fast")).returncode
        == 0
    )
    assert (
        conlab(*run_args("sleep", "sequential", "threads", **args, size=100, tag="slow")).returncode
        == 0
    )

    report = conlab("report", "--format", "json", "--select", "tag:fast")
    assert report.returncode == 0, report.stderr
    data = report.json()
    threads = [r for r in data["summary"] if r["executor"] == "threads"][0]
    assert threads["speedup"] > 2.5 and threads["efficiency"] == pytest.approx(
        threads["speedup"] / 4
    )
    assert threads["in_flight"] > 2.5  # four naps overlap

    same = conlab("report", "--compare", "tag:fast", "tag:fast", "--format", "json").json()
    assert {r["verdict"] for r in same["comparison"]["rows"]} == {"no significant difference"}

    slower = conlab("report", "--compare", "tag:fast", "tag:slow", "--format", "json").json()
    assert {r["verdict"] for r in slower["comparison"]["rows"]} == {"slower"}
    assert slower["comparison"]["environment_differences"]["size"] == ["50", "100"]

    gate = conlab("report", "--compare", "tag:fast", "tag:slow", "--fail-if-slower", "50")
    assert gate.returncode == 1 and "slower by more than 50%" in gate.stderr
    assert (
        conlab("report", "--compare", "tag:fast", "tag:slow", "--fail-if-slower", "150").returncode
        == 0
    )
    assert (
        conlab("report", "--compare", "tag:slow", "tag:fast", "--fail-if-slower", "5").returncode
        == 0
    )  # faster is never a failure

    page = tmp_path / "report.html"
    assert conlab("report", "--format", "html", "--output", str(page)).returncode == 0
    text = page.read_text()
    assert text.count("<svg") >= 3 and "task timeline" in text and "ideal" in text
    assert not re.search(r"(src|href)=|https?://|<script", text)

    csv = conlab("report", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("machine,python,workload") and len(csv) == 5
    markdown = conlab("report", "--format", "markdown").stdout
    assert "| workload |" in markdown and "fastest is threads x4" in markdown


def test_report_on_an_empty_database_says_how_to_start(conlab, db_path):
    from storage.database import open_engine

    open_engine(db_path).dispose()
    result = conlab("report")
    assert result.returncode == 0 and "conlab run -w cpu" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["report", "--compare", "tag:x"],
        ["report", "--compare", "flavour:x", "tag:y"],
        ["report", "--compare", "tag:nothing", "tag:nothing-either"],
        ["report", "--fail-if-slower", "5"],
        ["report", "--format", "pdf"],
        ["report", "--timeline", "zzzz", "--format", "html"],
    ],
)
def test_bad_report_input_is_one_line(conlab, db_with_one_run, args):
    assert_one_line_error(conlab(*args))


def test_json_summary_is_plain_json(conlab):
    assert conlab("run", "-w", "tiny", "-e", "sequential", "--repeats", "2").returncode == 0
    data = json.loads(conlab("report", "--format", "json").stdout)
    assert data["summary"][0]["speedup"] == 1.0
    assert "dispatch overhead" in " ".join(data["summary"][0]["warnings"])


def test_a_free_threaded_run_is_labelled_and_keeps_each_workers_gil_state(tmp_path):
    # The events a runner on a free-threaded build sends (samples carry the GIL state), fed to
    # the real recorder and database: no such interpreter is on every machine that runs this.
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine
    from storage.loading import load_repeats
    from storage.recorder import RunRecorder

    engine = open_engine(tmp_path / "ft.db", writer=True)
    spec = ExperimentSpec(
        workload="cpu", executor="threads", workers=2, tasks=2, repeats=1, warmups=0
    )
    recorder = RunRecorder(
        engine, spec, {"workers": 2, "start_method": None, "chunksize": None, "size": 10}
    )
    recorder.start()
    environment = {
        "machine_fingerprint": "f" * 20,
        "interpreter_key": "k" * 20,
        "python_version": "3.13.0",
        "py_gil_disabled": True,
    }
    samples = [[7, 1, 100, 9_000, False], [7, 2, 120, 9_500, True]]
    recorder.on_event({"event": "env", "environment": environment, "runner_pid": 7})
    recorder.on_event(
        {
            "event": "repeat",
            "index": 0,
            "warmup": False,
            "wall_ns": 10_000,
            "cpu_ns": 19_000,
            "start_ns": 0,
            "end_ns": 10_000,
        }
    )
    recorder.on_event({"event": "tasks", "repeat": 0, "samples": samples})
    recorder.finish("ok")
    engine.dispose()
    reader = open_engine(tmp_path / "ft.db")
    with reader.connect() as connection:
        text_ = connection.exec_driver_sql("SELECT environment_json FROM run").scalar()
    assert json.loads(text_)["gil_enabled_by_worker"] == {"7": True}  # its last sample's state
    repeats = load_repeats([("ft", reader)])
    assert set(repeats["python"]) == {"3.13.0t"}
    assert len(select(repeats, "python:3.13")) == 1


def test_selections_take_size_and_workers():
    both = frame(
        [
            {"executor": "threads", "workers": 2, "walls": [1.0] * 3, "size": 100},
            {"executor": "threads", "workers": 4, "walls": [1.0] * 3, "size": 200},
        ]
    )
    assert set(select(both, "size:200")["workers"]) == {4}
    assert set(select(both, "workers:2,size:100")["size"]) == {100}
    assert select(both, "workers:3").empty


# --- text from a received database is only ever text ------------------------------------------

# Strings a database someone sent may hold in any text column: HTML and script, attributes,
# Markdown links and images, rich/Textual markup (with actions), terminal sequences (ESC, OSC,
# a one-character CSI, bidirectional controls), spreadsheet formulas, control characters.
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)",
    "javascript:alert(1)",
    "[x](javascript:alert(1))",
    "![x](http://example.invalid/p.png)",
    "<http://example.invalid>",
    "</style><script>alert(1)</script>",
    "</title></svg><b>bold</b>",
    "&lt;script&gt;",
    "1. listed",
    "- listed",
    "# heading",
    "`code` *em* _em_ ~~gone~~ | cell |",
    "[/x]",
    "[/i]",
    "[bold red]loud[/]",
    "[@click=app.quit]quit[/]",
    "\x1b]0;retitled\x07",
    "\x1b[2J\x1b[31mred",
    "\x9b31m",
    "\x1b]8;;http://example.invalid\x1b\\link\x1b]8;;\x1b\\",
    '=HYPERLINK("http://example.invalid","x")',
    "+1+1",
    "-1+2",
    "@SUM(A1:A2)",
    "\tpadded",
    "line\nbreak\rreturn\x00nul\x7fdel",
    # bidirectional controls: each reorders what follows it, so one host name reads as another
    "ho\u2066st\u2069-\u2067a\u2068",
    "\u200fx\u200e\u061cy",
    "lab-\u202egnp.exe",
    "a\u202ab\u202cc\u202dd\u202b",
]


# The bidirectional controls, which no output may carry as they are (storage.text).
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def hostile_database(path, texts: list[str]) -> tuple[str, str]:
    """A lab database whose every shown text column holds one of ``texts`` (cycled): host
    names, CPU models, Python versions, workload, executor, start method, tags, an error.
    Two sweeps of the same work on two machines; returns their sweep ids (for --compare)."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine

    text = [texts[n % len(texts)] for n in range(10)]
    engine = open_engine(path, writer=True)
    sweeps = []
    for side, fingerprint in ((0, "a" * 20), (1, "b" * 20)):
        host = text[side] + ("" if side == 0 else " (B)")  # two machines, two names
        # The CPU models differ, so that the comparison shows them (as it shows what differs).
        env = environment(
            fingerprint, host, text[2 + side] + ("" if side == 0 else " (B)"), text[4]
        )
        sweep = ExperimentSpec(workload="x", executor="x").sweep_id
        sweeps.append(sweep)
        common = dict(
            workload=text[5], tasks=2, repeats=3, warmups=0, tag=text[8 + side], sweep_id=sweep
        )
        base = 10.0 + side
        record_run(engine, ExperimentSpec(executor="sequential", **common), env, [base] * 3)
        parallel = ExperimentSpec(executor=text[6], workers=2, **common)
        record_run(engine, parallel, env, [base * 0.6, base * 0.61, base * 0.62], text[7])
    failed = ExperimentSpec(executor=text[6], workers=2, **common)
    record_run(engine, failed, env, [], error=text[9])
    engine.dispose()
    return sweeps[0], sweeps[1]


class Page(HTMLParser):
    """What a browser would build from a page: its elements (tag and attribute names, counted)
    and its text."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.elements: collections.Counter = collections.Counter()
        self.attributes: set[str] = set()
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        names = tuple(sorted(name for name, _ in attrs))
        self.elements[(tag, names)] += 1
        self.attributes.update(names)

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


def rendered(path, sweeps, labels=None) -> tuple[str, str]:
    """The HTML page and the Markdown of a database, with a comparison of its two sweeps (or
    of two selections spelled ``labels``) and a task timeline, as `conlab report` makes them."""
    from service.present import render
    from storage.database import open_engine
    from storage.loading import load_repeats, load_timeline

    engine = open_engine(path, create=False)
    try:
        repeats = load_repeats([("db", engine)])
        summary = summarize(repeats)
        words = verdicts(summary)
        a, b = (f"sweep:{sweep}" for sweep in sweeps)
        compared = (*compare(repeats, a, b), *(labels or (a, b)))
        run_id = str(repeats[repeats["workers"] > 1]["run_id"].iloc[0])
        timeline = (run_id, load_timeline(engine, run_id))
        said = verdicts_by_work(summary)
        return render.html_page(summary, said, compared, timeline), render.markdown(
            summary, words, compared
        )
    finally:
        engine.dispose()


def _markdown_viewer():
    import markdown_it

    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table")


@functools.cache
def _plain_pages(count: int) -> tuple[Page, Page]:
    """The page and the shown Markdown of a database holding ``count`` plain words, parsed: the
    same for every hostile database they are held against, so made once per session."""
    plain = [f"text{n}" for n in range(count)]
    with tempfile.TemporaryDirectory(prefix="conlab-plain-") as folder:
        path = Path(folder) / "plain.db"
        pages = rendered(path, hostile_database(path, plain), labels=plain[:2])
    return Page(pages[0]), Page(_markdown_viewer().render(pages[1]))


def assert_only_text_from_data(tmp_path, texts: list[str]) -> None:
    """The report of a database holding ``texts`` has exactly the elements and attributes of
    the report of one holding plain words, and shows each of ``texts`` as text."""
    from storage.text import printable

    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    sweeps = hostile_database(folder / "hostile.db", texts)
    pages = rendered(folder / "hostile.db", sweeps, labels=texts[:2])
    plain_pages = _plain_pages(len(texts))
    viewer = _markdown_viewer()
    for index, make in ((0, str), (1, viewer.render)):  # the page; the Markdown as shown
        hostile, plain_page = Page(make(pages[index])), plain_pages[index]
        assert hostile.elements == plain_page.elements
        assert not {a for a in hostile.attributes if a.startswith("on")}
        assert not hostile.attributes & {"href", "src", "style", "xlink:href"}
        assert not BIDI.search(pages[index]), repr(BIDI.findall(pages[index]))
        shown = hostile.text.replace("\n", " ")
        for text in texts[:8]:  # hosts, CPUs, Python, workload, executor, start method
            assert printable(text).strip() in shown


def test_a_report_shows_hostile_text_as_text_and_nothing_else(tmp_path):
    for start in range(0, len(HOSTILE), 10):
        chunk = (HOSTILE[start:] + HOSTILE)[:10]
        assert_only_text_from_data(tmp_path, chunk)


SHOWN_TEXT = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(min_size=1, max_size=16),
    st.lists(st.sampled_from(HOSTILE + list("<>\"'&[]/\\`*_!|=#-")), max_size=4).map("".join),
).filter(lambda s: s.strip() not in ("", "sequential", "threads", "processes", "pool"))


# Each example records databases and renders every format: minutes on a busy machine, where the
# per-test timeout would otherwise end it (the time is no part of what it checks).
@pytest.mark.timeout(900)
@pytest.mark.slow
@given(st.lists(SHOWN_TEXT, min_size=10, max_size=10))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_text_in_a_database_is_only_text_in_its_reports(tmp_path, texts):
    assert_only_text_from_data(tmp_path, texts)


@pytest.mark.damaged_databases  # a zero wall time is what `db check` reports
def test_a_zero_wall_time_is_no_figure_and_no_warning(conlab, tmp_path):
    """A damaged repeat that took no time: no numpy warning on stderr, no "inf" in any report;
    the figures it would have made are missing, the others are there."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine

    db = tmp_path / "zero.db"
    engine = open_engine(db, writer=True)
    sweeps = []
    for side in range(2):
        env = environment("z" * 20, "host", "cpu", "3.12.1")
        sweeps.append(ExperimentSpec(workload="x", executor="x").sweep_id)
        common = dict(workload="cpu", tasks=2, repeats=3, warmups=0, sweep_id=sweeps[-1])
        record_run(engine, ExperimentSpec(executor="sequential", **common), env, [0, 10, 10])
        walls = [0, 0, 0] if side == 0 else [6, 6, 6]
        record_run(engine, ExperimentSpec(executor="threads", workers=2, **common), env, walls)
    engine.dispose()
    compare_args = ["--compare", f"sweep:{sweeps[0]}", f"sweep:{sweeps[1]}"]
    for format in ("table", "markdown", "csv", "json", "html"):
        result = conlab("report", "--db", str(db), "--format", format, *compare_args)
        assert result.returncode == 0 and result.stderr == "", (format, result.stderr)
        assert not re.search(r"\binf|nan\b|Infinity|NaN", result.stdout), format
    summary = conlab("report", "--db", str(db), "--format", "json").json()["summary"]
    by_executor = {row["executor"]: row for row in summary}
    assert by_executor["sequential"]["repeats"] == 4  # the two zero repeats are left out
    assert by_executor["threads"]["repeats"] == 3  # only the sweep that measured something


def test_the_threshold_is_half_the_smallest_change_a_run_was_measured_to_detect():
    def runs(*environments):
        return frame(
            [
                {"executor": "threads", "workers": 2, "walls": [1.0] * 3, "environment_json": e}
                for e in environments
            ]
        )

    assert min_effect_for(runs("{}", "{}")) == 0.05  # none asked: 5%
    assert min_effect_for(runs('{"detect": 0.04}', '{"detect": 0.06}', "{}")) == 0.02
    # what is not a fraction of a change, or not JSON, asks for nothing
    hostile = ('{"detect": "0.04"}', '{"detect": 2}', '{"detect": -1}', '{"detect": true}')
    assert min_effect_for(runs(*hostile, '"detect"', "not json", None)) == 0.05


# The case: processes x2 1.4x and threads x2 1.2x inside each other's (and sequential's)
# wide intervals, three runner processes each, the machine's level moving between them.
UNDECIDED = [
    {
        "executor": "sequential",
        "workers": 1,
        "process_walls": [[1.0, 1.0], [0.7, 0.72], [1.3, 1.28]],
    },
    {
        "executor": "processes",
        "workers": 2,
        "process_walls": [[0.71, 0.7], [0.5, 0.52], [0.95, 0.93]],
    },
    {
        "executor": "threads",
        "workers": 2,
        "process_walls": [[0.83, 0.84], [0.6, 0.62], [1.1, 1.05]],
    },
]


def test_leaders_tied_at_this_noise_are_undecided_with_the_time_that_would_decide():
    summary = summarize(frame(UNDECIDED))
    (headline,) = [w for w in verdicts(summary) if not w.startswith(" ")]
    assert "undecided at this noise: processes x2 1.39x (95% CI 0.70–2.77), threads x2 1.19x" in (
        headline
    )
    assert "and sequential 1.00x are tied" in headline and "fastest" not in headline
    best, ties = fastest(summary)
    found = undecided(best, ties)
    # the interval narrows as the square root of the processes: the widest tie needs this many
    assert found.processes > 3 and found.more == found.processes - 3
    assert f"{found.processes} runner processes each ({found.more} more, " in headline
    assert duration(found.seconds) in headline and "would tell them apart" in headline
    assert headline.endswith(f"(--processes {found.processes}).")
    # more of the same spread settles it: with the processes asked for, no tie is left open
    assert found.seconds == pytest.approx(
        found.more * sum((2 + 1) * row.median_s + PROCESS_OVERHEAD_S for row in found.leaders)
    )


def test_a_tie_that_more_processes_would_not_change_is_not_undecided():
    summary = summarize(
        frame(
            [
                {"executor": "sequential", "workers": 1, "process_walls": [[1.0, 1.0]] * 3},
                {
                    "executor": "threads",
                    "workers": 2,
                    "process_walls": [[1.01, 1.01], [1.0, 1.0], [1.01, 1.0]],
                },
            ]
        )
    )
    best, ties = fastest(summary)
    assert ties and undecided(best, ties) is None
    assert not any("undecided" in w for w in verdicts(summary))


def test_processes_to_settle_grow_as_the_square_of_the_spread():
    wide = stats.Ratio(1.2, 1.2 / 1.5, 1.2 * 1.5, 0.5, stats.NO_DIFFERENCE)
    assert processes_to_settle(wide, 3, 0.05) == math.ceil(3 * (math.log(1.5) / math.log(1.2)) ** 2)
    # a difference near zero is settled as a tie: the interval inside ±5%
    flat = stats.Ratio(1.0, 1 / 1.1, 1.1, 0.9, stats.NO_DIFFERENCE)
    assert processes_to_settle(flat, 4, 0.05) == math.ceil(
        4 * (math.log(1.1) / math.log(1.05)) ** 2
    )
