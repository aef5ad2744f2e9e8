"""Damaged and crafted databases: a corpus made from a real lab database, every command on
every file. Each command ends with exit 0, 1 or 2 and at most one line on stderr, never a
traceback, and leaves the file's bytes (and the files beside it) as they were unless writing
that file is the command's job."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from storage.database import APPLICATION_ID, SCHEMA_VERSION

pytestmark = pytest.mark.damaged_databases  # the corpus is damaged on purpose

# --- the corpus: each damage kind makes a real SQLite file from a real lab database -------------


def _sql(path: Path, *statements: str, params: tuple = ()) -> None:
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            connection.execute(statement)
    finally:
        connection.close()


def _header(path: Path, application_id: int, user_version: int) -> None:
    _sql(path, f"PRAGMA application_id = {application_id}", f"PRAGMA user_version = {user_version}")


def deep_environment(base: Path, out: Path) -> None:
    """environment_json nested 5,000 deep: valid JSON that no recursive parser can read."""
    shutil.copy(base, out)
    deep = '{"cpu_model": ' + "[" * 5000 + "]" * 5000 + "}"
    _sql(out, f"UPDATE run SET environment_json = '{deep}'")


def _root_pages(path: Path, *tables: str) -> list[int]:
    connection = sqlite3.connect(path)
    try:
        marks = ",".join("?" * len(tables))
        query = f"SELECT rootpage FROM sqlite_master WHERE tbl_name IN ({marks}) AND rootpage > 1"
        return [row[0] for row in connection.execute(query, tables)]
    finally:
        connection.close()


def _scribble(path: Path, pages: list[int]) -> None:
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    for page in pages:
        start = (page - 1) * size
        data[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))


def corrupt_run_pages(base: Path, out: Path) -> None:
    """The header and the schema are intact; the pages of the run and repeat tables are not."""
    shutil.copy(base, out)
    _scribble(out, _root_pages(out, "run", "repeat"))


def corrupt_sample_pages(base: Path, out: Path) -> None:
    """Only the task samples' pages are damaged: runs list, the timeline cannot be read."""
    shutil.copy(base, out)
    _scribble(out, _root_pages(out, "task_sample"))


