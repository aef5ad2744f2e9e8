"""The cost beyond time: peak memory, context switches, cores, and whether the machine is fit.

Real runs through the CLI at tiny sizes; each collector's absence on other platforms is tested by
calling its fallback path directly."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import textwrap

import pytest

from experiments import environment, runner, timing, workloads
from storage.recorder import repeat_costs
from tests.conftest import run_args
from tests.storage.test_database import make_v1_file

MIB = 2**20
ALLOC_MIB = 48

# Each call holds `size` MiB (every page written) until both workers of the run are inside a
# call: so each worker runs one task, and their peaks are reached side by side.
ALLOC_MODULE = textwrap.dedent('''
    import os
    import time


    def alloc_and_meet(size):
        """allocates size MiB, then waits for the other worker"""
        held = b"x" * (size * 2**20)
        folder = os.environ["MEET_DIR"]
        open(os.path.join(folder, str(os.getpid())), "w").close()
        deadline = time.monotonic() + 60
        while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(held)


    def pin_and_meet(size):
        """takes the next free core of this process's affinity, waits for the other worker,
        then computes"""
        folder = os.environ["MEET_DIR"]
        cores = sorted(os.sched_getaffinity(0))
        for slot in range(2):
            try:
                open(os.path.join(folder, str(slot)), "x").close()
            except FileExistsError:
                continue
            os.sched_setaffinity(0, {cores[slot]})
            break
        deadline = time.monotonic() + 60
        while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        total = 0
        for i in range(size):
            total += i * i % 7
        return total
''')


def stored(db_path, sql: str, *params) -> list[tuple]:
    connection = sqlite3.connect(db_path)
    try:
        return connection.execute(sql, params).fetchall()
    finally:
        connection.close()


def test_each_worker_and_the_run_report_their_peak_memory(conlab, user_dir, tmp_path, db_path):
    (user_dir / "allocmod.py").write_text(ALLOC_MODULE)
    meet = tmp_path / "meet"
    meet.mkdir()
    args = run_args(
        "allocmod:alloc_and_meet",
        "processes",
        workers=2,
        tasks=2,
        size=ALLOC_MIB,
        repeats=1,
        warmups=0,
    )
    result = conlab(*args, env={"MEET_DIR": str(meet)})
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["peak_rss_bytes"] >= 2 * ALLOC_MIB * MIB  # the runner's and both workers' peaks
    assert run["worker_peak_rss_bytes"] >= ALLOC_MIB * MIB
    (env_text,) = stored(db_path, "SELECT environment_json FROM run")[0]
    peaks = json.loads(env_text)["peak_rss_by_worker"]
    assert len(peaks) == 2 and all(peak >= ALLOC_MIB * MIB for peak in peaks.values())
    listed = conlab("runs", "--json").json()
    assert listed[0]["peak_rss_bytes"] == run["peak_rss_bytes"]


def test_threads_hold_less_memory_than_processes(conlab):
    result = conlab(
        *run_args(
            "cpu", "threads", "processes", workers=2, tasks=4, size=20_000, repeats=1, warmups=0
        )
    )
    assert result.returncode == 0, result.stderr
    peaks = {run["executor"]: run["peak_rss_bytes"] for run in result.json()}
    assert 0 < peaks["threads"] < peaks["processes"]


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two usable cores (this process's affinity gives fewer)",
)
def test_a_task_is_recorded_on_the_core_that_ran_it(conlab, user_dir, tmp_path, db_path):
    """Each of two workers puts itself on its own core: the samples say which (left to the
    scheduler, a `cpu` run on a machine shared with other work may well keep to one core)."""
    (user_dir / "allocmod.py").write_text(ALLOC_MODULE)
    meet = tmp_path / "meet"
    meet.mkdir()
    args = run_args(
        "allocmod:pin_and_meet", "processes", workers=2, tasks=2, size=100_000, repeats=1, warmups=0
    )
    result = conlab(*args, env={"MEET_DIR": str(meet)})
    assert result.returncode == 0, result.stderr
    assert result.json()[0]["cores_used"] >= 2
    ended = stored(db_path, "SELECT pid, core_end FROM task_sample")
    assert len({pid for pid, _ in ended}) == 2
    assert {core for _, core in ended} == set(sorted(os.sched_getaffinity(0))[:2])


def test_threads_under_the_gil_are_switched_and_reports_show_the_costs(conlab, db_path):
    result = conlab(
        *run_args(
            "cpu", "processes", "threads", workers=2, tasks=8, size=200_000, repeats=1, warmups=0
        )
    )
    assert result.returncode == 0, result.stderr
    runs = {run["executor"]: run for run in result.json()}
    assert all(1 <= run["cores_used"] <= os.cpu_count() for run in runs.values())
    # Threads taking turns under the GIL are switched: every turn the GIL passes is one.
    ((voluntary, involuntary),) = stored(
        db_path,
        "SELECT p.voluntary_switches, p.involuntary_switches FROM repeat p JOIN run r "
        "ON r.id = p.run_id WHERE r.executor = 'threads'",
    )
    assert involuntary is not None and voluntary + involuntary > 0
    assert runs["threads"]["involuntary_switches"] == involuntary
    report = conlab("report", "--format", "markdown")
    assert report.returncode == 0, report.stderr
    table = [line for line in report.stdout.splitlines() if line.startswith("| machine")]
    header = [cell.strip() for cell in table[0].split("|")]
    for column in ("peak mem", "worker mem", "invol. switches", "core moves", "cores"):
        assert column in header
    rows = [line for line in report.stdout.splitlines() if line.startswith("| ") and "MiB" in line]
    assert len(rows) == 2  # both configurations show their memory
    page = conlab("report", "--format", "html")
    assert page.returncode == 0 and "peak memory per executor" in page.stdout


def test_a_sample_says_none_where_the_platform_does_not(monkeypatch):
    sample = timing.timed_call(workloads.tiny, 3)
    assert sample[0] == 3 and len(sample) == 12
    if hasattr(os, "sched_getaffinity"):  # Linux: every figure is there
        assert all(isinstance(value, int) for value in sample[6:11])
    monkeypatch.setattr(timing, "_usage", timing._no_usage)
    monkeypatch.setattr(timing, "current_core", timing._no_core)
    monkeypatch.setattr(timing, "_stat_files", {})
    monkeypatch.setattr(timing, "_open_own_stat", lambda: None)
    assert timing.timed_call(workloads.tiny, 3)[5:] == (*(None,) * 6, (None, None))
    # not Linux: no sched_getcpu to load
    monkeypatch.setattr(timing.sys, "platform", "darwin")
    assert timing._load_core_reader() is timing._no_core
    # no resource module (Windows): the runner's own peak is unknown
    monkeypatch.setitem(sys.modules, "resource", None)
    assert runner._peak_rss_bytes() is None


def test_a_chunk_reads_its_costs_at_its_two_ends_and_keeps_each_tasks_times(monkeypatch):
    samples = timing.timed_chunk(workloads.tiny, [1, 2, 3])
    assert [s[0] for s in samples] == [1, 2, 3] and all(len(s) == 12 for s in samples)
    assert all(s[3] <= s[4] for s in samples)  # each task's own start and end
    assert all(s[6:] == (None,) * 6 for s in samples[:-1])
    if hasattr(os, "sched_setaffinity"):  # Linux: the chunk's costs sit on its last task
        assert all(isinstance(value, int) for value in samples[-1][6:11])
        allowed = os.sched_getaffinity(0)
        core = max(allowed)
        monkeypatch.setattr(timing, "current_core", timing._core_until_loaded)
        monkeypatch.setattr(timing, "_core_reads", 0)  # ctypes not loaded: a spawned worker
        os.sched_setaffinity(0, {core})
        try:  # the core read without ctypes (a spawned worker's path) is the one it runs on
            assert timing._chunk_core() == core and "ctypes" not in repr(timing.current_core)
            monkeypatch.setattr(timing, "_core_reads", timing.READS_BEFORE_LOADING)
            assert timing._chunk_core() == core  # and with sched_getcpu, loaded after as many
            assert timing.current_core is not timing._core_until_loaded
        finally:
            os.sched_setaffinity(0, allowed)
    stored = [list(s[1:11]) for s in samples]  # as the runner sends them
    costs = repeat_costs(stored, runner_pid=-1, runner_peak=None)
    assert costs["voluntary_switches"] == samples[-1][6]  # summed over the chunk, not lost
    assert timing.timed_chunk(workloads.tiny, []) == []


def test_repeat_costs_from_samples_old_and_new():
    pid = 11
    new = [[pid, 1, 0, 5, None, 2, 1, 0, 1, 100 * MIB], [12, 1, 0, 5, None, 3, 0, 1, 1, 50 * MIB]]
    costs = repeat_costs(new, runner_pid=pid, runner_peak=120 * MIB)
    assert costs == {
        "peak_rss_bytes": 170 * MIB,  # the runner's own and the other worker process's
        "worker_peak_rss_bytes": 100 * MIB,
        "voluntary_switches": 5,
        "involuntary_switches": 1,
        "core_moves": 1,
        "cores_used": 2,
    }
    old = [[pid, 1, 0, 5], [pid, 1, 5, 9]]  # recorded before costs were: nothing is made up
    assert repeat_costs(old, pid, None) == dict.fromkeys(costs)


def test_environment_collectors_where_the_kernel_says_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(environment, "_CPU", str(tmp_path / "no-such-dir"))
    for collector in (
        environment.cpu_governor,
        environment.cpu_scaling_driver,
        environment.turbo_enabled,
        environment.isolated_cpus,
        environment.nohz_full_cpus,
        environment.thermal_throttle_count,
    ):
        assert collector() is None
    cpu = tmp_path / "cpu"
    (cpu / "cpu0" / "cpufreq").mkdir(parents=True)
    (cpu / "cpu0" / "cpufreq" / "scaling_governor").write_text("powersave\n")
    (cpu / "intel_pstate").mkdir()
    (cpu / "intel_pstate" / "no_turbo").write_text("0\n")
    (cpu / "nohz_full").write_text("(null)\n")
    (cpu / "cpu0" / "thermal_throttle").mkdir()
    (cpu / "cpu0" / "thermal_throttle" / "core_throttle_count").write_text("7\n")
    monkeypatch.setattr(environment, "_CPU", str(cpu))
    assert environment.cpu_governor() == "powersave" and environment.turbo_enabled() is True
    assert environment.nohz_full_cpus() == "" and environment.thermal_throttle_count() == 7
    unfit = {
        "cpu_governor": "powersave",
        "turbo_enabled": True,
        "aslr": 0,
        "swap_used_bytes": 64 * MIB,
        "load_average": [3.0],
        "usable_cores": 2,
    }
    found = environment.problems(unfit)
    assert len(found) == 5 and all(";" in line for line in found)  # each with its fix
    assert len(environment.problems(unfit, with_load=False)) == 4
    assert environment.problems({"aslr": 2, "swap_used_bytes": 0, "load_average": [0.1]}) == []


def test_env_check_prints_what_it_found_and_one_line_per_problem(conlab):
    result = conlab("env", "--check")
    assert result.returncode in (0, 1), result.stderr
    lines = result.stdout.strip().splitlines()
    assert {line.partition(":")[0] for line in lines} >= set(environment.FITNESS_FIELDS)
    problems = [line for line in lines if line.startswith("problem: ")]
    if result.returncode == 0:
        assert problems == [] and lines[-1] == "fit to measure"
    else:
        assert problems and lines[-1] == f"not fit to measure: {len(problems)} problem(s)"
    as_json = conlab("env", "--check", "--json")
    assert as_json.returncode in (0, 1)
    assert as_json.json()["fit"] is (as_json.returncode == 0)


def test_runs_from_before_the_costs_have_none_after_migration(conlab, tmp_path):
    old = make_v1_file(tmp_path / "old.db")
    listed = conlab("runs", "--db", str(old), "--json")
    assert listed.returncode == 0, listed.stderr
    assert all(
        r["peak_rss_bytes"] is None and r["involuntary_switches"] is None for r in listed.json()
    )
    assert stored(old, "SELECT count(*) FROM task_sample WHERE core_start IS NOT NULL") == [(0,)]


def test_a_worker_threads_time_is_split_into_on_a_core_waiting_and_blocked():
    """Each worker thread's readings around its tasks give its span's split: a thread that
    computes is on a core, one that sleeps is blocked, whatever else the machine runs."""
    import threading
    import time

    readings = {}

    def work(kind):
        for _ in range(3):
            if kind == "sleep":
                sample = timing.timed_call(time.sleep, 0.02)
            else:
                sample = timing.timed_call(workloads.cpu, 200_000)
            readings.setdefault((kind, sample[2]), []).extend(r for r in sample[11] if r)

    # one after the other: two at once would share the GIL, and the computing one would be
    # blocked while the other, woken, held it waiting for a core on a busy machine
    for kind in ("sleep", "cpu"):
        thread = threading.Thread(target=work, args=(kind,))
        thread.start()
        thread.join()
    split = {row[0]: row for row in runner.worker_split(readings)}  # by kind, as pid here
    if not hasattr(os, "sched_getaffinity"):
        assert split == {}  # not Linux: not observed
        return
    for _, _, span, on_core, waited in split.values():
        assert on_core >= 0 and waited >= 0 and on_core + waited <= span * 1.01
    sleep, cpu = split["sleep"], split["cpu"]
    assert sleep[2] >= 40_000_000  # from the first task's start to the third's end: 2+ sleeps
    assert sleep[3] / sleep[2] < 0.2  # asleep, not on a core (how long it then waited for a
    # core depends on what else the machine runs)
    assert (cpu[3] + cpu[4]) / cpu[2] > 0.8  # computing: on a core, or waiting for one
