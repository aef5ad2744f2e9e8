"""Databases sent between people: merge, export, anonymize, check, info, and crafted files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from storage.database import SCHEMA_VERSION
from tests.conftest import MARK_VAR, assert_one_line_error, run_args

# What a merge or an export must carry over, row for row (plain SQL: SQLite and servers alike).
CONTENT_QUERIES = {
    "run": "SELECT id, status, workload, executor, workers, size, tag FROM run ORDER BY id",
    "repeat": "SELECT run_id, repeat_index, warmup, wall_ns FROM repeat ORDER BY 1, 2",
    "task_sample": "SELECT run_id, repeat_index, task_index, pid, start_ns, end_ns "
    "FROM task_sample ORDER BY 1, 2, 3",
    "machine": "SELECT fingerprint FROM machine ORDER BY 1",
    "interpreter": "SELECT key FROM interpreter ORDER BY 1",
}


def content(path: Path) -> dict[str, list]:
    """Every table's rows that a merge or export must carry over, from a SQLite file."""
    connection = sqlite3.connect(path)
    try:
        return {t: connection.execute(q).fetchall() for t, q in CONTENT_QUERIES.items()}
    finally:
        connection.close()


def record(conlab, db: Path, tag: str) -> None:
    options = dict(workers=2, tasks=3, repeats=2, tag=tag, db=db)
    result = conlab(*run_args("tiny", "sequential", "threads", **options))
    assert result.returncode == 0, result.stderr


