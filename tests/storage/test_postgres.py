"""A team's shared store: every command against a real PostgreSQL server (tests/conftest.py
starts one from the machine's own binaries; CI installs Debian's postgresql for it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import Result, assert_one_line_error, run_args
from tests.storage.test_sharing import CONTENT_QUERIES, content, record, scribble


def server_content(url: str) -> dict[str, list]:
    """What ``content`` reads from a SQLite file, read from the server (same queries)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: [tuple(row) for row in connection.execute(text(query))]
                for table, query in CONTENT_QUERIES.items()
            }
    finally:
        engine.dispose()


def server_tables(url: str) -> list[str]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as connection:
        found = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return sorted(name for (name,) in found)


def runs(conlab, db: str) -> list[dict]:
    result = conlab("runs", "--db", db, "--json")
    assert result.returncode == 0, result.stderr
    return result.json()


def test_run_runs_and_report_work_on_postgres(conlab, pg_url):
    result = conlab(
        *run_args(
            "usermod:work",
            "sequential",
            "processes",
            workers=2,
            tasks=4,
            size=1000,
            repeats=3,
            tag="team",
            db=pg_url,
        )
    )
    assert result.returncode == 0, result.stderr
    recorded = result.json()
    listed = {r["run_id"]: r for r in runs(conlab, pg_url)}
    assert set(listed) == {r["run_id"] for r in recorded}
    for run in recorded:
        stored = listed[run["run_id"]]
        assert stored["status"] == "ok" and stored["wall_s"] == run["wall_s"]
        assert stored["python"].count(".") == 2 and stored["machine"] and stored["tag"] == "team"
        assert stored["created_at"].endswith("Z")  # stored as UTC whatever the server's zone
    stored_rows = server_content(pg_url)
    # nanosecond clocks and thread ids are 64-bit values: they must come back exact
    assert len(stored_rows["task_sample"]) == 2 * 4 * 4
    assert all(start > 2**31 and end >= start for *_, start, end in stored_rows["task_sample"])

    report = conlab("report", "--db", pg_url, "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["summary"]
    assert {(r["executor"], r["workers"]) for r in rows} == {("sequential", 1), ("processes", 2)}
    # a selection is read by the server (its own parameters), with the text it was given
    python = recorded[0]["python"]
    selection = f"executor:processes,tag:team,python:{python}"
    picked = conlab("report", "--db", pg_url, "--format", "json", "--select", selection)
    assert picked.returncode == 0, picked.stderr
    assert [r["executor"] for r in json.loads(picked.stdout)["summary"]] == ["processes"]
    hostile = conlab("report", "--db", pg_url, "--select", "tag:'; DROP TABLE run; --%(x)s")
    assert hostile.returncode == 2 and "matches no finished run" in hostile.stderr
    assert len(runs(conlab, pg_url)) == 2


def test_merge_into_postgres_is_idempotent_and_export_gives_the_same_runs(conlab, pg_url, tmp_path):
    laptop, ci = tmp_path / "laptop.db", tmp_path / "ci.db"
    record(conlab, laptop, "laptop")
    record(conlab, ci, "ci")
    first = conlab("db", "merge", str(laptop), str(ci), "--db", pg_url, "--json")
    assert first.returncode == 0, first.stderr
    assert [r["runs_added"] for r in first.json()] == [2, 2]
    merged = server_content(pg_url)
    assert len(merged["run"]) == 4 and len(merged["task_sample"]) == 4 * 3 * 3

    again = conlab("db", "merge", str(laptop), str(ci), "--db", pg_url, "--json").json()
    assert [(r["runs_added"], r["runs_skipped"]) for r in again] == [(0, 2), (0, 2)]
    assert server_content(pg_url) == merged  # nothing added, nothing changed

    # what the server holds, exported, is what the two files held: row for row
    out = tmp_path / "team.db"
    exported = conlab("db", "export", str(out), "--db", pg_url)
    assert exported.returncode == 0, exported.stderr
    assert "exported 4 runs" in exported.stdout
    expected = content(laptop)
    for table, rows in content(ci).items():
        expected[table] = sorted(set(expected[table]) | set(rows))
    assert content(out) == expected
    assert conlab("db", "check", "--db", str(out)).returncode == 0
    assert runs(conlab, str(out)) == runs(conlab, pg_url)

    only_ci = tmp_path / "ci-only.db"
    assert conlab("db", "export", str(only_ci), "--tag", "ci", "--db", pg_url).returncode == 0
    assert {row[-1] for row in content(only_ci)["run"]} == {"ci"}


def test_info_and_check_on_postgres(conlab, pg_url):
    record(conlab, pg_url, "x")
    info = conlab("db", "info", "--db", pg_url, "--json")
    assert info.returncode == 0, info.stderr
    details = info.json()
    assert details["runs"] == 2 and details["size_bytes"] > 0
    assert details["runs_by"][0]["status"] == "ok"
    checked = conlab("db", "check", "--db", pg_url)
    assert checked.returncode == 0 and checked.stdout.strip().endswith(": ok")


def test_an_unreachable_server_is_one_line_and_exit_2(conlab, postgres_server):
    url = postgres_server.rsplit(":", 1)[0] + ":1/nowhere"  # nothing listens on port 1
    result = conlab("runs", "--db", url)
    assert_one_line_error(result)
    assert "server is running" in result.stderr


READERS = {
    "runs": ["runs"],
    "report": ["report"],
    "db info": ["db", "info"],
    "db check": ["db", "check"],
    "db export": ["db", "export", "OUT"],
}


def test_reading_refuses_a_database_without_the_labs_schema_and_creates_nothing(
    conlab, pg_url, tmp_path, user_dir
):
    """As a foreign or empty SQLite file is refused: reading an empty server database, or one
    of another program, is one line and writes no table there; writing sets up only an empty
    one (test_run_runs_and_report_work_on_postgres records into a new database)."""
    import psycopg

    def refused(args: list[str], words: str) -> None:
        args = [str(tmp_path / "out.db") if a == "OUT" else a for a in args]
        result = conlab(*args, "--db", pg_url)
        assert_one_line_error(result)
        assert words in result.stderr, (args, result.stderr)

    for args in READERS.values():
        refused(args, "is an empty database, not a lab one yet")
    assert server_tables(pg_url) == []
    with psycopg.connect(pg_url.replace("postgresql+psycopg", "postgresql")) as connection:
        connection.execute("CREATE TABLE customers (id integer PRIMARY KEY, name text)")
    lab_file = tmp_path / "lab.db"
    record(conlab, lab_file, "x")
    writers = [run_args("tiny", "sequential", repeats=1)[:-1], ["db", "merge", str(lab_file)]]
    for args in [*READERS.values(), *writers]:
        refused(args, "not a concurrency-lab one (it holds customers)")
    assert server_tables(pg_url) == ["customers"]
    assert not (tmp_path / "out.db").exists()


@contextmanager
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and never writes a byte (a
    database port behind a hung proxy); yields its port."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed: the test is over
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for connection in held:
            connection.close()
        thread.join(timeout=5)


SILENT_COMMANDS = {
    "runs": ["runs"],
    "db info": ["db", "info"],
    "db check": ["db", "check"],
    "db export": ["db", "export", "OUT"],
    "run": ["run", "-w", "tiny", "-e", "sequential", "--repeats", "1", "--processes", "1"],
    "the app": [],
}


def test_a_server_that_accepts_and_never_answers_is_given_up_on(conlab, tmp_path):
    """Every way into a server has a connect timeout: each command (and the app, before its
    first screen) ends with one line instead of waiting for ever. They wait side by side."""
    with silent_server() as port:
        url = f"postgresql+psycopg://conlab:s3cret@127.0.0.1:{port}/conlab"
        started = {}
        try:
            for name, args in SILENT_COMMANDS.items():
                args = [str(tmp_path / "out.db") if a == "OUT" else a for a in args]
                started[name] = conlab.start(*args, "--db", url)
            for name, process in started.items():
                out, err = process.communicate(timeout=100)
                result = Result(process.returncode, out, err)
                assert_one_line_error(result)
                assert "timeout" in err and "s3cret" not in err, (name, err)
        finally:
            for process in started.values():
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert not (tmp_path / "out.db").exists()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://conlab:s3cret@db.example.org:notaport/conlab",
        "postgresql+psycopg://conlab:s3c@ret@[::1/conlab",
        "post gres://conlab:s3cret@db.example.org/conlab",
    ],
)
def test_a_url_that_does_not_parse_keeps_its_password_hidden(conlab, url):
    for result in (conlab("runs", "--db", url), conlab("runs", env={"CONLAB_DB": url})):
        assert_one_line_error(result)
        assert "s3c" not in result.stderr and "***" in result.stderr, result.stderr


