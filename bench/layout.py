"""Why a Python-level loop on `processes` measures a few per cent under the hand-written
`ex.map(f, xs)`: diagnostics, not budgets (`make bench GROUPS=layout`).

1. The same pure-Python loop, called at call depths 0..11 in one process: on CPython 3.11 its
   speed can move with the depth alone, differently in each process: spreads of 2% to 10.5%
   were seen here. (Not the frame's alignment: padding the calling frame in 8-byte steps moved
   nothing. A C loop, `sum(range(n))`, moves as much with the program around it -- see the core
   group's `c_loop` row -- so where the loop's objects land in memory is the likelier cause.)
2. One spawn pool per call path, interleaved in one process: `map(spin)` as the hand-written
   script calls it, `submit(spin)`, and the lab's path (`submit(timed_call, spin, x)`: the
   function sent with each task, wrapped to take its sample). How CPython runs the same loop
   can differ by call path alone, independently of any lab code (`submit(spin)` against
   `map(spin)`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap

DEPTHS = textwrap.dedent("""
    import statistics, sys, time
    from benchmod import spin

    def at_depth(n, size):
        if n:
            return at_depth(n - 1, size)
        start = time.perf_counter()
        spin(size)
        return time.perf_counter() - start

    times = {d: [] for d in range(12)}
    for _ in range(15):
        for d in times:
            times[d].append(at_depth(d, 300_000))
    base = statistics.median(times[0])
    print(" ".join(f"{statistics.median(v) / base:.3f}" for v in times.values()))
""")

CALL_PATHS = textwrap.dedent("""
    import multiprocessing, statistics, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from benchmod import spin
    from experiments.timing import timed_call

    def once(path):
        xs = [300_000] * 8
        spawn = multiprocessing.get_context("spawn")
        start = time.monotonic_ns()
        if path == "lab":
            with ProcessPoolExecutor(2, mp_context=spawn) as ex:
                [f.result() for f in [ex.submit(timed_call, spin, x) for x in xs]]
        else:
            with ProcessPoolExecutor(2, mp_context=spawn) as ex:
                if path == "map":
                    list(ex.map(spin, xs))
                else:
                    [f.result() for f in [ex.submit(spin, x) for x in xs]]
        return time.monotonic_ns() - start

    if __name__ == "__main__":
        paths = ["map", "submit", "lab"]
        walls = {p: [] for p in paths}
        for round_index in range(int(sys.argv[1])):
            for path in paths if round_index % 2 == 0 else paths[::-1]:
                walls[path].append(once(path))
        base = statistics.median(walls["map"][2:])
        print(" ".join(f"{statistics.median(walls[p][2:]) / base:.3f}" for p in paths))
""")


def _python(bench, code: str, *args: str) -> str:
    from experiments.launch import runner_env

    env = runner_env()
    env["PYTHONPATH"] = os.pathsep.join([str(bench.workdir), env["PYTHONPATH"]])
    script = bench.workdir / "layout_probe.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=bench.workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def bench_call_depth(bench) -> None:
    spreads = []
    for process in range(3):
        ratios = [float(r) for r in _python(bench, DEPTHS).split()]
        spreads.append(max(ratios) - min(ratios))
        print(
            f"  spin(300k) at call depth 0..11 / depth 0, process {process + 1}: "
            + " ".join(f"{r:.3f}" for r in ratios)
        )
    print(f"  widest spread of one loop's time by call depth alone: {max(spreads):.1%}")


def bench_call_paths(bench) -> None:
    rounds = []
    for _ in range(3):
        rounds.append([float(r) for r in _python(bench, CALL_PATHS, "14").split()])
    for name, column in zip(("map(spin)", "submit(spin)", "lab's path"), zip(*rounds)):
        print(
            f"  processes x2 spawn, 8 x spin(300k), {name:<13} / map(spin): "
            + " ".join(f"{r:.3f}" for r in column)
            + f"  (median {statistics.median(column):.3f})"
        )


BENCHMARKS = [bench_call_depth, bench_call_paths]
