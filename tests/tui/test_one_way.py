"""Both faces start a sweep through one function (service.sweeps.prepare): one request, given to
`conlab run` and to the Lab, stores the same runs apart from their ids and times."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.tui.conftest import SIZE, choose, until_it_ends
from tui.app import ConlabApp
from tui.components.lab import LabPane

# One call sleeps 12 ms at any size: --size auto settles on size 1 at its first call, however
# busy the machine (a sleep is never shorter), so both faces calibrate to the same size.
NAPPING = "import time\n\n\ndef nap(n):\n    time.sleep(0.012)\n"
FIELDS = {"workers": "2", "tasks": "4", "repeats": "2", "warmups": "0", "processes": "1"}
# What a run is, as stored: everything but its ids, times, who recorded it and what it measured.
RUN = (
    "workload, executor, workers, start_method, chunksize, max_tasks_per_child, tasks, size, "
    "repeats, warmups, processes, timeout_s, tag, python_requested, status"
)


def stored(db: Path) -> tuple[list, list]:
    """The runs of ``db`` as RUN names them, each with what --size auto chose for it, and its
    sweeps' tag, order and whether a seed is kept."""
    connection = sqlite3.connect(db)
    try:
        runs = connection.execute(
            f"SELECT {RUN}, environment_json FROM run ORDER BY executor, workers"
        ).fetchall()
        sweeps = connection.execute(
            "SELECT tag, run_order, order_seed IS NOT NULL FROM sweep"
        ).fetchall()
    finally:
        connection.close()
    chosen = [json.loads(row[-1] or "{}").get("size_calibration") for row in runs]
    return [
        (*row[:-1], found and (found.get("size"), found.get("grows")))
        for row, found in zip(runs, chosen)
    ], sweeps


@pytest.mark.slow
async def test_the_cli_and_the_lab_store_the_same_runs_for_one_request(
    conlab, db_path, user_dir, tmp_path, marked
):
    (user_dir / "napping.py").write_text(NAPPING)
    flags = [f"--{name}={value}" for name, value in FIELDS.items()]
    args = ["run", "-w", "napping:nap", "-e", "sequential", "-e", "threads", *flags]
    shown = conlab(*args, script=True)  # a process of its own, ended before the app starts
    assert shown.returncode == 0, shown.stderr
    lab_db = tmp_path / "lab.db"
    app = ConlabApp(db=str(lab_db))
    async with app.run_test(size=SIZE) as pilot:
        lab = app.query_one(LabPane)
        await choose(pilot, lab, "napping:nap", ["sequential", "threads"], **FIELDS)
        await until_it_ends(pilot, lab, "escape", "r")
        assert "2 run(s) stored, 0 not ok" in str(lab.query_one("#summary").render())
    from_cli, from_lab = stored(db_path), stored(lab_db)
    assert len(from_cli[0]) == 2 and from_cli[0][0][-1] == (1, True), from_cli  # calibrated
    assert from_lab == from_cli
