"""Result databases a user can trust: versions, refusals, lifecycle, concurrent writers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage.database import APPLICATION_ID, SCHEMA_VERSION, open_engine
from tests.conftest import assert_one_line_error, run_args

DATA = Path(__file__).parent / "data"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_v1_file(path: Path) -> Path:
    """A real schema-1 database (two runs recorded by the first cut), from its SQL dump."""
    connection = sqlite3.connect(path)
    connection.executescript((DATA / "schema_v1.sql").read_text())
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute("PRAGMA user_version = 1")
    connection.commit()
    connection.close()
    return path


def schema(path: Path) -> dict[str, list[str]]:
    connection = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {
            t: sorted(r[1] for r in connection.execute(f"PRAGMA table_info({t})")) for t in tables
        }
    finally:
        connection.close()


def test_a_version_1_file_is_migrated_after_a_backup(conlab, tmp_path):
    old = make_v1_file(tmp_path / "old.db")
    before = digest(old)
    listed = conlab("runs", "--db", str(old), "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(r["executor"] for r in listed.json()) == ["sequential", "threads"]
    assert all(r["status"] == "ok" and len(r["wall_s"]) == 2 for r in listed.json())
    assert "migrated" in listed.stderr and "old.db.v1.bak" in listed.stderr
    backup = tmp_path / "old.db.v1.bak"
    assert (
        digest(backup) != ""
        and sqlite3.connect(backup).execute("PRAGMA user_version").fetchone()[0] == 1
    )
    # the migrated file has exactly the schema a new file gets
    fresh = tmp_path / "fresh.db"
    open_engine(fresh).dispose()
    assert schema(old) == schema(fresh)
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert digest(old) != before
    # sweeps were made from the runs' sweep ids; old runs were measured in one process
    migrated = sqlite3.connect(old)
    assert migrated.execute("SELECT count(*) FROM sweep").fetchone()[0] == 1
    assert migrated.execute("SELECT DISTINCT processes FROM run").fetchall() == [(1,)]
    assert migrated.execute("SELECT DISTINCT process_index FROM repeat").fetchall() == [(0,)]
    # new runs can be added to the migrated file
    assert (
        conlab(
            "run", "-w", "tiny", "-e", "sequential", "--repeats", "1", "--db", str(old)
        ).returncode
        == 0
    )


# What schema 6 added to the run table (a column per dimension of the option table that
# schema 5 had none for), and the report's index as schema 5 made it.
SCHEMA_6_COLUMNS = ("main", "scheduler", "backend", "loop")
SCHEMA_5_INDEX = (
    "status, id, sweep_id, tag, workload, size, tasks, executor, start_method, workers, "
    "chunksize, created_at, machine_fingerprint, interpreter_key"
)


def as_schema_5(path: Path, *, forget: tuple[str, ...] = ()) -> Path:
    """The lab file at ``path`` as a conlab of schema 5 left it: no run column of schema 6, the
    report's index of schema 5; ``forget``: options its runs' environments do not name (runs
    recorded before conlab had that option)."""
    connection = sqlite3.connect(path)
    connection.execute("DROP INDEX ix_run_report")
    for column in SCHEMA_6_COLUMNS:
        connection.execute(f"ALTER TABLE run DROP COLUMN {column}")
    connection.execute(f"CREATE INDEX ix_run_report ON run ({SCHEMA_5_INDEX})")
    for key in forget:
        connection.execute(
            "UPDATE run SET environment_json = json_remove(environment_json, ?)", (f"$.{key}",)
        )
    connection.execute("PRAGMA user_version = 5")
    connection.commit()
    connection.close()
    return path


def index_columns(path: Path, index: str) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [row[2] for row in connection.execute(f"PRAGMA index_info({index})")]
    finally:
        connection.close()


def joblib_run(conlab, db: Path, *options: str) -> None:
    args = ["run", "-w", "tiny", "-e", "joblib", "--workers", "2", "--tasks", "2"]
    result = conlab(*args, "--repeats", "1", "--processes", "1", "--db", str(db), *options)
    assert result.returncode == 0, result.stderr


def test_a_version_5_file_gets_every_option_as_its_runs_used_it(conlab, tmp_path):
    old = tmp_path / "old.db"
    joblib_run(conlab, old, "--backend", "loky")
    joblib_run(conlab, old, "--backend", "threading")
    result = conlab(*run_args("tiny", "asyncio", workers=2, tasks=2, repeats=1, db=old))
    assert result.returncode == 0, result.stderr
    as_schema_5(old)

    report = conlab("report", "--db", str(old), "--format", "json")
    assert report.returncode == 0, report.stderr
    assert "migrated" in report.stderr and "old.db.v5.bak" in report.stderr
    rows = {(r["executor"], r["backend"], r["loop"]) for r in report.json()["summary"]}
    assert rows == {
        ("joblib", "loky", None),
        ("joblib", "threading", None),
        ("asyncio", None, "asyncio"),
    }
    fresh = tmp_path / "fresh.db"
    open_engine(fresh).dispose()
    assert schema(old) == schema(fresh)
    assert index_columns(old, "ix_run_report") == index_columns(fresh, "ix_run_report")
    picked = conlab("report", "--db", str(old), "--select", "backend:threading", "--format", "json")
    assert [r["backend"] for r in picked.json()["summary"]] == ["threading"]


def test_runs_merged_from_a_file_older_than_an_option_get_its_default(conlab, tmp_path):
    """A joblib run recorded before --backend existed ran on joblib's own default, loky: merged
    beside a threading run, it is a row of its own, named loky."""
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    joblib_run(conlab, old)
    as_schema_5(old, forget=("backend",))
    joblib_run(conlab, new, "--backend", "threading")
    merged = conlab("db", "merge", str(old), "--db", str(new))
    assert merged.returncode == 0, merged.stderr
    stored = sqlite3.connect(new).execute("SELECT backend FROM run ORDER BY backend").fetchall()
    assert stored == [("loky",), ("threading",)]
    report = conlab("report", "--db", str(new), "--format", "json")
    assert sorted(r["backend"] for r in report.json()["summary"]) == ["loky", "threading"]
    # the source itself is left at its version
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 5


def newer_file(path: Path) -> Path:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE run (id TEXT PRIMARY KEY)")
    connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    connection.commit()
    connection.close()
    return path


def foreign_file(path: Path) -> Path:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE customers (name TEXT)")
    connection.execute("INSERT INTO customers VALUES ('ada')")
    connection.commit()
    connection.close()
    return path


def text_file(path: Path) -> Path:
    path.write_text("name,value\nx,1\n")
    return path


@pytest.mark.parametrize(
    "make, words",
    [
        (newer_file, "newer than this conlab"),
        (foreign_file, "not a concurrency-lab one"),
        (text_file, "not a SQLite database"),
    ],
    ids=["newer", "foreign", "text"],
)
@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["run", "-w", "tiny", "-e", "sequential"],
        ["db", "info"],
        ["db", "check"],
        ["db", "export", "OUT"],
    ],
)
def test_files_that_are_not_ours_are_refused_untouched(conlab, tmp_path, make, words, command):
    path = make(tmp_path / "other.db")
    before = digest(path)
    args = [str(tmp_path / "out.db") if a == "OUT" else a for a in command]
    result = conlab(*args, "--db", str(path))
    assert_one_line_error(result)
    assert words in result.stderr
    assert digest(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "user"]


@pytest.mark.parametrize("target", ["missing", "directory", "unreadable"])
def test_bad_db_paths_are_one_line_errors(conlab, tmp_path, target):
    path = (
        {"missing": tmp_path / "nope.db", "directory": tmp_path}[target]
        if target != "unreadable"
        else tmp_path / "locked.db"
    )
    if target == "unreadable":
        open_engine(path).dispose()
        path.chmod(0)
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions do not stop reading")
    for command in (["runs"], ["db", "info"], ["db", "check"]):
        assert_one_line_error(conlab(*command, "--db", str(path)))


def wait_for_count(db: Path, query: str, args=(), at_least: int = 1, timeout_s: float = 60) -> None:
    """Until ``query`` counts ``at_least`` rows: the file may not exist or have tables yet."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if sqlite3.connect(db).execute(query, args).fetchone()[0] >= at_least:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{query} {args} never counted {at_least}")


