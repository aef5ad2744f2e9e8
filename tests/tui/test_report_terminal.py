"""`conlab report` as people read it: in a real terminal of 80 and 160 columns (a pseudo-terminal
of that size), and through a pipe, which gets what the terminal got."""

from __future__ import annotations

import csv
import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from tests.helpers import environment, made_once, record_run

CONLAB = Path(sys.executable).with_name("conlab")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
SIZE = 4_194_304


@made_once
def a_days_work(path: Path) -> int:
    """What a first hour stores: two interpreters, a user's function at a large size and a
    built-in one, four executors at 2 and 4 workers, two start methods, before and after
    tags. Returns the number of summary rows."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine

    engine = open_engine(path, writer=True)
    rows = 0
    for python, key in (("3.11.7", "a"), ("3.12.8", "b")):
        env = environment("f" * 20, "lab-box.example.org", "Intel(R) Xeon(R) CPU", python)
        env["interpreter_key"] = key * 20
        for workload, size in (("mymod:compress", SIZE), ("cpu", 100_000)):
            for tag, factor in (("before", 1.0), ("after", 0.9)):
                sweep = ExperimentSpec(workload="x", executor="x").sweep_id
                common = dict(
                    workload=workload, tasks=16, repeats=3, warmups=0, tag=tag, sweep_id=sweep
                )
                spec = ExperimentSpec(executor="sequential", **common)
                record_run(engine, spec, env, [532.1, 540.3, 529.9], resolved={"size": size})
                for executor, start in (
                    ("threads", None),
                    ("processes", "spawn"),
                    ("pool", "fork"),
                ):
                    for workers in (2, 4):
                        walls = [532.1 * factor / workers * (1 + n / 50) for n in range(3)]
                        spec = ExperimentSpec(executor=executor, workers=workers, **common)
                        record_run(engine, spec, env, walls, start, resolved={"size": size})
            rows += 7
    engine.dispose()
    return rows


def in_terminal(args: list[str], columns: int, db: Path, cwd: Path) -> str:
    """What `conlab ARGS` shows in a terminal ``columns`` wide, as text without its colours."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "CONLAB_DB": str(db), "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "NO_COLOR"):
        env.pop(name, None)
    process = subprocess.Popen(
        [str(CONLAB), *args], stdin=child, stdout=child, stderr=child, env=env, cwd=cwd
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=120) == 0, b"".join(chunks).decode()
    return ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")


def through_a_pipe(args: list[str], db: Path, cwd: Path, columns: int) -> str:
    env = {**os.environ, "CONLAB_DB": str(db), "COLUMNS": str(columns)}
    done = subprocess.run(
        [str(CONLAB), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def days_work(db_path):
    return db_path, a_days_work(db_path)


@pytest.mark.parametrize("columns", [80, 160])
def test_the_report_fits_the_terminal_without_a_cut_value(days_work, tmp_path, columns):
    db, rows = days_work
    shown = in_terminal(["report"], columns, db, tmp_path)
    lines = shown.splitlines()
    assert all(len(line) <= columns for line in lines), shown
    table_lines = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert "…" not in "\n".join(table_lines), shown
    # every row one line, numbered across the tables, its figures whole
    numbered = [line for line in table_lines if re.match(r"│ +\d+ +│", line)]
    assert [int(line.split("│")[1]) for line in numbered] == list(range(1, rows + 1)), shown
    headers = next(line for line in table_lines if "executor" in line)
    for column in ("executor", "start", "workers", "median", "95% CI"):
        assert f" {column} " in headers, shown
    assert re.search(r"│ \d+\.\d\sms +│ \d+\.\d–\d+\.\d\sms +│", shown), shown
    # what a row is of: said once above its table, the size written as a count
    assert "mymod:compress, size 4,194,304, 16 tasks, Python 3.12.8" in shown
    assert "e+06" not in shown and "4194304" not in shown
    assert "conlab report --wide" in shown  # where the other columns are
    if columns >= 160:
        assert " speedup " in headers and " CPU/wall " in headers


def test_the_wide_table_and_the_files_keep_every_column(days_work, tmp_path):
    db, rows = days_work
    wide = in_terminal(["report", "--wide"], 250, db, tmp_path)
    for column in ("CV", "speedup CI", "start-up", "in flight", "core moves"):
        assert column in wide, wide
    assert "conlab report --wide" not in wide
    table = through_a_pipe(["report", "--format", "csv"], db, tmp_path, 80)
    found = list(csv.DictReader(io.StringIO(table)))
    assert len(found) == rows
    assert {"ci_low_s", "ci_high_s", "iqr_s", "worker_peak_rss_bytes", "cores_used"} <= set(
        found[0]
    )


def test_a_pipe_gets_what_the_terminal_got_in_plain_text(days_work, tmp_path):
    """`conlab report --compare A B | tee out.txt`: the comparison, as on the terminal, not the
    Markdown summary of every run."""
    db, _ = days_work
    args = ["report", "--compare", "tag:before", "tag:after"]
    piped = through_a_pipe(args, db, tmp_path, 200)
    assert "tag:after against tag:before" in piped and "geometric mean of B/A" in piped
    assert "summary" not in piped and "|---" not in piped and "**" not in piped
    assert "\x1b" not in piped
    assert piped == in_terminal(args, 200, db, tmp_path)
    summary = through_a_pipe(["report"], db, tmp_path, 200)
    assert summary == in_terminal(["report"], 200, db, tmp_path)
    assert "|---" not in summary


def test_a_sweeps_table_fits_80_columns(db_path, tmp_path):
    """`conlab run`'s table at its end: what the runs share said once above it, every run one
    line, no value cut."""
    args = ["run", "-w", "tiny", "-e", "sequential", "-e", "threads", "-e", "processes"]
    args += ["--workers", "2", "--tasks", "4", "--repeats", "2", "--processes", "1"]
    shown = in_terminal(args, 80, db_path, tmp_path)
    lines = shown.splitlines()
    assert all(len(line) <= 80 for line in lines), shown
    table = [line for line in lines if line[:1] in "┏┃┡│└"]
    assert "…" not in "\n".join(table), shown
    assert "runs: tiny, size 1, Python " in shown
    rows = [line.split("│")[1].strip() for line in table if line.startswith("│ ")]
    assert rows == ["sequential", "threads", "processes"], shown
    assert re.search(r"│ \d+\.\d ms +│ \d+\.\d–\d+\.\d ms +│", shown), shown
