"""The table of "why" rules: each row has a known answer, given as the facts a run recorded."""

from __future__ import annotations

import json
import math

import pytest

from storage import explain
from storage.explain import RULES, Facts, run_facts
from storage.explain import explain as explain_facts
from storage.queries import json_object


def facts(**given) -> Facts:
    """Two threads on a quiet 2-core machine, with ``given`` replacing what differs."""
    base = dict(
        executor="threads",
        workers=2,
        speedup=1.0,
        cpu_per_wall=1.0,
        cores=2,
        cores_used=2,
        task_s=0.02,
        gil=True,
        free_threaded=False,
        gil_cause=None,
        others_cores=0.05,
        load_per_core=0.1,
        switches=120.0,
        involuntary=20.0,
        startup_s=0.001,
        median_s=0.3,
        efficiency=0.5,
        karp_flatt=1.0,
    )
    return Facts(**{**base, **given})


# (the facts that differ, {topic: the rule that must speak}); a topic left out must say nothing
KNOWN = [
    ({}, {"scaling": "gil-serialised", "cores": "taking-turns"}),
    ({"task_s": 5e-6}, {"scaling": "dispatch-dominates", "cores": "taking-turns"}),
    ({"cpu_per_wall": 1.6}, {"scaling": "gil-on-cpu-wasted", "cores": "at-once"}),
    ({"speedup": 7.5, "cpu_per_wall": 0.02, "workers": 8}, {"scaling": "waits"}),
    # the same low CPU/wall with the other cores busy: wanting a core, not waiting
    (
        {
            "gil": False,
            "free_threaded": True,
            "speedup": 1.85,
            "cpu_per_wall": 0.27,
            "others_cores": 1.7,
        },
        {"scaling": "cores-taken"},
    ),
    (
        {"executor": "processes", "speedup": 1.3, "cpu_per_wall": 0.4, "others_cores": 1.5},
        {"scaling": "cores-taken"},
    ),
    # a full machine: whatever the sequential run met, the threads had one core
    (
        {
            "gil": False,
            "free_threaded": True,
            "speedup": 1.7,
            "cpu_per_wall": 0.95,
            "others_cores": 1.0,
        },
        {"scaling": "one-core-free", "cores": "taking-turns"},
    ),
    # sleeping tasks beside other work that leaves a core idle: they wait
    ({"speedup": 1.9, "cpu_per_wall": 0.05, "others_cores": 1.0}, {"scaling": "waits"}),
    ({"speedup": 1.9, "cpu_per_wall": 1.95}, {"scaling": "releases-gil", "cores": "at-once"}),
    ({"speedup": 1.4, "cpu_per_wall": 1.5}, {"scaling": "partly-released", "cores": "at-once"}),
    (
        {"gil": False, "free_threaded": True, "speedup": 1.8, "cpu_per_wall": 1.9},
        {"scaling": "parallel-no-gil", "cores": "at-once"},
    ),
    (
        {"gil": False, "free_threaded": True, "speedup": 1.09, "others_cores": 0.97},
        {"scaling": "one-core-free", "cores": "taking-turns"},
    ),
    (
        {"gil": False, "free_threaded": True, "speedup": 1.1, "cpu_per_wall": 1.9},
        {"scaling": "contended", "cores": "at-once"},
    ),
    (
        {"gil": False, "free_threaded": True, "speedup": 1.3, "cpu_per_wall": 1.45},
        {"scaling": "seen"},
    ),
    (
        {"gil": True, "free_threaded": True, "gil_cause": "asked for at start-up"},
        {"gil": "gil-came-back", "scaling": "gil-serialised", "cores": "taking-turns"},
    ),
    (
        {"executor": "processes", "startup_s": 0.2, "speedup": 1.5, "cpu_per_wall": 1.8},
        {"scaling": "startup-dominates", "cores": "at-once"},
    ),
    (
        {
            "executor": "processes",
            "speedup": 1.2,
            "efficiency": 0.6,
            "karp_flatt": 0.67,
            "cpu_per_wall": 1.7,
        },
        {"scaling": "overhead-grows", "cores": "at-once"},
    ),
    (
        {"executor": "processes", "speedup": 1.05, "others_cores": 1.0},
        {"scaling": "one-core-free", "cores": "taking-turns"},
    ),
    # worker interpreters: a GIL each, in one process
    (
        {"executor": "interpreters", "speedup": 1.9, "cpu_per_wall": 1.95},
        {"scaling": "own-gil-parallel", "cores": "at-once"},
    ),
    (
        {"executor": "interpreters", "startup_s": 0.2, "speedup": 1.5, "cpu_per_wall": 1.8},
        {"scaling": "startup-dominates", "cores": "at-once"},
    ),
    (
        {"executor": "interpreters", "speedup": 1.05, "others_cores": 1.0},
        {"scaling": "one-core-free", "cores": "taking-turns"},
    ),
]