def test_an_html_report_reads_a_file_and_a_server_together(conlab, pg_url, tmp_path):
    laptop = tmp_path / "laptop.db"
    record(conlab, laptop, "laptop")
    record(conlab, pg_url, "team")
    out = tmp_path / "both.html"
    result = conlab(
        "report", "--format", "html", "--db", str(laptop), "--db", pg_url, "--output", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_text().rstrip().endswith("</html>")  # with the latest run's timeline
    compared = conlab(
        "report", "--db", str(laptop), "--db", pg_url, "--compare", "tag:laptop", "tag:team"
    )
    assert compared.returncode == 0, compared.stderr


async def test_the_app_browses_a_postgres_database(conlab, pg_url):
    from textual.widgets import DataTable

    from tests.tui.conftest import SIZE, settle, wait_until
    from tui.app import ConlabApp
    from tui.components.machine import MachinePane
    from tui.components.runs import RunsPane

    record(conlab, pg_url, "shared")
    app = ConlabApp(db=pg_url)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)  # the hidden panes are made after the first screen
        await pilot.press("2")
        table = app.query_one(RunsPane).query_one(DataTable)
        await wait_until(pilot, lambda: table.row_count == 2)
        await pilot.press("4")
        machines = app.query_one(MachinePane).query(DataTable).last()
        await wait_until(pilot, lambda: machines.row_count == 1)
        pythons = str(machines.get_row_at(0)[6])
        assert pythons.count(".") == 2  # the interpreter versions seen on that machine


