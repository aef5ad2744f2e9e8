"""`make bench`: the lab's own cost, measured side by side with the hand-written equivalent.

Each benchmark runs the lab's runner (driven by `experiments.launch.Launch`, as `conlab run` drives
it) and the plain script a user would write, taking turns repeat by repeat, and prints the median
ratio against its budget. Exit code 1 when a budget is missed.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from bench import compile_the_lab
from bench.kinds import C_HASH_20MS, SPIN
from bench.pythons import bench_other_pythons

# Each round is a fresh process for the lab and for the script: per-process variation (address
# layout, hash seed) is several per cent here, so many short rounds beat a few long ones.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "12"))
REPEATS = 5  # measured repeats per round, after one warm-up on each side
SPAWN = {"start_method": "spawn"}

# The user functions. The budgets on the lab's own cost are held on `c_hash`: hashing one
# preallocated MiB after another streams through every address, so where the program's earlier
# history left its objects does not change its speed. Loops that touch the same few addresses
# over and over do depend on it, on this CPU by up to ~9%: `spin`, a loop in Python bytecode,
# with the call path it runs under (`ex.map(spin)` against `ex.submit(spin)`, no lab code at all:
# `make bench GROUPS=layout`), and even `c_loop`, a loop in C, with where its int lands next to
# the range iterator. Such a difference is the interpreter's and the CPU's, not the lab's; their
# ratios are shown without a budget, so that a user knows how far a figure can move by layout.
USER_MODULE = SPIN + textwrap.dedent("""
    def c_loop(n):
        return sum(range(n))

    import hashlib
    _BLOCK = bytes(1 << 20)

    def c_hash(n):
        digest = hashlib.sha256()
        for _ in range(n):
            digest.update(_BLOCK)
        return digest.hexdigest()

    _SMALL = bytes(4096)

    def c_hash_4k(n):
        digest = hashlib.sha256()
        for _ in range(n):
            digest.update(_SMALL)
        return digest.hexdigest()

    def tiny(n):
        return n
""")

# The script a user would write, timed the way the lab times: construction to end of shutdown.
# It runs one repeat per line it reads, so that it can take turns with the lab's runner.
HAND_WRITTEN = textwrap.dedent("""
    import importlib, multiprocessing, sys, time
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    def once(spin, kind, workers, xs, start_method):
        start = time.monotonic_ns()
        if kind == "sequential":
            [spin(x) for x in xs]
        elif kind == "threads":
            with ThreadPoolExecutor(workers) as ex:
                list(ex.map(spin, xs))
        elif kind == "joblib":
            from joblib import Parallel, delayed
            from joblib.externals.loky import reusable_executor

            Parallel(n_jobs=workers)(delayed(spin)(x) for x in xs)
            # The workers joblib keeps for a next call, stopped as the script's exit stops
            # them: every repeat pays a first call, as the lab's joblib repeats do.
            reusable_executor._executor.shutdown(wait=True)
        elif kind == "interpreters":
            try:  # Python 3.14+
                from concurrent.futures import InterpreterPoolExecutor
            except ImportError:  # 3.13: the PEP 734 backport
                from interpreters_backport.concurrent.futures.interpreter import (
                    InterpreterPoolExecutor,
                )
            with InterpreterPoolExecutor(workers) as ex:
                list(ex.map(spin, xs))
        elif kind == "pool":
            # Pool's own `with` terminates the workers; close() and join() wait for them, as
            # the lab's pool does.
            pool = multiprocessing.get_context(start_method).Pool(workers)
            pool.map(spin, xs)
            pool.close()
            pool.join()
        else:
            context = multiprocessing.get_context(start_method)
            with ProcessPoolExecutor(workers, mp_context=context) as ex:
                list(ex.map(spin, xs))
        return time.monotonic_ns() - start

    if __name__ == "__main__":
        function, kind, workers, tasks, size, start_method = sys.argv[1:]
        module, _, name = function.rpartition(":")
        spin = getattr(importlib.import_module(module or "benchmod"), name)
        xs = [int(size)] * int(tasks)
        for _ in sys.stdin:
            print(once(spin, kind, int(workers), xs, start_method or None), flush=True)
