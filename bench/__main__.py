"""`make bench`: the lab's own cost, measured side by side with the hand-written equivalent.

Each benchmark runs the lab (`conlab run --json`, into a scratch database) and the plain script a
user would write, interleaved round by round so drift on the machine hits both alike, and prints
the ratio of medians against its budget. Exit code 1 when a budget is missed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

# Each round is a fresh process for the lab and for the script: per-process variation (address
# layout, hash seed) is several per cent here, so many short rounds beat a few long ones.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "12"))
REPEATS = 3

USER_MODULE = textwrap.dedent("""
    def spin(n):
        total = 0
        for i in range(n):
            total += i * i % 7
        return total
""")

# The script a user would write, timed the way the lab times: construction to end of shutdown.
HAND_WRITTEN = textwrap.dedent("""
    import json, multiprocessing, sys, time
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
    from benchmod import spin

    def main(kind, workers, tasks, size, repeats):
        xs = [size] * tasks
        walls = []
        for _ in range(repeats):
            start = time.monotonic_ns()
            if kind == "sequential":
                [spin(x) for x in xs]
            elif kind == "threads":
                with ThreadPoolExecutor(workers) as ex:
                    list(ex.map(spin, xs))
            else:
                spawn = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(workers, mp_context=spawn) as ex:
                    list(ex.map(spin, xs))
            walls.append(time.monotonic_ns() - start)
        print(json.dumps(walls))

    if __name__ == "__main__":
        kind, workers, tasks, size, repeats = sys.argv[1:]
        main(kind, int(workers), int(tasks), int(size), int(repeats))
""")


class Bench:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        (workdir / "benchmod.py").write_text(USER_MODULE)
        (workdir / "handwritten.py").write_text(HAND_WRITTEN)
        self.env = dict(
            os.environ, PYTHONPATH=str(workdir), NO_COLOR="1", CONLAB_DB=str(workdir / "bench.db")
        )
        self.rows: list[tuple[str, float, str, bool]] = []

    def lab(
        self,
        executor: str,
        workers: int,
        tasks: int,
        size: int,
        repeats: int,
        workload: str = "benchmod:spin",
        **extra: str,
    ) -> list[float]:
        args = [
            sys.executable,
            "-m",
            "tui.cli",
            "run",
            "-w",
            workload,
            "-e",
            executor,
            "--workers",
            str(workers),
            "--tasks",
            str(tasks),
            "--size",
            str(size),
            "--repeats",
            str(repeats),
            "--warmups",
            "1",
            "--json",
        ]
        for key, value in extra.items():
            args += [f"--{key.replace('_', '-')}", value]
        out = subprocess.run(
            args, cwd=self.workdir, env=self.env, capture_output=True, text=True, check=True
        ).stdout
        (run,) = json.loads(out)
        assert run["status"] == "ok", run["error"]
        return run["wall_s"]

    def hand(self, kind: str, workers: int, tasks: int, size: int, repeats: int) -> list[float]:
        out = subprocess.run(
            [
                sys.executable,
                "handwritten.py",
                kind,
                str(workers),
                str(tasks),
                str(size),
                str(repeats + 1),
            ],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [w / 1e9 for w in json.loads(out)[1:]]  # the first is a warm-up, as in the lab

    def record(self, name: str, value: float, budget: str, ok: bool) -> None:
        self.rows.append((name, value, budget, ok))
        mark = "ok" if ok else "MISSED"
        print(f"  {name:<78} {value:>8.3f}   {budget:<14} {mark}", flush=True)

    def ratio_against_hand(
        self,
        kind: str,
        workers: int,
        tasks: int,
        size: int,
        low: float,
        high: float,
        label: str,
        **extra: str,
    ) -> None:
        lab, hand, paired = [], [], []
        for round_index in range(ROUNDS):
            # Alternate which goes first, so a drift within a round favours neither.
            pair = [
                lambda: self.lab(kind, workers, tasks, size, REPEATS, **extra),
                lambda: self.hand(kind, workers, tasks, size, REPEATS),
            ]
            if round_index % 2:
                hand_walls, lab_walls = (measure() for measure in reversed(pair))
            else:
                lab_walls, hand_walls = (measure() for measure in pair)
            lab += lab_walls
            hand += hand_walls
            # One ratio per round: the two sides of a round saw the same machine (the VM's
            # speed drifts by several per cent over minutes), so their ratio is the steady figure.
            paired.append(statistics.median(lab_walls) / statistics.median(hand_walls))
        ratio = statistics.median(paired)
        ci_low, ci_high = bootstrap_ci(paired)
        self.record(
            f"{label}: lab / hand-written "
            f"({statistics.median(lab) * 1000:.1f} / {statistics.median(hand) * 1000:.1f} ms;"
            f" 95% CI {ci_low:.3f}-{ci_high:.3f})",
            ratio,
            f"{low:.2f}-{high:.2f}",
            low <= ratio <= high,
        )


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

    imports, passes = [], []
    for _ in range(40):
        imports.append(fresh("import experiments.runner"))
        passes.append(fresh("pass"))
    ratio = statistics.median(imports) / statistics.median(passes)
    bench.record(
        f"import experiments.runner / python -c pass ({statistics.median(passes) * 1000:.1f} ms)",
        ratio,
        "<= 1.20",
        ratio <= 1.2,
    )


def bench_cpu_speedup(bench: Bench) -> None:
    sequential, processes = [], []
    for _ in range(3):
        sequential += bench.lab("sequential", 1, 16, 400_000, 5, workload="cpu")
        processes += bench.lab("processes", 2, 16, 400_000, 5, workload="cpu")
    speedup = statistics.median(sequential) / statistics.median(processes)
    bench.record(
        "cpu on processes x2: speedup over sequential", speedup, ">= 1.85", speedup >= 1.85
    )


def bench_core(bench: Bench) -> None:
    bench.ratio_against_hand("sequential", 1, 8, 300_000, 0.97, 1.03, "sequential 8 x ~20 ms")
    bench.ratio_against_hand("threads", 2, 8, 300_000, 0.97, 1.03, "threads x2, 8 x ~20 ms")
    bench.ratio_against_hand(
        "processes",
        2,
        8,
        300_000,
        0.97,
        1.03,
        "processes x2 spawn, 8 x ~20 ms",
        start_method="spawn",
    )
    bench.ratio_against_hand(
        "sequential", 1, 10_000, 1_500, 0.0, 1.03, "sequential 10,000 x ~100 us"
    )
    bench.ratio_against_hand(
        "processes",
        2,
        10_000,
        1_500,
        0.0,
        1.03,
        "processes x2 spawn 10,000 x ~100 us",
        start_method="spawn",
    )
    bench_runner_import(bench)
    bench_cpu_speedup(bench)


def groups() -> dict:
    """Benchmark groups by name: `python -m bench [GROUP ...]` runs some (default: all)."""
    from bench import layout, storage, tui

    return {
        "core": [bench_core],
        "storage": storage.BENCHMARKS,
        "tui": tui.BENCHMARKS,
        "layout": layout.BENCHMARKS,  # diagnostics for the processes ratio, no budget
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
