"""A merge into a file that holds no runs: the work of a plain copy, and no less checked."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from storage.database import open_engine
from tests.storage.test_sharing import content

# A plain copy of every table a merge carries: what a merge into a new file is measured against.
PLAIN_TABLES = ("machine", "interpreter", "sweep", "run", "repeat", "task_sample", "process")


class Instructions:
    """Counts the SQLite instructions of the connections it is given, a thousand at a time."""

    def __init__(self) -> None:
        self.thousands = 0

    def tick(self) -> int:
        self.thousands += 1
        return 0  # go on

    def watch(self, connection: sqlite3.Connection) -> sqlite3.Connection:
        connection.set_progress_handler(self.tick, 1000)
        return connection


def plain_copy(source: Path, target: Path, counter: Instructions) -> None:
    open_engine(target).dispose()
    connection = counter.watch(sqlite3.connect(target, isolation_level=None))
    try:
        connection.execute("ATTACH DATABASE ? AS src", (str(source),))
        connection.execute("BEGIN")
        for table in PLAIN_TABLES:
            connection.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
        connection.execute("COMMIT")
    finally:
        connection.close()


@pytest.fixture
def filled(tmp_path) -> Path:
    """A lab file of 200 finished runs, each 5 repeats of 16 task samples (bench's fill)."""
    from bench.storage import fill

    path = tmp_path / "theirs.db"
    fill(path, 200)
    return path


def test_a_merge_into_a_new_file_does_the_work_of_a_plain_copy(filled, tmp_path, monkeypatch):
    """`conlab db merge` into a file without runs copies each table as SQLite's plain
    INSERT ... SELECT * does (its instructions within 10% of that copy's), and carries every
    row. Counted in SQLite instructions, the copy's connection alone (the check of the source
    is another connection): a count, not a time."""
    from storage import merge, sharing

    counter = Instructions()
    bounded = merge.bounded
    monkeypatch.setattr(merge, "bounded", lambda c, steps: counter.watch(bounded(c, steps)))
    merged = tmp_path / "merged.db"
    open_engine(merged).dispose()
    (result,) = merge.merge(merged, [filled])
    assert (result.runs_added, result.runs_skipped) == (200, 0)
    by_merge, counter.thousands = counter.thousands, 0
    plain_copy(filled, tmp_path / "plain.db", counter)
    assert by_merge <= 1.1 * counter.thousands, (by_merge, counter.thousands)
    assert content(merged) == content(filled)
    assert sharing.check(merged) == []


@pytest.mark.damaged_databases
@pytest.mark.parametrize(
    "kind",
    [
        "corrupt_run_pages",
        "corrupt_sample_pages",
        "orphan_rows",
        "odd_values",
        "a_negative_wall_time",
        "walls_of_zeros",
        "deep_environment",
        "planted_triggers",
    ],
)
def test_a_damaged_file_merged_into_a_new_file_is_refused_and_leaves_it_empty(
    kind, filled, tmp_path, conlab
):
    """A file that fails `db check` but has the lab's tables as the lab declares them (what a
    merge into a file without runs copies whole) is refused there too: exit 2, one line, the
    new file's bytes as they were, its reports still work."""
    from tests.conftest import assert_one_line_error
    from tests.storage.test_damaged import CORPUS

    damaged = tmp_path / f"{kind}.db"
    CORPUS[kind](filled, damaged)
    fresh = tmp_path / "fresh.db"
    open_engine(fresh).dispose()
    before = hashlib.sha256(fresh.read_bytes()).hexdigest()
    assert_one_line_error(conlab("db", "merge", str(damaged), "--db", str(fresh)))
    assert hashlib.sha256(fresh.read_bytes()).hexdigest() == before
    assert conlab("runs", "--json", "--db", str(fresh)).returncode == 0
    assert conlab("db", "check", "--db", str(fresh)).returncode == 0
