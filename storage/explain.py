"""Why, in words: one table of rules. Each rule is a condition over what a run recorded, the
sentence it says and the recorded figures it cites. The CLI, the reports, `conlab advise` and the
app all print from it (through ``reports.verdicts``), so a sentence is never an assumption about
the interpreter: a free-threaded build is only called GIL-free where its workers said so.

For one configuration (a summary row) each topic says at most one sentence: that of the first
rule of the topic whose condition holds. Where no rule decides, the topic's last rule says what
was seen and no more. What the workers were seen doing (``Facts.shares``, where the platform
says) speaks before any ratio; other work's cores speak before the GIL; and a word is said only
where its own figure bears it out ("about equal" within ±ABOUT, "one at a time" at about one
core busy, no GIL for worker processes): tests/storage/test_explain.py reads every sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional

from experiments.executors import EXECUTORS

# The thresholds the rules share, each a ratio of measured figures.
NO_SPEEDUP = 1.2  # under this, the workers did not shorten the run
SCALED = 0.8  # a speed-up of at least this share of the cores it could use: it scaled
ONE_CORE = 1.3  # CPU/wall under this: about one core's worth of CPU at a time, or less
AT_ONCE = 1.5  # CPU/wall at least this: more than one core busy at once
WAITS = 0.5  # CPU/wall under this: the tasks mostly wait
OTHERS_BUSY = 0.5  # other work took at least half a core while the repeats ran
BUSY_LOAD = 1.0  # without that figure: a load per core this high when the sweep began
FULL = 0.9  # the run's CPU and the others' together at least this share of the cores: no core free
SHORT_TASK_S = 0.001  # tasks under 1 ms: dispatch decides the time
# "about equal", "one at a time": the figure is within this share of 1 (CPU/wall 0.85-1.15).
ABOUT = 0.15
# An observed share of the workers' time at least this large is named as a cause.
SEEN_SHARE = 0.2


@dataclass(frozen=True)
class Shares:
    """What the workers were doing, observed (not inferred): each a share of the workers'
    summed wall time in the counted repeats, 0 to 1; None where the platform did not say.
    ``handovers_per_s``: how often a core passed from one worker thread to another."""

    on_core: Optional[float] = None
    waited_for_core: Optional[float] = None  # runnable, no core free
    blocked_on_lock: Optional[float] = None  # a futex: a lock, the GIL's included
    io: Optional[float] = None  # read, recv, poll, select ...
    sleep: Optional[float] = None
    handovers_per_s: Optional[float] = None


@dataclass(frozen=True)
class Facts:
    """What one configuration recorded, as the rules read it (NaN or None: not recorded)."""

    executor: str
    workers: int
    speedup: float  # against the sequential run of the same work
    cpu_per_wall: float  # the runner's and its workers' CPU time over wall time, median
    cores: float  # the cores the runner could use
    cores_used: float  # the most cores that ran its tasks in a repeat
    task_s: float  # one task's share of the median repeat
    gil: Optional[bool]  # the GIL was on in its workers during the tasks
    free_threaded: bool  # the build can run without a GIL
    gil_cause: Optional[str]  # what turned the GIL on, in words, on a free-threaded build
    others_cores: float  # cores' worth of CPU other work took during the repeats, median
    load_per_core: float  # the 1-minute load per core when the sweep began
    switches: float  # context switches per repeat, median
    involuntary: float  # of which involuntary
    startup_s: float  # executor made to first task started, median
    median_s: float
    efficiency: float
    karp_flatt: float
    shares: Optional[Shares] = None  # observed per-worker time split; None: not observed

    @property
    def name(self) -> str:
        return "sequential" if self.executor == "sequential" else f"{self.executor} x{self.workers}"

    @property
    def kind(self) -> Optional[str]:
        return kind_of(self.executor)

    @property
    def reach(self) -> float:
        """The speed-up the workers could give at most: as many as there are cores."""
        return float(min(self.workers, self.cores)) if self.cores == self.cores else self.workers

    @property
    def free_cores(self) -> float:
        """The cores other work left the run (NaN: not recorded)."""
        return self.cores - self.others_cores


def known(*values) -> bool:
    return all(v is not None and v == v for v in values)


@dataclass(frozen=True)
class Rule:
    """A row of the table: for executors of the ``applies`` kinds (``kind_of``), in ``topic``,
    when ``when`` holds of the facts, say ``says``; ``cites`` names the facts the sentence gives
    figures of."""

    topic: str
    name: str
    applies: tuple[str, ...]
    when: Callable[[Facts], bool]
    says: Callable[[Facts], str]
    cites: tuple[str, ...]


def about_one(ratio: float) -> bool:
    """Whether ``ratio`` may be called "about equal" (to 1): within ±ABOUT."""
    return abs(ratio - 1) <= ABOUT


def _free(f: Facts) -> str:
    """The cores other work left free, in words that agree with the figure."""
    free = f.free_cores
    if f.cores == 1:
        return "only one core was usable"
    if free < 0.5:
        return "not even one core was free"
    if free < 1.5:
        return "only one core was free"
    return f"only {free:.1f} of the {f.cores:g} cores were free"


def _others(f: Facts) -> str:
    load = (
        f" (load {f.load_per_core:.1f} per core when the sweep began)"
        if known(f.load_per_core)
        else ""
    )
    if not known(f.others_cores):
        return f"other work was running{load}"
    return f"other work took {f.others_cores:.1f} of the {f.cores:g} cores while it ran{load}"


def _short_of_cores_words(f: Facts) -> str:
    """The cores the run was short of, and the other work seen, as far as the figures say."""
    said = [_free(f)] if known(f.others_cores) or f.cores == 1 else []
    if known(f.others_cores) or known(f.load_per_core):
        said.append(_others(f))
    return ", ".join(said)


def _switches(f: Facts) -> str:
    if not known(f.switches, f.involuntary):
        return ""
    return f", {f.switches:,.0f} context switches a repeat ({f.involuntary:,.0f} involuntary)"


def short_of_cores(f: Facts) -> bool:
    """Other work took cores the workers could have used, so the machine, not the work, may
    have held them back: it took half a core or more and left fewer free than the workers could
    use (without that figure: the load was a core's worth per core when the sweep began). On
    one core, always."""
    if f.cores == 1:
        return True
    if known(f.others_cores, f.cores):
        return f.others_cores >= OTHERS_BUSY and f.free_cores < f.reach
    return known(f.load_per_core) and f.load_per_core >= BUSY_LOAD


def _scaled(f: Facts) -> bool:
    """A speed-up of at least SCALED of what its cores allowed, and a speed-up at all."""
    return f.speedup >= max(NO_SPEEDUP, SCALED * f.reach)


def _beyond_cores(f: Facts) -> bool:
    """A speed-up above the cores: only tasks that wait give that, whatever the machine did."""
    return known(f.cores) and f.speedup > f.cores


def _cores_taken(f: Facts) -> bool:
    """Other work held the cores the run did not use: its CPU time was low for want of a core,
    not because its tasks waited."""
    return (
        known(f.others_cores, f.cores)
        and f.others_cores >= OTHERS_BUSY
        and f.cpu_per_wall + f.others_cores >= FULL * f.cores
    )


def _gil_part(f: Facts) -> str:
    """What the busy cores leave unsaid of the GIL, for threads (nothing for processes)."""
    if f.kind != "threads":
        return "."
    if f.gil is False:
        return ", and the GIL was off: the busy cores held the threads back, not a GIL."
    if f.gil is True:
        return "; with the cores taken, these figures do not say what the GIL added."
    return "."


def _cores_seen(f: Facts) -> str:
    return f"{f.cores_used:g} core{'s' if f.cores_used != 1 else ''}"


def _share(value: Optional[float]) -> float:
    return value if value is not None and value == value else 0.0


def _seen(f: Facts, *fields: str) -> bool:
    """Whether the workers' split was observed with every one of ``fields``."""
    return f.shares is not None and all(known(getattr(f.shares, x)) for x in fields)


def _handovers(f: Facts) -> str:
    s = f.shares
    if s is None or not known(s.handovers_per_s):
        return ""
    return f", handing over {s.handovers_per_s:,.0f} times a second"


def kind_of(executor: str) -> Optional[str]:
    """What the rules call ``executor``, from what it says of itself (``workers_are``): only an
    executor whose whole CPU time the runner's clock sees (``cpu_seen``: its own threads, or
    worker processes it reaps inside the timed window) has one, since CPU/wall and the others'
    share are only read of these; None for the others and for one not registered here."""
    found = EXECUTORS.get(executor)
    if found is None or not found.cpu_seen or found.workers_are == "runner":
        return None
    return found.workers_are


# The kinds a rule applies to (Rule.applies).
THREADS = ("threads",)  # threads of the runner's interpreter, sharing its GIL
POOLS = ("processes",)  # worker processes the runner reaps
INTERPRETERS = ("interpreters",)  # threads of the runner, each running an interpreter of its own
# Executors whose workers are threads of one interpreter: only these can share a GIL.
IN_PROCESS = THREADS + INTERPRETERS
CPU_SEEN = THREADS + POOLS + INTERPRETERS


def _workers_kind(f: Facts) -> str:
    return "worker interpreters" if f.kind in INTERPRETERS else "processes"


OBSERVED_RULES: tuple[Rule, ...] = (
    # -- what the workers were seen doing, where the platform says (it wins over ratios) -------
    Rule(
        "scaling",
        "seen-waiting-for-core",
        THREADS + POOLS + INTERPRETERS,
        lambda f: _seen(f, "waited_for_core") and f.shares.waited_for_core >= SEEN_SHARE,
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x: its workers were runnable but waited for a core "
            f"{f.shares.waited_for_core:.0%} of their time, so other work held the cores"
            + (f" ({_others(f)})" if known(f.others_cores) or known(f.load_per_core) else "")
            + "."
        ),
        ("speedup", "shares", "others_cores", "load_per_core"),
    ),
    Rule(
        "scaling",
        "seen-waiting",
        THREADS + POOLS + INTERPRETERS,
        lambda f: (
            f.shares is not None and _share(f.shares.io) + _share(f.shares.sleep) >= 2 * SEEN_SHARE
        ),
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x: its workers waited, in I/O "
            f"{_share(f.shares.io):.0%} and asleep {_share(f.shares.sleep):.0%} of their time; "
            "a waiting worker holds no core."
        ),
        ("speedup", "shares"),
    ),
    Rule(
        "scaling",
        "seen-gil",
        THREADS,
        lambda f: (
            f.gil is True
            and _seen(f, "blocked_on_lock")
            and f.shares.blocked_on_lock >= SEEN_SHARE
            and f.speedup < max(NO_SPEEDUP, SCALED * f.reach)
        ),
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with the GIL on: its threads were blocked on a "
            f"lock {f.shares.blocked_on_lock:.0%} of their time while another ran"
            f"{_handovers(f)}: the GIL serialised the work."
        ),
        ("gil", "speedup", "shares"),
    ),
)