def truncated(base: Path, out: Path) -> None:
    out.write_bytes(base.read_bytes()[: base.stat().st_size // 2])


def lab_header_without_tables(base: Path, out: Path) -> None:
    _header(out, APPLICATION_ID, SCHEMA_VERSION)


def lab_header_version_0_with_a_foreign_table(base: Path, out: Path) -> None:
    _sql(out, "CREATE TABLE customers (name TEXT)", "INSERT INTO customers VALUES ('ada')")
    _header(out, APPLICATION_ID, 0)


def foreign_table_without_a_header(base: Path, out: Path) -> None:
    _sql(out, "CREATE TABLE customers (name TEXT)", "INSERT INTO customers VALUES ('ada')")


def current_schema_labelled_v1(base: Path, out: Path) -> None:
    """Every table and column of today's schema, but user_version says 1: migrating cannot work."""
    shutil.copy(base, out)
    _sql(out, "PRAGMA user_version = 1")


def null_samples(base: Path, out: Path) -> None:
    """task_sample rebuilt without its NOT NULL constraints, and half its values NULL."""
    shutil.copy(base, out)
    _sql(
        out,
        "ALTER TABLE task_sample RENAME TO old_sample",
        "CREATE TABLE task_sample (id INTEGER PRIMARY KEY, run_id VARCHAR REFERENCES run (id), "
        "repeat_index INTEGER, task_index INTEGER, pid INTEGER, thread_id BIGINT, "
        "start_ns BIGINT, end_ns BIGINT, voluntary_switches INTEGER, "
        "involuntary_switches INTEGER, core_start INTEGER, core_end INTEGER)",
        "INSERT INTO task_sample SELECT * FROM old_sample",
        "DROP TABLE old_sample",
        "UPDATE task_sample SET start_ns = NULL, end_ns = NULL, pid = NULL, thread_id = NULL, "
        "task_index = NULL, core_start = NULL WHERE id % 2 = 0",
        "UPDATE repeat SET cpu_ns = NULL, start_ns = NULL, first_task_start_ns = NULL",
        "VACUUM",
    )


def odd_values(base: Path, out: Path) -> None:
    """Values of the wrong type where the lab writes numbers, dates and known words."""
    shutil.copy(base, out)
    _sql(
        out,
        "UPDATE run SET status = 'weird', created_at = 'not a date' WHERE executor = 'threads'",
        "UPDATE repeat SET wall_ns = 'x', busy_ns = -5 WHERE repeat_index = 1",
        "UPDATE task_sample SET start_ns = 'soon', thread_id = 1e300",
        "UPDATE machine SET logical_cores = 'many', hostname = NULL",
    )


def empty_file(base: Path, out: Path) -> None:
    out.write_bytes(b"")


def text_file(base: Path, out: Path) -> None:
    out.write_text("run,status\nx,ok\n")


def newer_version_only_in_the_wal(base: Path, out: Path) -> None:
    """A newer conlab set user_version and was killed before a checkpoint."""
    shutil.copy(base, out)
    script = textwrap.dedent(f"""
        import os, sqlite3
        c = sqlite3.connect({str(out)!r}, isolation_level=None)
        c.execute("PRAGMA journal_mode = WAL")
        c.execute("PRAGMA wal_autocheckpoint = 0")
        c.execute("PRAGMA user_version = {SCHEMA_VERSION + 1}")
        os._exit(0)  # killed: no checkpoint, the -wal file stays
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert Path(f"{out}-wal").stat().st_size > 0


# A query that never ends: a recursive CTE that counts forever.
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT x FROM c"


def _shadow_run(out: Path, view: str) -> None:
    """The run table renamed; a view named `run` over it in its place."""
    _sql(out, "ALTER TABLE run RENAME TO run_data", f"CREATE VIEW run AS {view}")


def run_is_an_endless_recursive_view(base: Path, out: Path) -> None:
    """`run` is a view joining the runs to a recursive CTE that never ends."""
    shutil.copy(base, out)
    _shadow_run(out, f"SELECT r.* FROM run_data r, ({ENDLESS}) WHERE r.id IS NOT NULL")


def sweep_is_an_endless_recursive_view(base: Path, out: Path) -> None:
    """`sweep` (a table only later versions have) an endless view: reports read it."""
    shutil.copy(base, out)
    _sql(
        out,
        "ALTER TABLE sweep RENAME TO sweep_data",
        f"CREATE VIEW sweep AS SELECT s.* FROM sweep_data s, ({ENDLESS})",
    )


def run_is_a_finite_view(base: Path, out: Path) -> None:
    """`run` is a view over the real rows: every read works, nothing is the lab's table."""
    shutil.copy(base, out)
    _shadow_run(out, "SELECT * FROM run_data")


def planted_triggers(base: Path, out: Path) -> None:
    """A trigger copying environments (machine id, host, home) into a table of its own on any
    update, and one wiping every earlier run's repeats on each insert."""
    shutil.copy(base, out)
    _sql(
        out,
        "CREATE TABLE loot (environment TEXT)",
        "CREATE TRIGGER steal AFTER UPDATE ON run BEGIN "
        "INSERT INTO loot VALUES (OLD.environment_json); END",
        "CREATE TRIGGER wipe AFTER INSERT ON repeat BEGIN "
        "DELETE FROM repeat WHERE run_id != NEW.run_id; END",
    )


def planted_view_virtual_table_and_index(base: Path, out: Path) -> None:
    """A view, an FTS5 virtual table (with its own tables) and an index of other names."""
    shutil.copy(base, out)
    _sql(
        out,
        f"CREATE VIEW endless AS {ENDLESS}",
        "CREATE VIRTUAL TABLE notes USING fts5(body)",
        "INSERT INTO notes VALUES ('planted')",
        "CREATE INDEX ix_planted ON run (tag, status)",
    )


def status_in_capitals(base: Path, out: Path) -> None:
    shutil.copy(base, out)
    _sql(out, "UPDATE run SET status = 'OK' WHERE status = 'ok'")


def environment_3000_deep(base: Path, out: Path) -> None:
    shutil.copy(base, out)
    deep = '{"cpu_model": ' + "[" * 3000 + "]" * 3000 + "}"
    _sql(out, f"UPDATE run SET environment_json = '{deep}'")


def orphan_rows(base: Path, out: Path) -> None:
    """Repeats and task samples of a run that is not there."""
    shutil.copy(base, out)
    _sql(
        out,
        "PRAGMA foreign_keys = OFF",
        "UPDATE repeat SET run_id = 'no-such-run' WHERE repeat_index = 0",
        "UPDATE task_sample SET run_id = 'no-such-run' WHERE task_index = 0",
    )


def startup_is_text(base: Path, out: Path) -> None:
    shutil.copy(base, out)
    _sql(out, "UPDATE process SET startup_ns = 'x'")


def walls_of_zeros(base: Path, out: Path) -> None:
    shutil.copy(base, out)
    _sql(out, "UPDATE process SET walls = '0 0 0'")


def a_negative_wall_time(base: Path, out: Path) -> None:
    shutil.copy(base, out)
    _sql(out, "UPDATE repeat SET wall_ns = -1 WHERE repeat_index = 1")


def _version_seen_by_sqlite(path: Path) -> int:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute("PRAGMA user_version").fetchone()[0]
    finally:
        connection.close()


CORPUS: dict[str, Callable[[Path, Path], None]] = {
    f.__name__: f
    for f in (
        deep_environment,
        corrupt_run_pages,
        corrupt_sample_pages,
        truncated,
        lab_header_without_tables,
        lab_header_version_0_with_a_foreign_table,
        foreign_table_without_a_header,
        current_schema_labelled_v1,
        null_samples,
        odd_values,
        empty_file,
        text_file,
        newer_version_only_in_the_wal,
        run_is_an_endless_recursive_view,
        sweep_is_an_endless_recursive_view,
        run_is_a_finite_view,
        planted_triggers,
        planted_view_virtual_table_and_index,
        status_in_capitals,
        environment_3000_deep,
        orphan_rows,
        startup_is_text,
        walls_of_zeros,
        a_negative_wall_time,
    )
}


# --- running the real CLI many times, quickly ------------------------------------------------


@pytest.fixture(scope="module")
def cli(forked_cli):
    return forked_cli


def _record(cli, where: Path, name: str) -> Path:
    """A real lab database: runs recorded by `conlab run`, one of them failed."""
    path = where / name
    jobs = where / "jobs.py"
    jobs.write_text("def boom(size):\n    raise ValueError(size)\n")
    for args in (
        ["run", "-w", "tiny", "-e", "sequential", "-e", "threads", "--workers", "2"],
        ["run", "-w", f"{jobs}:boom", "-e", "threads"],
    ):
        args += ["--tasks", "3", "--repeats", "3", "--processes", "1", "--tag", "t"]
        code, _, err = cli(*args, "--db", str(path))
        assert code in (0, 1), err
    assert sqlite3.connect(path).execute("SELECT count(*) FROM run").fetchone()[0] >= 3
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, cli) -> Path:
    """The lab database each damaged file is made from."""
    return _record(cli, tmp_path_factory.mktemp("base"), "base.db")


@pytest.fixture(scope="module")
def other(tmp_path_factory, cli) -> Path:
    """A sound lab database with other runs, to merge to and from."""
    return _record(cli, tmp_path_factory.mktemp("other"), "other.db")


# --- every command on every file ------------------------------------------------------------

READS = {
    "runs": ["runs"],
    "runs --json": ["runs", "--json"],
    **{f"report {f}": ["report", "--format", f] for f in ("table", "markdown", "csv", "json")},
    "report html": ["report", "--format", "html"],
    "db info": ["db", "info"],
    "db check": ["db", "check"],
    "db export": ["db", "export", "OUT"],
    "db export --anonymize": ["db", "export", "OUT", "--anonymize"],
    "db merge it into a good one": ["db", "merge", "FILE", "--db", "GOOD"],
}
WRITES_THE_FILE = {"db merge a good one into it": ["db", "merge", "GOOD"]}


def _snapshot(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


def _breaks(code: int, stderr: str) -> list[str]:
    """What is wrong with how a command ended, if anything."""
    lines = stderr.strip().splitlines()
    return [
        what
        for what, broken in (
            (f"exit {code}", code not in (0, 1, 2)),
            ("a traceback", "Traceback" in stderr),
            (f"{len(lines)} lines on stderr", len(lines) > 1),
        )
        if broken
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# What one's own database must still give after a merge into it, refused or not.
OWN_REPORTS = (
    ["report", "--format", "table"],
    ["report", "--format", "html"],
    ["report", "--format", "json", "--compare", "executor:sequential", "executor:threads"],
    ["runs", "--json"],
    ["db", "check"],
)


def _merge_refused_and_harmless(cli, good: Path, code: int, before: str) -> list[str]:
    """Every file of the corpus fails `db check`, so a merge of it is refused (exit 2) and
    leaves the target's bytes as they were; every report on the target still works."""
    broken = [] if code == 2 else [f"the merge exited {code}, not refused"]
    if _digest(good) != before:
        broken.append("the target changed")
    for args in OWN_REPORTS:
        own_code, _, own_err = cli(*args, "--db", str(good))
        if own_code != 0 or "Traceback" in own_err:
            broken.append(f"`conlab {' '.join(args)}` on the target then exits {own_code}")
    return broken


def _not_the_labs(path: Path) -> list[str]:
    """What ``path``'s schema holds that the lab did not make (storage.target)."""
    from storage.target import foreign_schema

    connection = sqlite3.connect(path)
    try:
        return [f"{kind} {name!r}" for kind, name in foreign_schema(connection)]
    finally:
        connection.close()


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_every_command_on_a_damaged_file_is_contained(kind, base, other, cli, tmp_path):
    where = tmp_path / "damaged"
    where.mkdir()
    path = where / "lab.db"
    CORPUS[kind](base, path)
    version_before = _version_seen_by_sqlite(path) if kind.startswith("newer") else None
    failures = []
    for name, template in {**READS, **WRITES_THE_FILE}.items():
        good = tmp_path / f"good-{len(list(tmp_path.iterdir()))}.db"
        shutil.copy(other, good)
        out = tmp_path / f"out-{len(list(tmp_path.iterdir()))}.db"
        args = [{"OUT": str(out), "GOOD": str(good), "FILE": str(path)}.get(a, a) for a in template]
        if "--db" not in args:
            args += ["--db", str(path)]
        before, before_good = _snapshot(where), _digest(good)
        code, _, err = cli(*args)
        broken = _breaks(code, err)
        if (name in READS or code != 0) and _snapshot(where) != before:
            broken.append("the file (or the files beside it) changed")
            shutil.rmtree(where)
            where.mkdir()
            CORPUS[kind](base, path)
        if code != 0 and out.exists():
            broken.append(f"{out.name} left behind by a failure")
        if version_before is not None and _version_seen_by_sqlite(path) != version_before:
            broken.append("the version SQLite sees went down")
        if name == "db check" and code == 0:
            broken.append("said the file is ok")
        if name == "db merge it into a good one":
            broken += _merge_refused_and_harmless(cli, good, code, before_good)
        if name.startswith("db export") and code == 0:
            broken += [f"the export holds {found}" for found in _not_the_labs(out)]
        if broken:
            failures.append(f"conlab {name}: {', '.join(broken)}\n    {err.strip()[-300:]}")
    assert not failures, f"{kind}:\n" + "\n".join(failures)


@pytest.mark.parametrize("name", sorted(READS))
def test_a_missing_file_is_refused_and_not_created(name, other, cli, tmp_path):
    missing = tmp_path / "nothing-here.db"
    good = tmp_path / "good.db"
    shutil.copy(other, good)
    template = READS[name]
    args = [
        {"OUT": str(tmp_path / "out.db"), "GOOD": str(good), "FILE": str(missing)}.get(a, a)
        for a in template
    ]
    if "--db" not in args:
        args += ["--db", str(missing)]
    code, _, err = cli(*args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.db"]


@pytest.mark.slow
def test_every_damaged_file_merged_into_postgres_is_refused(base, cli, pg_url, tmp_path):
    """The server's other way in: each file of the corpus (every one fails `db check`) merged
    into a PostgreSQL database that holds runs already is refused: one line and no traceback,
    the server as it was, the file untouched, every report on the server still working."""
    from tests.storage.test_postgres import server_content

    assert cli("db", "merge", str(base), "--db", pg_url)[0] == 0
    failures = []
    for kind in sorted(CORPUS):
        where = tmp_path / kind
        where.mkdir()
        path = where / "lab.db"
        CORPUS[kind](base, path)
        # (read as the other test reads it: SQLite's first reader rebuilds a killed writer's -shm)
        version_before = _version_seen_by_sqlite(path) if kind.startswith("newer") else None
        held, before = server_content(pg_url), _snapshot(where)
        code, _, err = cli("db", "merge", str(path), "--db", pg_url)
        broken = _breaks(code, err)
        if _snapshot(where) != before:
            broken.append("the file (or the files beside it) changed")
        if version_before is not None and _version_seen_by_sqlite(path) != version_before:
            broken.append("the version SQLite sees went down")
        if code != 2:
            broken.append(f"the merge exited {code}, not refused")
        if server_content(pg_url) != held:
            broken.append("the merge changed the server")
        if broken:
            failures.append(f"{kind}: {', '.join(broken)}\n    {err.strip()[-300:]}")
    for args in OWN_REPORTS:
        own_code, _, own_err = cli(*args, "--db", pg_url)
        if own_code != 0 or "Traceback" in own_err:
            failures.append(f"`conlab {' '.join(args)}` on the server then exits {own_code}")
    assert not failures, "\n".join(failures)


# --- what a received file holds never runs, hangs or spreads ----------------------------------


def test_every_index_and_table_the_lab_makes_is_known_as_the_labs(tmp_path):
    """storage.target's list of the lab's schema is the models' own: a new lab file holds
    nothing `db check` would call foreign."""
    from sqlmodel import SQLModel

    from storage.database import open_engine
    from storage.target import LAB_INDEXES, LAB_SCHEMA_TABLES, foreign_schema

    tables = SQLModel.metadata.tables.values()
    assert {t.name for t in tables} <= LAB_SCHEMA_TABLES
    assert {i.name for t in tables for i in t.indexes} <= LAB_INDEXES
    open_engine(tmp_path / "new.db").dispose()
    assert foreign_schema(sqlite3.connect(tmp_path / "new.db")) == []


BOUND_SCRIPT = textwrap.dedent("""
    import sqlite3, sys
    from pathlib import Path
    import storage.target as target
    from storage.database import open_engine
    from storage.errors import DatabaseError
    target.READ_STEPS, target.READ_STEPS_PER_BYTE = 10_000_000, 0  # short for the test
    path = Path(sys.argv[1])
    open_engine(path).dispose()
    endless = sys.argv[2]
    ways = (("reader", target.connect_to_read), ("read-only", target.connect_readonly))
    for name, connect in ways:
        try:
            connect(path).execute(f"SELECT count(*) FROM ({endless})").fetchone()
        except sqlite3.OperationalError as exc:
            print(name, target.read_error(path, exc))
    engine = open_engine(path, create=False)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT count(*) FROM ({endless})").all()
    except DatabaseError as exc:
        print("engine", exc)
""")


def test_a_read_of_a_file_that_never_ends_is_stopped_at_its_bound(tmp_path):
    """Every way the lab reads a file (sqlite3 read-write or read-only, the SQLAlchemy
    reader) stops a statement that runs past its bound (SQLite's progress handler), with one
    line that names the file and `db check`."""
    done = subprocess.run(
        [sys.executable, "-c", BOUND_SCRIPT, str(tmp_path / "lab.db"), ENDLESS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["reader", "read-only", "engine"], done.stdout
    assert all("was stopped: one statement ran past its bound" in line for line in lines)
    assert all("conlab db check" in line for line in lines), done.stdout


MERGE_LOCK_SCRIPT = textwrap.dedent("""
    import sqlite3, sys
    from pathlib import Path
    import storage.target as target
    from storage.errors import DatabaseError
    from storage.merge import _merge_attached
    target.READ_STEPS, target.READ_STEPS_PER_BYTE = 10_000_000, 0
    good, source = Path(sys.argv[1]), Path(sys.argv[2])

    class Sound:
        def wait(self):
            pass

    try:
        _merge_attached(good, str(source), source, Sound())
    except DatabaseError as exc:
        print(exc)
    other = sqlite3.connect(good, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # the write lock is free again
    other.execute("ROLLBACK")
""")


def test_a_merge_never_holds_the_targets_write_lock_past_its_bound(other, tmp_path):
    """A merge's copy reading a source that never ends (past every check: here called
    directly) is stopped at its bound and gives the target's write lock back, unchanged."""
    good, source = tmp_path / "good.db", tmp_path / "endless.db"
    shutil.copy(other, good)
    run_is_an_endless_recursive_view(other, source)
    before = _digest(good)
    done = subprocess.run(
        [sys.executable, "-c", MERGE_LOCK_SCRIPT, str(good), str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert "ran past its bound" in done.stdout and str(source) in done.stdout, done.stdout
    assert _digest(good) == before


def test_a_file_whose_run_is_a_view_is_refused_by_every_reader(base, cli, tmp_path):
    """`run` a view (endless or not) is no lab table: one line that says so, at once."""
    for craft in (run_is_an_endless_recursive_view, run_is_a_finite_view):
        path = tmp_path / f"{craft.__name__}.db"
        craft(base, path)
        for args in (["runs"], ["db", "info"], ["db", "check"], ["report"]):
            code, _, err = cli(*args, "--db", str(path))
            assert code == 2 and "its run is a view, not a table" in err, (craft, args, err)


def _running_and_stale(path: Path) -> None:
    """The file's runs left `running` on this host by a recorder that has ended."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _sql(path, f"UPDATE run SET status = 'running', recorder_pid = {gone.pid}")


def _count(path: Path, table: str) -> int:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        connection.close()


def test_a_planted_trigger_never_runs_on_the_labs_writes(base, other, cli, tmp_path):
    """A file holding a trigger: `conlab run` and a merge into it are refused with one line
    naming the trigger (nothing written); listing it marks no stale run (which would fire
    it); `db check` names it."""
    path = tmp_path / "planted.db"
    planted_triggers(base, path)
    before = _digest(path)
    code, _, err = cli(
        *["run", "-w", "tiny", "-e", "sequential", "--tasks", "2"], "--db", str(path)
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'steal'" in err and "db export" in err, err
    code, _, err = cli("db", "merge", str(other), "--db", str(path))
    assert code == 2 and "'steal'" in err, err
    assert _digest(path) == before
    _running_and_stale(path)  # (which fires `steal` itself)
    looted = _count(path, "loot")
    code, out, err = cli("runs", "--json", "--db", str(path))
    assert code == 0, err
    assert _count(path, "loot") == looted  # no trigger fired: the runs shown as stored
    assert {run["status"] for run in json.loads(out)} == {"running"}
    from storage.database import open_engine
    from storage.queries import mark_interrupted

    engine = open_engine(path, create=False)  # the engine's way of listing
    try:
        assert mark_interrupted(engine) == 0
    finally:
        engine.dispose()
    assert _count(path, "loot") == looted
    code, out, _ = cli("db", "check", "--db", str(path))
    assert code == 1 and "trigger 'steal'" in out and "trigger 'wipe'" in out, out


@pytest.mark.parametrize("anonymize", [False, True], ids=["plain", "anonymize"])
def test_an_export_holds_the_labs_tables_and_nothing_else(base, cli, tmp_path, anonymize):
    """Exporting a file with planted triggers, a view, a virtual table and an index: the
    export holds none of them (no trigger ran on the export's own rewrites), every run and
    repeat is there, and it passes `db check`."""
    path = tmp_path / "planted.db"
    planted_triggers(base, path)
    _sql(
        path,
        f"CREATE VIEW endless AS {ENDLESS}",
        "CREATE VIRTUAL TABLE notes USING fts5(body)",
        "CREATE INDEX ix_planted ON run (tag, status)",
    )
    out = tmp_path / "out.db"
    code, _, err = cli("db", "export", str(out), "--db", str(path), *(["--anonymize"] * anonymize))
    assert code == 0, err
    assert _not_the_labs(out) == []
    assert _count(out, "repeat") == _count(base, "repeat")
    assert cli("db", "check", "--db", str(out))[0] == 0


WAL_WRITER = textwrap.dedent("""
    import os, sqlite3, sys
    c = sqlite3.connect(sys.argv[1], isolation_level=None)
    c.execute("PRAGMA wal_autocheckpoint = 0")
    c.execute("UPDATE run SET tag = 'late'")
    os._exit(0)  # no checkpoint: the commit is only in the -wal file
""")


def test_a_wal_file_on_read_only_media_is_never_read_without_its_log(base, cli, tmp_path):
    """A lab file and its -wal (commits not yet checkpointed) copied to read-only media
    without the -shm: SQLite could read the file only immutable, skipping those commits, so
    every reader refuses with one line naming the fix; nothing there changes."""
    from tests.conftest import _marked_env
    from tests.helpers import reads_on_a_read_only_mount

    data, mounted, outs = tmp_path / "data", tmp_path / "ro", tmp_path / "outs"
    for directory in (data, mounted, outs):
        directory.mkdir()
    db = data / "lab.db"
    shutil.copy(base, db)
    subprocess.run([sys.executable, "-c", WAL_WRITER, str(db)], check=True)
    Path(f"{db}-shm").unlink()
    assert Path(f"{db}-wal").stat().st_size > 0
    before = _snapshot(data)
    env = _marked_env(tmp_path, db, [])
    codes, errors = reads_on_a_read_only_mount(data, mounted, "lab.db", outs, env)
    assert codes == {name: "2" for name in errors}, errors
    for name, err in errors.items():
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert "lab.db-wal" in err and "copy lab.db and lab.db-wal" in err, (name, err)
    assert not (outs / "copy.db").exists()
    assert _snapshot(data) == before


# --- a property: crafted files x every reading and merging command ----------------------------

SHADOWED = (
    "run",
    "repeat",
    "task_sample",
    "machine",
    "interpreter",
    "process",
    "sweep",
    "import_log",
)
# Columns where the lab writes numbers, dates, known words or JSON, and values of other kinds.
TYPED_COLUMNS = (
    ("run", "status"),
    ("run", "created_at"),
    ("run", "environment_json"),
    ("run", "repeats"),
    ("run", "workers"),
    ("run", "machine_fingerprint"),
    ("repeat", "wall_ns"),
    ("repeat", "warmup"),
    ("repeat", "run_id"),
    ("process", "walls"),
    ("process", "startup_ns"),
    ("process", "peak_rss_bytes"),
    ("task_sample", "start_ns"),
    ("machine", "logical_cores"),
    ("interpreter", "version"),
)
WRONG_VALUES = ("'x'", "-1", "0", "1e308", "X'00ff'", "NULL", "'0 0 0'", "'OK'", "'[[[]]]'")
# Two megabytes of text.
HUGE_TEXT = "replace(hex(zeroblob(1000000)), '00', 'xy')"


def _plantings():
    from hypothesis import strategies as st

    def shadow(table: str, endless: bool) -> list[str]:
        extra = f", ({ENDLESS})" if endless else ""
        return [
            f"ALTER TABLE {table} RENAME TO {table}_data",
            f"CREATE VIEW {table} AS SELECT d.* FROM {table}_data d{extra}",
        ]

    def trigger(table: str, event: str, action: str) -> list[str]:
        return [
            "CREATE TABLE IF NOT EXISTS loot (what TEXT)",
            f"CREATE TRIGGER planted_{table}_{event.lower()} AFTER {event} ON {table} "
            f"BEGIN {action}; END",
        ]

    return st.one_of(
        st.builds(shadow, st.sampled_from(SHADOWED), st.booleans()),
        st.builds(
            trigger,
            st.sampled_from(SHADOWED),
            st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
            st.sampled_from(["DELETE FROM repeat", "INSERT INTO loot VALUES (hex(randomblob(8)))"]),
        ),
        st.just([f"CREATE VIEW planted AS {ENDLESS}"]),
        st.sampled_from(["fts5(body)", "rtree(id, low, high)"]).map(
            lambda module: [f"CREATE VIRTUAL TABLE planted USING {module}"]
        ),
        st.sampled_from(TYPED_COLUMNS).map(
            lambda tc: [f"CREATE INDEX ix_planted_{tc[0]} ON {tc[0]} ({tc[1]})"]
        ),
        st.builds(
            lambda tc, value: [f"UPDATE {tc[0]} SET {tc[1]} = {value}"],
            st.sampled_from(TYPED_COLUMNS),
            st.sampled_from(WRONG_VALUES),
        ),
        st.sampled_from(["error", "tag", "environment_json"]).map(
            lambda column: [f"UPDATE run SET {column} = {HUGE_TEXT}"]
        ),
    )


def _planted(base: Path, out: Path, plantings: list[list[str]]) -> None:
    """``base`` with each planting that SQLite takes (one that does not, after another, is
    left out)."""
    shutil.copy(base, out)
    connection = sqlite3.connect(out, isolation_level=None)
    try:
        for statements in plantings:
            try:
                connection.execute("BEGIN")
                for statement in statements:
                    connection.execute(statement)
                connection.execute("COMMIT")
            except sqlite3.Error:
                connection.execute("ROLLBACK")
    finally:
        connection.close()


# Each command's bound: no crafted file makes one run longer.
BOUND_S = 60


# Twelve crafted files, ten commands on each: minutes on a busy machine, past the per-test
# timeout (each command has its own bound, BOUND_S).
@pytest.mark.timeout(900)
@pytest.mark.slow
def test_no_crafted_file_makes_a_command_hang_crash_or_spread(base, other, forked_cli):
    """Crafted files (views, endless recursive views, triggers, virtual tables, indexes,
    values of the wrong type, huge rows) x every reading and merging command: none runs past
    its bound, none prints a traceback or more than one line on stderr, none changes the file;
    a merge that is refused leaves the target as it was, one that is accepted took a file
    `db check` passes, and every report on the target works afterwards."""
    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st

    def cli(*args: str) -> tuple[int, str, str]:
        try:
            return forked_cli.run(args, timeout=BOUND_S)
        except subprocess.TimeoutExpired:
            return -1, "", f"ran past its bound of {BOUND_S} s"

    @settings(
        max_examples=10,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(st.lists(_plantings(), min_size=1, max_size=3))
    @example(
        [["ALTER TABLE repeat RENAME TO r", f"CREATE VIEW repeat AS SELECT * FROM r, ({ENDLESS})"]]
    )
    @example(
        [[f"UPDATE run SET environment_json = {HUGE_TEXT}"], ["UPDATE process SET walls = 'x'"]]
    )
    def crafted(plantings):
        import tempfile

        with tempfile.TemporaryDirectory(prefix="conlab-crafted-") as scratch:
            where, good = Path(scratch) / "file", Path(scratch) / "good.db"
            where.mkdir()
            path = where / "lab.db"
            _planted(base, path, plantings)
            shutil.copy(other, good)
            before, failures = _snapshot(where), []
            checked = None
            for args in (
                ["runs", "--json"],
                ["report", "--format", "html"],
                ["db", "info"],
                ["db", "check"],
                ["db", "export", f"{scratch}/out.db", "--anonymize"],
            ):
                code, _, err = cli(*args, "--db", str(path))
                checked = code if args == ["db", "check"] else checked
                failures += [f"{' '.join(args)}: {b}" for b in _breaks(code, err)]
            if _snapshot(where) != before:
                failures.append("a read changed the file")
            held = _digest(good)
            code, _, err = cli("db", "merge", str(path), "--db", str(good))
            failures += [f"merge: {b}" for b in _breaks(code, err)]
            if code != 0 and _digest(good) != held:
                failures.append("a refused merge changed the target")
            if code == 0 and checked != 0:
                failures.append(f"merged a file `db check` faults (exit {checked})")
            # (a target whose bytes did not change reports as it did)
            for args in OWN_REPORTS[1:] if _digest(good) != held else ():
                own, _, own_err = cli(*args, "--db", str(good))
                if own != 0 or "Traceback" in own_err:
                    failures.append(f"`conlab {' '.join(args)}` on the target: exit {own}")
            assert not failures, f"{plantings}:\n" + "\n".join(failures)

    crafted()