def test_killing_conlab_mid_run_leaves_an_interrupted_run_on_the_server(conlab, pg_url):
    import signal
    import time

    options = dict(workers=2, tasks=4, size=100, repeats=100, db=pg_url)
    process = conlab.start(*run_args("sleep", "threads", **options))
    from sqlalchemy import create_engine
    from sqlalchemy.exc import ProgrammingError

    from storage.queries import mark_interrupted

    deadline = time.monotonic() + 60
    while True:  # until some repeats are stored (the tables appear when conlab starts)
        try:
            if len(server_content(pg_url)["repeat"]) >= 3:  # past the warm-up
                break
        except ProgrammingError:
            pass
        assert time.monotonic() < deadline, "no repeat was stored"
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    # a role that may read the runs but not write is shown them as stored
    with reader_role(pg_url) as reader_url:
        assert [r["status"] for r in runs(conlab, reader_url)] == ["running"]
        # ... and so through SQLAlchemy, as a server reached by another driver is listed
        reader = create_engine(reader_url)
        try:
            assert mark_interrupted(reader) == 0
        finally:
            reader.dispose()
    listed = runs(conlab, pg_url)
    assert [r["status"] for r in listed] == ["interrupted"]
    assert listed[0]["wall_s"], "the repeats stored before the kill are kept"