def test_killing_conlab_mid_run_leaves_an_interrupted_run_and_a_sound_file(conlab, db_path):
    options = dict(workers=2, tasks=4, size=200, repeats=50)
    process = conlab.start(*run_args("sleep", "processes", **options))
    wait_for_count(db_path, "SELECT count(*) FROM repeat WHERE NOT warmup", at_least=2)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    listed = conlab("runs", "--json").json()
    assert [r["status"] for r in listed] == ["interrupted"]
    assert listed[0]["wall_s"], "the repeats stored before the kill are kept"
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the runner and its workers noticed their parent was gone (the fixture checks none is left)


def test_two_writers_at_once_both_succeed(conlab, db_path):
    args = dict(workers="1,2", tasks=200, repeats=20, warmups=0)
    first = conlab.start(*run_args("tiny", "threads", **args, tag="a"))
    second = conlab.start(*run_args("tiny", "threads", **args, tag="b"))
    for process in (first, second):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    rows = (
        sqlite3.connect(db_path)
        .execute("SELECT tag, status, count(*) FROM run GROUP BY tag, status")
        .fetchall()
    )
    assert rows == [("a", "ok", 2), ("b", "ok", 2)]
    samples = sqlite3.connect(db_path).execute("SELECT count(*) FROM task_sample").fetchone()[0]
    assert samples == 2 * 2 * 20 * 200