""")


def lab_repeats(spec) -> Iterator[float]:
    """The lab's runner for ``spec``, one repeat's wall time (s) per step, warm-ups included.

    Between two steps the runner waits, as it waits for `conlab run` to store a repeat.
    """
    from experiments.launch import Launch

    launch = Launch(spec)
    wall_s = None
    for event in launch.events():
        if event["event"] == "repeat":
            wall_s = event["wall_ns"] / 1e9
        elif event["event"] == "tasks":
            yield wall_s
    if launch.status != "ok":
        raise RuntimeError(f"the lab's run failed: {launch.error}")


def in_turns(first: Iterator[float], second: Iterator[float], warmups: int = 1) -> list[float]:
    """Step two sides in turns -- first, second, first, ... -- and return first / second: each
    measured repeat against the geometric mean of the other side's repeats just before and just
    after it, so that neither side always goes first.

    A machine whose speed drifts between levels every second or two runs repeats a fraction of
    a second apart at the same level, and processes run one after the other often not.
    """
    a, b = [], []
    for wall in first:
        a.append(wall)
        b.append(next(second))
    # Drive the second to its end (the runner's `done`, the script's exit): no step may be left.
    for _ in second:
        raise RuntimeError("the two sides of a benchmark ran different numbers of repeats")
    # In time order a0 b0 a1 b1 ...: b[k] sits between a[k] and a[k+1], a[k] between b[k-1], b[k].
    ratios = [(a[k] * a[k + 1]) ** 0.5 / b[k] for k in range(warmups, len(a) - 1)]
    ratios += [a[k] / (b[k - 1] * b[k]) ** 0.5 for k in range(warmups + 1, len(a))]
    return ratios


# The same script as a program whose entry script imports more than the function's module (as an
# application's does): under spawn each worker imports all of it again before its first task.
HEAVY_IMPORTS = (
    "import asyncio, decimal, email.mime.multipart, http.client, json, unittest, "
    "xml.dom.minidom  # the program's own needs, not the function's\n"
)


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        (workdir / "benchmod.py").write_text(USER_MODULE)
        (workdir / "handwritten.py").write_text(HAND_WRITTEN)
        (workdir / "handwritten_app.py").write_text(HEAVY_IMPORTS + HAND_WRITTEN)
        # The lab's runner and the hand-written script both inherit this environment (the lab
        # importable too: the script calls the lab's own `cpu` workload by hand).
        lab_root = str(Path(__file__).resolve().parent.parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(workdir), lab_root, os.environ.get("PYTHONPATH")])
        )
        self.rows: list[tuple[str, float, str, bool]] = []

    def hand_repeats(
        self,
        function: str,
        kind: str,
        workers: int,
        tasks: int,
        size: int,
        count: int,
        start_method: str = "spawn",
        python: Optional[str] = None,
        script: str = "handwritten.py",
    ) -> Iterator[float]:
        """The hand-written ``script``, ``count`` repeats' wall times (s), one per step.
        ``function`` is a name in benchmod or MODULE:NAME; ``start_method`` "" is the default."""
        args = [function, kind, str(workers), str(tasks), str(size), start_method]
        process = subprocess.Popen(
            [python or sys.executable, script, *args],
            cwd=self.workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(count):
                process.stdin.write("go\n")
                process.stdin.flush()
                yield int(process.stdout.readline()) / 1e9
        finally:
            process.stdin.close()
            process.wait()

    def record(self, name: str, value: float, budget: str, ok: bool) -> None:
        self.rows.append((name, value, budget, ok))
        mark = "ok" if ok else "MISSED"
        print(f"  {name:<78} {value:>8.3f}   {budget:<14} {mark}", flush=True)

    def show(self, name: str, value: float) -> None:
        """A figure printed for what it tells, held to no budget."""
        print(f"  {name:<78} {value:>8.3f}   {'(no budget)':<14}", flush=True)

    def ratio_against_hand(
        self,
        kind: str,
        workers: int,
        tasks: int,
        size: int,
        label: str,
        function: str,
        low: float = 0.97,
        high: float = 1.03,
        budgeted: bool = True,
        python: Optional[str] = None,
        script: str = "handwritten.py",
        **options,
    ) -> None:
        per_round = []
        for _ in range(ROUNDS):
            spec = round_spec(
                f"benchmod:{function}", kind, workers, tasks, size, python=python, **options
            )
            hand = self.hand_repeats(
                function, kind, workers, tasks, size, 1 + REPEATS, python=python, script=script
            )
            per_round.append(statistics.median(in_turns(lab_repeats(spec), hand)))
        judged = Judged(per_round)
        name = f"{label}: lab / hand-written{judged.how}"
        if budgeted:
            self.record(name, judged.value, f"{low:.2f}-{high:.2f}", low <= judged.value <= high)
        else:
            self.show(name, judged.value)


def round_spec(workload: str, kind: str, workers: int, tasks: int, size: int, **options):
    """One round's run: REPEATS counted repeats after one warm-up, in one runner process."""
    from experiments.spec import ExperimentSpec

    return ExperimentSpec(
        workload,
        kind,
        workers=workers,
        tasks=tasks,
        size=size,
        repeats=REPEATS,
        warmups=1,
        processes=1,
        **options,
    )


