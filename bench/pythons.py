"""`make bench`'s rows on other Pythons than the one running it: the lab against the hand-written
script under a free-threaded build and with worker interpreters, and what a worker costs to start
there (each row left out, saying why, where no such Python is found)."""

from __future__ import annotations

import os
import subprocess
import textwrap
from typing import Optional

from bench.kinds import C_HASH_20MS

# What one worker costs to start, by hand, on one Python: the CPU time (this process's and its
# reaped children's) of a pool's construction, one trivial task per worker, and shutdown. CPU
# time, not wall: on a machine busy with other work a wall time measures the queue for a core.
STARTUP = textwrap.dedent("""
    import json, multiprocessing, resource, statistics, sys
    from concurrent.futures import ProcessPoolExecutor
    try:
        from concurrent.futures import InterpreterPoolExecutor
    except ImportError:
        from interpreters_backport.concurrent.futures.interpreter import InterpreterPoolExecutor

    def cpu():
        me = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime

    def per_worker(kind, workers):
        start = cpu()
        if kind == "interpreters":
            pool = InterpreterPoolExecutor(workers)
        else:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(kind))
        with pool:
            list(pool.map(abs, range(workers)))
        return (cpu() - start) / workers

    if __name__ == "__main__":
        rounds, workers = int(sys.argv[1]), int(sys.argv[2])
        kinds = ("interpreters", "fork", "spawn")
        found = {kind: [] for kind in kinds}
        for _ in range(rounds):  # in turns
            for kind in kinds:
                found[kind].append(per_worker(kind, workers))
        print(json.dumps({kind: statistics.median(v) for kind, v in found.items()}))
""")


def bench_other_pythons(bench) -> None:
    """Threads without a GIL, and worker interpreters: the lab's figure against the same script
    on the same Python, where such a Python is found."""
    free_threaded = _free_threaded_python()
    if free_threaded:
        bench.ratio_against_hand(
            "threads",
            2,
            8,
            28,
            f"threads x2 on a free-threaded build, {C_HASH_20MS}",
            function="c_hash",
            python=free_threaded,
        )
    interpreters = _interpreters_python()
    if interpreters:
        bench.ratio_against_hand(
            "interpreters",
            2,
            8,
            28,
            f"interpreters x2 on {_version(interpreters)}, {C_HASH_20MS}",
            function="c_hash",
            python=interpreters,
        )
        bench_startup(bench, interpreters)


def bench_startup(bench, python: str, workers: int = 4, rounds: int = 9) -> None:
    """CPU per worker started, by hand (STARTUP): a worker interpreter against a forked and a
    spawned worker process, on the same Python. Shown, held to no budget."""
    import json

    (bench.workdir / "startup.py").write_text(STARTUP)
    out = subprocess.run(
        [python, "startup.py", str(rounds), str(workers)],
        cwd=bench.workdir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = json.loads(out.strip().splitlines()[-1])
    for kind, label in (
        ("interpreters", "a worker interpreter"),
        ("fork", "a worker process (fork)"),
        ("spawn", "a worker process (spawn)"),
    ):
        bench.show(
            f"start-up CPU per worker on {_version(python)}, x{workers}, by hand: {label} (ms)",
            found[kind] * 1000,
        )


def _free_threaded_python() -> Optional[str]:
    """$CONLAB_TEST_FREE_THREADED, else the first free-threaded build `conlab list pythons`
    finds; None (saying which row is left out) when there is none."""
    from experiments.pythons import discover, probe

    given = os.environ.get("CONLAB_TEST_FREE_THREADED")
    found = [probe(given)] if given else discover()
    for info in found:
        if info and info["free_threaded"]:
            return info["path"]
    print("  (free-threaded row left out: no free-threaded CPython found)", flush=True)
    return None


def _interpreters_python() -> Optional[str]:
    """$CONLAB_TEST_INTERPRETERS, else this interpreter, else the first `conlab list pythons`
    finds, else a private venv the interpreters tests made (~/.cache/conlab-interpreters), that
    runs the interpreters executor; None (saying which row is left out) when there is none."""
    import glob

    from experiments.pythons import discover, executors_under, probe
    from experiments.spec import SpecError

    given = os.environ.get("CONLAB_TEST_INTERPRETERS")
    cache = os.path.expanduser("~/.cache/conlab-interpreters/*/bin/python")
    paths = [given] if given else [i["path"] for i in discover()] + sorted(glob.glob(cache))
    # a GIL build first: the row is about interpreters, not about a free-threaded build
    paths.sort(key=lambda path: (probe(path) or {}).get("free_threaded", True))
    for path in paths:
        try:
            rows = {row["name"]: row for row in executors_under(path)}
        except SpecError:
            continue
        if rows["interpreters"]["available"]:
            return path
    print(
        "  (interpreters row left out: no CPython here runs InterpreterPoolExecutor; set "
        "CONLAB_TEST_INTERPRETERS to a 3.14, or a 3.13 with interpreters-pep-734)",
        flush=True,
    )
    return None


def _version(python: str) -> str:
    """``python``'s version as `conlab list pythons` says it, ``t`` for a free-threaded build."""
    from experiments.pythons import probe

    info = probe(python) or {}
    return f"{info.get('version', '?')}{'t' if info.get('free_threaded') else ''}"
