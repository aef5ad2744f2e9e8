"""Ways of running tasks: one small adapter per executor, behind one interface.

Every adapter's ``run`` builds a fresh executor, maps the task over the items, and returns after
the executor is fully shut down (``shutdown(wait=True)`` or ``close(); join()``): exactly what a
hand-written ``with Executor() as ex: list(ex.map(f, xs))`` pays. To add an executor: write one
class with ``name``, ``description`` and ``run``, then add one line to ``EXECUTORS``.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional

from experiments.timing import timed_call, timed_call_async, timed_chunk
from experiments.workloads import Workload

# Called with each task's sample as it comes back (for progress); must be cheap.
OnSample = Callable[[tuple], None]


class WorkerDied(RuntimeError):
    """A worker process ended while tasks were outstanding; the message says which and how."""


class ExecutorFailed(RuntimeError):
    """The executor itself could not start (e.g. its cluster is unreachable); says what to do."""


class Executor:
    """The interface every adapter implements."""

    name = ""
    description = ""
    pickles_tasks = False  # True when the task function crosses a process/interpreter boundary
    # The executor options (experiments/options.py) this executor takes; it ignores or refuses
    # the others, as their rows say.
    options: tuple = ("workers",)

    def unavailable_reason(self) -> Optional[str]:
        """None when this executor can run on this interpreter, else why it cannot."""
        return None

    def check_workload(self, workload: Workload) -> Optional[str]:
        """None when this executor can run ``workload``, else why it cannot and what to do."""
        return None

    def unsupported_option(self, job) -> Optional[str]:
        """None when the job's option values suit this executor here, else what to change.
        (Options it does not take at all are refused by their rows in experiments/options.py.)"""
        return None

    def default(self, option: str, tasks: int, workers: int) -> Any:
        """The value of ``option`` (one this executor takes) when the spec leaves it out."""
        if option == "start_method":
            return self.default_start_method()
        if option == "chunksize":
            return self.default_chunksize(tasks, workers)
        return None

    def default_start_method(self) -> Optional[str]:
        return None

    def default_chunksize(self, tasks: int, workers: int) -> Optional[int]:
        return None

    def run(self, job, items: list, on_sample: OnSample) -> None:
        """Run ``job.workload`` once per item with ``job.workers`` (and, where they apply,
        ``job.start_method``, ``job.chunksize``, ``job.max_tasks_per_child``), calling
        ``on_sample`` with each task's sample, and return once the executor is shut down."""
        raise NotImplementedError


def _drain(results: Iterable[tuple], on_sample: OnSample) -> None:
    for sample in results:
        on_sample(sample)


class Sequential(Executor):
    name = "sequential"
    description = "a plain loop in one thread: the baseline every speedup is measured against"
    options = ()

    def run(self, job, items: list, on_sample: OnSample) -> None:
        func = job.workload.func
        for item in items:
            on_sample(timed_call(func, item))


class Threads(Executor):
    name = "threads"
    description = "concurrent.futures.ThreadPoolExecutor: shares the GIL"

    def run(self, job, items: list, on_sample: OnSample) -> None:
        from concurrent.futures import ThreadPoolExecutor

        call = functools.partial(timed_call, job.workload.func)
        with ThreadPoolExecutor(max_workers=job.workers) as pool:
            _drain(pool.map(call, items), on_sample)


def _mp_context(start_method: Optional[str]):
    import multiprocessing

    return multiprocessing.get_context(start_method)


def _default_start_method() -> str:
    import multiprocessing

    return multiprocessing.get_context().get_start_method()


def describe_exit(exitcode: Optional[int], pid: Optional[int] = None) -> str:
    """How a process ended (a negative code is the signal that ended it): "killed by SIGKILL",
    "exit code 3"; with ``pid``, a worker's: "worker pid 7 was killed by SIGKILL", "worker pid 7
    exited with code 3"."""
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            how = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
        return how if pid is None else f"worker pid {pid} was {how}"
    if pid is None:
        return f"exit code {exitcode}"
    return f"worker pid {pid} exited with code {exitcode}"