def test_reading_never_waits_for_a_writer(db_path):
    """A reader (report, TUI) reads while a writer holds the write lock (WAL)."""
    engine = open_engine(db_path, writer=True)
    with engine.begin() as connection:  # BEGIN IMMEDIATE: the write lock is held
        connection.exec_driver_sql("INSERT INTO sweep (id, created_at) VALUES ('s', '2026')")
        started = time.monotonic()
        reader = (
            subprocess.run(
                ["sqlite3", "-cmd", ".timeout 0", str(db_path), "SELECT count(*) FROM sweep"],
                capture_output=True,
                text=True,
            )
            if _has_sqlite3_shell()
            else None
        )
        if reader is None:
            reading = sqlite3.connect(db_path, timeout=0)
            count = reading.execute("SELECT count(*) FROM sweep").fetchone()[0]
        else:
            assert reader.returncode == 0, reader.stderr
            count = int(reader.stdout)
        assert count == 0 and time.monotonic() - started < 1.0
    engine.dispose()


def _has_sqlite3_shell() -> bool:
    from shutil import which

    return which("sqlite3") is not None


def test_two_openers_of_an_old_file_migrate_it_once(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    old = make_v1_file(tmp_path / "old.db")
    with ThreadPoolExecutor(4) as pool:
        engines = list(pool.map(lambda _: open_engine(old), range(4)))
    for engine in engines:
        engine.dispose()
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert sorted(p.name for p in tmp_path.glob("old.db.*bak*")) == ["old.db.v1.bak"]


def test_openers_of_a_new_file_at_once_all_get_its_tables(tmp_path):
    """The app's first reload, a reader and a sweep started at once all open a new file: none
    meets it half made (its tables without the lab's header) and refuses it."""
    from concurrent.futures import ThreadPoolExecutor

    from service.databases import open_database

    def app_reload(path: Path) -> None:
        open_database(str(path))

    def reader(path: Path) -> None:
        open_engine(path).dispose()

    def writer(path: Path) -> None:
        open_engine(path, writer=True).dispose()

    for n in range(10):
        new = tmp_path / f"new-{n}.db"
        with ThreadPoolExecutor(6) as pool:
            opened = [pool.submit(opener, new) for opener in (app_reload, reader, writer) * 2]
            for future in opened:
                future.result()
        assert sqlite3.connect(new).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_database_on_a_read_only_file_system_can_be_read(conlab, tmp_path):
    from tests.conftest import _marked_env
    from tests.helpers import reads_on_a_read_only_mount

    data, mounted, outs = tmp_path / "data", tmp_path / "ro", tmp_path / "outs"
    for directory in (data, mounted, outs):
        directory.mkdir()
    db = data / "results.db"
    assert conlab(*run_args("tiny", "sequential", "threads", workers=2, db=db)).returncode == 0
    gone = subprocess.Popen([sys.executable, "-c", "pass"])  # a recorder that has ended
    gone.wait()
    with sqlite3.connect(db) as connection:  # ... and left its run `running` on this host
        connection.execute(
            "UPDATE run SET status = 'running', recorder_pid = ? WHERE executor = 'threads'",
            (gone.pid,),
        )
    before = {p.name: digest(p) for p in data.iterdir()}
    env = _marked_env(tmp_path, db, [])
    codes, errors = reads_on_a_read_only_mount(data, mounted, "results.db", outs, env)
    assert codes == {name: "0" for name in errors}, errors
    # the stale run is shown as stored: a file that takes no writes is not marked
    assert sorted(r["status"] for r in json.loads((outs / "runs").read_text())) == [
        "ok",
        "running",
    ]
    assert len(json.loads((outs / "report").read_text())["summary"]) == 1
    assert json.loads((outs / "info").read_text())["runs"] == 2
    assert (outs / "check").read_text().strip().endswith(": ok")
    assert sqlite3.connect(outs / "copy.db").execute("SELECT count(*) FROM run").fetchone() == (2,)
    assert {p.name: digest(p) for p in data.iterdir()} == before


def test_a_sound_file_on_a_full_disk_is_read_and_nothing_is_left_beside_it(conlab, tmp_path):
    """A disk with no room for the -shm file SQLite makes to read a WAL file: every reading
    command reads it as it is (nothing in a log to skip), leaves no -wal or -shm behind, and
    calls nothing damaged; a writer, or a file whose log holds commits, is one line naming the
    fix."""
    from tests.conftest import _marked_env
    from tests.helpers import commands_in_mount, reading_commands

    data, full, outs = tmp_path / "data", tmp_path / "full", tmp_path / "outs"
    for directory in (data, full, outs):
        directory.mkdir()
    db = data / "results.db"
    assert conlab(*run_args("tiny", "sequential", "threads", workers=2, db=db)).returncode == 0
    logged = data / "logged.db"  # a file whose write-ahead log holds a commit not checkpointed
    shutil.copy(db, logged)
    keep_log = (
        "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
        "c.execute('PRAGMA wal_autocheckpoint = 0'); c.execute(\"UPDATE run SET tag = 'new'\"); "
        "c.commit(); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", keep_log, str(logged)], check=True)
    commands = {
        **reading_commands(outs),
        "run": "run -w tiny -e sequential --repeats 1 --processes 1",
        "logged": "runs",
    }
    files = {
        name: f"{full}/logged.db" if name == "logged" else f"{full}/results.db" for name in commands
    }
    codes, errors, result = commands_in_mount(
        f"mount -t tmpfs -o size=512k tmpfs {full} && cp {db} {logged} {logged}-wal {full}/ && "
        f"(dd if=/dev/zero of={full}/fill bs=4k 2>/dev/null || true)",
        commands,
        files,
        outs,
        _marked_env(tmp_path, db, []),
        after=f"ls -A {full} | sed 's/^/left=/'",
    )
    left = sorted(line[5:] for line in result.stdout.split() if line.startswith("left="))
    readers = ("runs", "report", "info", "check", "export")
    assert {name: codes[name] for name in readers} == {name: "0" for name in readers}, errors
    assert len(json.loads((outs / "runs").read_text())) == 2
    assert (outs / "check").read_text().strip().endswith(": ok")
    assert sqlite3.connect(outs / "copy.db").execute("SELECT count(*) FROM run").fetchone() == (2,)
    for name in ("run", "logged"):  # one line naming the fix, never "damaged"
        assert codes[name] == "2" and errors[name].count("\n") == 1, errors[name]
        assert "disk it is on is full" in errors[name] and "damaged" not in errors[name]
    assert left == ["fill", "logged.db", "logged.db-wal", "results.db"]


