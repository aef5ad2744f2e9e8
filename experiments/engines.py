"""Executors from the optional extras: loky, dask.distributed, joblib and Ray. Each is available
where its extra is installed (``_missing`` says which to install), found without importing it."""

from __future__ import annotations

import functools
import time
from typing import Optional

from experiments.executor_base import (
    Executor,
    ExecutorFailed,
    OnSample,
    WorkerDied,
    _drain,
    _missing,
    _name_the_dead,
    _scheme,
    describe_exit,
)
from experiments.pools import Processes
from experiments.timing import timed_call


class _ClusterEngine(Executor):
    """An engine whose workers are processes of its own: on a local cluster it starts per run,
    or on an existing one named by ``--scheduler``."""

    pickles_tasks = True
    options = ("workers", "scheduler")
    # The engine's (a dask nanny's children, Ray's workers), not the runner's children: the
    # runner's clock does not see them.
    workers_are = "processes"
    local = ""  # what runs without --scheduler, as the fix names it: "use a LocalCluster"

    def unsupported_option(self, job) -> Optional[str]:
        if job.scheduler is not None and job.workload.service is not None:
            return (
                f"workload {job.workload.name!r} talks to a server the runner starts on this "
                "machine, which an existing cluster's workers cannot reach; drop --scheduler "
                f"to {self.local}"
            )
        return self.engine_unsupported(job)

    def engine_unsupported(self, job) -> Optional[str]:
        """None when this engine can run ``job`` here (its --scheduler, where it runs from),
        else what to change."""
        return None


class Loky(Processes):
    """loky's reusable executor behind the processes adapter: same submit-and-watch loop, same
    dead-worker naming (loky's TerminatedWorkerError is a BrokenProcessPool)."""

    name = "loky"
    description = "loky's reusable executor: processes started by fork+exec, cloudpickle"
    options = ("workers", "chunksize")  # loky starts its workers its own way
    cpu_seen = False  # its workers are not reaped inside the timed window
    preference = 60
    lab_ticked = False

    def unavailable_reason(self):
        return _missing("loky", "loky")

    def _new_pool(self, job):
        from loky import get_reusable_executor

        # reuse=False: a fresh executor per repeat, as for every other executor (the SPEC's
        # "construction to shutdown" window); the previous repeat's was shut down already.
        return get_reusable_executor(max_workers=job.workers, reuse=False)

    def _abandon(self, pool) -> None:
        pool.shutdown(wait=False, kill_workers=True)