class Judged:
    """The median of per-round ratios (each the median of that round's paired repeats), with a
    95% bootstrap interval over rounds: repeats of one round share their processes' layout, so
    the rounds, not the repeats, are the independent samples. The row says when the interval is
    wider than +-3%, i.e. when the machine was too noisy for the figure to decide."""

    def __init__(self, per_round: list[float]):
        self.value = statistics.median(per_round)
        low, high = bootstrap_ci(per_round)
        noisy = "; NOISY machine, run again" if high - low > 0.06 * self.value else ""
        self.how = f" ({len(per_round)} rounds, 95% CI {low:.3f}-{high:.3f}{noisy})"


def bootstrap_ci(values: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval for the median of ``values`` (seeded: the same data, the same
    interval)."""
    import random

    rng = random.Random(1)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def bench_runner_import(bench: Bench) -> None:
    from experiments.launch import runner_env

    env = runner_env()

    def fresh(code: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
        return time.perf_counter() - start

    def starts(code: str, count: int = 41) -> Iterator[float]:
        return (fresh(code) for _ in range(count))

    ratio = statistics.median(in_turns(starts("import experiments.runner"), starts("pass")))
    bench.record(
        "import experiments.runner / python -c pass (in turns, 40 of each)",
        ratio,
        "<= 1.20",
        ratio <= 1.2,
    )


def bench_cpu_speedup(bench: Bench) -> None:
    """The lab's speedup of `cpu` on 2 processes, and beside it the same speedup measured by
    hand (a loop against `with ProcessPoolExecutor(2) as ex: list(ex.map(cpu, xs))`): when the
    budget is missed, the second tells whether the machine itself had two cores to give."""
    size, tasks = 400_000, 64  # ~1 s sequential: the pool's start-up is a small part of it
    lab, hand = [], []
    for _ in range(ROUNDS // 2):
        sequential, processes = (
            round_spec("cpu", executor, workers, tasks, size)
            for executor, workers in (("sequential", 1), ("processes", 2))
        )
        lab.append(statistics.median(in_turns(lab_repeats(sequential), lab_repeats(processes))))
        by_hand = (
            bench.hand_repeats(
                "experiments.workloads:cpu",
                kind,
                workers,
                tasks,
                size,
                1 + REPEATS,
                start_method="",
            )
            for kind, workers in (("sequential", 1), ("processes", 2))
        )
        hand.append(statistics.median(in_turns(*by_hand)))
    judged = Judged(lab)
    bench.record(
        f"cpu on processes x2: speedup over sequential{judged.how}",
        judged.value,
        ">= 1.85",
        judged.value >= 1.85,
    )
    judged = Judged(hand)
    bench.show(f"  the same speedup measured by hand{judged.how}", judged.value)


def bench_core(bench: Bench) -> None:
    _bench_whole_runs(bench)
    _bench_layout(bench)
    _bench_dispatch(bench)
    bench_other_pythons(bench)
    bench_runner_import(bench)
    bench_cpu_speedup(bench)


def _bench_whole_runs(bench: Bench) -> None:
    """The lab against the script on ~20 ms tasks of hashing (layout-insensitive), budgeted."""
    for kind, workers, label, extra in [
        ("sequential", 1, "sequential", {}),
        ("threads", 2, "threads x2", {}),
        ("processes", 2, "processes x2 spawn", SPAWN),
    ]:
        bench.ratio_against_hand(
            kind, workers, 8, 28, f"{label}, {C_HASH_20MS}", function="c_hash", **extra
        )
    bench_main_script(bench)
    bench_split_cost(bench)
    if _available("joblib"):
        bench.ratio_against_hand(
            "joblib", 2, 8, 28, f"joblib x2 (loky), {C_HASH_20MS}", function="c_hash"
        )


def _bench_layout(bench: Bench) -> None:
    """Loops whose speed depends on memory layout and call path (see USER_MODULE): no budget;
    and 10,000 short calls in sequence, budgeted above only."""
    bench.ratio_against_hand(
        "sequential",
        1,
        8,
        1_300_000,
        "sequential, 8 x c_loop ~20 ms (layout)",
        function="c_loop",
        budgeted=False,
    )
    bench.ratio_against_hand(
        "processes",
        2,
        8,
        300_000,
        "processes x2 spawn, 8 x spin ~20 ms (call path)",
        function="spin",
        budgeted=False,
        **SPAWN,
    )
    bench.ratio_against_hand(
        "sequential", 1, 10_000, 1_500, "sequential 10,000 x spin ~100 us", "spin", low=0.0
    )


def _bench_dispatch(bench: Bench) -> None:
    """The dispatch path: the function travels with every task, as in the user's ex.map(f, xs).
    Budgets on hashing (layout-insensitive) and on `tiny`; the Python loop shown beside them."""
    for kind in ("processes", "pool"):
        for size, what, function, budgeted in (
            (36, "c_hash 144 KiB ~100 us", "c_hash_4k", True),
            (1, "tiny (dispatch only)", "tiny", True),
            (1_500, "spin ~100 us (layout)", "spin", False),
        ):
            bench.ratio_against_hand(
                kind,
                2,
                10_000,
                size,
                f"{kind} x2 spawn 10,000 x {what}",
                function,
                budgeted=budgeted,
                **SPAWN,
            )


def split_set(spec, value: str) -> Iterator[float]:
    """``lab_repeats`` of a runner with CONLAB_NO_SPLIT set to ``value``: "1" reads no thread's
    split (experiments.timing), "0" reads them; either way its environment is as long, so that
    the two sides' memory layouts differ only as any two processes' do."""
    os.environ["CONLAB_NO_SPLIT"] = value
    try:
        repeats = lab_repeats(spec)
        first = next(repeats)  # the runner starts here, with the variable in its environment
    finally:
        del os.environ["CONLAB_NO_SPLIT"]
    yield first
    yield from repeats


def split_cost_per_task_us(calls: int = 20_000, turns: int = 15) -> float:
    """What reading a thread's split adds to one task, in us: ``timed_call`` of a function that
    does nothing, with the readings and without, in turns within one process (the readings
    taken at every task: the most they can cost), the median difference of the turns."""
    import time

    from experiments import timing

    def per_call() -> float:
        start = time.perf_counter()
        for _ in range(calls):
            timing.timed_call(int, 0)
        return (time.perf_counter() - start) / calls * 1e6

    reading, every = timing._thread_time_ns, timing.READ_EVERY_NS
    differences = []
    try:
        timing.READ_EVERY_NS = 0  # a reading at each end of each task
        for _ in range(turns):
            timing._thread_time_ns, timing._stat_files = reading, {}
            with_split = per_call()
            timing._thread_time_ns, timing._stat_files = None, {}
            differences.append(with_split - per_call())
    finally:
        timing._thread_time_ns, timing.READ_EVERY_NS, timing._stat_files = reading, every, {}
    return statistics.median(differences)


def bench_split_cost(bench: Bench) -> None:
    """What reading each worker thread's split (on a core, waiting for one, blocked) costs the
    counted time. Budgeted: its cost per task, read at every task, against the median task of
    a default sweep (`conlab run -w cpu`: 16 tasks of the default size), at most 0.5%. Shown:
    whole runs of that sweep's executors, the runner with the split against the same runner
    without (CONLAB_NO_SPLIT), in turns, whose interval is this machine's noise."""
    from experiments.spec import ExperimentSpec

    cost_us = split_cost_per_task_us()
    spec = ExperimentSpec("cpu", "sequential", repeats=REPEATS, warmups=1, processes=1)
    task_us = statistics.median(list(lab_repeats(spec))[1:]) / spec.tasks * 1e6
    bench.show(
        f"the split's cost per task, read at both ends (us; a cpu task: {task_us:.0f} us)", cost_us
    )
    bench.record(
        "the split's cost per task / a default sweep's task (cpu, default size)",
        1 + cost_us / task_us,
        "<= 1.005",
        cost_us / task_us <= 0.005,
    )
    for kind, workers in (("sequential", 1), ("threads", 2), ("processes", 2)):
        per_round = []
        for _ in range(ROUNDS):
            spec = round_spec("benchmod:c_hash", kind, workers, 8, 28)
            per_round.append(
                statistics.median(in_turns(split_set(spec, "0"), split_set(spec, "1")))
            )
        judged = Judged(per_round)
        bench.show(
            f"{kind} x{workers}, 8 x c_hash 28 MiB: with the split / without{judged.how}",
            judged.value,
        )


def bench_main_script(bench: Bench) -> None:
    """A program whose entry script imports more than the function's module: its spawned
    workers import the script again. With ``--main`` naming it, the lab's workers do too, and the
    lab agrees with the script; without, the lab's workers import only the function's module,
    and the difference is what the script's imports cost each worker (shown, no budget)."""
    app = str(bench.workdir / "handwritten_app.py")
    for main, budgeted, label in ((app, True, "with --main"), (None, False, "without --main")):
        bench.ratio_against_hand(
            "processes",
            2,
            8,
            28,
            f"processes x2 spawn {label} against a script importing more, 8 x c_hash 28 MiB",
            function="c_hash",
            budgeted=budgeted,
            script="handwritten_app.py",
            start_method="spawn",
            main=main,
        )


def _available(executor: str) -> bool:
    """True where ``executor`` runs here; else says which row is left out, and why."""
    from experiments.executors import EXECUTORS

    reason = EXECUTORS[executor].unavailable_reason()
    if reason:
        print(f"  ({executor} rows left out: {reason})", flush=True)
    return reason is None


def groups() -> dict:
    """Benchmark groups by name: `python -m bench [GROUP ...]` runs some (default: all)."""
    from bench import advise, layout, storage, trust, tui

    return {
        "core": [bench_core],
        "trust": trust.BENCHMARKS,  # verdicts: A/A, a real 10% change, pyperf's figure
        "storage": storage.BENCHMARKS,
        "tui": tui.BENCHMARKS,
        "layout": layout.BENCHMARKS,  # diagnostics for the processes ratio, no budget
        "advise": advise.BENCHMARKS,  # conlab advise on four kinds of function, 90 s each
    }


def main(argv: list[str]) -> int:
    chosen = argv or list(groups())
    unknown = [g for g in chosen if g not in groups()]
    if unknown:
        print(
            f"unknown benchmark group(s) {unknown}; choose from {list(groups())}", file=sys.stderr
        )
        return 2
    print(
        f"conlab benchmarks on {os.cpu_count()} cores, Python {sys.version.split()[0]}: "
        f"{', '.join(chosen)}"
    )
    print(f"  {'benchmark':<78} {'value':>8}   {'budget':<14}")
    compile_the_lab()
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(Path(scratch))
        for group in chosen:
            for benchmark in groups()[group]:
                benchmark(bench)
    missed = [row for row in bench.rows if not row[3]]
    print(f"{len(bench.rows) - len(missed)} within budget, {len(missed)} missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