@pytest.mark.parametrize("planted", ["old place", "fifo", "folder", "another user's folder"])
def test_what_stands_at_the_migration_lock_never_hangs_a_command(conlab, tmp_path, planted):
    """The lock that keeps two migrators apart is a regular file in the user's own folder in
    $TMPDIR: a FIFO or folder where an older conlab kept it is not looked at, and one in the
    user's folder, or another user's folder at its name, is one line; the old file is left as
    it was and nothing hangs."""
    import hashlib

    if planted == "another user's folder" and os.geteuid() != 0:
        pytest.skip("needs root to make another user's folder")
    old = make_v1_file(tmp_path / "old.db")
    before = digest(old)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    key = hashlib.sha1(str(old.resolve()).encode()).hexdigest()[:16]
    os.mkfifo(temporary / f"conlab-migrate-{key}.lock")  # where the lock used to be: shared
    folder = temporary / f"conlab-locks-{os.getuid()}"
    folder.mkdir(mode=0o700)
    lock = folder / f"migrate-{key}.lock"
    if planted == "fifo":
        os.mkfifo(lock)
    elif planted == "folder":
        lock.mkdir()
    elif planted == "another user's folder":
        os.chown(folder, 65534, 65534)
    result = conlab("runs", "--db", str(old), "--json", env={"TMPDIR": str(temporary)}, timeout=60)
    if planted == "old place":
        assert result.returncode == 0, result.stderr
        assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert stat_mode(folder) == 0o700 and lock.is_file()
        return
    assert_one_line_error(result)
    assert "cannot migrate" in result.stderr and "remove it" in result.stderr, result.stderr
    assert digest(old) == before and not list(tmp_path.glob("old.db.v1.bak*"))


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
