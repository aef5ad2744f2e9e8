"""Whether the lab's answers survive a second look (`make bench GROUPS=trust`).

Everything here goes through `conlab` as a user runs it, on a scratch database:

- A/A: the same default sweep (`cpu`, sequential and processes x2) twice, compared with `conlab
  report --compare`: the lab must say "no significant difference" (at most 1 verdict of faster or
  slower over every comparison of BENCH_PAIRS pairs).
- A real 10% change, the same function at 1.10x the size taking turns with the size in one
  sweep: "slower" in at least 9 of 10 (across two sweeps, shown without a budget: this VM's
  drift over minutes comes on top there).
- The lab's time per call of a pure-Python function run sequentially against pyperf's
  (`bench_func`, its default worker processes): within 0.97-1.03, or pyperf's median inside the
  lab's 95% interval.
- The default `conlab run -w cpu -e sequential -e threads -e processes`: about a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

PAIRS = int(os.environ.get("BENCH_PAIRS", "10"))
SIZE = 400_000  # the cpu workload's default size
NO_DIFFERENCE = "no significant difference"

# pyperf starts this script again for each of its worker processes, with neither our arguments
# nor our environment: the size is written into it.
PYPERF_SCRIPT = """
import pyperf
from benchmod import spin

runner = pyperf.Runner()
runner.bench_func("spin", spin, {size})
"""


def conlab(bench, *args: str) -> subprocess.CompletedProcess:
    db = str(bench.workdir / "trust.db")
    done = subprocess.run(
        [sys.executable, "-m", "tui.cli", *args, "--db", db],
        cwd=bench.workdir,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"conlab {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    return done


def verdicts(bench, a: str, b: str) -> list[str]:
    report = conlab(bench, "report", "--compare", a, b, "--format", "json")
    return [row["verdict"] for row in json.loads(report.stdout)["comparison"]["rows"]]


def bench_verdicts(bench) -> None:
    """Per pair: sweeps A and B the same (A/A); sweep W runs the size and 1.10x the size taking
    turns. +10% is judged within W (drift hits both sizes alike) and, without a budget, across
    sweeps (A against W's larger size): there, minutes of drift come on top."""
    same, within, across = [], [], []
    sweep = ["run", "-w", "cpu", "-e", "sequential", "-e", "processes", "--workers", "2"]
    larger = str(int(SIZE * 1.1))
    for pair in range(PAIRS):
        conlab(bench, *sweep, "--tag", f"a{pair}")
        conlab(bench, *sweep, "--tag", f"b{pair}")
        conlab(bench, *sweep, "--size", f"{SIZE},{larger}", "--tag", f"w{pair}")
        same += verdicts(bench, f"tag:a{pair}", f"tag:b{pair}")
        within += verdicts(bench, f"tag:w{pair},size:{SIZE}", f"tag:w{pair},size:{larger}")
        across += verdicts(bench, f"tag:a{pair}", f"tag:w{pair},size:{larger}")
        print(
            f"    pair {pair + 1}: A/A {same[-2:]}, +10% in one sweep {within[-2:]}, "
            f"across sweeps {across[-2:]}",
            flush=True,
        )
    called = sum(v != NO_DIFFERENCE for v in same)
    bench.record(
        f"A/A: verdicts of faster/slower in {len(same)} comparisons of identical sweeps",
        called,
        "<= 1",
        called <= 1,
    )
    found = sum(v == "slower" for v in within) / len(within)
    bench.record(
        f"+10% size taking turns in one sweep: share of {len(within)} comparisons called slower",
        found,
        ">= 0.90",
        found >= 0.9,
    )
    bench.show(
        f"+10% size across two sweeps: share of {len(across)} comparisons called slower",
        sum(v == "slower" for v in across) / len(across),
    )


def bench_against_pyperf(bench) -> None:
    size, tasks = 300_000, 16  # spin: ~20 ms a call
    script = Path(bench.workdir / "pyperf_spin.py")
    script.write_text(PYPERF_SCRIPT.format(size=size))
    out = bench.workdir / "pyperf.json"
    out.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, str(script), "--quiet", "-o", str(out)],
        cwd=bench.workdir,
        check=True,
        capture_output=True,
    )
    import pyperf

    theirs = pyperf.Benchmark.load(str(out)).median()
    (run,) = json.loads(
        conlab(
            bench,
            "run",
            "-w",
            "benchmod:spin",
            "-e",
            "sequential",
            "--size",
            str(size),
            "--tasks",
            str(tasks),
            "--json",
        ).stdout
    )
    ours, low, high = (run[k] / tasks for k in ("median_s", "ci_low_s", "ci_high_s"))
    ratio = ours / theirs
    inside = low <= theirs <= high
    bench.record(
        f"lab / pyperf per call of spin, sequential (lab {ours * 1e3:.2f} ms, 95% CI "
        f"{low * 1e3:.2f}-{high * 1e3:.2f}; pyperf {theirs * 1e3:.2f} ms"
        f"{', inside' if inside else ', outside'})",
        ratio,
        "0.97-1.03|in CI",
        0.97 <= ratio <= 1.03 or inside,
    )


def bench_default_sweep(bench) -> None:
    start = time.monotonic()
    conlab(
        bench,
        "run",
        "-w",
        "cpu",
        "-e",
        "sequential",
        "-e",
        "threads",
        "-e",
        "processes",
        "--tag",
        "default",
    )
    took = time.monotonic() - start
    bench.record("the quick start's default cpu sweep, seconds", took, "<= 90", took <= 90)


BENCHMARKS = [bench_verdicts, bench_against_pyperf, bench_default_sweep]