@contextmanager
def reader_role(url: str) -> Iterator[str]:
    """``url`` for a new role that may read every table of its database and write none."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    role = f"conlab_reader_{uuid.uuid4().hex[:8]}"
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    try:
        yield make_url(url).set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP OWNED BY {role}")
            connection.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("command", ["runs", "report"])
def test_a_server_database_from_a_newer_conlab_is_refused_untouched(conlab, pg_url, command):
    from sqlalchemy import create_engine, text

    from storage.database import SCHEMA_VERSION

    record(conlab, pg_url, "x")
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE conlab_schema SET version = :v"), {"v": SCHEMA_VERSION + 1}
            )
        before = server_content(pg_url)
        result = conlab(command, "--db", pg_url)
        assert_one_line_error(result)
        assert "newer than this conlab" in result.stderr and "upgrade" in result.stderr
        assert server_content(pg_url) == before
    finally:
        engine.dispose()


def test_a_version_2_server_database_is_migrated_in_place(conlab, pg_url):
    from sqlalchemy import create_engine, text

    from storage.database import SCHEMA_VERSION
    from storage.migrations import PORTABLE_STEPS

    record(conlab, pg_url, "x")
    engine = create_engine(pg_url)
    # what a conlab of schema 2 left: none of the columns step 2 adds, version 2
    added = [s.split() for s in PORTABLE_STEPS[2] if " ADD COLUMN " in s]
    drops = [f"ALTER TABLE {words[2]} DROP COLUMN {words[5]}" for words in added]
    try:
        with engine.begin() as connection:
            for statement in (*drops, "UPDATE conlab_schema SET version = 2"):
                connection.execute(text(statement))
        listed = runs(conlab, pg_url)
        assert {r["status"] for r in listed} == {"ok"} and {r["processes"] for r in listed} == {1}
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version FROM conlab_schema")).scalar()
            indexes = connection.execute(text("SELECT DISTINCT process_index FROM repeat")).all()
        assert version == SCHEMA_VERSION and indexes == [(0,)]
        record(conlab, pg_url, "y")  # and it records new runs
        assert len(runs(conlab, pg_url)) == 2 * len(listed)
    finally:
        engine.dispose()


def test_prune_on_postgres_keeps_tagged_runs_and_says_who_gives_the_space_back(conlab, pg_url):
    from sqlalchemy import create_engine, text

    result = conlab(*run_args("tiny", "sequential", workers=1, tasks=2, repeats=2, db=pg_url))
    assert result.returncode == 0, result.stderr
    result = conlab(
        *run_args("tiny", "sequential", workers=1, tasks=2, repeats=2, tag="base", db=pg_url)
    )
    assert result.returncode == 0, result.stderr
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("UPDATE run SET created_at = '2020-01-01 00:00:00'"))
    finally:
        engine.dispose()
    before = server_content(pg_url)

    dry = conlab("db", "prune", "--before", "2021-01-01", "--dry-run", "--json", "--db", pg_url)
    assert dry.returncode == 0, dry.stderr
    assert dry.json()["runs"] == 1 and dry.json()["task_samples"] > 0
    assert server_content(pg_url) == before  # a dry run changes nothing

    done = conlab("db", "prune", "--before", "2021-01-01", "--db", pg_url)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 run(s)" in done.stdout and "autovacuum" in done.stdout
    after = server_content(pg_url)
    assert [row[-1] for row in after["run"]] == ["base"]
    kept = {row[0] for row in after["run"]}
    assert {row[0] for row in after["repeat"]} == kept  # no orphan left behind
    assert {row[0] for row in after["task_sample"]} == kept


def server_checks(url: str) -> set[tuple[str, str]]:
    """Every constraint and index of the server's lab tables, each with its definition."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            names = connection.execute(
                text(
                    "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                    "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = 'public' "
                    "UNION SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                )
            )
            return {(name, definition) for name, definition in names}
    finally:
        engine.dispose()


