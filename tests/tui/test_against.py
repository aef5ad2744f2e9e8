"""`conlab run --against`: a stored baseline measured again in the new sweep, taking turns with
the new runs; and the options that say what a comparison can see (--detect), with real runs."""

from __future__ import annotations

import sqlite3

from tests.conftest import assert_one_line_error

SMALL = ["-e", "sequential", "--processes", "3", "--repeats", "2", "--warmups", "0"]


def test_against_measures_the_baseline_again_beside_the_new_runs(conlab, db_path):
    first = conlab("run", "-w", "tiny", "--size", "1000", *SMALL, "--tag", "v1")
    assert first.returncode == 0, first.stderr
    second = conlab(
        "run", "-w", "tiny", "--size", "2000", *SMALL, "--tag", "v2", "--against", "tag:v1"
    )
    assert second.returncode == 0, second.stderr
    # before the sweep: what its processes can tell apart, from the run stored here
    assert "with 3 processes a run, a comparison sees a change of about" in second.stderr
    with sqlite3.connect(db_path) as connection:
        runs = connection.execute(
            "SELECT tag, size, sweep_id, status FROM run ORDER BY created_at"
        ).fetchall()
    assert len(runs) == 3
    (v1_then, *newest) = runs
    assert {(tag, size) for tag, size, _, _ in newest} == {("v1", 1000), ("v2", 2000)}
    assert len({sweep for _, _, sweep, _ in newest}) == 1
    assert v1_then[2] != newest[0][2]
    assert all(status == "ok" for *_, status in runs)

    compared = conlab("report", "--compare", "tag:v1", "tag:v2", "--format", "json").json()
    (row,) = compared["comparison"]["rows"]
    assert row["a_processes"] == 3  # the run measured again, not the first one as well
    assert "within the sweep(s) A and B share" in row["sweeps_note"]
    table = conlab("report", "--compare", "tag:v1", "tag:v2", "--format", "markdown").stdout
    assert "1 run(s) from other sweeps left out" in table
    assert "verdicts raw" in table or "verdicts controlled" in table


def test_a_comparison_across_sweeps_says_it_could_have_been_within_one(conlab):
    for tag in ("a", "b"):
        done = conlab("run", "-w", "tiny", "--size", "1000", *SMALL, "--tag", tag)
        assert done.returncode == 0, done.stderr
    report = conlab("report", "--compare", "tag:a", "tag:b", "--format", "markdown")
    assert report.returncode == 0, report.stderr
    assert "--against tag:a" in report.stdout and "measures A again beside B" in report.stdout


def test_a_baseline_from_another_machine_cannot_be_measured_again(conlab, db_path):
    done = conlab("run", "-w", "tiny", "--size", "1000", *SMALL, "--tag", "v1")
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "INSERT INTO machine (fingerprint, hostname, first_seen_at) "
            "VALUES ('elsewhere', 'colleague', '2026-01-01')"
        )
        connection.execute("UPDATE run SET machine_fingerprint = 'elsewhere'")
    refused = conlab("run", "-w", "tiny", *SMALL, "--tag", "v2", "--against", "tag:v1")
    assert_one_line_error(refused)
    assert "another machine or interpreter" in refused.stderr
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT count(*) FROM run").fetchone() == (1,)


def test_bad_against_and_detect_values_are_one_line(conlab):
    for args in (
        ["--against", "tag:nothing-stored"],
        ["--against", "colour:blue"],
        ["--detect", "5"],
        ["--repeats", "auto", "--detect", "0"],
        ["--repeats", "auto", "--detect", "150"],
    ):
        assert_one_line_error(conlab("run", "-w", "tiny", "-e", "sequential", *args))


PLANTED = """
import pathlib


def mark(size):
    pathlib.Path("planted-ran").write_text("the stored workload was called")
"""


