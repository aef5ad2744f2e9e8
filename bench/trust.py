"""Whether the lab's answers survive a second look (`make bench GROUPS=trust`).

Everything here goes through `conlab` as a user runs it, on a scratch database:

- Comparisons across time (``bench_verdicts``): A/A across two sweeps, a real 10% change (the
  same function at 1.10x the size) across two sweeps, within one, and against a stored baseline
  measured again (``--against``), and a 5% change with ``--repeats auto --detect 5``; and the
  control's share of a sweep's time.
- The lab's time per call of a pure-Python function run sequentially against pyperf's
  (`bench_func`, its default worker processes): within 0.97-1.03, or pyperf's median inside the
  lab's 95% interval.
- The default `conlab run -w cpu -e sequential -e threads -e processes`: about two minutes, as
  docs/cli.md says (three executors, six runner processes each).
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

PAIRS = int(os.environ.get("BENCH_PAIRS", "10"))
DETECT_MAX_S = 150  # --max-time of each --detect sweep
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


def compared(bench, a: str, b: str) -> list[dict]:
    report = conlab(bench, "report", "--compare", a, b, "--format", "json")
    return json.loads(report.stdout)["comparison"]["rows"]


def _share(rows: list[dict], verdict: str, key: str = "verdict") -> float:
    return sum(r[key] == verdict for r in rows) / len(rows)


def bench_verdicts(bench) -> None:
    """Per pair, on one scratch database: sweep A (the size); a minute later sweep W, the size
    and 1.10x the size taking turns; then sweep V, 1.10x the size with A measured again beside
    it (``--against``); then sweep D, the size and 1.05x with ``--repeats auto --detect 5``.

    - A/A across two sweeps: A against W's same size;
    - +10% across two sweeps: A against W's larger size, with the control (and the raw figure);
    - +10% within one sweep: W's two sizes;
    - +10% against a stored baseline: A against V (A re-measured in V's sweep);
    - +5% with --detect 5: D's two sizes, and the time D took.
    """
    found: dict[str, list] = {
        name: [] for name in ("same", "across", "within", "against", "detect", "detect_s")
    }
    for pair in range(PAIRS):
        _measure_pair(bench, pair, found)
    _record_verdicts(bench, **found)
    bench_control_share(bench)


def _measure_pair(bench, pair: int, found: dict[str, list]) -> None:
    """Pair ``pair``'s four sweeps, and their comparisons appended to ``found``'s lists."""
    sweep = ["run", "-w", "cpu", "-e", "sequential", "-e", "processes", "--workers", "2"]
    larger, five = str(int(SIZE * 1.1)), str(int(SIZE * 1.05))
    conlab(bench, *sweep, "--size", str(SIZE), "--tag", f"a{pair}")
    conlab(bench, *sweep, "--size", f"{SIZE},{larger}", "--tag", f"w{pair}")
    conlab(bench, *sweep, "--size", larger, "--tag", f"v{pair}", "--against", f"tag:a{pair}")
    start = time.monotonic()
    conlab(
        bench,
        *sweep,
        "--size",
        f"{SIZE},{five}",
        "--repeats",
        "auto",
        "--detect",
        "5",
        "--max-time",
        str(DETECT_MAX_S),
        "--tag",
        f"d{pair}",
    )
    found["detect_s"].append(time.monotonic() - start)
    found["same"] += compared(bench, f"tag:a{pair}", f"tag:w{pair},size:{SIZE}")
    found["across"] += compared(bench, f"tag:a{pair}", f"tag:w{pair},size:{larger}")
    found["within"] += compared(bench, f"tag:w{pair},size:{SIZE}", f"tag:w{pair},size:{larger}")
    found["against"] += compared(bench, f"tag:a{pair}", f"tag:v{pair}")
    found["detect"] += compared(bench, f"tag:d{pair},size:{SIZE}", f"tag:d{pair},size:{five}")
    same, across, within, against, detect = (
        found[name] for name in ("same", "across", "within", "against", "detect")
    )
    print(
        f"    pair {pair + 1}: A/A {[r['verdict'][:4] for r in same[-2:]]}, +10% across "
        f"{[(r['verdict'][:4], r['basis'][:4], round(r['ratio'], 3)) for r in across[-2:]]}, "
        f"within {[r['verdict'][:4] for r in within[-2:]]}, against "
        f"{[r['verdict'][:4] for r in against[-2:]]}, +5% detect "
        f"{[r['verdict'][:4] for r in detect[-2:]]} ({found['detect_s'][-1]:.0f} s)",
        flush=True,
    )


def _record_verdicts(bench, same, across, within, against, detect, detect_s) -> None:
    """Each kind of comparison's share of verdicts, against its budget."""
    called = sum(r["verdict"] != NO_DIFFERENCE for r in same)
    bench.record(
        f"A/A across two sweeps: faster/slower verdicts in {len(same)} comparisons",
        called,
        "<= 1",
        called <= 1,
    )
    found = _share(across, "slower")
    bench.record(
        f"+10% across two sweeps, as reported (control where it tracks): share of {len(across)}",
        found,
        ">= 0.80",
        found >= 0.8,
    )
    bench.show("  of which judged on the controlled values", _share(across, "controlled", "basis"))
    bench.show(
        "  the raw comparison alone: share called slower", _share(across, "slower", "raw_verdict")
    )
    found = _share(within, "slower")
    bench.record(
        f"+10% within one sweep, default settings: share of {len(within)} called slower",
        found,
        ">= 0.90",
        found >= 0.9,
    )
    found = _share(against, "slower")
    bench.record(
        f"+10% against a stored baseline measured again (--against): share of {len(against)}",
        found,
        ">= 0.90",
        found >= 0.9,
    )
    found = _share(detect, "slower")
    bench.record(
        f"+5% with --repeats auto --detect 5: share of {len(detect)} called slower",
        found,
        ">= 0.80",
        found >= 0.8,
    )
    bench.show("  seconds each --detect 5 sweep took (median)", statistics.median(detect_s))


def bench_control_share(bench) -> None:
    """The control's share of a default sweep's time: every runner process's control samples
    (timed with the same clock as the workload) over the sweep's runs' process time."""
    from storage.controlled import PARTS

    db = bench.workdir / "trust.db"
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT r.environment_json, (SELECT sum(wall_ns) FROM repeat p WHERE p.run_id = r.id) "
            "FROM run r WHERE r.tag LIKE 'a%' AND r.status = 'ok'"
        ).fetchall()
    control_ns = repeats_ns = 0
    for env, walls in rows:
        for process in json.loads(env).get("runner_processes", []):
            control_ns += sum(sum(sample[: len(PARTS)]) for sample in process.get("control", []))
        repeats_ns += walls or 0
    share = control_ns / (control_ns + repeats_ns) if repeats_ns else float("nan")
    bench.record(
        "the control's share of a default sweep's timed work", share, "<= 0.02", share <= 0.02
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
    # docs/cli.md's "about two minutes on 2 cores"
    bench.record("the quick start's default cpu sweep, seconds", took, "<= 150", took <= 150)


BENCHMARKS = [bench_verdicts, bench_against_pyperf, bench_default_sweep]
