"""Task samples as the recorder stores them: every field read and checked once per repeat (C
loops over whole fields), with the same rows and costs as reading them sample by sample."""

from __future__ import annotations

import sqlite3
from itertools import chain
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from experiments.spec import ExperimentSpec
from storage.database import open_engine
from storage.recorder import RunRecorder, Samples


def _count(value):
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def reference(samples, runner_pid, runner_peak):
    """Rows and costs taken sample by sample, the plain way."""
    rows, peaks, vol, invol, known, moves, cores = [], {}, 0, 0, False, 0, set()
    for index, s in enumerate(samples):
        v, i, a, b = (_count(s[k]) if len(s) > k else None for k in (5, 6, 7, 8))
        rows.append(("run", 3, index, *s[:4], v, i, a, b))
        if v is not None and i is not None:
            vol, invol, known = vol + v, invol + i, True
        if a is not None and b is not None:
            moves += a != b
            cores.update((a, b))
        peak = _count(s[9]) if len(s) > 9 else None
        if peak is not None:
            peaks[s[0]] = max(peak, peaks.get(s[0], 0))
    runner_peak = _count(runner_peak)
    others = sum(p for pid, p in peaks.items() if pid != runner_pid)
    return rows, {
        "peak_rss_bytes": runner_peak + others if runner_peak is not None else None,
        "worker_peak_rss_bytes": max(peaks.values(), default=runner_peak),
        "voluntary_switches": vol if known else None,
        "involuntary_switches": invol if known else None,
        "core_moves": moves if cores else None,
        "cores_used": len(cores) or None,
    }


# What a field may hold in a sample from a runner, an old runner or a damaged fallback file.
odd = st.one_of(st.none(), st.integers(-2, 5), st.booleans(), st.just(1.5))
sample = st.tuples(
    st.integers(1, 3),
    st.just(7),
    st.integers(0, 10),
    st.integers(10, 20),
    st.one_of(st.none(), st.booleans()),
    odd,
    odd,
    odd,
    odd,
    st.one_of(odd, st.integers(0, 10**9)),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(sample, sample.map(lambda s: s[:4])), max_size=12),
    st.one_of(st.none(), st.integers(1, 3)),
    st.one_of(st.none(), st.integers(0, 10**9)),
)
def test_samples_give_the_rows_and_costs_read_one_by_one(samples, runner_pid, runner_peak):
    samples = [list(s) for s in samples]
    rows, costs = reference(samples, runner_pid, runner_peak)
    found = Samples(samples)
    assert list(found.rows("run", 3)) == rows
    assert found.flat_rows("run", 3) == list(chain.from_iterable(rows))
    assert found.costs(runner_pid, runner_peak) == costs


def test_a_recorded_repeat_stores_every_sample_with_its_costs(tmp_path):
    path = tmp_path / "r.db"
    engine = open_engine(path, writer=True)
    spec = ExperimentSpec(
        workload="tiny", executor="processes", workers=2, tasks=4, repeats=1, warmups=0
    )
    recorder = RunRecorder(
        engine, spec, {"workers": 2, "start_method": None, "chunksize": 2, "size": 1}
    )
    recorder.start()
    # two chunks of two tasks: each chunk's switches and peak sit on its last task
    samples = [
        [11, 1, 0, 5, None, None, None, 0, 0, None],
        [11, 1, 5, 9, None, 4, 1, 0, 1, 80],
        [12, 2, 1, 6, None, None, None, 1, 1, None],
        [12, 2, 6, 8, None, 2, 0, 1, 1, 50],
    ]
    recorder.on_event(
        {
            "event": "repeat",
            "index": 0,
            "warmup": False,
            "wall_ns": 10,
            "cpu_ns": 9,
            "start_ns": 0,
            "end_ns": 10,
            "runner_peak_rss_bytes": 30,
        }
    )
    recorder.on_event({"event": "tasks", "repeat": 0, "samples": samples})
    recorder.finish("ok")
    engine.dispose()
    with sqlite3.connect(path) as connection:
        stored = connection.execute(
            "SELECT task_index, pid, start_ns, voluntary_switches, core_start, core_end "
            "FROM task_sample ORDER BY task_index"
        ).fetchall()
        repeat = connection.execute(
            "SELECT first_task_start_ns, busy_ns, peak_rss_bytes, worker_peak_rss_bytes, "
            "voluntary_switches, involuntary_switches, core_moves, cores_used FROM repeat"
        ).fetchone()
    assert stored == [
        (0, 11, 0, None, 0, 0),
        (1, 11, 5, 4, 0, 1),
        (2, 12, 1, None, 1, 1),
        (3, 12, 6, 2, 1, 1),
    ]
    assert repeat == (0, 5 + 4 + 5 + 2, 30 + 80 + 50, 80, 6, 1, 1, 2)


