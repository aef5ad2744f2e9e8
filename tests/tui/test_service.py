"""The service layer both faces call, on real database files made by the real recorder."""

from __future__ import annotations

import sqlite3

import pytest

from service import catalogue, reports
from service import runs as stored
from storage.database import DatabaseError
from tests.tui.conftest import two_sweeps


def test_runs_tag_delete_and_machines(tmp_path):
    db = str(two_sweeps(tmp_path / "two.db"))
    runs = stored.list_runs(db)
    assert [r["tag"] for r in runs] == ["after"] * 3 + ["before"] * 3
    newest = runs[0]["run_id"]
    stored.tag_run(db, newest, "kept")
    stored.delete_run(db, runs[-1]["run_id"])
    after = stored.list_runs(db)
    assert len(after) == 5 and after[0]["tag"] == "kept"
    connection = sqlite3.connect(db)
    orphans = connection.execute(
        "SELECT count(*) FROM repeat WHERE run_id NOT IN (SELECT id FROM run)"
    ).fetchone()
    connection.close()
    assert orphans == (0,)
    (machine,) = catalogue.machines(db)
    assert machine["hostname"] == "lab-box" and machine["runs"] == 5
    assert machine["pythons"] == ["3.11.7"]
    detail = stored.run_detail(db, after[0])
    assert detail["environment"]["hostname"] == "lab-box"
    assert any("one runner process" in w for w in detail["warnings"])


def test_one_report_for_both_faces(tmp_path):
    db = str(two_sweeps(tmp_path / "two.db"))
    whole = reports.report([("db", db)])
    assert len(whole.summary) == 3 and whole.verdicts
    compared = reports.report([("db", db)], compare=("tag:before", "tag:after"))
    assert compared.comparison is not None
    assert round(compared.comparison.geomean, 1) == 0.9
    assert len(compared.comparison.summary_a) == len(compared.comparison.summary_b) == 3
    alone = reports.report([("db", db)], compare=("tag:before", "tag:after"), summarise_all=False)
    assert alone.summary.empty and alone.comparison is not None
    out = reports.export_report(db, "markdown", tmp_path / "reports")
    assert out == tmp_path / "reports" / "summary.md" and "threads" in out.read_text()


def test_a_missing_database_is_not_created(tmp_path):
    with pytest.raises(DatabaseError, match="no database at"):
        stored.list_runs(str(tmp_path / "missing.db"), create=False)
    assert not (tmp_path / "missing.db").exists()


def test_times_as_every_face_shows_them():
    assert stored.iso_seconds("2026-11-25 21:03:07.123456") == "2026-11-25T21:03:07Z"
    assert stored.iso_seconds("2026-11-25T22:03:07+01:00") == "2026-11-25T21:03:07Z"
    assert stored.iso_seconds("not a time") == "not a time"