RULES: tuple[Rule, ...] = OBSERVED_RULES + (
    # -- the GIL's state, where the build could run without one --------------------------------
    Rule(
        "gil",
        "gil-came-back",
        IN_PROCESS,
        lambda f: f.free_threaded and f.gil is True,
        lambda f: (
            f"{f.name}: the GIL was re-enabled on this free-threaded build: "
            f"{f.gil_cause or 'its workers reported it on'}."
        ),
        ("gil", "gil_cause"),
    ),
    # -- how threads scaled, and why -------------------------------------------------------------
    Rule(
        "scaling",
        "dispatch-dominates",
        THREADS,
        lambda f: known(f.task_s) and f.task_s < SHORT_TASK_S,
        lambda f: (
            f"{f.name}: a task takes {f.task_s * 1e6:.0f} µs, so handing tasks to the "
            f"threads decides the time ({f.speedup:.2f}x); it says nothing about the GIL."
        ),
        ("task_s", "speedup"),
    ),
    # -- a busy machine: other work's cores, never the GIL ---------------------------------------
    Rule(
        "scaling",
        "cores-taken",
        THREADS + POOLS + INTERPRETERS,
        lambda f: (
            f.cpu_per_wall < WAITS and _cores_taken(f) and f.free_cores < 1 and not _beyond_cores(f)
        ),
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with CPU time {f.cpu_per_wall:.2f}x wall "
            f"time: not even one core was free, {_others(f)}, and its tasks ran in what was left"
            + _gil_part(f)
        ),
        ("speedup", "cpu_per_wall", "others_cores", "load_per_core", "gil"),
    ),
    Rule(
        "scaling",
        "one-core-free",
        THREADS + POOLS + INTERPRETERS,
        lambda f: (
            f.cpu_per_wall < ONE_CORE
            and (f.speedup < max(NO_SPEEDUP, SCALED * f.reach) or _cores_taken(f))
            and short_of_cores(f)
            and not _beyond_cores(f)
        ),
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with CPU time {f.cpu_per_wall:.2f}x wall "
            f"time: {_short_of_cores_words(f)}{_gil_part(f)}"
        ),
        ("speedup", "cpu_per_wall", "others_cores", "load_per_core", "gil"),
    ),
    # -- a quiet machine: the GIL, from the ratios -----------------------------------------------
    Rule(
        "scaling",
        "gil-serialised",
        THREADS,
        lambda f: (
            f.gil is True
            and f.speedup < NO_SPEEDUP
            and about_one(f.cpu_per_wall)
            and not short_of_cores(f)
        ),
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x while CPU time stayed about equal to wall "
            f"time ({f.cpu_per_wall:.2f}x) with the GIL on: one thread ran at a time, the GIL "
            f"serialised the work{_switches(f)}."
        ),
        ("gil", "speedup", "cpu_per_wall", "switches"),
    ),
    Rule(
        "scaling",
        "gil-on-cpu-wasted",
        THREADS,
        lambda f: f.gil is True and f.speedup < NO_SPEEDUP and f.cpu_per_wall > 1 + ABOUT,
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with the GIL on although CPU time was "
            f"{f.cpu_per_wall:.2f}x wall time: the CPU beyond one core did not shorten the run"
            f"{_switches(f)}."
        ),
        ("gil", "speedup", "cpu_per_wall", "switches"),
    ),
    Rule(
        "scaling",
        "under-one-core",
        THREADS,
        lambda f: f.speedup < NO_SPEEDUP and f.cpu_per_wall < 1 - ABOUT,
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with CPU time {f.cpu_per_wall:.2f}x wall time"
            + (" and the GIL on" if f.gil else "")
            + ": less than one core was busy on average, so at times every thread waited (for "
            "I/O, a sleep or a core); these figures do not say on what."
        ),
        ("speedup", "cpu_per_wall", "gil"),
    ),
    Rule(
        "scaling",
        "waits",
        THREADS,
        lambda f: f.cpu_per_wall < WAITS and f.speedup >= NO_SPEEDUP,
        lambda f: (
            f"{f.name} "
            + (f"scaled ({f.speedup:.2f}x)" if _scaled(f) else f"gave {f.speedup:.2f}x")
            + f" with CPU time {f.cpu_per_wall:.2f}x wall time: the tasks mostly wait, and a "
            "waiting thread holds no core" + (" and releases the GIL." if f.gil else ".")
        ),
        ("speedup", "cpu_per_wall", "gil"),
    ),
    Rule(
        "scaling",
        "releases-gil",
        THREADS,
        lambda f: f.gil is True and _scaled(f),
        lambda f: (
            f"{f.name} scaled ({f.speedup:.2f}x) with the GIL on and CPU time "
            f"{f.cpu_per_wall:.2f}x wall time: the work releases the GIL (C code or I/O)."
        ),
        ("gil", "speedup", "cpu_per_wall"),
    ),
    Rule(
        "scaling",
        "partly-released",
        THREADS,
        lambda f: f.gil is True and f.speedup >= NO_SPEEDUP,
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with the GIL on and CPU time "
            f"{f.cpu_per_wall:.2f}x wall time: the calls overlapped, so part of each task ran "
            "without the GIL (C code or I/O); these figures do not say what held the rest back."
        ),
        ("gil", "speedup", "cpu_per_wall"),
    ),
    Rule(
        "scaling",
        "parallel-no-gil",
        THREADS,
        lambda f: f.gil is False and _scaled(f) and f.cpu_per_wall >= AT_ONCE,
        lambda f: (
            f"{f.name} scaled ({f.speedup:.2f}x, CPU time {f.cpu_per_wall:.2f}x wall "
            "time): the threads ran Python in parallel on this free-threaded build."
        ),
        ("gil", "speedup", "cpu_per_wall"),
    ),
    Rule(
        "scaling",
        "contended",
        THREADS,
        lambda f: (
            f.gil is False and f.cpu_per_wall >= SCALED * f.reach and f.speedup < SCALED * f.reach
        ),
        lambda f: (
            f"{f.name}: the threads contended: they ran at once with the GIL off (CPU "
            f"time {f.cpu_per_wall:.2f}x wall time, near its {f.reach:g} workers) but wall time "
            f"shrank only {f.speedup:.2f}x, so each did its share slower than one thread alone"
            f"{_switches(f)}."
        ),
        ("gil", "cpu_per_wall", "speedup", "switches"),
    ),
    Rule(
        "scaling",
        "seen",
        THREADS,
        lambda f: True,
        lambda f: (
            f"{f.name} gave {f.speedup:.2f}x with CPU time {f.cpu_per_wall:.2f}x wall "
            "time"
            + {False: ", the GIL off", True: ", the GIL on"}.get(
                f.gil, ", its GIL state not recorded"
            )
            + (f"; {_others(f)}" if known(f.others_cores) else "")
            + (": partly parallel" if f.cpu_per_wall > 1 + ABOUT else "")
            + "; these figures do not say what held it back."
        ),
        ("speedup", "cpu_per_wall", "gil", "others_cores"),
    ),
    # -- process executors and worker interpreters ----------------------------------------------
    Rule(
        "scaling",
        "startup-dominates",
        POOLS + INTERPRETERS,
        lambda f: known(f.startup_s) and f.startup_s > 0.3 * f.median_s,
        lambda f: (
            f"{f.name}: start-up took {f.startup_s * 1000:.0f} ms of "
            f"{f.median_s * 1000:.0f} ms ({f.startup_s / f.median_s:.0%}): the run is too short "
            f"for {_workers_kind(f)} to pay off."
        ),
        ("startup_s", "median_s"),
    ),
    Rule(
        "scaling",
        "own-gil-parallel",
        INTERPRETERS,
        lambda f: _scaled(f) and f.cpu_per_wall >= AT_ONCE,
        lambda f: (
            f"{f.name} scaled ({f.speedup:.2f}x, CPU time {f.cpu_per_wall:.2f}x wall time): "
            "each worker interpreter has a GIL of its own, so their Python ran in parallel "
            "in one process."
        ),
        ("speedup", "cpu_per_wall"),
    ),
    Rule(
        "scaling",
        "overhead-grows",
        POOLS,
        lambda f: 0 <= f.karp_flatt <= 1 and f.efficiency < 0.7 and not short_of_cores(f),
        lambda f: (
            f"{f.name}: efficiency {f.efficiency:.0%}, serial fraction "
            f"{f.karp_flatt:.2f} (Karp–Flatt): overhead grows with workers."
        ),
        ("efficiency", "karp_flatt"),
    ),
    # -- the cores the tasks ran on --------------------------------------------------------------
    Rule(
        "cores",
        "at-once",
        CPU_SEEN,
        lambda f: f.cpu_per_wall >= AT_ONCE and known(f.cores_used) and f.cores_used >= 2,
        lambda f: (
            f"{f.name} ran on {min(f.cores_used, round(f.cpu_per_wall)):g} cores at "
            f"once (CPU time {f.cpu_per_wall:.2f}x wall time; tasks seen on {f.cores_used:g} "
            "cores)."
        ),
        ("cpu_per_wall", "cores_used"),
    ),
    Rule(
        "cores",
        "taking-turns",
        THREADS,
        lambda f: (
            f.gil is True
            and about_one(f.cpu_per_wall)
            and not short_of_cores(f)
            and known(f.cores_used)
        ),
        lambda f: (
            f"{f.name} ran one at a time, taking turns (CPU time "
            f"{f.cpu_per_wall:.2f}x wall time; tasks seen on {_cores_seen(f)})."
        ),
        ("cpu_per_wall", "cores_used", "gil"),
    ),
    Rule(
        "cores",
        "cores-busy",
        CPU_SEEN,
        lambda f: WAITS <= f.cpu_per_wall < AT_ONCE and known(f.cores_used),
        lambda f: (
            f"{f.name} kept {f.cpu_per_wall:.2f} cores busy on average (CPU time over wall "
            f"time); its tasks were seen on {_cores_seen(f)}."
        ),
        ("cpu_per_wall", "cores_used"),
    ),
)