def _one_repeat_recorded(engine, samples, workers: int = 2) -> RunRecorder:
    """A recorder that has been given one counted repeat of ``samples`` (not finished)."""
    spec = ExperimentSpec(
        workload="tiny",
        executor="threads",
        workers=workers,
        tasks=len(samples),
        repeats=1,
        warmups=0,
    )
    recorder = RunRecorder(
        engine, spec, {"workers": workers, "start_method": None, "chunksize": None, "size": 1}
    )
    recorder.start()
    recorder.on_event(
        {"event": "repeat", "index": 0, "warmup": False, "wall_ns": 1, "start_ns": 0, "end_ns": 1}
    )
    recorder.on_event({"event": "tasks", "repeat": 0, "samples": samples})
    return recorder


@pytest.mark.parametrize(
    ("tasks", "variables"),
    [(1, 40), (3, 40), (4, 40), (11, 40), (1_007, None), (1_000, None)],
)
def test_every_sample_is_stored_however_many_an_insert_holds(tmp_path, tasks, variables):
    """Samples go in INSERTs of many rows each: as many as SQLite takes variables for (40 take
    three rows of eleven columns), whole statements and what is left, every row once."""
    path = tmp_path / "r.db"
    engine = open_engine(path, writer=True)
    if variables is not None:

        @event.listens_for(engine, "connect")
        def _few_variables(dbapi_connection, _record) -> None:
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, variables)

        engine.dispose()  # connections from here on take ``variables``
    samples = [[1000 + i % 3, 7, i, i + 5, None, i % 4, 0, i % 2, 1, None] for i in range(tasks)]
    recorder = _one_repeat_recorded(engine, samples)
    recorder.finish("ok")
    assert recorder.storage_error is None
    run_id = recorder.spec.run_id
    engine.dispose()
    with sqlite3.connect(path) as connection:
        stored = connection.execute(
            "SELECT run_id, repeat_index, task_index, pid, thread_id, start_ns, end_ns, "
            "voluntary_switches, involuntary_switches, core_start, core_end "
            "FROM task_sample ORDER BY task_index"
        ).fetchall()
    assert stored == list(Samples(samples).rows(run_id, 0))


def test_a_database_that_fills_up_while_samples_go_in_keeps_the_run_in_a_file(
    tmp_path, monkeypatch
):
    """SQLite runs out of room halfway through a repeat's samples (a database held to 200
    pages): the recorder stops writing, the run goes on, and its events end up in a file."""
    import json
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the file goes
    engine = open_engine(tmp_path / "r.db", writer=True)

    @event.listens_for(engine, "connect")
    def _small(dbapi_connection, _record) -> None:
        dbapi_connection.execute("PRAGMA max_page_count = 200")

    engine.dispose()
    samples = [[1000, 7, i, i + 5, None, 1, 0, 0, 1, None] for i in range(20_000)]
    recorder = _one_repeat_recorded(engine, samples, workers=1)
    assert "full" in recorder.storage_error
    row = recorder.finish("ok")
    engine.dispose()
    assert recorder.saved_to in row["error"]
    saved = json.loads(Path(recorder.saved_to).read_text())
    (tasks,) = [e for e in saved["events"] if e["event"] == "tasks"]
    assert tasks["samples"] == samples
