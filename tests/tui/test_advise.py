"""`conlab advise`: the answer obeys its rules for four kinds of user function (not exact
figures: the machine is shared and noisy), bad input is one line, a failing function stores
nothing, and the stop rule and the plan follow from the figures."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from bench.advise import in_processes
from bench.kinds import ADVISE_KINDS as KINDS
from experiments.environment import usable_cores
from experiments.spec import SpecError
from service import advise
from storage import stats
from tests.conftest import assert_one_line_error

BUDGET = "10"
TASKS = ["--tasks", "8"]  # within the budget even on a busy machine


@pytest.fixture
def kinds(user_dir):
    (user_dir / "kinds.py").write_text(KINDS)
    return user_dir


def _advise(conlab, function: str, *extra: str, budget: str = BUDGET) -> dict:
    result = conlab("advise", f"kinds:{function}", "--time-budget", budget, "--json", *extra)
    assert result.returncode == 0, result.stderr
    return result.json()


def _names(found: dict) -> set:
    rec = found["recommendation"]
    return {(rec["executor"], rec["workers"])} | {
        (t["executor"], t["workers"]) for t in found["ties"]
    }


def _run_snippet(directory, found: dict, tasks: int) -> None:
    """The answer's snippet runs as pasted and computes every result."""
    (directory / "snippet.py").write_text(found["snippet"] + "\nprint(len(results))\n")
    out = subprocess.run(
        [sys.executable, "snippet.py"], cwd=directory, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == str(tasks), out.stderr


def _measured(found: dict) -> set:
    return {(c["executor"], c["workers"]) for c in found["candidates"] if not c["left_out"]}


def _busy(found: dict) -> bool:
    """The answer says, from what it measured, that other work crowded the machine: the probes
    waited for a core or saw a high load (and said so), or the sweep's own runs found a core or
    more taken by other work while they ran (storage.explain's verdict)."""
    probes = advise.busy(found["probes"]) and any("machine was busy" in w for w in found["why"])
    return probes or any("core was free" in w and "other work took" in w for w in found["why"])


@pytest.mark.slow
def test_pure_python_work_goes_to_as_many_processes_as_cores(conlab, kinds):
    # --size auto and the tasks advise chooses (~0.2 s sequentially): with less work than that,
    # starting the worker processes decides the answer. It settles in its first three rounds
    # (~9 s here); the budget admits a machine crowded enough to make each call 3x slower,
    # which advise would rightly refuse to plan within 15 s.
    found = _advise(conlab, "spin", budget="30")
    rec, cores = found["recommendation"], usable_cores()
    assert ("processes", cores) in _measured(found)
    if rec["executor"] == "sequential":  # only when the machine gave the workers no core,
        assert _busy(found), found["why"]  # which the answer then says
    else:
        assert in_processes(rec["executor"]) and rec["workers"] == cores, found["why"]
        assert rec["ci"][0] > 1 or found["ties"], rec
    assert any("works rather than waits" in line for line in found["why"])
    left = {c["executor"]: c["reason"] for c in found["candidates"] if c["left_out"]}
    assert "event loop" in left["asyncio"]
    assert 'if __name__ == "__main__":' in found["snippet"] or rec["executor"] == "sequential"
    _run_snippet(kinds, found, found["tasks"])
    assert set(found) >= {
        "recommendation",
        "ties",
        "probes",
        "candidates",
        "sweep_id",
        "why",
        "snippet",
    }
    assert set(rec) >= {"executor", "workers", "chunksize", "start_method", "speedup", "ci"}
    # stored as a tagged sweep: `conlab runs` and `conlab report` show it later
    runs = conlab("runs", "--tag", "advise", "--json").json()
    assert {r["sweep_id"] for r in runs} == {found["sweep_id"]}
    assert all(r["status"] == "ok" for r in runs)
    report = conlab("report", "--select", f"sweep:{found['sweep_id']}", "--format", "json")
    assert report.returncode == 0 and "spin" in report.stdout


@pytest.mark.slow
def test_waiting_goes_to_threads_with_at_least_8_workers(conlab, kinds):
    found = _advise(conlab, "wait", *TASKS)
    rec = found["recommendation"]
    assert rec["executor"] in ("threads", "asyncio") and rec["workers"] >= 8, found["why"]
    assert rec["ci"][0] > 1
    assert any("waits rather than works" in line for line in found["why"])
    # the sweep stopped by its rule: the answer settled, or the budget ran out
    assert "settled after" in found["stopped"] or "ran out" in found["stopped"]
    left = {c["executor"]: c["reason"] for c in found["candidates"] if c["left_out"]}
    assert "waits" in left["processes"] and "no async form" in left["asyncio"]
    assert "ThreadPoolExecutor(max_workers=" in found["snippet"]
    assert "__main__" not in found["snippet"]  # no process: no guard needed
    _run_snippet(kinds, found, found["tasks"])


@pytest.mark.slow
def test_gil_releasing_c_code_goes_to_threads(conlab, kinds):
    found = _advise(conlab, "digest", *TASKS)
    rec = found["recommendation"]
    assert ("threads", usable_cores()) in _measured(found)  # never left out: calls overlap
    # threads win, or tie with the winner and are preferred to processes (memory); a process
    # executor is only recommended when it is clear of threads; sequential only on a machine
    # busy enough to give the threads no second core, which the answer then says
    tied = ("threads", usable_cores()) in _names(found)
    if in_processes(rec["executor"]):
        assert not tied, found["why"]
    elif rec["executor"] == "sequential":
        assert tied or _busy(found), found["why"]
    assert any("two threads calling it at once" in line for line in found["why"])


@pytest.mark.slow
def test_a_20_us_function_is_sequential_or_chunked_with_dispatch_named(conlab, kinds):
    found = _advise(conlab, "short", "--tasks", "1024")
    rec = found["recommendation"]
    assert rec["executor"] == "sequential" or (
        in_processes(rec["executor"]) and rec["chunksize"] >= 16
    ), found["why"]
    assert any("round trip" in line and "dispatch dominates" in line for line in found["why"])
    left = {c["executor"]: c["reason"] for c in found["candidates"] if c["left_out"]}
    assert "round trip" in left["processes chunksize 1"]
    chunked = [c for c in found["candidates"] if c["executor"] == "processes"]
    assert chunked and all(c["chunksize"] >= 16 for c in chunked)


@pytest.mark.slow
def test_a_text_answer_names_the_recommendation_and_the_snippet(conlab, kinds):
    result = conlab("advise", "kinds:wait", "--time-budget", "8", "--tasks", "8", "--size", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("recommendation: threads x8")
    assert "left out processes: it waits" in result.stdout
    assert "with ThreadPoolExecutor(max_workers=8) as ex:\n" in result.stdout


@pytest.mark.parametrize(
    "args, words",
    [
        (["usermod:work", "--time-budget", "0"], "--time-budget"),
        (["usermod:work", "--size", "big"], "--size"),
        (["usermod:work", "--tasks", "0"], "tasks"),
        (["nosuchmod:work"], "cannot import"),
        (["usermod:nap"], "async def"),
        (["usermod:hang", "--time-budget", "2"], "took over 2 s"),
        (
            ["usermod:work", "--size", "100000", "--tasks", "10000", "--time-budget", "3"],
            "--time-budget",
        ),
    ],
)
def test_bad_input_is_one_line_and_stores_nothing(conlab, db_path, args, words):
    result = conlab("advise", *args)
    assert_one_line_error(result)
    assert words in result.stderr
    assert not db_path.exists()


def test_a_function_that_raises_is_one_line_exit_1_and_nothing_stored(conlab, db_path):
    result = conlab("advise", "usermod:boom", "--json")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "ValueError: boom" in result.stderr and "Traceback" not in result.stderr
    assert not db_path.exists()


# --- the rules, on figures -------------------------------------------------------------------


def _interval(center: float, half: float, processes: int = 6) -> stats.Interval:
    groups = [[center * (1 + half * (i - processes / 2) / processes)] for i in range(processes)]
    return stats.interval(groups)


def test_the_sweep_stops_when_the_best_is_clear_or_tied_within_the_effect():
    assert advise.settled([_interval(1.0, 0.01), _interval(2.0, 0.01)])  # clear
    assert advise.settled([_interval(1.0, 0.005), _interval(1.005, 0.005)])  # a tie that stays
    assert not advise.settled([_interval(1.0, 0.3), _interval(1.1, 0.3)])  # more processes help
    assert not advise.settled([_interval(1.0, 0.01), stats.interval([[1.2]])])  # one process


PROBES = {
    "cores": 4,
    "call_s": 0.01,
    "cpu_per_wall": 1.0,
    "size": 1,
    "async_form": None,
    "two_threads": {"speedup": 1.0, "gil_waits_per_10ms": 3.0},
    "argument": {"bytes": 5, "s": 1e-6, "error": None},
    "result": {"bytes": 5, "s": 1e-6, "error": None},
    "process_pool": {"startup_s": 0.01, "round_trip_s": 1e-4},
}


def test_the_plan_follows_the_probes():
    candidates, left = advise.plan("m:f", PROBES, 16)
    names = [c.name for c in candidates]
    assert names == ["sequential", "processes x2", "processes x4"]
    reasons = {x["executor"]: x["reason"] for x in left}
    assert "ran 1.00x as fast" in reasons["threads"] and "holds the GIL" in reasons["threads"]
    assert "waited for the GIL 3.0 times per 10 ms" in reasons["threads"]
    # a busy machine hides the speedup, not the GIL: few waits and threads are measured
    releasing = dict(PROBES, two_threads={"speedup": 1.0, "gil_waits_per_10ms": 0.1})
    assert "threads x4" in [c.name for c in advise.plan("m:f", releasing, 16)[0]]
    elsewhere = dict(PROBES, two_threads={"speedup": 1.0, "gil_waits_per_10ms": None})
    assert "threads" in {x["executor"] for x in advise.plan("m:f", elsewhere, 16)[1]}
    waiting = dict(PROBES, cpu_per_wall=0.01, two_threads={"speedup": 2.0})
    candidates, left = advise.plan("m:f", waiting, 16)
    assert [c.name for c in candidates] == ["sequential", "threads x8", "threads x16"]
    reasons = {x["executor"]: x["reason"] for x in left}
    assert "only 16 tasks" in reasons["threads x32, x64"]
    short = dict(PROBES, call_s=2e-5)
    candidates, left = advise.plan("m:f", short, 4096)
    assert all(c.chunksize >= 16 for c in candidates if c.executor == "processes")
    unpicklable = dict(PROBES, result={"bytes": None, "s": None, "error": "TypeError: no"})
    candidates, left = advise.plan("m:f", unpicklable, 16)
    assert [c.name for c in candidates] == ["sequential"]
    assert "cannot be pickled" in {x["executor"]: x["reason"] for x in left}["processes"]


def test_a_busy_machine_never_says_the_function_holds_the_gil():
    # a loopback HTTP GET beside its server on 2 cores: many waits, none of them the GIL's
    crowded = dict(PROBES, cores=2, core_wait_share=0.4, load_per_core=1.6)
    assert "threads x2" in [c.name for c in advise.plan("m:f", crowded, 16)[0]]
    said = " ".join(advise._probe_reasons("m:f", crowded, 16))
    assert "holds the GIL" not in said and "one ran at a time" not in said
    assert "do not say whether the GIL or the busy machine held them back" in said
    quiet = " ".join(advise._probe_reasons("m:f", PROBES, 16))
    assert "one ran at a time (it holds the GIL)" in quiet
    # an HTTP GET on a quiet machine: its switches are its socket's, its CPU under its wall time
    socket = dict(
        PROBES, cpu_per_wall=0.45, two_threads={"speedup": 1.05, "gil_waits_per_10ms": 13.5}
    )
    said = " ".join(advise._probe_reasons("m:f", socket, 16))
    assert "holds the GIL" not in said and "no clear sign either way" in said


def test_a_plan_past_the_budget_is_refused_with_what_crowded_the_machine():
    (sequential,) = [c for c in advise.plan("m:f", PROBES, 16)[0] if c.executor == "sequential"]
    assert advise.budget_repeats([sequential], PROBES, 16, 10.0)[0] == 5
    slow = dict(PROBES, call_s=0.1, core_wait_share=0.85, load_per_core=3.2)
    with pytest.raises(SpecError) as refused:
        advise.budget_repeats([sequential], slow, 16, 14.0)
    assert "needs about" in str(refused.value) and "more than the 14 s left" in str(refused.value)
    assert "waited 85% of its time for a core; load up to 3.2 per core" in str(refused.value)
    quiet = dict(slow, core_wait_share=0.0, load_per_core=0.1)
    with pytest.raises(SpecError) as refused:  # a slow function on a quiet machine: no blame
        advise.budget_repeats([sequential], quiet, 16, 14.0)
    assert "busy" not in str(refused.value) and "--time-budget" in str(refused.value)


# --- the app ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("marked")
async def test_the_labs_advise_action_shows_the_answer_and_stores_the_sweep(db_path, monkeypatch):
    from tests.tui.conftest import SIZE, choose, until_it_ends
    from tui.app import ConlabApp
    from tui.components.lab import LabPane

    app = ConlabApp(db=str(db_path))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        monkeypatch.setattr(LabPane, "ADVISE_BUDGET_S", 8.0)
        await choose(pilot, lab, "sleep", ["sequential"], size="5", tasks="8")
        lab.query_one("#tag").focus()
        await pilot.press("escape")  # out of a field, `a` is the Lab's at once
        await until_it_ends(pilot, lab, "a", timeout_s=90)
        overall = lab.query_one("#overall")
        assert overall.percentage == 1 and "--%" not in str(overall.render())  # not left at --%
        shown = str(lab.query_one("#summary").render())
        answered = ("recommendation: threads x", "recommendation: asyncio x", "undecided at")
        assert any(words in shown for words in answered), shown
        assert "left out processes: it waits" in shown
    runs = sqlite3.connect(db_path).execute("SELECT DISTINCT tag, status FROM run").fetchall()
    assert runs == [("advise", "ok")]


def test_tied_leaders_are_an_undecided_headline_not_the_slowest_recommended():
    from tests.storage.test_reports import UNDECIDED, frame, summarize

    summary = summarize(frame(UNDECIDED))
    candidates = [
        advise.Candidate(row["executor"], row["workers"], label="3.12.1") for row in UNDECIDED
    ]
    results = [
        {
            "executor": c.executor,
            "workers": c.workers,
            "python": "3.12.1",
            "start_method": "fork" if c.executor == "processes" else None,
            "sweep_id": "s1",
            "status": "ok",
            "processes": 3,
            "error": None,
        }
        for c in candidates
    ]
    probes = dict(PROBES, cores=2, size=100)
    found = advise.answer("cpu", probes, candidates, [], summary, [], results, "budget", 16)
    headline = advise.advice_lines({**found, "sweep_id": None})[0]
    assert headline.startswith("undecided at this noise: processes x2 1.39x (95% CI 0.70–2.77)")
    assert "threads x2 1.19x" in headline and "sequential 1.00x are tied" in headline
    assert "would tell them apart" in headline and "recommendation" not in headline
    leaders = found["undecided"]["leaders"]
    assert [x["executor"] for x in leaders] == ["processes", "threads", "sequential"]
    assert found["undecided"]["more_processes"] >= 1 and found["undecided"]["seconds"] > 0
    # the simplest of them is still there, named as that
    assert found["recommendation"]["executor"] == "sequential"
    assert any("until more measurement tells them apart" in w for w in found["why"])
    found["undecided"]["time_budget_s"] = 500
    assert advise.advice_lines(found)[0].endswith("(--time-budget 500)")