def explain(facts: Facts, rules: Iterable[Rule] = RULES) -> list[tuple[Rule, str]]:
    """The sentences ``rules`` say of ``facts``: per topic, the first rule that applies."""
    said, topics = [], set()
    if facts.workers <= 1 or not known(facts.speedup, facts.cpu_per_wall):
        return said
    for rule in rules:
        if rule.topic in topics or facts.kind not in rule.applies:
            continue
        if rule.when(facts):
            said.append((rule, rule.says(facts)))
            topics.add(rule.topic)
    return said


# --- the facts, from what runs recorded ----------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """What one run's environment recorded about its GIL and the machine's other work."""

    gil: Optional[bool]
    gil_cause: Optional[str]
    others_cores: tuple[float, ...]


def run_facts(env: Any, build_has_gil: bool) -> RunFacts:
    """The facts of one run's stored environment (as storage.queries.json_object read it; not
    a dict: none). A build with a GIL always had it on; on a free-threaded build, the GIL was on
    if any worker's samples said so (else the runner's own word after importing the workload);
    its cause is the setting or module that turned it on."""
    env = env if isinstance(env, dict) else {}
    others = env.get("others_cores")
    others = tuple(
        float(x)
        for x in (others if isinstance(others, list) else ())
        if isinstance(x, (int, float)) and math.isfinite(x)
    )
    if build_has_gil:
        return RunFacts(True, None, others)
    workers = env.get("gil_enabled_by_worker")
    if isinstance(workers, dict) and workers:
        gil: Optional[bool] = any(v is True for v in workers.values())
    elif isinstance(env.get("gil_enabled"), bool):
        gil = env["gil_enabled"]
    else:
        gil = None
    return RunFacts(gil, _gil_cause(env) if gil else None, others)


def _gil_cause(env: dict) -> str:
    setting = env.get("gil_setting")
    modules = env.get("gil_enabled_by")
    if isinstance(modules, list) and modules:
        names = ", ".join(str(m) for m in modules)
        return (
            f"importing {names}, which does not declare that it runs without the GIL, turned "
            "it back on (PYTHON_GIL=0 keeps it off, at your own risk)"
        )
    if setting not in (None, "0"):
        return f"it was asked for at start-up (PYTHON_GIL={setting} or -X gil={setting})"
    if env.get("gil_at_start") is False:
        return "it came back while the tasks ran (an extension loaded by a task)"
    return "its workers reported it on"
