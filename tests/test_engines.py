"""joblib, Ray and uvloop, each run for real: joblib's three backends, a Ray head started by
the tests on 127.0.0.1 (and a local Ray per run), asyncio on uvloop. Skipped, saying why, where
an extra is not installed. Sizes are tiny: these check behaviour, not figures."""

from __future__ import annotations

import json
import os
import signal

import pytest

from experiments.executors import EXECUTORS
from tests.conftest import RAY_ENV, assert_one_line_error, run_args
from tests.helpers import stored_environment as environment


def needs(executor: str, module: str = "") -> pytest.MarkDecorator:
    from experiments.executors import _missing

    reason = _missing(module, module) if module else EXECUTORS[executor].unavailable_reason()
    return pytest.mark.skipif(reason is not None, reason=str(reason))


def failed_run(conlab, workload: str, executor: str, *extra: str, env=None) -> dict:
    options = dict(workers=2, tasks=4, size=1, repeats=1, warmups=0, timeout=90)
    result = conlab(*run_args(workload, executor, **options), *extra, env=env)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    (run,) = result.json()
    assert run["status"] == "failed"
    return run


# --- joblib -----------------------------------------------------------------------------------


@needs("joblib")
def test_joblib_records_its_backend_and_batching(conlab, db_path):
    # loky by default with joblib's own batching (chunksize not set), threading with batch_size 2
    default = conlab(*run_args("usermod:work", "joblib", workers=2, tasks=4, size=100, repeats=2))
    threading = conlab(
        *run_args(
            "usermod:work",
            "joblib",
            workers=2,
            tasks=4,
            size=100,
            repeats=1,
            backend="threading",
            chunksize=2,
        )
    )
    for result, backend, chunksize in ((default, "loky", None), (threading, "threading", 2)):
        assert result.returncode == 0, result.stderr
        (run,) = result.json()
        assert run["status"] == "ok" and run["chunksize"] == chunksize
        assert environment(db_path, run["run_id"])["backend"] == backend


@needs("joblib")
@pytest.mark.parametrize("backend", ["loky", "multiprocessing"])
def test_a_joblib_worker_killed_fails_the_run_saying_how(conlab, backend):
    # multiprocessing.Pool would replace the worker and wait forever for its task (gh-66587)
    run = failed_run(conlab, "usermod:die", "joblib", "--backend", backend)
    assert run["error"].startswith("a worker died: worker pid "), run["error"]
    assert "killed by SIGKILL" in run["error"]


@needs("joblib")
def test_a_joblib_task_that_raises_fails_the_run_with_its_error(conlab):
    run = failed_run(conlab, "usermod:boom", "joblib")
    assert run["error"] == "a task raised ValueError: boom at size 1"


@pytest.mark.parametrize(
    "args, words",
    [
        (["-w", "tiny", "-e", "threads", "--backend", "threading"], "--backend applies to joblib"),
        (["-w", "tiny", "-e", "joblib", "--backend", "dask"], "--backend"),
        (["-w", "sleep", "-e", "threads", "--loop", "uvloop"], "--loop applies to asyncio"),
        (["-w", "sleep", "-e", "asyncio", "--loop", "trio"], "--loop"),
        (["-w", "tiny", "-e", "ray", "--scheduler", "tcp://127.0.0.1:1"], "not a Ray address"),
        (["-w", "tiny", "-e", "dask", "--scheduler", "ray://127.0.0.1:1"], "a Ray address"),
    ],
)
def test_engine_options_given_where_they_do_not_apply_are_refused(conlab, db_path, args, words):
    result = conlab("run", *args, "--json")
    assert_one_line_error(result)
    assert words in result.stderr
    assert not db_path.exists()


def test_an_engine_whose_extra_is_missing_is_listed_with_its_install_line(conlab, tmp_path):
    # A site hook that hides the extras, as on a machine where they were never installed.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('joblib', 'ray', 'uvloop'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(hide), os.environ.get("PYTHONPATH", "")])}
    # a fresh interpreter (the installed script): the site hook runs at start-up
    result = conlab("list", "executors", "--json", env=env, script=True)
    assert result.returncode == 0, result.stderr
    listed = {e["name"]: e for e in result.json()}
    for name in ("joblib", "ray"):
        assert listed[name]["available"] is False
        assert listed[name]["reason"] == (
            f"needs the {name!r} extra: pip install 'concurrency-lab[{name}]'"
        )
    refused = conlab(*run_args("sleep", "asyncio", loop="uvloop", workers=2), env=env, script=True)
    assert_one_line_error(refused)
    assert "--loop uvloop needs the 'uvloop' extra" in refused.stderr


# --- uvloop -----------------------------------------------------------------------------------


@needs("asyncio", "uvloop")
def test_asyncio_on_uvloop_runs_and_is_recorded(conlab, db_path):
    result = conlab(*run_args("sleep", "asyncio", loop="uvloop", workers=16, size=1, repeats=1))
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["status"] == "ok"
    assert environment(db_path, run["run_id"])["loop"] == "uvloop"


# --- Ray --------------------------------------------------------------------------------------


