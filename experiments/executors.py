"""Ways of running tasks: one small adapter per executor, behind one interface.

Every adapter's ``run`` builds a fresh executor, maps the task over the items, and returns after
the executor is fully shut down (``shutdown(wait=True)`` or ``close(); join()``): exactly what a
hand-written ``with Executor() as ex: list(ex.map(f, xs))`` pays. To add an executor: write one
class with ``name``, ``description`` and ``run``, then add one line to ``EXECUTORS``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterable
from typing import Any, Callable, Optional

from experiments.workloads import (
    Workload,
    install,
    timed_call,
    timed_call_async,
    timed_installed,
    timed_installed_chunk,
)

# Called with each task's sample as it comes back (for progress); must be cheap.
OnSample = Callable[[tuple], None]


class WorkerDied(RuntimeError):
    """A worker process ended while tasks were outstanding; the message says which and how."""


class Executor:
    """The interface every adapter implements."""

    name = ""
    description = ""
    pickles_tasks = False  # True when the task function crosses a process/interpreter boundary
    takes_start_method = False
    takes_workers = True
    takes_chunksize = False

    def unavailable_reason(self) -> Optional[str]:
        """None when this executor can run on this interpreter, else why it cannot."""
        return None

    def check_workload(self, workload: Workload) -> Optional[str]:
        """None when this executor can run ``workload``, else why it cannot and what to do."""
        return None

    def default_start_method(self) -> Optional[str]:
        return None

    def default_chunksize(self, tasks: int, workers: int) -> Optional[int]:
        return None

    def run(
        self,
        workload: Workload,
        items: list,
        workers: int,
        start_method: Optional[str],
        chunksize: Optional[int],
        on_sample: OnSample,
    ) -> None:
        raise NotImplementedError


def _drain(results: Iterable[tuple], on_sample: OnSample) -> None:
    for sample in results:
        on_sample(sample)


class Sequential(Executor):
    name = "sequential"
    description = "a plain loop in one thread: the baseline every speedup is measured against"
    takes_workers = False

    def run(self, workload, items, workers, start_method, chunksize, on_sample):
        func = workload.func
        for item in items:
            on_sample(timed_call(func, item))


class Threads(Executor):
    name = "threads"
    description = "concurrent.futures.ThreadPoolExecutor: shares the GIL"

    def run(self, workload, items, workers, start_method, chunksize, on_sample):
        from concurrent.futures import ThreadPoolExecutor

        call = functools.partial(timed_call, workload.func)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            _drain(pool.map(call, items), on_sample)


def _mp_context(start_method: Optional[str]):
    import multiprocessing

    return multiprocessing.get_context(start_method)


def _default_start_method() -> str:
    import multiprocessing

    return multiprocessing.get_context().get_start_method()


def _describe_exit(pid: int, exitcode: Optional[int]) -> str:
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            signame = signal.Signals(-exitcode).name
        except ValueError:
            signame = f"signal {-exitcode}"
        return f"worker pid {pid} was killed by {signame}"
    return f"worker pid {pid} exited with code {exitcode}"


class Processes(Executor):
    name = "processes"
    description = "concurrent.futures.ProcessPoolExecutor: one interpreter per worker"
    pickles_tasks = True
    takes_start_method = True
    takes_chunksize = True

    def default_start_method(self):
        return _default_start_method()

    def default_chunksize(self, tasks, workers):
        return 1  # ProcessPoolExecutor.map's own default

    def run(self, workload, items, workers, start_method, chunksize, on_sample):
        from concurrent.futures import ProcessPoolExecutor
        from concurrent.futures.process import BrokenProcessPool

        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_mp_context(start_method),
            initializer=install,
            initargs=(workload.func,),
        ) as pool:
            results = pool.map(timed_installed, items, chunksize=chunksize or 1)
            # map() has submitted everything, so the workers exist: keep them to name the dead.
            processes = dict(getattr(pool, "_processes", None) or {})
            try:
                _drain(results, on_sample)
            except BrokenProcessPool as exc:
                dead = [
                    _describe_exit(pid, p.exitcode)
                    for pid, p in processes.items()
                    if p.exitcode not in (None, 0)
                ]
                raise WorkerDied("; ".join(dead) or str(exc)) from exc


class Pool(Executor):
    name = "pool"
    description = "multiprocessing.Pool: the classic process pool, with chunking"
    pickles_tasks = True
    takes_start_method = True
    takes_chunksize = True

    # How often to look for dead workers while waiting: Pool itself would wait forever.
    poll_s = 0.05

    def default_start_method(self):
        return _default_start_method()

    def default_chunksize(self, tasks, workers):
        # Pool.map's own rule, so imap (which streams results for progress) chunks the same way.
        chunksize, extra = divmod(tasks, workers * 4)
        return chunksize + 1 if extra else max(chunksize, 1)

    def run(self, workload, items, workers, start_method, chunksize, on_sample):
        import multiprocessing

        # Chunks are made here as Pool.map makes them, and sent through imap(chunksize=1), whose
        # iterator can wait with a timeout: that is how a dead worker is noticed.
        chunksize = chunksize or self.default_chunksize(len(items), workers)
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        pool = _mp_context(start_method).Pool(
            workers, initializer=install, initargs=(workload.func,)
        )
        try:
            workers_seen = list(getattr(pool, "_pool", []))
            results = pool.imap(timed_installed_chunk, chunks)
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
            pool.terminate()
            pool.join()
            raise
        pool.close()
        pool.join()

    @staticmethod
    def _raise_if_a_worker_died(pool, workers_seen: list) -> None:
        # Pool replaces a dead worker silently and the lost task never completes (CPython
        # gh-66587): any worker exit while tasks are outstanding is a death.
        for process in workers_seen + list(getattr(pool, "_pool", [])):
            if process not in workers_seen:
                workers_seen.append(process)
            if process.exitcode is not None:
                raise WorkerDied(_describe_exit(process.pid, process.exitcode))


class Asyncio(Executor):
    name = "asyncio"
    description = "coroutines on one event loop, at most `workers` at a time (a semaphore)"

    def check_workload(self, workload):
        if workload.async_func is None:
            return (
                f"workload {workload.name!r} has no async form, so asyncio cannot run it; "
                "pick sleep or tiny, or an `async def` function"
            )
        return None

    def run(self, workload, items, workers, start_method, chunksize, on_sample):
        import asyncio

        async def one(semaphore, item):
            async with semaphore:
                sample = await timed_call_async(workload.async_func, item)
            on_sample(sample)

        async def main():
            semaphore = asyncio.Semaphore(workers)
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

    def run(self, workload, items, workers, start_method, chunksize, on_sample):
        from concurrent.futures import InterpreterPoolExecutor

        with InterpreterPoolExecutor(
            max_workers=workers, initializer=install, initargs=(workload.func,)
        ) as pool:
            _drain(pool.map(timed_installed, items), on_sample)


EXECUTORS: dict[str, Executor] = {
    e.name: e for e in (Sequential(), Threads(), Processes(), Pool(), Asyncio(), Interpreters())
}


def describe() -> list[dict[str, Any]]:
    """Every executor with its availability here: what ``conlab list executors`` shows."""
    return [
        {
            "name": e.name,
            "description": e.description,
            "available": e.unavailable_reason() is None,
            "reason": e.unavailable_reason(),
            "pickles_tasks": e.pickles_tasks,
            "takes_start_method": e.takes_start_method,
            "default_start_method": e.default_start_method() if e.takes_start_method else None,
        }
        for e in EXECUTORS.values()
    ]
