"""The standard library's executors: a plain loop, a thread pool, a process pool
(concurrent.futures and multiprocessing.Pool) and asyncio. Each ``run`` builds a fresh executor,
maps the task over the items, and returns after the executor is fully shut down: exactly what a
hand-written ``with Executor() as ex: list(ex.map(f, xs))`` pays."""

from __future__ import annotations

import functools
import sys
import time
from typing import Optional

from experiments.executor_base import (
    Executor,
    OnSample,
    Snippet,
    WorkerDied,
    _chunks,
    _default_start_method,
    _drain,
    _guarded,
    _missing,
    _mp_context,
    _name_the_dead,
    describe_exit,
)
from experiments.timing import timed_call, timed_call_async, timed_chunk


class Sequential(Executor):
    name = "sequential"
    description = "a plain loop in one thread: the baseline every speedup is measured against"
    options = ()
    cpu_seen = True
    preference = 0
    lab_ticked = True

    def snippet(self, code: Snippet) -> str:
        return f"{code.imports}\n\n{code.items}\nresults = [{code.func}(x) for x in items]\n"

    def run(self, job, items: list, on_sample: OnSample) -> None:
        func = job.workload.func
        for item in items:
            on_sample(timed_call(func, item))


class Threads(Executor):
    name = "threads"
    description = "concurrent.futures.ThreadPoolExecutor: shares the GIL"
    workers_are = "threads"
    cpu_seen = True
    preference = 10
    lab_ticked = True

    def snippet(self, code: Snippet) -> str:
        return (
            f"from concurrent.futures import ThreadPoolExecutor\n\n{code.imports}\n\n"
            f"{code.items}\nwith ThreadPoolExecutor(max_workers={code.workers}) as ex:\n"
            f"    results = list(ex.map({code.func}, items))\n"
        )

    def run(self, job, items: list, on_sample: OnSample) -> None:
        from concurrent.futures import ThreadPoolExecutor

        call = functools.partial(timed_call, job.workload.func)
        with ThreadPoolExecutor(max_workers=job.workers) as pool:
            _drain(pool.map(call, items), on_sample)


class _ProcessPool(Executor):
    """What the standard library's process pools share: the function and its items pickled to
    worker processes the runner starts and reaps, and the options of such a pool."""

    pickles_tasks = True
    options = ("workers", "start_method", "chunksize", "max_tasks_per_child", "main")
    workers_are = "processes"
    cpu_seen = True

    def default_start_method(self):
        return _default_start_method()


class Processes(_ProcessPool):
    name = "processes"
    description = "concurrent.futures.ProcessPoolExecutor: one interpreter per worker"
    preference = 40
    lab_ticked = True

    def snippet(self, code: Snippet) -> str:
        head = (
            "import multiprocessing\nfrom concurrent.futures import ProcessPoolExecutor\n\n"
            f"{code.imports}\n\n"
        )
        body = (
            f"    context = multiprocessing.get_context({code.start_method or 'spawn'!r})\n"
            f"    with ProcessPoolExecutor(max_workers={code.workers}, mp_context=context) as ex:\n"
            f"        results = list(ex.map({code.func}, items{_chunks(code)}))\n"
        )
        return _guarded(code, head, body)

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
                return (
                    "--max-tasks-per-child cannot be used with the fork start method; "
                    "pass --start-method spawn or forkserver"
                )
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
        failed: list = []  # futures that raised: one fails the run, whichever result is awaited
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
                futures[-1].add_done_callback(functools.partial(_note_failure, failed))
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
                        if failed:  # a later task raised while this one runs on, maybe forever
                            failed[0].result()
                        idle_since = self._check_workers(pool, seen, idle_since, futures, job)
                if chunksize == 1:
                    on_sample(result)
                else:
                    for sample in result:
                        on_sample(sample)
        except BrokenProcessPool as exc:  # loky's worker-death errors are subclasses of it
            self._abandon(pool)
            seen.update(getattr(pool, "_processes", None) or {})
            named = _name_the_dead(seen) or str(exc)
            if self.name == "processes":
                named += " (Python's ProcessPoolExecutor reports this as BrokenProcessPool)"
            raise WorkerDied(named) from exc
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


def _note_failure(failed: list, future) -> None:
    if not future.cancelled() and future.exception() is not None:
        failed.append(future)


class Pool(_ProcessPool):
    name = "pool"
    description = "multiprocessing.Pool: the classic process pool, with chunking"
    preference = 50

    def snippet(self, code: Snippet) -> str:
        method = code.start_method or "spawn"
        body = (
            f"    with multiprocessing.get_context({method!r}).Pool({code.workers}) as pool:\n"
            f"        results = pool.map({code.func}, items{_chunks(code)})\n"
        )
        return _guarded(code, f"import multiprocessing\n\n{code.imports}\n\n", body)

    # How often to look for dead workers while waiting: Pool itself would wait forever.
    poll_s = 0.05

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
                        _raise_if_a_later_chunk_raised(results)
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
        the middle of sending a result, as terminate() itself can do. Past
        ``terminate_within_s`` the workers are killed and the pool's threads (daemons) are
        left to end with the runner."""
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


def _raise_if_a_later_chunk_raised(results) -> None:
    """The exception of a chunk that failed while an earlier one runs on (maybe forever):
    ``imap`` keeps results that came out of order in its ``_unsorted``, as (ok, value)."""
    for ok, value in list(getattr(results, "_unsorted", {}).values()):
        if not ok:
            raise value


class Asyncio(Executor):
    name = "asyncio"
    description = "coroutines on one event loop, at most `workers` at a time (a semaphore)"
    options = ("workers", "loop")
    cpu_seen = True
    preference = 20

    def snippet(self, code: Snippet) -> str:
        afunc = code.async_func
        return (
            f"import asyncio\n\n{code.imports.rsplit(' ', 1)[0]} {afunc}\n\n\n"
            f"async def main(items):\n    limit = asyncio.Semaphore({code.workers})\n\n"
            f"    async def one(x):\n        async with limit:\n"
            f"            return await {afunc}(x)\n\n"
            "    return await asyncio.gather(*(one(x) for x in items))\n\n\n"
            f"{code.items}\nresults = asyncio.run(main(items))\n"
        )

    def default(self, option, tasks, workers):
        return "asyncio" if option == "loop" else super().default(option, tasks, workers)

    def unsupported_option(self, job) -> Optional[str]:
        if getattr(job, "loop", None) == "uvloop":
            reason = _missing("uvloop", "uvloop")
            if reason:
                return f"--loop uvloop {reason}"
        return super().unsupported_option(job)

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

        if getattr(job, "loop", None) == "uvloop":
            import uvloop

            uvloop.run(main())  # asyncio.run with uvloop's loop, on every Python uvloop supports
        else:
            asyncio.run(main())
