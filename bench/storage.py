"""Storage budgets: recording samples, listing many runs, merging many runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

from experiments.spec import ExperimentSpec


def fill(path: Path, runs: int, repeats: int = 5, tasks: int = 16) -> None:
    """A lab database with ``runs`` finished runs, as if recorded (synthetic rows, real schema)."""
    from storage.database import open_engine

    open_engine(path).dispose()
    connection = sqlite3.connect(path)
    machine = uuid.uuid4().hex[:20]
    interpreter = uuid.uuid4().hex[:20]
    connection.execute(
        "INSERT INTO machine (fingerprint, hostname, first_seen_at) VALUES (?, 'bench', "
        "'2026-01-01 00:00:00')",
        (machine,),
    )
    connection.execute(
        "INSERT INTO interpreter (key, machine_fingerprint, version) VALUES (?, ?, '3.11.7')",
        (interpreter, machine),
    )
    sweep = str(uuid.uuid4())
    connection.execute(
        "INSERT INTO sweep (id, created_at) VALUES (?, '2026-01-01 00:00:00')", (sweep,)
    )
    run_rows, repeat_rows, sample_rows = [], [], []
    for n in range(runs):
        run_id = str(uuid.uuid4())
        run_rows.append(
            (
                run_id,
                sweep,
                "ok",
                "cpu",
                ("threads", "processes")[n % 2],
                1 + n % 4,
                16,
                1000,
                repeats,
                1,
                machine,
                interpreter,
                f"2026-01-01 00:{n // 600 % 60:02d}:{n // 10 % 60:02d}.{n:06d}",
                "{}",
            )
        )
        for r in range(repeats + 1):
            repeat_rows.append(
                (run_id, r, r == 0, 10_000_000 + n + r, 9_000_000, 0, tasks * 5, 0, 10_000_000)
            )
            sample_rows.extend(
                (run_id, r, t, 1000 + t % 4, 1, t * 10, t * 10 + 5) for t in range(tasks)
            )
    connection.executemany(
        "INSERT INTO run (id, sweep_id, status, workload, executor, workers, tasks, size, "
        "repeats, warmups, machine_fingerprint, interpreter_key, created_at, environment_json) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        run_rows,
    )
    connection.executemany(
        "INSERT INTO repeat (run_id, repeat_index, warmup, wall_ns, cpu_ns, first_task_start_ns, "
        "busy_ns, start_ns, end_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        repeat_rows,
    )
    connection.executemany(
        "INSERT INTO task_sample (run_id, repeat_index, task_index, pid, thread_id, start_ns, "
        "end_ns) VALUES (?, ?, ?, ?, ?, ?, ?)",
        sample_rows,
    )
    connection.commit()
    connection.close()


def cli(*args: str, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tui.cli", *args], env=env, check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def bench_record_samples(bench) -> None:
    from storage.database import open_engine
    from storage.recorder import RunRecorder

    path = bench.workdir / "samples.db"
    engine = open_engine(path, writer=True)
    spec = ExperimentSpec(
        workload="tiny", executor="threads", workers=2, tasks=100_000, repeats=10, warmups=0
    )
    recorder = RunRecorder(
        engine, spec, {"workers": 2, "start_method": None, "chunksize": None, "size": 1}
    )
    recorder.start()
    samples = [[1000 + i % 2, 7, i * 1000, i * 1000 + 500] for i in range(100_000)]
    start = time.perf_counter()
    for index in range(10):
        recorder.on_event(
            {
                "event": "repeat",
                "index": index,
                "warmup": False,
                "wall_ns": 1,
                "cpu_ns": 1,
                "start_ns": 0,
                "end_ns": 1,
            }
        )
        recorder.on_event({"event": "tasks", "repeat": index, "samples": samples})
    elapsed = time.perf_counter() - start
    engine.dispose()
    count = sqlite3.connect(path).execute("SELECT count(*) FROM task_sample").fetchone()[0]
    assert count == 1_000_000, count
    bench.record("store 1,000,000 task samples (10 repeats), s", elapsed, "<= 5.0", elapsed <= 5.0)


def bench_list_runs(bench) -> None:
    path = bench.workdir / "many.db"
    fill(path, 10_000)
    env = dict(os.environ, NO_COLOR="1")
    cli("runs", "--db", str(path), "--json", env=env)  # warm the OS file cache
    elapsed = min(cli("runs", "--db", str(path), "--json", env=env) for _ in range(3))
    bench.record(
        "conlab runs --json over 10,000 runs (whole command), s", elapsed, "<= 1.0", elapsed <= 1.0
    )


def bench_merge(bench) -> None:
    target, source = bench.workdir / "target.db", bench.workdir / "source.db"
    fill(target, 1_000)
    fill(source, 10_000)
    env = dict(os.environ, NO_COLOR="1")
    elapsed = cli("db", "merge", str(source), "--db", str(target), env=env)
    added = sqlite3.connect(target).execute("SELECT count(*) FROM run").fetchone()[0]
    assert added == 11_000, added
    bench.record(
        "conlab db merge of 10,000 runs (960,000 samples), s", elapsed, "<= 5.0", elapsed <= 5.0
    )


def bench_report(bench) -> None:
    path = bench.workdir / "report.db"
    fill(path, 10_000, repeats=5, tasks=17)  # 10,000 runs, 1,020,000 task samples
    env = dict(os.environ, NO_COLOR="1")
    cli("report", "--db", str(path), "--format", "json", env=env)  # warm the OS file cache
    elapsed = min(cli("report", "--db", str(path), "--format", "json", env=env) for _ in range(3))
    bench.record(
        "conlab report over 10,000 runs, 1,020,000 samples, s", elapsed, "<= 2.0", elapsed <= 2.0
    )


BENCHMARKS = [bench_record_samples, bench_list_runs, bench_merge, bench_report]
