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
from storage.figures import COLUMNS
from tests.conftest import MARK_VAR, REPO, assert_one_line_error, run_args

# What a merge or an export must carry over, row for row (plain SQL: SQLite and servers alike).
CONTENT_QUERIES = {
    "run": "SELECT id, status, workload, executor, workers, size, tag FROM run ORDER BY id",
    "repeat": "SELECT run_id, repeat_index, warmup, wall_ns FROM repeat ORDER BY 1, 2",
    "task_sample": "SELECT run_id, repeat_index, task_index, pid, start_ns, end_ns "
    "FROM task_sample ORDER BY 1, 2, 3",
    "machine": "SELECT fingerprint FROM machine ORDER BY 1",
    "interpreter": "SELECT key FROM interpreter ORDER BY 1",
    # derived wherever runs arrive (storage.figures): the same rows whoever derived them
    "process": f"SELECT {', '.join(COLUMNS)} FROM process ORDER BY 1, 2",
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


def scribble(path: Path, *, last_page_only: bool = False) -> None:
    """Damage every b-tree page of the lab file ``path`` from the third on (opening it finds
    that), or only its last one (a table page: only SQLite's check of every page finds that),
    its header left as it was."""
    data = bytearray(path.read_bytes())
    page = 4096
    if last_page_only:
        data[-page + 8 : -100] = b"\xff" * (page - 108)
    else:
        for offset in range(page * 2, len(data) - 100, page):
            data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


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


@pytest.mark.damaged_databases
def test_merge_refuses_a_damaged_source_and_leaves_the_target_as_it_was(conlab, tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    record(conlab, a, "a")
    record(conlab, b, "b")
    scribble(b)
    before = hashlib.sha256(a.read_bytes()).hexdigest()
    result = conlab("db", "merge", str(b), "--db", str(a))
    assert_one_line_error(result)
    assert "damaged" in result.stderr or "not a" in result.stderr
    assert hashlib.sha256(a.read_bytes()).hexdigest() == before
    fresh = tmp_path / "fresh.db"  # a refused merge creates no target either
    assert_one_line_error(conlab("db", "merge", str(b), "--db", str(fresh)))
    assert not fresh.exists()
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


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("unshare") is None or os.geteuid() != 0,
    reason="needs root and unshare to give the run its own host name",
)
def test_anonymized_export_holds_no_host_user_home_or_path(conlab, tmp_path, user_dir, db_path):
    # Record under a distinctive host name (a UTS namespace), so the raw-bytes check means it;
    # a workload given as a file path and a tag holding a path put absolute paths outside home
    # into run, sweep, tracebacks and captured stderr.
    env = dict(
        os.environ,
        CONLAB_DB=str(db_path),
        PYTHONPATH=str(user_dir),
        NO_COLOR="1",
        **{MARK_VAR: "anon"},
    )
    module = user_dir / "usermod.py"
    tag = f"notes in {user_dir}/notes.txt"
    cli = f"{sys.executable} -m tui.cli"
    one = "--repeats 1 --processes 1"  # one runner process each: what is stored, not figures
    script = (
        f"hostname {HOSTNAME} && {cli} run -w {module}:boom -e threads --workers 1 --tasks 1 "
        f"{one} --tag '{tag}'; {cli} run -w {module}:warns -e processes --workers 1 "
        f"--tasks 1 {one} --tag '{tag}' && {cli} run -w tiny -e threads --workers 1 "
        f"--tasks 2 {one}"
    )
    done = subprocess.run(
        ["unshare", "-u", "sh", "-c", script], cwd=user_dir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    raw = db_path.read_bytes() + b"".join(
        p.read_bytes() for p in db_path.parent.glob("results.db-wal")
    )
    import getpass

    secrets = [HOSTNAME, os.path.expanduser("~"), getpass.getuser(), str(user_dir), str(REPO)]
    for secret in secrets:  # the test would prove nothing otherwise
        assert secret.encode() in raw, secret

    out = tmp_path / "anon.db"
    assert conlab("db", "export", str(out), "--anonymize").returncode == 0
    exported = out.read_bytes()  # every page, free ones included (there must be none)
    for secret in secrets:
        assert secret.encode() not in exported, secret
    connection = sqlite3.connect(out)
    assert connection.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert {row[0] for row in connection.execute("SELECT tag FROM sweep")} == {
        "notes in .../notes.txt",
        None,
    }
    failed = connection.execute("SELECT workload, error_detail FROM run WHERE status = 'failed'")
    workload, detail = failed.fetchone()
    assert workload == ".../usermod.py:boom" and '".../usermod.py", line' in detail
    connection.close()
    assert conlab("db", "check", "--db", str(out)).returncode == 0
    runs = conlab("runs", "--db", str(out), "--json").json()
    assert sorted(r["status"] for r in runs) == ["failed", "ok", "ok"]
    assert all(r["machine"].startswith("machine-") for r in runs)


# Client and project names, as they sit in paths a colleague's database holds: inside a home
# (written out, and as ~), with spaces, on a Windows share, as a file:// URL, and the recording
# host's name in capitals.
SECRET_WORDS = ("clients", "acme", "merger", "anna", "LAB-ANNA", "lab-anna", "FILESRV", "Corp")
PLANTED = {
    "workload": "/home/anna/clients/acme-merger/jobs.py:work",
    "tag": "~/clients/acme-merger/notes.txt",
    "error_detail": 'File "/home/anna/My Clients/acme merger/jobs.py", line 3, in work',
    "stderr": "read \\\\FILESRV\\clients\\Acme Corp\\in.csv and file:///home/anna/acme/x.json "
    "on LAB-ANNA",
}


def test_anonymized_export_cuts_paths_inside_a_home_and_numbers_processes(
    conlab, db_path, tmp_path
):
    record(conlab, db_path, "x")
    connection = sqlite3.connect(db_path)
    assignments = ", ".join(f"{column} = ?" for column in PLANTED)
    connection.execute(f"UPDATE run SET {assignments}", tuple(PLANTED.values()))
    connection.execute("UPDATE machine SET hostname = 'lab-anna'")
    for run_id, text in connection.execute("SELECT id, environment_json FROM run").fetchall():
        env = dict(json.loads(text), home="/home/anna", hostname="lab-anna", user="anna")
        connection.execute(
            "UPDATE run SET environment_json = ? WHERE id = ?", (json.dumps(env), run_id)
        )
    pids = {pid for (pid,) in connection.execute("SELECT DISTINCT pid FROM task_sample")}
    connection.commit()
    connection.close()

    out = tmp_path / "anon.db"
    assert conlab("db", "export", str(out), "--anonymize").returncode == 0
    exported = out.read_bytes()
    for word in SECRET_WORDS:
        assert word.encode() not in exported, word
    connection = sqlite3.connect(out)
    row = connection.execute("SELECT workload, tag, error_detail, stderr FROM run").fetchone()
    assert row[:3] == (".../jobs.py:work", ".../notes.txt", 'File ".../jobs.py", line 3, in work')
    assert row[3] == "read ...\\in.csv and .../x.json on machine-" + row[3].split("machine-")[1]
    # each run's processes are numbered 1, 2, ... in task samples and environment alike
    numbered = connection.execute("SELECT run_id, pid FROM task_sample").fetchall()
    environments = connection.execute("SELECT id, environment_json FROM run").fetchall()
    connection.close()
    for run_id, text in environments:
        env = json.loads(text)
        ids = {pid for run, pid in numbered if run == run_id}
        assert ids == set(range(1, len(ids) + 1)) and not ids & pids
        assert {int(k) for k in env["peak_rss_by_worker"]} >= ids
        listed = [str(process.get("pid")) for process in env["runner_processes"]]
        assert not {int(p) for p in listed} & pids and not {str(p) for p in pids} & set(
            text.split('"')
        )
    assert conlab("db", "check", "--db", str(out)).returncode == 0
    shown = conlab(
        "report", "--db", str(out), "--format", "html", "--output", str(tmp_path / "r.html")
    )
    assert shown.returncode == 0, shown.stderr


def test_info_counts_runs_per_machine_and_interpreter(conlab, db_path):
    record(conlab, db_path, "x")
    details = conlab("db", "info", "--json").json()
    assert details["runs"] == 2 and details["schema_version"] == SCHEMA_VERSION
    assert details["runs_by"][0]["runs"] == 2 and details["runs_by"][0]["status"] == "ok"
    assert details["first_run_at"] <= details["last_run_at"]


@pytest.mark.damaged_databases
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


@pytest.mark.damaged_databases
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


# --- a run exported while it was running, merged once it has finished ------------------------

GATED_MODULE = '''
import os
import time

CALLS, HOLD = {calls!r}, {hold!r}


def gated(size):
    """The first ``size`` calls return at once; later ones wait while HOLD exists."""
    with open(CALLS, "a+") as handle:
        handle.seek(0)
        calls = len(handle.read().splitlines())
        handle.write("call\\n")
    while calls >= size and os.path.exists(HOLD):
        time.sleep(0.01)
    return calls
'''


def _repeats_stored(db: Path) -> int:
    connection = sqlite3.connect(db)
    try:
        return connection.execute("SELECT count(*) FROM repeat").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are not there yet
        return 0
    finally:
        connection.close()


def snapshot_mid_run(conlab, user_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``(source, snapshot)``: ``snapshot`` is ``db export`` of ``source`` taken while its run
    had stored 2 of 4 repeats; ``source`` has since finished the run."""
    import time

    hold, source, snapshot = tmp_path / "hold", tmp_path / "source.db", tmp_path / "snapshot.db"
    calls = tmp_path / "calls"
    (user_dir / "gatemod.py").write_text(GATED_MODULE.format(calls=str(calls), hold=str(hold)))
    hold.touch()
    options = dict(workers=1, tasks=1, size=2, repeats=4, warmups=0, db=source)
    process = conlab.start(*run_args("gatemod:gated", "threads", **options))
    while _repeats_stored(source) < 2:  # the run now waits in its third repeat
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    exported = conlab("db", "export", str(snapshot), "--db", str(source))
    assert exported.returncode == 0, exported.stderr
    hold.unlink()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert _repeats_stored(snapshot) == 2 and _repeats_stored(source) == 4
    return source, snapshot


def statuses(db: Path) -> list[str]:
    return [row[1] for row in content(db)["run"]]


@pytest.mark.parametrize("stale", ["running", "interrupted"])
def test_a_finished_run_replaces_its_unfinished_copy_never_the_reverse(
    conlab, user_dir, tmp_path, stale
):
    source, snapshot = snapshot_mid_run(conlab, user_dir, tmp_path)
    if stale == "interrupted":  # `runs` on this host sees the recorder gone
        assert conlab("runs", "--db", str(snapshot)).returncode == 0
    assert statuses(snapshot) == [stale] and statuses(source) == ["ok"]

    finished = content(source)
    backwards = conlab("db", "merge", str(snapshot), "--db", str(source), "--json")
    assert backwards.returncode == 0, backwards.stderr
    assert backwards.json()[0]["runs_added"] == 0
    assert content(source) == finished  # the unfinished copy never replaces the finished one

    merged = conlab("db", "merge", str(source), "--db", str(snapshot), "--json")
    assert merged.returncode == 0, merged.stderr
    assert (merged.json()[0]["runs_added"], merged.json()[0]["runs_replaced"]) == (1, 1)
    assert content(snapshot) == finished  # the run, its 4 repeats and their task samples
    assert (
        conlab("db", "merge", str(source), "--db", str(snapshot), "--json").json()[0]["runs_added"]
        == 0
    )
    assert conlab("db", "check", "--db", str(snapshot)).returncode == 0


def test_a_finished_run_replaces_its_interrupted_copy_on_postgres(
    conlab, user_dir, tmp_path, pg_url
):
    from tests.storage.test_postgres import server_content

    source, snapshot = snapshot_mid_run(conlab, user_dir, tmp_path)
    assert conlab("runs", "--db", str(snapshot)).returncode == 0  # now `interrupted`
    assert conlab("db", "merge", str(snapshot), "--db", pg_url).returncode == 0
    assert [row[1] for row in server_content(pg_url)["run"]] == ["interrupted"]
    assert len(server_content(pg_url)["repeat"]) == 2

    merged = conlab("db", "merge", str(source), "--db", pg_url, "--json")
    assert merged.returncode == 0, merged.stderr
    assert merged.json()[0]["runs_replaced"] == 1
    assert server_content(pg_url) == content(source)
    again = conlab("db", "merge", str(snapshot), "--db", pg_url, "--json")
    assert again.json()[0]["runs_added"] == 0 and server_content(pg_url) == content(source)


# --- an export is all there or not there at all ----------------------------------------------


def inflate(db: Path, doublings: int) -> None:
    """Copies of the recorded task samples, so that exporting ``db`` takes a while."""
    connection = sqlite3.connect(db)
    columns = "run_id, repeat_index, task_index, pid, thread_id, start_ns, end_ns"
    for _ in range(doublings):
        connection.execute(f"INSERT INTO task_sample ({columns}) SELECT {columns} FROM task_sample")
        connection.commit()
    connection.close()


@pytest.mark.damaged_databases  # SIGKILL leaves the private working copy half written
def stopped(process) -> bool:
    """Whether ``process``, sent SIGSTOP, is stopped (False: it had ended first)."""
    import time

    while process.poll() is None:
        with open(f"/proc/{process.pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] in ("T", "t"):
                return True
        time.sleep(0.001)
    return False


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM", "SIGKILL"])
def test_an_interrupted_export_leaves_nothing_at_out(
    conlab, db_path, tmp_path, monkeypatch, signum
):
    import signal
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))  # where the private working copy goes
    record(conlab, db_path, "x")
    shared = tmp_path / "shared"
    shared.mkdir()
    out = shared / "anon.db"
    inflate(db_path, 14)
    for _attempt in range(4):
        process = conlab.start("db", "export", str(out), "--anonymize")
        while not list(scratch.glob("conlab-export-*")) and process.poll() is None:
            time.sleep(0.001)
        process.send_signal(signal.SIGSTOP)  # caught working; the signal arrives mid-export
        if stopped(process) and not out.exists():
            break
        process.send_signal(signal.SIGCONT)  # it finished first: try again on a bigger database
        process.communicate(timeout=60)
        out.unlink(missing_ok=True)
        inflate(db_path, 1)
    else:
        pytest.fail("every export finished before the test could signal it")
    process.send_signal(getattr(signal, signum))
    process.send_signal(signal.SIGCONT)
    _, stderr = process.communicate(timeout=60)

    assert not out.exists()
    if signum == "SIGKILL":
        assert process.returncode == -signal.SIGKILL
        home = os.path.expanduser("~").encode()
        assert not any(home in p.read_bytes() for p in shared.iterdir())  # nothing private
    else:
        assert process.returncode in (1, 130), stderr  # 130: 128 + SIGINT, as typer ends
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) <= 1, stderr
        assert list(shared.iterdir()) == [] and list(scratch.glob("conlab-export-*")) == []
    done = conlab("db", "export", str(out), "--anonymize")  # and the name is still free
    assert done.returncode == 0, done.stderr


def test_the_export_path_starts_no_thread_that_could_take_its_signals():
    """An export holds SIGINT and SIGTERM off in its own thread while it makes its private
    directory; numpy's BLAS threads would take them meanwhile (and leave the directory)."""
    code = (
        "import sys, threading, storage.sharing, tui.cli; "
        "assert 'numpy' not in sys.modules, 'numpy'; assert threading.active_count() == 1"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert found.returncode == 0, found.stderr


def test_an_export_that_cannot_be_written_leaves_nothing_at_out(conlab, db_path, tmp_path):
    from tests.conftest import _marked_env, in_mount_namespace

    record(conlab, db_path, "x")
    full = tmp_path / "full"  # a file system too small for the export
    full.mkdir()
    env = _marked_env(tmp_path, db_path, [])
    result = in_mount_namespace(
        f"mount -t tmpfs -o size=16k tmpfs {full}",
        f"{sys.executable} -m tui.cli db export {full}/anon.db --anonymize; echo exit=$?; "
        f"ls -A {full}",
        cwd=REPO,
        env=env,
    )
    lines = result.stdout.split()
    assert lines == ["exit=2"], result.stdout  # and the directory is empty: no OUT, no part
    assert result.stderr.startswith("conlab: cannot write") and result.stderr.count("\n") == 1


def test_export_refuses_a_dangling_symlink(conlab, db_path, tmp_path):
    record(conlab, db_path, "x")
    target = tmp_path / "elsewhere" / "secret.db"
    target.parent.mkdir()
    link = tmp_path / "out.db"
    link.symlink_to(target)
    result = conlab("db", "export", str(link))
    assert_one_line_error(result)
    assert "symbolic link" in result.stderr
    assert not target.exists() and link.is_symlink()
