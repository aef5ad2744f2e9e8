"""`conlab runs` on a database of many runs (the newest 50, --limit, --all, --since, --select,
streamed JSON) and `conlab db prune`, through the real CLI on real files."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error

COPIES = 60


def _copy_runs(path: Path, copies: int) -> list[str]:
    """``copies`` copies of the file's one stored run (with its repeats), a minute apart in
    January 2026, every third tagged ``keep``; their ids, oldest first."""
    connection = sqlite3.connect(path)
    connection.row_factory = sqlite3.Row
    with connection:
        (run,) = connection.execute("SELECT * FROM run").fetchall()
        repeats = connection.execute("SELECT * FROM repeat WHERE run_id = ?", (run["id"],))
        repeats = [dict(r) for r in repeats]
        ids = []
        for n in range(copies):
            row = dict(run, id=f"copy{n:04d}-0000", created_at=f"2026-01-01 00:{n:02d}:00.000000")
            row["tag"] = "keep" if n % 3 == 0 else None
            connection.execute(
                f"INSERT INTO run ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            for repeat in repeats:
                copy = dict(repeat, id=None, run_id=row["id"])
                connection.execute(
                    f"INSERT INTO repeat ({', '.join(copy)}) VALUES ({', '.join('?' * len(copy))})",
                    list(copy.values()),
                )
            ids.append(row["id"])
    connection.close()
    return ids


@pytest.fixture
def many_runs(db_with_one_run: Path) -> Path:
    _copy_runs(db_with_one_run, COPIES)
    return db_with_one_run


def _shown(table: str) -> list[str]:
    return [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]


def test_runs_shows_the_newest_50_and_says_how_to_see_the_rest(conlab, many_runs):
    listed = conlab("runs")
    assert listed.returncode == 0, listed.stderr
    shown = _shown(listed.stdout)
    assert len(shown) == 50
    assert shown[1:] == [f"copy{n:04d}"[:8] for n in range(COPIES - 1, COPIES - 50, -1)]
    assert "11 older run(s) not shown" in listed.stderr
    assert "--limit N, --all" in listed.stderr

    assert len(_shown(conlab("runs", "--limit", "5").stdout)) == 5
    every = conlab("runs", "--all")
    assert len(_shown(every.stdout)) == COPIES + 1 and every.stderr == ""


def test_runs_json_streams_one_valid_array_with_the_figures(conlab, many_runs):
    default = conlab("runs", "--json").json()
    assert len(default) == 50
    every = conlab("runs", "--json", "--all")
    assert every.returncode == 0 and every.stderr == ""
    runs = every.json()
    assert len(runs) == COPIES + 1
    # every copy has its own repeats: its figures come from them, as the original's do
    original = runs[0]
    assert all(r["median_s"] == original["median_s"] for r in runs)
    assert all(r["wall_s"] == original["wall_s"] for r in runs)
    assert set(runs[1]) == set(original)


def test_runs_filters_by_date_tag_and_selection_in_sql(conlab, many_runs):
    since = conlab("runs", "--all", "--json", "--since", "2026-01-01T00:50:00Z").json()
    # the ten copies from 00:50 on, and the run the fixture recorded today
    assert len(since) == 11
    tagged = conlab("runs", "--all", "--json", "--tag", "keep").json()
    assert len(tagged) == COPIES // 3 and {r["tag"] for r in tagged} == {"keep"}
    picked = conlab("runs", "--json", "--all", "--select", "run:copy001,tag:keep").json()
    assert [r["run_id"] for r in picked] == ["copy0018-0000", "copy0015-0000", "copy0012-0000"]
    literal = conlab("runs", "--json", "--select", "run:copy%")
    assert literal.json() == []  # a % in a value is a character, not a wildcard
    nothing = conlab("runs", "--select", "executor:nothing-like-it")
    assert nothing.returncode == 0 and "No stored run matches" in nothing.stdout


@pytest.mark.parametrize(
    "args",
    [["--limit", "0"], ["--since", "last week"], ["--select", "colour:blue"], ["--limit", "x"]],
)
def test_bad_runs_options_are_one_line(conlab, many_runs, args):
    assert_one_line_error(conlab("runs", *args))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_prune_deletes_old_untagged_runs_in_one_go_and_keeps_baselines(conlab, many_runs):
    before = _digest(many_runs)
    dry = conlab("db", "prune", "--before", "2026-01-01T00:30:00", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    said = dry.json()
    assert said["runs"] == 20 and said["dry_run"]  # 30 old copies, a third of them tagged
    assert said["repeats"] > 0 and said["reclaimed_bytes"] is None
    assert _digest(many_runs) == before

    done = conlab("db", "prune", "--before", "2026-01-01T00:30:00")
    assert done.returncode == 0, done.stderr
    assert "deleted 20 run(s)" in done.stdout and "VACUUM gave back" in done.stdout
    with sqlite3.connect(many_runs) as connection:
        left = {row[0] for row in connection.execute("SELECT id FROM run")}
        orphans = connection.execute(
            "SELECT count(*) FROM repeat WHERE run_id NOT IN (SELECT id FROM run)"
        ).fetchone()[0]
    assert len(left) == COPIES + 1 - 20 and orphans == 0
    assert {f"copy{n:04d}-0000" for n in range(0, 30, 3)} <= left  # the tagged baselines

    conlab("db", "prune", "--before", "2026-01-01T00:30:00", "--include-tagged", "--keep-tag", "x")
    with sqlite3.connect(many_runs) as connection:
        assert connection.execute("SELECT count(*) FROM run").fetchone()[0] == COPIES + 1 - 30
    assert conlab("db", "check").returncode == 0


def test_db_info_counts_runs_and_samples(conlab, many_runs):
    info = conlab("db", "info", "--json").json()
    assert info["runs"] == COPIES + 1
    with sqlite3.connect(many_runs) as connection:
        samples = connection.execute("SELECT count(*) FROM task_sample").fetchone()[0]
    assert info["task_samples"] == samples
    assert info["first_run_at"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize("args", [["--before", "soon"], ["--before", ""]])
def test_bad_prune_options_are_one_line_and_change_nothing(conlab, many_runs, args):
    before = _digest(many_runs)
    assert_one_line_error(conlab("db", "prune", *args))
    assert _digest(many_runs) == before


def test_the_newest_run_comes_first_in_json_as_in_the_table(conlab, many_runs):
    runs = conlab("runs", "--json", "--limit", "3").json()
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True)
    assert json.loads(json.dumps(runs)) == runs


def test_a_selection_is_completed_from_what_the_database_holds(many_runs):
    from service.runs import complete_selection

    db = str(many_runs)
    assert complete_selection(db, "ta") == "tag:"
    assert complete_selection(db, "tag:k") == "tag:keep"
    assert complete_selection(db, "tag:keep") is None  # already whole
    assert complete_selection(db, "executor:seq,run:copy001") == "executor:seq,run:copy0010-0000"
    assert complete_selection(db, "tag:%") is None  # a % is a character, not a wildcard
    assert complete_selection(db, "colour:b") is None


# Filters a listing takes: none, a page, a tag, a selection, one nothing matches, a date, a
# text, an offset.
FILTERS = [
    {},
    {"limit": 7},
    {"tag": "keep"},
    {"selection": "run:copy001,tag:keep"},
    {"selection": "machine:nobody-has-this"},
    {"since": "2026-01-01 00:50:00"},
    {"text": "copy002"},
    {"offset": 55},
]


def _lists_the_same(reader, engine_runs, chosen: dict) -> list[dict]:
    """What ``reader`` lists for ``chosen``, once it has been found to be what ``engine_runs``
    (the same database through a SQLAlchemy engine) lists: runs, figures, count, machines."""
    from datetime import datetime

    from storage.queries import RunFilter

    if "since" in chosen:
        chosen = {**chosen, "since": datetime.fromisoformat(chosen["since"])}
    picked = RunFilter(**chosen)
    listed = list(reader.stream(picked))
    assert listed == list(engine_runs.stream(picked))
    assert reader.count(picked) == engine_runs.count(picked)
    machines = reader.machines()
    assert machines == engine_runs.machines() and machines[0]["pythons"] and machines[0]["runs"]
    return listed


@pytest.mark.parametrize("chosen", FILTERS)
def test_a_file_lists_what_an_engine_on_it_lists(many_runs, chosen):
    # a file is read with sqlite3 alone: the same runs, the same figures as through SQLAlchemy
    from storage.database import open_engine
    from storage.listing import EngineRuns, FileRuns

    by_file, by_engine = FileRuns(many_runs), EngineRuns(open_engine(many_runs, create=False))
    try:
        listed = _lists_the_same(by_file, by_engine, chosen)
    finally:
        by_file.close()
        by_engine.close()
    if not chosen:
        assert len(listed) == COPIES + 1 and all(r["median_s"] for r in listed)


def test_a_server_lists_through_psycopg_what_an_engine_on_it_lists(conlab, many_runs, pg_url):
    # a current PostgreSQL database is read with psycopg alone, as a file with sqlite3
    from storage.database import open_engine
    from storage.listing import EngineRuns, ServerRuns, open_runs

    merged = conlab("db", "merge", str(many_runs), "--db", pg_url)
    assert merged.returncode == 0, merged.stderr
    with open_runs(pg_url) as by_server:
        assert isinstance(by_server, ServerRuns)
        by_engine = EngineRuns(open_engine(pg_url, create=False))
        try:
            for chosen in FILTERS:
                listed = _lists_the_same(by_server, by_engine, chosen)
                if not chosen:
                    assert len(listed) == COPIES + 1 and all(r["median_s"] for r in listed)
        finally:
            by_engine.close()


def test_listing_a_file_loads_no_sqlalchemy_pandas_or_numpy(many_runs):
    # what `conlab runs` would wait for before its first row: half a second of imports
    script = (
        "import atexit, sys\n"
        "heavy = ('sqlalchemy', 'sqlmodel', 'pandas', 'numpy')\n"
        "atexit.register(lambda: sys.stderr.write(repr([m for m in heavy if m in sys.modules])))\n"
        "from tui.cli import main\n"
        "main()\n"
    )
    for args in (["runs"], ["runs", "--json", "--all", "--select", "tag:keep"]):
        done = subprocess.run(
            [sys.executable, "-c", script, *args, "--db", str(many_runs)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1].endswith("[]"), done.stderr
