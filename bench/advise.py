"""`make bench GROUPS=advise`: the full `conlab advise` (default 60 s budget) on four kinds of
function, as a user runs it. Each must answer within 90 s, with the family its kind calls for:
pure-Python work -> a process executor at the usable cores, waiting -> threads or asyncio with
8 workers or more, C code that releases the GIL -> threads (or a tie that includes them), a
~20 us call -> sequential or a process pool in chunks of 16 or more. A tie is honest on a busy
machine: the row then shows what was tied."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench.kinds import ADVISE_KINDS


def in_processes(executor: str) -> bool:
    """Whether ``executor`` runs its tasks in worker processes of its own, as it says."""
    from experiments.executors import EXECUTORS

    return EXECUTORS[executor].workers_are == "processes"


def _fits(kind: str, found: dict, cores: int) -> bool:
    """Whether the answer (recommendation or one of its ties) is what the kind calls for."""
    options = [found["recommendation"], *found["ties"]]
    if kind == "spin":
        return any(in_processes(o["executor"]) and o["workers"] == cores for o in options)
    if kind == "wait":
        rec = found["recommendation"]
        return rec["executor"] in ("threads", "asyncio") and rec["workers"] >= 8
    if kind == "digest":
        return any(o["executor"] == "threads" for o in options)
    rec = found["recommendation"]
    return rec["executor"] == "sequential" or (rec["chunksize"] or 1) >= 16


def bench_advise(bench) -> None:
    from experiments.environment import usable_cores
    from service.advise import busy

    (bench.workdir / "advisekinds.py").write_text(ADVISE_KINDS)
    for kind in ("spin", "wait", "digest", "short"):
        start = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tui.cli",
                "advise",
                f"advisekinds:{kind}",
                "--json",
                "--db",
                str(bench.workdir / "advise.db"),
            ],
            cwd=bench.workdir,
            capture_output=True,
            text=True,
        )
        took = time.monotonic() - start
        if done.returncode != 0:
            bench.record(
                f"advise {kind}: failed: {done.stderr.strip()[-60:]}", took, "<= 90", False
            )
            continue
        found = json.loads(done.stdout)
        rec = found["recommendation"]
        name = rec["executor"] + (f" x{rec['workers']}" if rec["executor"] != "sequential" else "")
        if rec["chunksize"] and rec["chunksize"] > 1:
            name += f" chunksize {rec['chunksize']}"
        ties = ", ".join(f"{t['executor']} x{t['workers']}" for t in found["ties"])
        crowded = " on a busy machine" if busy(found["probes"]) else ""
        label = (
            f"advise {kind}: {name} {rec['speedup']:.2f}x"
            + (f" (tied: {ties})" if ties else "")
            + crowded
            + ", seconds"
        )
        fits = _fits(kind, found, usable_cores())
        bench.record(label[:78], took, "<= 90, family", took <= 90 and fits)


BENCHMARKS = [bench_advise]
