"""What a newcomer reads in their first hour, figure by figure: sizes written as counts in the
sentences, a figure per call in `run --json`, a free-threaded build named alike everywhere,
and no process id left in an anonymized export."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from tests.conftest import run_args
from tests.helpers import record_run
from tests.tui.test_report_terminal import SIZE, a_days_work


def test_sentences_write_sizes_as_counts(conlab, db_path):
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine
    from tests.helpers import environment

    a_days_work(db_path)
    engine = open_engine(db_path, writer=True)  # a second size of the same function
    env = environment("f" * 20, "lab-box.example.org", "Intel(R) Xeon(R) CPU", "3.11.7")
    env["interpreter_key"] = "a" * 20
    sweep = ExperimentSpec(workload="x", executor="x").sweep_id
    common = dict(workload="mymod:compress", tasks=16, repeats=3, warmups=0, sweep_id=sweep)
    spec = ExperimentSpec(executor="sequential", **common)
    record_run(engine, spec, env, [60.1, 60.3, 61.0], resolved={"size": 2**20})
    engine.dispose()
    said = conlab("report", "--format", "json")
    assert said.returncode == 0, said.stderr
    words = "\n".join(json.loads(said.stdout)["verdicts"])
    assert f"mymod:compress at size {SIZE:,} on" in words and "at size 1,048,576 on" in words
    assert "e+0" not in words and str(SIZE) not in words


def test_run_json_gives_the_time_per_task(conlab):
    found = conlab(*run_args("tiny", "sequential", "threads", workers=2, tasks=4, repeats=2))
    assert found.returncode == 0, found.stderr
    for run in json.loads(found.stdout):
        assert run["per_task_s"] == run["median_s"] / run["tasks"] > 0
    stored = json.loads(conlab("runs", "--json").stdout)
    assert all(run["per_task_s"] == run["median_s"] / 4 for run in stored)


def test_db_info_names_a_free_threaded_build_as_runs_does(conlab, db_path):
    conlab_ok = conlab(*run_args("tiny", "sequential", tasks=2, repeats=1))
    assert conlab_ok.returncode == 0, conlab_ok.stderr
    connection = sqlite3.connect(db_path)
    with connection:  # the interpreter this run had, as a 3.13t records itself
        connection.execute("UPDATE interpreter SET version = '3.13.15', gil_disabled = 1")
    connection.close()
    listed = conlab("runs", "--json").json()
    assert [run["python"] for run in listed] == ["3.13.15t"]
    info = conlab("db", "info", "--json").json()
    assert [row["python"] for row in info["runs_by"]] == ["3.13.15t"]
    assert "3.13.15t" in conlab("db", "info").stdout


def _ids_in_looks(db: Path) -> set[str]:
    """The process and thread ids in what each thread was doing and each repeat's split."""
    from storage import states

    connection = sqlite3.connect(db)
    ids = set()
    for (text,) in connection.execute("SELECT thread_states FROM run"):
        for lane in states.decode(text)[0]:
            ids |= {str(lane.pid), str(lane.tid)}
    for (text,) in connection.execute("SELECT worker_split FROM repeat"):
        ids |= {worker.split(":")[0] for worker in (text or "").split()}
    for (text,) in connection.execute("SELECT environment_json FROM run"):
        env = json.loads(text)
        ids |= {str(p["pid"]) for p in env.get("runner_processes") or ()}
    ids |= {str(pid) for (pid,) in connection.execute("SELECT DISTINCT pid FROM task_sample")}
    connection.close()
    return ids


def test_an_anonymized_export_keeps_no_process_id(conlab, db_path, tmp_path):
    """Task samples, the environment, what each thread was doing and each repeat's worker
    split: every process id numbered per run; the timeline still tells the threads apart."""
    from storage import states

    done = conlab(*run_args("tiny", "threads", "processes", workers=2, tasks=4, repeats=1))
    assert done.returncode == 0, done.stderr
    pids = {i for i in _ids_in_looks(db_path) if int(i) > 100}  # real ids, not yet numbers
    assert pids, "the run recorded no process id to hide"
    out = tmp_path / "anon.db"
    assert conlab("db", "export", str(out), "--anonymize").returncode == 0
    text = "\n".join(
        str(value)
        for table in ("run", "repeat", "task_sample")
        for row in sqlite3.connect(out).execute(
            f"SELECT * FROM {table}"  # noqa: S608 (the lab's own table names)
        )
        for value in row
        if isinstance(value, str)
    )
    kept = [pid for pid in pids if re.search(rf"(?<![\d.]){pid}(?![\d.])", text)]
    assert not kept, f"process ids left in the export: {kept}"
    assert all(int(i) < 100 for i in _ids_in_looks(out))
    # each looked-at run draws the same threads as before, its main thread still its process's
    before = sqlite3.connect(db_path).execute("SELECT id, thread_states FROM run ORDER BY id")
    after = dict(sqlite3.connect(out).execute("SELECT id, thread_states FROM run").fetchall())
    for run_id, text in before.fetchall():
        lanes, numbered = states.decode(text)[0], states.decode(after[run_id])[0]
        assert len(lanes) == len(numbered)
        assert [a.tid == a.pid for a in lanes] == [b.tid == b.pid for b in numbered]
        assert len(states.worker_lanes(lanes)) == len(states.worker_lanes(numbered))
    assert conlab("db", "check", "--db", str(out)).returncode == 0