def _name_the_dead(processes: dict) -> str:
    """How the workers of a broken pool ended, the cause first: the pool itself SIGTERMs the
    survivors, which says nothing about why it broke."""
    import signal

    for process in processes.values():
        process.join(1.0)  # the pool's own thread may be reaping it: wait for its exit code
    ended = [(pid, p.exitcode) for pid, p in processes.items() if p.exitcode not in (None, 0)]
    causes = [(pid, code) for pid, code in ended if code != -signal.SIGTERM] or ended
    return "; ".join(describe_exit(code, pid) for pid, code in causes)


class Processes(Executor):
    name = "processes"
    description = "concurrent.futures.ProcessPoolExecutor: one interpreter per worker"
    pickles_tasks = True
    options = ("workers", "start_method", "chunksize", "max_tasks_per_child")

    def default_start_method(self):
        return _default_start_method()

    def default_chunksize(self, tasks, workers):
        return 1  # ProcessPoolExecutor.map's own default

    # How often to look at the workers while waiting for a result, and how long the pool may
    # have no live worker at all before the run is declared stuck (CPython gh-115634).
    poll_s = 0.05
    stuck_after_s = 2.0

    def unsupported_option(self, job) -> Optional[str]:
        if job.max_tasks_per_child is not None:
            if sys.version_info < (3, 11):
                return "--max-tasks-per-child needs Python 3.11+ for ProcessPoolExecutor"
            if job.start_method == "fork":
                return ("--max-tasks-per-child cannot be used with the fork start method; "
                        "pass --start-method spawn or forkserver")  # fmt: skip
        return None

    def _new_pool(self, job):
        from concurrent.futures import ProcessPoolExecutor

        recycling = {}
        if job.max_tasks_per_child is not None:
            recycling["max_tasks_per_child"] = job.max_tasks_per_child
        return ProcessPoolExecutor(
            max_workers=job.workers, mp_context=_mp_context(job.start_method), **recycling
        )

    def _abandon(self, pool) -> None:
        """Stop a pool without waiting for it (a stuck pool would never finish)."""
        pool.shutdown(wait=False, cancel_futures=True)

    def run(self, job, items: list, on_sample: OnSample) -> None:
        from concurrent.futures import TimeoutError as FutureTimeout
        from concurrent.futures.process import BrokenProcessPool

        chunksize = job.chunksize or 1
        func = job.workload.func
        pool = self._new_pool(job)
        seen: dict = {}
        try:
            # What map() does -- one future per task, or per chunk, the function sent with each
            # -- with futures we can wait on with a timeout, to notice a stuck pool.
            if chunksize == 1:
                task, payloads = timed_call, items
            else:
                task = timed_chunk
                payloads = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
            futures = []
            for payload in payloads:
                futures.append(pool.submit(task, func, payload))
                if len(seen) < job.workers:
                    # Workers start with the first submissions: keep them to name the dead
                    # later (a broken pool forgets its processes, even before map() returns).
                    seen.update(getattr(pool, "_processes", None) or {})
            for future in futures:
                idle_since = None
                while True:
                    try:
                        result = future.result(self.poll_s)
                        break
                    except FutureTimeout:
                        idle_since = self._check_workers(pool, seen, idle_since, futures, job)
                if chunksize == 1:
                    on_sample(result)
                else:
                    for sample in result:
                        on_sample(sample)
        except BrokenProcessPool as exc:  # loky's worker-death errors are subclasses of it
            self._abandon(pool)
            seen.update(getattr(pool, "_processes", None) or {})
            raise WorkerDied(_name_the_dead(seen) or str(exc)) from exc
        except BaseException:
            # Not `with`: its shutdown(wait=True) would wait forever on a stuck pool.
            self._abandon(pool)
            raise
        pool.shutdown(wait=True)  # what `with` does at the end: part of the timed window

    def _check_workers(self, pool, seen: dict, idle_since, futures, job):
        """Remember the workers (to name the dead later); raise when none has been alive for
        ``stuck_after_s`` while tasks wait. Returns when the pool was first seen without one."""
        processes = dict(getattr(pool, "_processes", None) or {})
        seen.update(processes)
        if job.max_tasks_per_child is None:
            return None  # only recycling leaves a pool without workers (gh-115634)
        if any(p.exitcode is None for p in processes.values()):
            return None
        now = time.monotonic()
        if idle_since is None:
            return now
        if now - idle_since >= self.stuck_after_s:
            waiting = sum(not f.done() for f in futures)
            raise WorkerDied(
                f"no worker is left to run the {waiting} waiting task(s): ProcessPoolExecutor "
                "did not replace workers that exited after --max-tasks-per-child (CPython "
                "gh-115634); use --workers 2 or more, or no --max-tasks-per-child"
            )
        return idle_since