@pytest.mark.parametrize("given, expected", KNOWN, ids=[str(sorted(e.items())) for _, e in KNOWN])
def test_each_rule_speaks_for_the_facts_that_decide_it(given, expected):
    said = {rule.topic: rule.name for rule, _ in explain_facts(facts(**given))}
    assert said == expected


def test_every_rule_has_a_known_answer():
    answered = {name for _, expected in KNOWN for name in expected.values()}
    assert {rule.name for rule in RULES} == answered


def test_the_sentences_cite_the_figures_that_decided_them():
    f = facts(gil=False, free_threaded=True, speedup=1.09, others_cores=0.97, load_per_core=0.9)
    text = " ".join(sentence for _, sentence in explain_facts(f))
    assert "only one core was free" in text and "0.97" not in text
    assert "other work took 1.0 of the 2 cores" in text and "load 0.9 per core" in text
    assert "GIL was off" in text and "serialised" not in text
    busy_gil = " ".join(s for _, s in explain_facts(facts(switches=171.0, involuntary=90.0)))
    assert "the GIL serialised the work, 171 context switches a repeat (90 involuntary)" in busy_gil
    came_back = facts(gil=True, free_threaded=True, gil_cause="importing spam, which ...")
    assert "importing spam" in explain_facts(came_back)[0][1]


def test_interpreters_are_said_to_run_in_parallel_and_to_start_as_interpreters():
    parallel = facts(executor="interpreters", speedup=1.9, cpu_per_wall=1.95)
    text = explain_facts(parallel)[0][1]
    assert text.startswith("interpreters x2 scaled (1.90x, CPU time 1.95x wall time)")
    assert "a GIL of its own" in text and "in one process" in text
    short = facts(executor="interpreters", startup_s=0.2, speedup=1.5, cpu_per_wall=1.8)
    assert "too short for worker interpreters to pay off" in explain_facts(short)[0][1]


def test_one_worker_or_missing_figures_say_nothing():
    assert explain_facts(facts(workers=1)) == []
    assert explain_facts(facts(speedup=math.nan)) == []


def test_run_facts_read_the_gil_from_the_workers_and_its_cause():
    def env(**fields):
        return json_object(json.dumps(fields))  # as a report reads a stored environment

    assert run_facts({}, build_has_gil=True).gil is True
    assert run_facts({}, build_has_gil=False).gil is None
    off = run_facts(env(gil_enabled_by_worker={"1": False, "2": False}), False)
    assert off.gil is False and off.gil_cause is None
    module = run_facts(
        env(gil_enabled_by_worker={"1": True}, gil_at_start=False, gil_enabled_by=["spam"]), False
    )
    assert module.gil is True and "importing spam" in module.gil_cause
    asked = run_facts(env(gil_enabled=True, gil_at_start=True, gil_setting="1"), False)
    assert asked.gil is True and "PYTHON_GIL=1" in asked.gil_cause
    others = run_facts(env(others_cores=[0.9, 1.1, "x", None]), True).others_cores
    assert others == (0.9, 1.1)
    # hostile or damaged environments: no facts, no failure
    deep = "[" * 5000 + "]" * 5000
    hostile = json.dumps({"gil_enabled_by_worker": "yes", "others_cores": 3})
    for text in ("[1]", "not json", None, deep, hostile):
        found = run_facts(json_object(text), False)
        assert found.gil is None and found.others_cores == ()
    assert explain.known(1.0) and not explain.known(math.nan, 1.0)