class Dask(_ClusterEngine):
    name = "dask"
    description = "dask.distributed: a LocalCluster of --workers processes, or --scheduler ADDR"
    preference = 70
    local = "use a LocalCluster"
    connect_timeout_s = 10

    def unavailable_reason(self):
        return _missing("distributed", "dask")

    def engine_unsupported(self, job) -> Optional[str]:
        if _scheme(job.scheduler) == "ray":
            return (
                f"--scheduler {job.scheduler} is a Ray address, which dask cannot use; "
                "pass a dask scheduler (tcp://HOST:8786), or choose -e ray"
            )
        return None

    def run(self, job, items: list, on_sample: OnSample) -> None:
        import logging

        import dask
        from distributed import Client, LocalCluster
        from distributed.scheduler import KilledWorker

        logging.getLogger("distributed").setLevel(logging.ERROR)  # its INFO lines go to stderr
        deaths = _NannyDeaths()  # how a LocalCluster's worker processes ended, from its nannies
        call = functools.partial(timed_call, job.workload.func)
        # A worker that dies while running a task is a failure at once, as in the other process
        # executors (dask's default retries the task on another worker three times first).
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = None
            if job.scheduler is None:
                cluster = LocalCluster(
                    n_workers=job.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
            try:
                client = Client(job.scheduler or cluster, timeout=self.connect_timeout_s)
            except OSError as exc:
                if cluster is not None:
                    cluster.close()
                raise ExecutorFailed(
                    f"cannot reach the dask scheduler at {job.scheduler} ({exc}); check "
                    "--scheduler, or drop it to use a LocalCluster"
                ) from exc
        try:
            # pure=False: equal calls are separate tasks, not one result shared by all.
            futures = client.map(call, items, pure=False)
            for future in futures:
                on_sample(future.result())
        except KilledWorker as exc:
            worker = getattr(getattr(exc, "last_worker", None), "address", "?")
            how = deaths.wait_for_one() if cluster is not None else ""
            raise WorkerDied(
                f"{how or 'a dask worker ended'} (dask KilledWorker: worker {worker} was lost "
                "while running a task)"
            ) from exc
        finally:
            deaths.close()
            client.close()
            if cluster is not None:
                cluster.close()


class _NannyDeaths:
    """Collects the exit of each worker process that a dask nanny logs ("Worker process 123 was
    killed by signal 9"), to say how a worker died in the lab's own words."""

    def __init__(self) -> None:
        import logging
        import re
        import threading

        self._pattern = re.compile(
            r"Worker process (\d+) (?:exited with status|was killed by signal) (\d+)"
        )
        self._found: list = []
        self._event = threading.Event()
        self._logger = logging.getLogger("distributed.nanny")
        self._handler = logging.Handler(logging.INFO)
        self._handler.emit = self._emit
        self._logger.addHandler(self._handler)
        self._saved = (self._logger.level, self._logger.propagate)
        self._logger.setLevel(logging.INFO)
        self._logger.propagate = False  # read here, not printed

    def _emit(self, record) -> None:
        match = self._pattern.search(record.getMessage())
        if match:
            pid, code = int(match[1]), int(match[2])
            self._found.append((pid, -code if "signal" in match[0] else code))
            self._event.set()

    def wait_for_one(self, timeout_s: float = 2.0) -> str:
        self._event.wait(timeout_s)  # the nanny may log it just after the scheduler gives up
        return "; ".join(describe_exit(code, pid) for pid, code in self._found)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        level, self._logger.propagate = self._saved  # the logger as the repeat found it
        self._logger.setLevel(level)


class Joblib(Executor):
    """``Parallel(n_jobs=workers, backend=...)(delayed(f)(x) for x in xs)``, a fresh Parallel
    per repeat. Its loky backend keeps its workers for the next call; the lab shuts them down
    at the end of each repeat (inside the timed window, as multiprocessing and threading shut
    their pools down inside the call), so every repeat pays what a script's first call pays."""

    name = "joblib"
    description = "joblib.Parallel(n_jobs=workers), --backend loky|threading|multiprocessing"
    pickles_tasks = True
    workers_are = "processes"  # its default backend's (loky), not reaped in the timed window
    preference = 80
    # chunksize is joblib's batch_size: none given, joblib's own "auto" batching (recorded None)
    options = ("workers", "chunksize", "backend")
    poll_s = 0.05  # how often to look for dead workers while waiting
    cause_within_s = 2.0  # how long a dead worker's call may take to say why it ended

    def unavailable_reason(self):
        return _missing("joblib", "joblib")

    def default(self, option, tasks, workers):
        return "loky" if option == "backend" else None

    def run(self, job, items: list, on_sample: OnSample) -> None:
        import queue
        import threading

        from joblib import Parallel, delayed

        backend = job.backend or "loky"
        shut_down_after = backend == "loky"
        return_as = "list" if backend == "multiprocessing" else "generator"
        made: list = []
        results: queue.SimpleQueue = queue.SimpleQueue()
        func = job.workload.func

        def call() -> None:
            # In a thread of its own: under the multiprocessing backend a dead worker's task
            # never completes (CPython gh-66587), so this thread waits and the runner watches.
            try:
                options = dict(backend=backend, return_as=return_as)
                parallel = Parallel(
                    n_jobs=job.workers, batch_size=job.chunksize or "auto", **options
                )
                made.append(parallel)
                # joblib collects a list from this same generator; the multiprocessing
                # backend has none, and its samples come at the end of the call.
                calls = parallel(delayed(timed_call)(func, item) for item in items)
                if return_as == "list":
                    results.put(calls)
                else:
                    for sample in calls:
                        results.put((sample,))
                if shut_down_after:
                    _shut_down_joblib_workers()
                results.put(_Done)
            except BaseException as exc:
                results.put(_Raised(exc))

        seen: dict = {}
        if backend == "multiprocessing":
            backend = _watched_pool_backend(seen)
        thread = threading.Thread(target=call, name="conlab-joblib", daemon=True)
        thread.start()
        while True:
            try:
                got = results.get(timeout=self.poll_s)
            except queue.Empty:
                if not _joblib_worker_died(made, seen):
                    continue
                # joblib kills its workers itself when a task raises: that error, if it comes
                # now, is the cause; else (a Pool waits forever, gh-66587) the death is.
                try:
                    got = results.get(timeout=self.cause_within_s)
                except queue.Empty:
                    raise WorkerDied(_name_the_dead(dict(seen))) from None
            if got is _Done:
                break
            if isinstance(got, _Raised):
                _raise_joblib_error(got.exc, made, seen)
            _drain(got, on_sample)
        thread.join()


class _Done:
    """The end of a joblib call's results."""


class _Raised:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _shut_down_joblib_workers() -> None:
    """Shut down the loky executor joblib keeps between calls, waiting for its workers."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor
    if executor is not None:
        executor.shutdown(wait=True)


def _joblib_workers(made: list) -> dict:
    """The worker processes of the joblib call in progress, by pid: loky's executor or the
    multiprocessing pool behind its backend (none for threading)."""
    backend = getattr(made[0], "_backend", None) if made else None
    loky = getattr(getattr(backend, "_workers", None), "_processes", None)
    if loky:
        return dict(loky)
    pool = getattr(getattr(backend, "_pool", None), "_pool", None) or []
    return {p.pid: p for p in list(pool) if getattr(p, "pid", None) is not None}  # not threads


def _watched_pool_backend(seen: dict):
    """joblib's multiprocessing backend, which puts its pool's workers in ``seen`` as it
    starts them, before any task: a worker that dies is replaced at once by
    ``multiprocessing.Pool``, and its task never completes (CPython gh-66587)."""
    from joblib._parallel_backends import MultiprocessingBackend

    class Watched(MultiprocessingBackend):
        def configure(self, *args, **kwargs):
            n_jobs = super().configure(*args, **kwargs)
            pool = getattr(self, "_pool", None)
            seen.update((p.pid, p) for p in list(getattr(pool, "_pool", None) or []) if p.pid)
            return n_jobs

    return Watched()


def _joblib_worker_died(made: list, seen: dict) -> bool:
    seen.update(_joblib_workers(made))
    return any(p.exitcode not in (None, 0) for p in list(seen.values()))


def _raise_joblib_error(exc: BaseException, made: list, seen: dict) -> None:
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):  # joblib's TerminatedWorkerError, from loky
        seen.update(_joblib_workers(made))
        raise WorkerDied(_name_the_dead(seen) or str(exc).strip().splitlines()[-1]) from exc
    raise exc


class Ray(_ClusterEngine):
    """Ray tasks: one remote call of the user's function per item, ``max_retries=0`` (a task
    whose worker dies fails the run, as in every process executor), on a local Ray instance
    started once per runner process (``session``, outside the timed windows) or an existing
    cluster named by ``--scheduler``."""

    name = "ray"
    description = "Ray remote tasks: a local ray.init(num_cpus=workers) per run, or --scheduler"
    preference = 80
    local = "start a local Ray"

    def unavailable_reason(self):
        return _missing("ray", "ray")

    def engine_unsupported(self, job) -> Optional[str]:
        if _scheme(job.scheduler) not in ("", "ray"):
            return (
                f"--scheduler {job.scheduler} is not a Ray address; pass HOST:PORT of "
                "a running `ray start --head` (e.g. 127.0.0.1:6379) "
                "or ray://HOST:PORT"
            )
        import os

        # Ray puts the driver's working directory first on its workers' sys.path, where a
        # folder named like the lab's would stand in for the lab's code in every task, unless
        # it is the lab's own (conlab run from its checkout).
        own = os.path.dirname(os.path.realpath(__file__))
        here = "experiments"
        if os.path.exists(here + ".py") or (os.path.exists(here) and os.path.realpath(here) != own):
            return (
                f"ray puts the current directory ({os.getcwd()}) first on its workers' "
                "module path, and its 'experiments' (not the lab's, which is in "
                f"{own}) would replace the lab's there; run conlab from another directory "
                "(your module can be on PYTHONPATH)"
            )
        return None

    def session(self, job):
        import contextlib

        @contextlib.contextmanager
        def started():
            import logging

            import ray

            options = dict(
                include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
            )

            start = time.monotonic()
            try:
                if job.scheduler is None:
                    # "local": a new instance even where another one runs on this machine.
                    ray.init(address="local", num_cpus=job.workers, **options)
                else:
                    ray.init(address=job.scheduler, **options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = job.scheduler or "a local instance"
                raise ExecutorFailed(
                    f"cannot start or reach ray at {where} ({str(exc).strip().splitlines()[0]}); "
                    "check --scheduler (HOST:PORT of a running `ray start --head`, or "
                    "ray://HOST:PORT), or drop it to start a local Ray"
                ) from exc
            try:
                yield {"engine_start_s": round(time.monotonic() - start, 3)}
            finally:
                ray.shutdown()

        return started()

    def run(self, job, items: list, on_sample: OnSample) -> None:
        import ray
        from ray.exceptions import RayTaskError, WorkerCrashedError

        task = ray.remote(max_retries=0)(timed_call)
        func = job.workload.func
        # The function goes with each task, as Ray ships it (cloudpickle; by reference when
        # it is importable), as the other process executors send it.
        refs = [task.remote(func, item) for item in items]
        try:
            for ref in refs:
                on_sample(ray.get(ref))
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, BaseException) else exc) from exc
        except WorkerCrashedError as exc:
            raise WorkerDied(
                "a ray worker process ended while running a task (Ray's WorkerCrashedError, not "
                "retried: max_retries=0; Ray reports no exit code or signal, its raylet's log "
                "line in the run's output names the worker's pid)"
            ) from exc