class Pool(Executor):
    name = "pool"
    description = "multiprocessing.Pool: the classic process pool, with chunking"
    pickles_tasks = True
    options = ("workers", "start_method", "chunksize", "max_tasks_per_child")

    # How often to look for dead workers while waiting: Pool itself would wait forever.
    poll_s = 0.05

    def default_start_method(self):
        return _default_start_method()

    def default_chunksize(self, tasks, workers):
        # Pool.map's own rule, so imap (which streams results for progress) chunks the same way.
        chunksize, extra = divmod(tasks, workers * 4)
        return chunksize + 1 if extra else max(chunksize, 1)

    def run(self, job, items: list, on_sample: OnSample) -> None:
        import multiprocessing

        # Chunks are made here as Pool.map makes them, and sent through imap(chunksize=1), whose
        # iterator can wait with a timeout: that is how a dead worker is noticed.
        chunksize = job.chunksize or self.default_chunksize(len(items), job.workers)
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        pool = _mp_context(job.start_method).Pool(
            job.workers, maxtasksperchild=job.max_tasks_per_child
        )
        try:
            workers_seen = list(getattr(pool, "_pool", []))
            # The function goes with every chunk, as in Pool.map's (mapstar, (f, chunk)) tasks.
            results = pool.imap(functools.partial(timed_chunk, job.workload.func), chunks)
            for _ in range(len(chunks)):
                while True:
                    try:
                        samples = results.next(self.poll_s)
                        break
                    except multiprocessing.TimeoutError:
                        self._raise_if_a_worker_died(pool, workers_seen)
                for sample in samples:
                    on_sample(sample)
        except BaseException:
            self._terminate(pool)
            raise
        pool.close()
        pool.join()

    # How long Pool.terminate() may take before the pool is left behind (normally a few ms).
    terminate_within_s = 2.0

    def _terminate(self, pool) -> None:
        """``pool.terminate(); pool.join()``, but never hang. terminate() stops the workers,
        then joins the pool's task handler, which waits forever to put its end marker on the
        result queue when a worker ended while holding that queue's lock -- a worker stopped in
        the middle of sending a result, as terminate() itself can do (seen here once in ~30
        runs where a task raised). Past ``terminate_within_s`` the workers are killed and the
        pool's threads (daemons) are left to end with the runner."""
        import threading

        def stop() -> None:
            pool.terminate()
            pool.join()

        stopper = threading.Thread(target=stop, name="conlab-pool-terminate", daemon=True)
        stopper.start()
        stopper.join(self.terminate_within_s)
        if stopper.is_alive():
            for process in list(getattr(pool, "_pool", [])):
                try:
                    process.kill()
                except OSError:
                    pass

    @staticmethod
    def _raise_if_a_worker_died(pool, workers_seen: list) -> None:
        # Pool replaces a dead worker silently and the lost task never completes (CPython
        # gh-66587): any worker exit while tasks are outstanding is a death -- but for a worker
        # retired by maxtasksperchild, which exits with code 0 after its last task.
        for process in workers_seen + list(getattr(pool, "_pool", [])):
            if process not in workers_seen:
                workers_seen.append(process)
            if process.exitcode not in (None, 0):
                raise WorkerDied(describe_exit(process.exitcode, process.pid))


