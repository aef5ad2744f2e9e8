"""Worker interpreters: InterpreterPoolExecutor, the standard library's on 3.14+ or the PEP 734
backport's on 3.13, and where this interpreter finds it."""

from __future__ import annotations

import functools
import sys
from typing import Optional

from experiments.executor_base import Executor, OnSample, Snippet
from experiments.timing import interpreter_call, interpreter_check


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
