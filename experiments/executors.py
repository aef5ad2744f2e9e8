"""Ways of running tasks: one small adapter per executor, behind one interface.

Every adapter's ``run`` builds a fresh executor, maps the task over the items, and returns after
the executor is fully shut down (``shutdown(wait=True)`` or ``close(); join()``): exactly what a
hand-written ``with Executor() as ex: list(ex.map(f, xs))`` pays.

Everything the lab says of an executor is on its class: where its tasks run (``workers_are``),
whether the runner's CPU clock sees them (``cpu_seen``), advise's preference and snippet, and
whether the Lab ticks it at first. The reports, ``conlab advise`` and the app read these, never a
list of names. To add an executor: write one subclass of ``Executor`` with ``name``,
``description``, ``run`` and the facts that differ from the defaults, then ``register`` it: here,
or in a module of your own named in ``$CONLAB_EXECUTORS`` (``mod[,mod...]``), which every lab
process (the CLI, the app, each runner) imports when this module loads.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional

from experiments.timing import (
    interpreter_call,
    interpreter_check,
    timed_call,
    timed_call_async,
    timed_chunk,
)
from experiments.workloads import Workload

# Called with each task's sample as it comes back (for progress); must be cheap.
OnSample = Callable[[tuple], None]


class WorkerDied(RuntimeError):
    """A worker process ended while tasks were outstanding; the message says which and how."""


class ExecutorFailed(RuntimeError):
    """The executor itself could not start (e.g. its cluster is unreachable); says what to do."""


@dataclass(frozen=True)
class Snippet:
    """What advise's ready-to-paste code runs: ``imports`` brings the user's function ``func``
    (``async_func``: its async form's name), ``items`` makes the arguments; then the
    recommended configuration."""

    imports: str
    func: str
    async_func: str
    items: str
    workers: int
    chunksize: Optional[int] = None
    start_method: Optional[str] = None


class Executor:
    """The interface every adapter implements, and the facts the lab reads of it."""

    name = ""
    description = ""
    pickles_tasks = False  # True when the task function crosses a process/interpreter boundary
    # Where its tasks run: "runner" (the runner's own thread), "threads" (threads of the
    # runner's interpreter, sharing its GIL), "interpreters" (threads of the runner, each with
    # an interpreter and a GIL of its own) or "processes" (worker processes of its own).
    workers_are = "runner"
    # Whether the runner's CPU clock counts all of the tasks' CPU time (its own threads, or
    # worker processes it reaps inside the timed window): CPU/wall is read only of these.
    cpu_seen = False
    # Among configurations advise finds tied, the lowest is recommended (fewer resources, no
    # rewrite first).
    preference = 100
    lab_ticked = False  # ticked in the Lab's list of executors when it opens
    # The executor options (experiments/options.py) this executor takes; it ignores or refuses
    # the others, as their rows say.
    options: tuple = ("workers",)

    def unavailable_reason(self) -> Optional[str]:
        """None when this executor can run on this interpreter, else why it cannot."""
        return None

    def implementation(self) -> Optional[str]:
        """Where this executor's code comes from here, when more than one place can provide it
        (recorded with each run as ``executor_implementation``); None otherwise."""
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

    def session(self, job):
        """A context around all of a runner process's repeats, outside every timed window: for
        engines started once per run (a Ray instance), not per repeat. It may give a dict of
        what starting cost (``{"engine_start_s": ...}``), which is stored with the process."""
        import contextlib

        return contextlib.nullcontext()

    def default_start_method(self) -> Optional[str]:
        return None

    def default_chunksize(self, tasks: int, workers: int) -> Optional[int]:
        return None

    def snippet(self, code: Snippet) -> Optional[str]:
        """Ready-to-paste code running the user's function this way; None: advise has none."""
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
    causes = [(pid, code) for pid, code in ended if code != -signal.SIGTERM]
    if causes or not ended:
        return "; ".join(describe_exit(code, pid) for pid, code in causes)
    # Only the pool's own SIGTERMs were seen: the worker that broke it ended unseen.
    stopped = "; ".join(describe_exit(code, pid) for pid, code in ended)
    return f"a worker process terminated abruptly, unseen; then {stopped}"


def _guarded(code: Snippet, head: str, body: str) -> str:
    """A process pool's snippet: ``head`` (imports), then ``body`` (the pool, indented) under
    the main-module guard, which spawn and forkserver need."""
    method = code.start_method or "spawn"
    guard = (
        "# The guard: spawn and forkserver start each worker by importing this module, and\n"
        "# without it every worker would run this code again and start a pool of its own.\n"
        + (
            f"# ({method} is the default here; spawn is on macOS and Windows, forkserver on\n"
            "# Linux from Python 3.14.)\n"
            if method == "fork"
            else ""
        )
    )
    return f'{head}{guard}if __name__ == "__main__":\n    {code.items}\n{body}'


def _chunks(code: Snippet) -> str:
    return f", chunksize={code.chunksize}" if code.chunksize and code.chunksize > 1 else ""


class Processes(Executor):
    name = "processes"
    description = "concurrent.futures.ProcessPoolExecutor: one interpreter per worker"
    pickles_tasks = True
    options = ("workers", "start_method", "chunksize", "max_tasks_per_child", "main")
    workers_are = "processes"
    cpu_seen = True
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


class Pool(Executor):
    name = "pool"
    description = "multiprocessing.Pool: the classic process pool, with chunking"
    pickles_tasks = True
    options = ("workers", "start_method", "chunksize", "max_tasks_per_child", "main")
    workers_are = "processes"
    cpu_seen = True
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


class Interpreters(Executor):
    """InterpreterPoolExecutor: the standard library's on 3.14+, else the PEP 734 backport's
    (``interpreters-pep-734``) on 3.13. Each worker is a thread
    running a fresh interpreter of the same process, with its own GIL and its own modules.

    The backport waits forever for a task whose function cannot be loaded in the worker or
    whose result cannot be sent back (the error happens outside the part that reports it), so
    every task travels as bytes: ``timing.interpreter_call`` loads the function and pickles the
    sample inside the worker, where either failure is raised as the task's own error."""

    name = "interpreters"
    description = (
        "InterpreterPoolExecutor: subinterpreters, one GIL each "
        "(3.14+, or the PEP 734 backport on 3.13)"
    )
    pickles_tasks = True
    workers_are = "interpreters"
    cpu_seen = True
    preference = 30

    def snippet(self, code: Snippet) -> str:
        return (
            "try:  # Python 3.14+\n"
            "    from concurrent.futures import InterpreterPoolExecutor\n"
            "except ImportError:  # Python 3.13: pip install interpreters-pep-734\n"
            "    from interpreters_backport.concurrent.futures.interpreter import (\n"
            "        InterpreterPoolExecutor,\n"
            "    )\n\n"
            "# Each worker is a fresh interpreter: it imports the function by its module's\n"
            "# name, so the function lives in a module, not in the script you run.\n"
            f"{code.imports}\n\n{code.items}\n"
            f"with InterpreterPoolExecutor(max_workers={code.workers}) as ex:\n"
            f"    results = list(ex.map({code.func}, items))\n"
        )

    def unavailable_reason(self):
        return _interpreter_pool()[2]

    def implementation(self) -> Optional[str]:
        return _interpreter_pool()[1]

    def check_workload(self, workload):
        """Load the function in a fresh interpreter, as a worker will: a function of a module
        that cannot be imported there (an extension without subinterpreter support) is
        refused here, before any timing."""
        import pickle

        func = workload.func
        if getattr(func, "__module__", None) == "__main__":
            return (
                f"workload {workload.name!r} is defined in __main__, which executor "
                f"{self.name!r} cannot import in its workers (each worker interpreter has a "
                "__main__ of its own); move the function to a module's top level"
            )
        try:
            payload = pickle.dumps(func)
        except Exception:
            return None  # the pickling check says why, with its fix
        pool_class = _interpreter_pool()[0]
        if pool_class is None:
            return None  # unavailable_reason says why
        with pool_class(max_workers=1, **_interpreter_setup()) as pool:
            try:
                pool.submit(interpreter_check, payload).result()
            except Exception as exc:
                text = (str(exc).strip().splitlines() or [""])[0]
                return (
                    f"workload {workload.name!r} cannot be loaded in a fresh interpreter "
                    f"({type(exc).__name__}: {text}); a module whose extensions do not support "
                    "subinterpreters runs on threads or processes instead"
                )
        return None

    def run(self, job, items: list, on_sample: OnSample) -> None:
        import pickle

        pool_class = _interpreter_pool()[0]
        task = functools.partial(interpreter_call, pickle.dumps(job.workload.func))
        pool = pool_class(max_workers=job.workers, **_interpreter_setup())
        try:
            for sample in pool.map(task, items):
                on_sample(pickle.loads(sample))
        except BaseException:
            # Not `with`: its shutdown(wait=True) would wait for a task that never returns.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)  # what `with` does at the end: part of the timed window


# The backport's distribution, as pip names it. On 3.12 its low-level modules come from another
# one (interpreters-3-12), whose 0.5.0 crashed CPython 3.12.1 at import: the lab does not use it.
_BACKPORT = "interpreters-pep-734"


@functools.cache
def _interpreter_pool() -> tuple:
    """``(InterpreterPoolExecutor, where it comes from, None)`` on this interpreter, or
    ``(None, None, why not and the one command that fixes it)``. Found once: reading the
    installed version costs milliseconds, which a timed repeat must not pay."""
    import concurrent.futures

    version = sys.version.split()[0]
    pool = getattr(concurrent.futures, "InterpreterPoolExecutor", None)
    if pool is not None:
        return pool, f"concurrent.futures (standard library, Python {version})", None
    if sys.implementation.name != "cpython" or sys.version_info < (3, 13):
        return (
            None,
            None,
            f"needs CPython 3.13 with the {_BACKPORT} backport, or 3.14+ (this is "
            f"{sys.implementation.name} {version}); pass --python with one "
            "(see `conlab list pythons`)",
        )
    try:
        from interpreters_backport.concurrent.futures.interpreter import (
            InterpreterPoolExecutor,
        )
    except ImportError:
        return (
            None,
            None,
            f"needs the PEP 734 backport on Python {version}: "
            f"{sys.executable} -m pip install {_BACKPORT}",
        )
    try:
        from importlib.metadata import version as installed

        where = f"interpreters_backport ({_BACKPORT} {installed(_BACKPORT)})"
    except Exception:  # installed without metadata (a copied tree): the module still runs
        where = "interpreters_backport"
    return InterpreterPoolExecutor, where, None


def _interpreter_setup() -> dict:
    """The pool's initializer: each worker interpreter starts with the module path its
    interpreter was started with, not the one the runner has now (the lab's and the user's
    directories): ``exec`` of one assignment, a built-in that any interpreter can load."""
    code = f"import sys; sys.path[:] = {list(sys.path)!r}"
    return {"initializer": exec, "initargs": (code, {})}


def _scheme(address: Optional[str]) -> str:
    """The scheme of a cluster address (``tcp`` in ``tcp://host:8786``), "" for none."""
    return (address or "").rpartition("://")[0]


def _missing(module: str, extra: str) -> Optional[str]:
    """Why an executor from an optional extra is unavailable (found without importing it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a finder that refuses it, or a broken install
        found = None
    if found is None:
        return f"needs the {extra!r} extra: pip install 'concurrency-lab[{extra}]'"
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


class Dask(Executor):
    name = "dask"
    description = "dask.distributed: a LocalCluster of --workers processes, or --scheduler ADDR"
    pickles_tasks = True
    options = ("workers", "scheduler")
    workers_are = "processes"  # a nanny's children: the runner's clock does not see them
    preference = 70
    connect_timeout_s = 10

    def unavailable_reason(self):
        return _missing("distributed", "dask")

    def unsupported_option(self, job) -> Optional[str]:
        if job.scheduler is not None and job.workload.service is not None:
            return (
                f"workload {job.workload.name!r} talks to a server the runner starts on this "
                "machine, which an existing cluster's workers cannot reach; drop --scheduler "
                "to use a LocalCluster"
            )
        if _scheme(job.scheduler) == "ray":
            return (
                f"--scheduler {job.scheduler} is a Ray address, which dask cannot use; "
                "pass a dask scheduler (tcp://HOST:8786), or choose -e ray"
            )
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


EXECUTORS: dict[str, Executor] = {}
# Where its tasks run, as ``Executor.workers_are`` may say.
WORKERS_ARE = ("runner", "threads", "interpreters", "processes")


def register(executor: Executor) -> Executor:
    """Make ``executor`` one the lab runs, lists, reports, advises on and shows in the Lab
    (in the order registered). ValueError when its name is taken or its facts are not ones the
    lab knows."""
    name = executor.name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"an executor's name is a word (letters, digits, _), not {name!r}")
    if name in EXECUTORS and EXECUTORS[name] is not executor:
        raise ValueError(f"executor {name!r} is registered already; give yours another name")
    if executor.workers_are not in WORKERS_ARE:
        raise ValueError(
            f"executor {name!r}: workers_are is one of {', '.join(WORKERS_ARE)}, "
            f"not {executor.workers_are!r}"
        )
    EXECUTORS[name] = executor
    return executor


for _executor in (
    Sequential(),
    Threads(),
    Processes(),
    Pool(),
    Asyncio(),
    Interpreters(),
    Loky(),
    Dask(),
):
    register(_executor)


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
            "implementation": e.implementation(),
            "workers_are": e.workers_are,
            "cpu_seen": e.cpu_seen,
            "lab_ticked": e.lab_ticked,
        }
        for e in EXECUTORS.values()
    ]


def describe_this() -> int:
    """``describe()`` as one JSON line on stdout: how another interpreter says what it can run
    (``experiments.pythons.executors_under``)."""
    import json

    print(json.dumps(describe()))
    return 0


# --- engines from the optional extras: joblib and Ray ---------------------------------------------


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


class Ray(Executor):
    """Ray tasks: one remote call of the user's function per item, ``max_retries=0`` (a task
    whose worker dies fails the run, as in every process executor), on a local Ray instance
    started once per runner process (``session``, outside the timed windows) or an existing
    cluster named by ``--scheduler``."""

    name = "ray"
    description = "Ray remote tasks: a local ray.init(num_cpus=workers) per run, or --scheduler"
    pickles_tasks = True
    workers_are = "processes"  # Ray's worker processes, not the runner's children
    preference = 80
    options = ("workers", "scheduler")

    def unavailable_reason(self):
        return _missing("ray", "ray")

    def unsupported_option(self, job) -> Optional[str]:
        if job.scheduler is not None and job.workload.service is not None:
            return (
                f"workload {job.workload.name!r} talks to a server the runner starts on this "
                "machine, which an existing cluster's workers cannot reach; drop --scheduler "
                "to start a local Ray"
            )
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
        return super().unsupported_option(job)

    def session(self, job):
        import contextlib

        @contextlib.contextmanager
        def started():
            import logging

            import ray

            options = dict(
                include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
            )
            import time

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


register(Joblib())
register(Ray())

# The executors of the modules named in $CONLAB_EXECUTORS: a module registers its own when
# imported. One that cannot be imported is named here, with why, for the faces to say.
NOT_LOADED: dict[str, str] = {}


def _import_named(names: str) -> None:
    import importlib

    for module in filter(None, (n.strip() for n in names.split(","))):
        try:
            importlib.import_module(module)
        except Exception as exc:  # a user's module: any error it raises is its own
            NOT_LOADED[module] = f"{type(exc).__name__}: {exc}"


def not_loaded() -> Optional[str]:
    """Why a module $CONLAB_EXECUTORS names could not be imported, and what to do; None: each
    was."""
    if not NOT_LOADED:
        return None
    module, why = next(iter(NOT_LOADED.items()))
    return (
        f"$CONLAB_EXECUTORS names {module!r}, which cannot be imported ({why}); put it on "
        "PYTHONPATH, or fix or unset CONLAB_EXECUTORS"
    )


def _from_environment() -> None:
    import os

    _import_named(os.environ.get("CONLAB_EXECUTORS", ""))


_from_environment()