class Asyncio(Executor):
    name = "asyncio"
    description = "coroutines on one event loop, at most `workers` at a time (a semaphore)"

    def check_workload(self, workload):
        if workload.async_func is None:
            from experiments.workloads import WORKLOADS

            forms = [w.name for w in WORKLOADS.values() if w.async_func is not None]
            return (
                f"workload {workload.name!r} has no async form, so asyncio cannot run it; "
                f"pick {', '.join(forms[:-1])} or {forms[-1]}, or an `async def` function"
            )
        return None

    def run(self, job, items: list, on_sample: OnSample) -> None:
        import asyncio

        async def one(semaphore, item):
            async with semaphore:
                sample = await timed_call_async(job.workload.async_func, item)
            on_sample(sample)

        async def main():
            semaphore = asyncio.Semaphore(job.workers)
            await asyncio.gather(*(one(semaphore, item) for item in items))

        asyncio.run(main())


class Interpreters(Executor):
    name = "interpreters"
    description = "concurrent.futures.InterpreterPoolExecutor: subinterpreters, one GIL each"
    pickles_tasks = True

    def unavailable_reason(self):
        import concurrent.futures

        if not hasattr(concurrent.futures, "InterpreterPoolExecutor"):
            return (
                f"needs Python 3.14+ (this is {sys.version.split()[0]}); "
                "pass --python with a 3.14 interpreter"
            )
        return None

    def run(self, job, items: list, on_sample: OnSample) -> None:
        from concurrent.futures import InterpreterPoolExecutor

        call = functools.partial(timed_call, job.workload.func)
        with InterpreterPoolExecutor(max_workers=job.workers) as pool:
            _drain(pool.map(call, items), on_sample)


def _missing(module: str, extra: str) -> Optional[str]:
    """Why an executor from an optional extra is unavailable (found without importing it)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return f"needs the {extra!r} extra: pip install 'concurrency-lab[{extra}]'"
    return None


class Loky(Processes):
    """loky's reusable executor behind the processes adapter: same submit-and-watch loop, same
    dead-worker naming (loky's TerminatedWorkerError is a BrokenProcessPool)."""

    name = "loky"
    description = "loky's reusable executor: processes started by fork+exec, cloudpickle"
    options = ("workers", "chunksize")  # loky starts its workers its own way

    def unavailable_reason(self):
        return _missing("loky", "loky")

    def _new_pool(self, job):
        from loky import get_reusable_executor

        # reuse=False: a fresh executor per repeat, as for every other executor (the SPEC's
        # "construction to shutdown" window); the previous repeat's was shut down already.
        return get_reusable_executor(max_workers=job.workers, reuse=False)

    def _abandon(self, pool) -> None:
        pool.shutdown(wait=False, kill_workers=True)


class Dask(Executor):
    name = "dask"
    description = "dask.distributed: a LocalCluster of --workers processes, or --scheduler ADDR"
    pickles_tasks = True
    options = ("workers", "scheduler")
    connect_timeout_s = 10

    def unavailable_reason(self):
        return _missing("distributed", "dask")

    def unsupported_option(self, job) -> Optional[str]:
        if job.scheduler is not None and job.workload.service is not None:
            return (f"workload {job.workload.name!r} talks to a server the runner starts on this "
                    "machine, which an existing cluster's workers cannot reach; drop --scheduler "
                    "to use a LocalCluster")  # fmt: skip
        return super().unsupported_option(job)

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


EXECUTORS: dict[str, Executor] = {
    e.name: e
    for e in (
        Sequential(), Threads(), Processes(), Pool(), Asyncio(), Interpreters(), Loky(), Dask(),
    )
}  # fmt: skip


def describe() -> list[dict[str, Any]]:
    """Every executor with its availability here: what ``conlab list executors`` shows."""
    return [
        {
            "name": e.name,
            "description": e.description,
            "available": e.unavailable_reason() is None,
            "reason": e.unavailable_reason(),
            "pickles_tasks": e.pickles_tasks,
            "takes_start_method": "start_method" in e.options,
            "default_start_method": (
                e.default_start_method() if "start_method" in e.options else None
            ),
            "options": list(e.options),
        }
        for e in EXECUTORS.values()
    ]