def test_merge_is_idempotent_both_ways(conlab, tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    record(conlab, a, "from-a")
    record(conlab, b, "from-b")
    first = conlab("db", "merge", str(b), "--db", str(a), "--json")
    assert first.returncode == 0, first.stderr
    assert first.json()[0]["runs_added"] == 2
    merged = content(a)
    assert len(merged["run"]) == 4 and len(merged["task_sample"]) == 4 * 3 * 3

    again = conlab("db", "merge", str(b), "--db", str(a), "--json").json()
    assert again[0]["runs_added"] == 0 and again[0]["runs_skipped"] == 2
    assert content(a) == merged

    back = conlab("db", "merge", str(a), "--db", str(b), "--json").json()
    assert back[0]["runs_added"] == 2 and back[0]["runs_skipped"] == 2
    assert content(b) == merged  # the same runs, repeats and samples on both sides

    text = conlab("db", "merge", str(b), "--db", str(a))
    assert "0 runs added" in text.stdout


def test_merge_refuses_a_damaged_source_and_leaves_the_target_as_it_was(conlab, tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    record(conlab, a, "a")
    record(conlab, b, "b")
    data = bytearray(b.read_bytes())
    page = 4096
    for offset in range(page * 2, len(data) - 100, page):  # scribble over every b-tree page
        data[offset : offset + 64] = b"\xff" * 64
    b.write_bytes(bytes(data))
    before = hashlib.sha256(a.read_bytes()).hexdigest()
    result = conlab("db", "merge", str(b), "--db", str(a))
    assert_one_line_error(result)
    assert "damaged" in result.stderr or "not a" in result.stderr
    assert hashlib.sha256(a.read_bytes()).hexdigest() == before
    checked = conlab("db", "check", "--db", str(b))
    assert checked.returncode in (1, 2) and "ok" not in checked.stdout.splitlines()[-1:]


def test_export_is_a_consistent_copy_and_filters_by_tag(conlab, tmp_path, db_path):
    record(conlab, db_path, "keep")
    record(conlab, db_path, "drop")
    out = tmp_path / "shared.db"
    result = conlab("db", "export", str(out), "--tag", "keep")
    assert result.returncode == 0, result.stderr
    exported = content(out)
    assert {row[-1] for row in exported["run"]} == {"keep"} and len(exported["run"]) == 2
    assert len(exported["task_sample"]) == 2 * 3 * 3
    assert conlab("db", "check", "--db", str(out)).returncode == 0
    assert_one_line_error(conlab("db", "export", str(out)))  # never overwrites


HOSTNAME = "conlab-test-host-7f3a"


@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs root and unshare to give the run its own host name",
)
def test_anonymized_export_holds_no_host_user_or_home(conlab, tmp_path, user_dir, db_path):
    # Record under a distinctive host name (a UTS namespace), so the raw-bytes check means it.
    env = dict(
        os.environ,
        CONLAB_DB=str(db_path),
        PYTHONPATH=str(user_dir),
        NO_COLOR="1",
        **{MARK_VAR: "anon"},
    )
    script = (
        f"hostname {HOSTNAME} && {sys.executable} -m tui.cli run -w usermod:boom "
        f"-e threads --workers 1 --tasks 1 --repeats 1 && true; {sys.executable} -m "
        "tui.cli run -w tiny -e threads --workers 1 --tasks 2 --repeats 1"
    )
    done = subprocess.run(
        ["unshare", "-u", "sh", "-c", script], cwd=user_dir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    raw = db_path.read_bytes() + b"".join(
        p.read_bytes() for p in db_path.parent.glob("results.db-wal")
    )
    home = os.path.expanduser("~").encode()
    assert HOSTNAME.encode() in raw and home in raw  # the test would prove nothing otherwise

    out = tmp_path / "anon.db"
    assert conlab("db", "export", str(out), "--anonymize").returncode == 0
    exported = out.read_bytes()
    import getpass

    for secret in (HOSTNAME, home.decode(), getpass.getuser(), str(user_dir)):
        assert secret.encode() not in exported, secret
    assert conlab("db", "check", "--db", str(out)).returncode == 0
    runs = conlab("runs", "--db", str(out), "--json").json()
    assert sorted(r["status"] for r in runs) == ["failed", "ok"]
    assert all(r["machine"].startswith("machine-") for r in runs)


def test_info_counts_runs_per_machine_and_interpreter(conlab, db_path):
    record(conlab, db_path, "x")
    details = conlab("db", "info", "--json").json()
    assert details["runs"] == 2 and details["schema_version"] == SCHEMA_VERSION
    assert details["runs_by"][0]["runs"] == 2 and details["runs_by"][0]["status"] == "ok"
    assert details["first_run_at"] <= details["last_run_at"]


def test_check_finds_the_lab_inconsistencies(conlab, db_path):
    record(conlab, db_path, "x")
    connection = sqlite3.connect(db_path)
    connection.execute("DELETE FROM repeat WHERE warmup = 0 AND repeat_index = 2")
    connection.execute("UPDATE run SET environment_json = 'not json' WHERE executor = 'threads'")
    connection.commit()
    connection.close()
    result = conlab("db", "check")
    assert result.returncode == 1
    assert "ok runs missing counted repeats" in result.stdout
    assert "environment that is not JSON" in result.stdout


def test_crafted_text_is_shown_as_text_never_run(conlab, db_path, tmp_path):
    record(conlab, db_path, "x")
    marker = tmp_path / "pwned"
    evil = f"__import__('os').system('touch {marker}'); DROP TABLE run; --"
    connection = sqlite3.connect(db_path)
    connection.execute(
        "UPDATE run SET error = ?, tag = ?, workload = ?", (evil, "x' OR 1=1 --", "a" * 100_000)
    )
    connection.execute("UPDATE run SET environment_json = ?", (json.dumps({"evil": evil}),))
    connection.execute("UPDATE repeat SET wall_ns = 'not a number' WHERE repeat_index = 1")
    connection.commit()
    connection.close()
    listed = conlab("runs", "--json")
    assert "Traceback" not in listed.stderr
    if listed.returncode == 0:
        assert any(r["error"] == evil for r in listed.json())
    else:
        assert_one_line_error(listed)
    assert conlab("runs", "--tag", "x' OR 1=1 --", "--json").returncode in (0, 2)
    assert not marker.exists()
    assert sqlite3.connect(db_path).execute("SELECT count(*) FROM run").fetchone()[0] == 2


def test_every_table_reads_with_plain_tools(conlab, db_path):
    """pandas.read_sql and the sqlite3 module read every table: named columns, plain types."""
    import pandas as pd

    record(conlab, db_path, "x")
    connection = sqlite3.connect(db_path)
    tables = [
        r[0]
        for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    assert set(tables) >= {
        "machine",
        "interpreter",
        "sweep",
        "run",
        "repeat",
        "task_sample",
        "import_log",
    }
    for table in tables:
        frame = pd.read_sql(f"SELECT * FROM {table}", connection)
        assert all(isinstance(c, str) and c for c in frame.columns)
        types = set()
        for row in connection.execute(
            "SELECT " + ", ".join(f"typeof({c})" for c in frame.columns) + f" FROM {table}"
        ):
            types.update(row)
        assert types <= {"integer", "real", "text", "null"}, (table, types)