def test_a_bulk_merge_keeps_the_servers_foreign_keys_and_indexes(conlab, pg_url, tmp_path):
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import IntegrityError

    laptop = tmp_path / "laptop.db"
    record(conlab, laptop, "laptop")
    from storage.database import open_engine

    open_engine(pg_url).dispose()  # a writer sets up the schema: no runs yet
    checks = server_checks(pg_url)
    named = {name for name, _ in checks}
    assert {"repeat_run_id_fkey", "task_sample_run_id_fkey", "ix_task_sample_run_id"} <= named
    assert {"run_machine_fingerprint_fkey", "ix_run_report", "ix_run_created_at"} <= named
    merged = conlab("db", "merge", str(laptop), "--db", pg_url, "--json")
    assert merged.returncode == 0, merged.stderr
    assert server_content(pg_url) == content(laptop)
    assert server_checks(pg_url) == checks
    engine = create_engine(pg_url)
    try:
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO task_sample (run_id, repeat_index, task_index, pid, thread_id, "
                    "start_ns, end_ns) VALUES ('no-such-run', 0, 0, 1, 1, 1, 2)"
                )
            )
    finally:
        engine.dispose()


# A value the column cannot take: a text where a 64-bit number goes (which `db check` faults,
# so the merge refuses it before the server sees it); a number past 32 bits (which a binary
# copy would send cut to 32 bits, without a word); a fraction; each in a task sample, and a
# text in a run's date.
BAD_VALUES = [
    ("task_sample", "start_ns", "'soon'", "does not pass `conlab db check` (task samples"),
    ("task_sample", "repeat_index", str(2**40), str(2**40)),
    ("task_sample", "task_index", "1.5", "1.5"),
    ("run", "created_at", "'soon'", "soon"),
]


@pytest.mark.damaged_databases  # the hostile file stays behind
@pytest.mark.parametrize(("table", "column", "value", "named"), BAD_VALUES)
def test_a_source_with_a_bad_value_is_refused_and_the_server_keeps_what_it_had(
    conlab, pg_url, tmp_path, table, column, value, named
):
    import sqlite3

    held, hostile = tmp_path / "held.db", tmp_path / "hostile.db"
    record(conlab, held, "held")
    record(conlab, hostile, "hostile")
    connection = sqlite3.connect(hostile)
    columns = "run_id, repeat_index, task_index, pid, thread_id, start_ns, end_ns"
    connection.execute(  # more samples than the server holds: a bulk load
        f"INSERT INTO task_sample ({columns}) SELECT {columns} FROM task_sample"
    )
    connection.execute(
        f"UPDATE {table} SET {column} = {value} WHERE rowid = (SELECT min(rowid) FROM {table})"
    )
    connection.commit()
    connection.close()
    assert conlab("db", "merge", str(held), "--db", pg_url).returncode == 0
    before, checks = server_content(pg_url), server_checks(pg_url)

    result = conlab("db", "merge", str(hostile), "--db", pg_url)
    assert_one_line_error(result)
    assert "nothing was merged" in result.stderr
    assert named in result.stderr
    assert server_content(pg_url) == before
    assert server_checks(pg_url) == checks