@needs("ray")
def test_ray_runs_on_an_existing_head_given_by_scheduler(conlab, db_path, ray_head):
    options = dict(scheduler=ray_head, workers=2, tasks=4, size=100, repeats=1)
    result = conlab(*run_args("usermod:work", "ray", **options), env=RAY_ENV)
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["status"] == "ok" and len(run["wall_s"]) == 1
    assert environment(db_path, run["run_id"])["scheduler"] == ray_head


@needs("ray")
def test_a_ray_task_that_raises_fails_the_run_with_its_error(conlab, ray_head):
    run = failed_run(conlab, "usermod:boom", "ray", "--scheduler", ray_head, env=RAY_ENV)
    assert run["error"] == "a task raised ValueError: boom at size 1"


@needs("ray")
def test_a_ray_worker_killed_fails_the_run_without_a_retry(conlab, db_path, ray_head):
    run = failed_run(conlab, "usermod:die", "ray", "--scheduler", ray_head, env=RAY_ENV)
    assert run["error"].startswith("a worker died: a ray worker process ended while running")
    assert "max_retries=0" in run["error"]


@pytest.mark.slow
@needs("ray")
@needs("joblib")
def test_joblib_and_ray_on_their_own_engines_store_two_ok_runs(conlab, db_path):
    # `conlab run -w cpu -e joblib -e ray --workers 2`: a local Ray, started and stopped by the
    # runner (the fixture checks that none of its processes is left)
    options = dict(workers=2, tasks=4, size=1000, repeats=1)
    result = conlab(*run_args("cpu", "joblib", "ray", **options), env=RAY_ENV, timeout=180)
    assert result.returncode == 0, result.stderr
    assert [(r["executor"], r["status"]) for r in result.json()] == [
        ("joblib", "ok"),
        ("ray", "ok"),
    ]
    # Ray's start-up is outside the timed window, so it is stored beside it, per process
    (process,) = environment(db_path, result.json()[1]["run_id"])["runner_processes"]
    assert process["engine_start_s"] > 0


@pytest.mark.slow
@needs("ray")
def test_a_runner_killed_takes_its_local_ray_with_it(conlab, db_path):
    from tests.test_faults import runner_mid_run

    options = dict(workers=2, tasks=8, size=50, repeats=1000, warmups=0)
    process = conlab.start(*run_args("sleep", "ray", **options), env=RAY_ENV)
    try:
        os.kill(runner_mid_run(db_path, process), signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 1, stderr
    (run,) = json.loads(stdout)
    assert run["error"] == "the runner process died (killed by SIGKILL)"
    # the conlab fixture fails the test if a Ray process (gcs, raylet, a worker) outlives it


@needs("ray")
def test_ray_is_refused_where_a_folder_would_stand_in_for_the_lab(monkeypatch, tmp_path):
    # Ray puts the working directory first on its workers' sys.path (its own rule): there, a
    # package named `experiments` would replace the lab's code in every task.
    from experiments.spec import ExperimentSpec, SpecError, prepare
    from tests.conftest import add_shadowing_packages

    add_shadowing_packages(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="run conlab from another directory"):
        prepare(ExperimentSpec("cpu", "ray", workers=2, tasks=2, size=1))
    monkeypatch.chdir(tmp_path.parent)
    assert prepare(ExperimentSpec("cpu", "ray", workers=2, tasks=2, size=1)).executor.name == "ray"
    # A module `experiments.py` would shadow the lab's package too.
    (tmp_path / "module").mkdir()
    (tmp_path / "module" / "experiments.py").write_text("raise ImportError('a user module')\n")
    monkeypatch.chdir(tmp_path / "module")
    with pytest.raises(SpecError, match="run conlab from another directory"):
        prepare(ExperimentSpec("cpu", "ray", workers=2, tasks=2, size=1))


@needs("ray")
def test_ray_takes_a_folder_whose_experiments_is_the_labs_own(monkeypatch, tmp_path):
    # The lab's checkout, or a link to the lab's package: the same code, whichever comes first.
    from experiments.spec import ExperimentSpec, prepare
    from tests.conftest import REPO

    for where in (REPO, tmp_path):
        if where == tmp_path:
            (tmp_path / "experiments").symlink_to(REPO / "experiments")
        monkeypatch.chdir(where)
        spec = ExperimentSpec("cpu", "ray", workers=2, tasks=2, size=1)
        assert prepare(spec).executor.name == "ray"


@pytest.mark.slow
@needs("ray")
def test_ray_runs_from_the_labs_own_checkout(conlab):
    """The quick start (docs/cli.md), from the checkout (after `make install`): the `experiments`
    folder there is the lab's own, so Ray's workers find the lab's code either way."""
    from tests.conftest import REPO

    options = dict(workers=1, tasks=2, size=1, repeats=1, warmups=0)
    result = conlab(*run_args("cpu", "ray", **options), env=RAY_ENV, cwd=REPO, script=True)
    assert result.returncode == 0, result.stderr
    (run,) = result.json()
    assert run["status"] == "ok"
