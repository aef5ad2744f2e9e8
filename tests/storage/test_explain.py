"""The table of "why" rules: each row has a known answer, given as the facts a run recorded."""

from __future__ import annotations

import itertools
import json
import math
import re

import pytest

from storage import explain
from storage.explain import RULES, Facts, Shares, run_facts
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
        {"scaling": "one-core-free", "cores": "cores-busy"},
    ),
    # sleeping threads beside other work on nearly every core: a speed-up beyond the cores
    (
        {"speedup": 5.68, "cpu_per_wall": 0.17, "workers": 8, "others_cores": 1.8},
        {"scaling": "waits"},
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
        {"scaling": "one-core-free", "cores": "cores-busy"},
    ),
    (
        {"gil": False, "free_threaded": True, "speedup": 1.1, "cpu_per_wall": 1.9},
        {"scaling": "contended", "cores": "at-once"},
    ),
    (
        {"gil": False, "free_threaded": True, "speedup": 1.3, "cpu_per_wall": 1.45},
        {"scaling": "seen", "cores": "cores-busy"},
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
        {"scaling": "one-core-free", "cores": "cores-busy"},
    ),
    # hashlib on a busy machine with the GIL on: the busy cores speak, never the GIL
    (
        {"speedup": 0.85, "cpu_per_wall": 0.57, "others_cores": 1.4},
        {"scaling": "one-core-free", "cores": "cores-busy"},
    ),
    # under one core busy on a quiet machine: the threads waited, on what is not seen
    ({"speedup": 1.0, "cpu_per_wall": 0.64}, {"scaling": "under-one-core", "cores": "cores-busy"}),
    # what the workers were seen doing speaks first
    (
        {"speedup": 0.85, "cpu_per_wall": 0.57, "shares": Shares(waited_for_core=0.45)},
        {"scaling": "seen-waiting-for-core", "cores": "cores-busy"},
    ),
    (
        {"shares": Shares(on_core=0.5, blocked_on_lock=0.48, handovers_per_s=190)},
        {"scaling": "seen-gil", "cores": "taking-turns"},
    ),
    (
        {"speedup": 1.9, "cpu_per_wall": 0.3, "shares": Shares(io=0.6, sleep=0.1)},
        {"scaling": "seen-waiting"},
    ),
    # sleeping threads that scaled, idle ones then waiting on the pool's queue: no GIL sentence
    (
        {
            "workers": 16,
            "speedup": 12.85,
            "cpu_per_wall": 0.04,
            "shares": Shares(on_core=0.01, blocked_on_lock=0.21, sleep=0.78),
        },
        {"scaling": "seen-waiting"},
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
        {"scaling": "one-core-free", "cores": "cores-busy"},
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


# --- every sentence the rules can say, against its own figures ---------------------------------

CPU_FIGURE = re.compile(r"CPU time (?:stayed about equal to wall time \()?([0-9.]+)x")
SPEEDUP_FIGURE = re.compile(r"(?:gave|scaled \()([0-9.]+)x")
PROCESS_KINDS = ("processes", "pool")
BLAMES_THE_GIL = ("serialised", "holds the GIL", "one at a time", "taking turns", "took turns")


def _figure(pattern: re.Pattern, sentence: str, fallback: float) -> float:
    found = pattern.search(sentence)
    return float(found.group(1)) if found else fallback


def contradictions(f: Facts, sentence: str) -> list[str]:
    """Each word of ``sentence`` that its own figure (or, where it gives none, the fact it
    stands on) does not bear out."""
    cpu = _figure(CPU_FIGURE, sentence, f.cpu_per_wall)
    speedup = _figure(SPEEDUP_FIGURE, sentence, f.speedup)
    free = f.cores - f.others_cores
    busy = f.others_cores >= 0.5 and free < min(f.workers, f.cores) or f.cores == 1
    if not explain.known(f.others_cores):
        busy = explain.known(f.load_per_core) and f.load_per_core >= 1.0
    wrong = []
    if "about equal" in sentence and not abs(cpu - 1) <= 0.15:
        wrong.append(f"'about equal' with CPU/wall {cpu}")
    if ("one at a time" in sentence or "taking turns" in sentence) and not abs(cpu - 1) <= 0.15:
        wrong.append(f"'one at a time' with {cpu} cores busy at once")
    if f.executor in PROCESS_KINDS and "GIL" in sentence:
        wrong.append("GIL words for worker processes")
    if busy and any(w in sentence for w in BLAMES_THE_GIL):
        wrong.append("the GIL blamed while other work held the cores")
    if any(w in sentence for w in BLAMES_THE_GIL) and f.gil is not True:
        wrong.append("the GIL blamed with the GIL not on")
    if "GIL on" in sentence and f.gil is not True or "GIL off" in sentence and f.gil is not False:
        wrong.append("the GIL's state misstated")
    if "only one core was free" in sentence and not (0.5 <= free < 1.5):
        wrong.append(f"'only one core was free' with {free:.2f} free")
    if "other work was running" in sentence and not f.load_per_core >= 1.0:
        wrong.append(f"'other work was running' with a load of {f.load_per_core}")
    if "not even one core was free" in sentence and not free < 1:
        wrong.append(f"'not even one core was free' with {free:.2f} free")
    if "mostly wait" in sentence and not cpu < 0.5:
        wrong.append(f"'mostly wait' with CPU/wall {cpu}")
    if "less than one core" in sentence and not cpu < 1:
        wrong.append(f"'less than one core' with CPU/wall {cpu}")
    if "beyond one core" in sentence and not cpu > 1:
        wrong.append(f"'beyond one core' with CPU/wall {cpu}")
    if "partly parallel" in sentence and not cpu > 1:
        wrong.append(f"'partly parallel' with CPU/wall {cpu}")
    elif " in parallel" in sentence and not cpu >= 1.5:
        wrong.append(f"'in parallel' with CPU/wall {cpu}")
    if "scaled" in sentence and not speedup >= 1.2:
        wrong.append(f"'scaled' at {speedup}x")
    if ("releases the GIL" in sentence or "overlapped" in sentence) and not speedup >= 1.2:
        wrong.append(f"'releases the GIL' at {speedup}x")
    at_once = re.search(r"ran on ([0-9]+) cores at once", sentence)
    if at_once and not abs(cpu - int(at_once.group(1))) <= 0.5:
        wrong.append(f"'{at_once.group(0)}' with CPU/wall {cpu}")
    return wrong


def every_case():
    """A grid of facts: the executors, GIL on, off and unknown, quiet and busy machines, one
    core to eight, ratios on and around every threshold, observed splits and none."""
    grid = itertools.product(
        ("threads", "processes", "pool", "interpreters"),
        (2, 8),
        (0.5, 0.85, 1.0, 1.15, 1.3, 1.7, 1.95, 7.5),  # speed-up
        (0.02, 0.3, 0.57, 0.64, 0.9, 1.0, 1.2, 1.4, 1.6, 1.95, 3.8),  # CPU/wall
        ((True, False), (True, True), (False, True), (None, False)),  # GIL, free-threaded
        (math.nan, 0.05, 0.6, 1.0, 1.4, 1.7, 6.5),  # other work's cores
        (1, 2, 8),  # cores
    )
    for executor, workers, speedup, cpu, (gil, ft), others, cores in grid:
        if others == others and others >= cores or cpu > min(workers, cores) + 0.1:
            continue  # not a machine: more CPU than its cores, or others on more than all
        yield facts(
            executor=executor,
            workers=workers,
            speedup=speedup,
            cpu_per_wall=cpu,
            gil=gil,
            free_threaded=ft,
            others_cores=others,
            cores=cores,
            cores_used=min(workers, cores),
            load_per_core=math.nan if others == others else 1.2,
        )
    splits = (
        Shares(waited_for_core=0.45, on_core=0.4),
        Shares(blocked_on_lock=0.48, on_core=0.5, handovers_per_s=190),
        Shares(io=0.6, sleep=0.1),
        Shares(),
    )
    for split, gil, cpu in itertools.product(splits, (True, False), (0.3, 1.0, 1.9)):
        for executor in ("threads", "processes"):
            yield facts(executor=executor, shares=split, gil=gil, cpu_per_wall=cpu)
            yield facts(executor=executor, gil=gil, cpu_per_wall=cpu, task_s=5e-6, startup_s=0.2)
            # one core, and nothing recorded of other work
            yield facts(
                executor=executor,
                gil=gil,
                cpu_per_wall=cpu,
                cores=1,
                others_cores=math.nan,
                load_per_core=math.nan,
                cores_used=1,
            )


def test_no_word_of_any_verdict_contradicts_its_own_figure():
    said, wrong = set(), []
    for f in every_case():
        for rule, sentence in explain_facts(f):
            said.add(rule.name)
            wrong += [f"{rule.name}: {sentence} -- {w}" for w in contradictions(f, sentence)]
    assert not wrong, f"{len(wrong)} contradictions, e.g.\n" + "\n".join(wrong[:8])
    assert said == {rule.name for rule in RULES}  # the grid reaches every rule


def test_the_busy_machine_speaks_instead_of_the_gil():
    # hashlib.sha256 on threads x2, GIL build, other work on 1.4 of the 2 cores (issue 35)
    text = " ".join(
        s for _, s in explain_facts(facts(speedup=0.85, cpu_per_wall=0.57, others_cores=1.4))
    )
    assert "only one core was free, other work took 1.4 of the 2 cores" in text
    assert "serialised" not in text and "one at a time" not in text
    quiet = " ".join(s for _, s in explain_facts(facts(speedup=1.0, cpu_per_wall=0.64)))
    assert "about equal" not in quiet and "serialised" not in quiet
    procs = " ".join(s for _, s in explain_facts(facts(executor="processes", others_cores=1.0)))
    assert "one at a time" not in procs and "taking turns" not in procs and "GIL" not in procs