@pytest.mark.damaged_databases  # the damaged copy stays behind
def test_a_merge_into_postgres_leaves_its_source_as_it_was_and_refuses_a_damaged_one(
    conlab, pg_url, tmp_path
):
    import hashlib

    source, damaged = tmp_path / "laptop.db", tmp_path / "damaged.db"
    record(conlab, source, "laptop")
    record(conlab, damaged, "damaged")
    scribble(damaged, last_page_only=True)
    # into a new database: refused by the check of every page before the lab's tables are made
    result = conlab("db", "merge", str(damaged), "--db", pg_url)
    assert_one_line_error(result)
    assert "damaged" in result.stderr and "nothing was merged" in result.stderr, result.stderr
    assert server_tables(pg_url) == []

    before = hashlib.sha256(source.read_bytes()).hexdigest()
    beside = sorted(p.name for p in tmp_path.iterdir())
    merged = conlab("db", "merge", str(source), "--db", pg_url, "--json")
    assert merged.returncode == 0, merged.stderr
    assert server_content(pg_url) == content(source)
    # read where it lies: the file and its folder are as they were (no -shm, no journal)
    assert hashlib.sha256(source.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == beside

    held = server_content(pg_url)
    result = conlab("db", "merge", str(damaged), "--db", pg_url)
    assert_one_line_error(result)
    assert "damaged" in result.stderr or "not a" in result.stderr, result.stderr
    assert server_content(pg_url) == held


READ_FOR_A_REPORT = """
import json, sys
from service import reports
from storage.loading import load_processes
from storage.summaries import summarize
url = sys.argv[1]
direct = summarize(reports.load([(url, url)]))
loaded = sorted(m for m in ("sqlmodel", "storage.models", "storage.database") if m in sys.modules)
from storage.database import open_engine
engine = open_engine(url, create=False)
through_engine = summarize(load_processes([(url, engine)]))
engine.dispose()
columns = ["executor", "repeats", "median_s", "ci_low_s", "ci_high_s", "runs"]
print(json.dumps({
    "loaded": loaded,
    "direct": direct[columns].to_dict("records"),
    "engine": through_engine[columns].to_dict("records"),
}))
"""


def test_a_report_reads_a_current_server_through_psycopg_alone(conlab, pg_url, tmp_path):
    """A server at this schema version is read for a report without the engine or the models
    (their import and checks are most of a report's time on 10,000 runs), and says what the
    engine's reading says."""
    import subprocess
    import sys

    result = conlab(*run_args("tiny", "sequential", "threads", workers=2, repeats=3, db=pg_url))
    assert result.returncode == 0, result.stderr
    script = tmp_path / "read.py"
    script.write_text(READ_FOR_A_REPORT)
    found = subprocess.run(
        [sys.executable, str(script), pg_url], capture_output=True, text=True, check=True
    )
    read = json.loads(found.stdout)
    assert read["loaded"] == []  # nothing of them before the engine was asked for
    assert read["direct"] == read["engine"] and len(read["direct"]) == 2


def test_a_report_on_an_older_server_migrates_it(conlab, pg_url):
    from sqlalchemy import create_engine, text

    from storage.database import SCHEMA_VERSION

    record(conlab, pg_url, "x")
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:  # what a conlab of schema 3 left: no process table
            connection.execute(text("DROP TABLE process"))
            connection.execute(text("UPDATE conlab_schema SET version = 3"))
        result = conlab("report", "--db", pg_url, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert result.json()["summary"]
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version FROM conlab_schema")).scalar()
            rows = connection.execute(text("SELECT count(*) FROM process")).scalar()
        assert version == SCHEMA_VERSION and rows > 0
    finally:
        engine.dispose()


def test_a_version_5_server_gets_every_option_as_its_runs_used_it(conlab, pg_url):
    from sqlalchemy import create_engine, text

    from storage.database import SCHEMA_VERSION
    from tests.storage.test_database import SCHEMA_5_INDEX, SCHEMA_6_COLUMNS

    for backend in ("loky", "threading"):
        result = conlab(
            *run_args("tiny", "joblib", workers=2, tasks=2, repeats=1, backend=backend, db=pg_url)
        )
        assert result.returncode == 0, result.stderr
    engine = create_engine(pg_url)
    try:
        with engine.begin() as connection:  # what a conlab of schema 5 left
            connection.execute(text("DROP INDEX ix_run_report"))
            for column in SCHEMA_6_COLUMNS:
                connection.execute(text(f"ALTER TABLE run DROP COLUMN {column}"))
            connection.execute(text(f"CREATE INDEX ix_run_report ON run ({SCHEMA_5_INDEX})"))
            connection.execute(text("UPDATE conlab_schema SET version = 5"))
        result = conlab("report", "--db", pg_url, "--format", "json")
        assert result.returncode == 0, result.stderr
        assert sorted(r["backend"] for r in result.json()["summary"]) == ["loky", "threading"]
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version FROM conlab_schema")).scalar()
            stored = connection.execute(text("SELECT backend FROM run ORDER BY backend")).all()
            indexed = connection.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_run_report'")
            ).scalar()
        assert version == SCHEMA_VERSION and stored == [("loky",), ("threading",)]
        assert "backend" in indexed
    finally:
        engine.dispose()