def test_a_stored_run_never_runs_what_it_names(conlab, db_path, user_dir):
    """A received baseline names an interpreter and a workload this command does not: neither
    is run (the interpreter is not even asked what it is); the sweep's own baseline is."""
    (user_dir / "planted.py").write_text(PLANTED)
    evil = user_dir / "evil.sh"
    evil.write_text("#!/bin/sh\necho ran > evil-ran\n")
    evil.chmod(0o755)
    for workload, size in (("tiny", "1000"), ("sleep", "1"), ("planted:mark", "1")):
        done = conlab("run", "-w", workload, "--size", size, *SMALL, "--tag", "v1")
        assert done.returncode == 0, done.stderr
    (user_dir / "planted-ran").unlink()
    with sqlite3.connect(db_path) as connection:  # as a file merged from elsewhere may hold
        connection.execute("UPDATE run SET python_requested = './evil.sh' WHERE workload = 'sleep'")
    again = conlab(
        "run", "-w", "tiny", "--size", "1000", *SMALL, "--tag", "v2", "--against", "tag:v1"
    )
    assert again.returncode == 0, again.stderr
    assert "-w planted:mark" in again.stderr and "--python ./evil.sh" in again.stderr
    assert not (user_dir / "evil-ran").exists()
    assert not (user_dir / "planted-ran").exists()
    with sqlite3.connect(db_path) as connection:
        rerun = connection.execute(
            "SELECT workload, count(*) FROM run WHERE tag = 'v1' GROUP BY workload"
        ).fetchall()
    assert dict(rerun) == {"tiny": 2, "sleep": 1, "planted:mark": 1}  # only tiny measured again


def test_a_baseline_of_only_what_this_command_does_not_name_is_refused(conlab, db_path, user_dir):
    (user_dir / "planted.py").write_text(PLANTED)
    done = conlab("run", "-w", "planted:mark", *SMALL, "--size", "1", "--tag", "v1")
    assert done.returncode == 0, done.stderr
    (user_dir / "planted-ran").unlink()
    refused = conlab("run", "-w", "tiny", *SMALL, "--tag", "v2", "--against", "tag:v1")
    assert_one_line_error(refused)
    assert "planted:mark" in refused.stderr
    assert not (user_dir / "planted-ran").exists()
    named = conlab(
        "run", "-w", "planted:mark", "--size", "1", *SMALL, "--tag", "v2", "--against", "tag:v1"
    )
    assert named.returncode == 0, named.stderr  # named now, by the user: measured again
    assert (user_dir / "planted-ran").exists()


PLANTED_MAIN = """
import pathlib

pathlib.Path("main-ran").write_text("the stored entry script was imported")
"""


def test_a_baseline_keeps_its_options_and_runs_only_a_main_named_now(conlab, db_path, user_dir):
    """A stored run's entry script (--main) is a path from the file: measured again only when
    this command names it too, and then with it, as every other option of the stored run."""
    (user_dir / "app.py").write_text(PLANTED_MAIN)
    spawn = ["-e", "processes", "--start-method", "spawn", "--workers", "1", "--size", "1000"]
    args = ["-w", "tiny", *spawn, "--processes", "1", "--repeats", "1", "--warmups", "0"]
    done = conlab("run", *args, "--main", "app.py", "--tag", "v1")
    assert done.returncode == 0, done.stderr
    (user_dir / "main-ran").unlink()
    refused = conlab("run", *args, "--tag", "v2", "--against", "tag:v1")
    assert_one_line_error(refused)
    assert "--main app.py" in refused.stderr
    assert not (user_dir / "main-ran").exists()
    again = conlab("run", *args, "--main", "app.py", "--tag", "v2", "--against", "tag:v1")
    assert again.returncode == 0, again.stderr
    assert (user_dir / "main-ran").exists()
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT tag, main FROM run ORDER BY tag").fetchall()
    assert rows == [("v1", "app.py"), ("v1", "app.py"), ("v2", "app.py")]


def test_one_entry_script_named_two_ways_is_one_configuration(conlab, db_path, user_dir):
    (user_dir / "app.py").write_text("")
    args = ["-w", "tiny", "-e", "processes", "--start-method", "spawn", "--workers", "1", *SMALL]
    for main in ("app.py", "./app.py"):
        done = conlab("run", *args, "--size", "1000", "--main", main)
        assert done.returncode == 0, done.stderr
    with sqlite3.connect(db_path) as connection:
        assert connection.execute(
            "SELECT DISTINCT main FROM run WHERE executor = 'processes'"
        ).fetchall() == [("app.py",)]
