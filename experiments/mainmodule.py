"""The main module the runner's spawn and forkserver workers import first, as a script's do.

Python's spawn and forkserver start every worker by importing the program's main module (as
``__mp_main__``) before it runs anything: a hand-written script's workers import the script and
all it imports, and code at its top level runs again in each of them. A worker that starts a
process while doing so is stopped by Python ("An attempt has been made to start a new process
before the current process has finished its bootstrapping phase"), which Python's
ProcessPoolExecutor reports as BrokenProcessPool.

The runner is started with ``python -c``, which has no main module for its workers to import. So
it names one: the entry script given by ``--main`` (``adopt(script=...)``), else this file, which
imports the workload's module, the least a script calling the function imports. Run as
``__mp_main__`` in a worker, the code at the bottom does that import.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

# The modules this file imports in a worker, comma-separated (the runner sets it; workers inherit).
IMPORTS_VAR = "CONLAB_MAIN_IMPORTS"
# Set on the runner's __main__ once this module named its file: what it named ("lab" or "script").
_MARK = "_conlab_main"
# While the runner imports a user's module: a directory where a worker stopped by Python at its
# start (it started a process while importing the main module) leaves its name.
STOPPED_VAR = "CONLAB_MAIN_STOPPED"
BOOTSTRAP_WORDS = "bootstrapping phase"  # in Python's RuntimeError for that
# After a worker was stopped so, how long the import may take to end on its own: a pool started
# while a module is imported can wait forever for a worker that never started.
STUCK_AFTER_S = 2.0
POLL_S = 0.1
# Called with the words when an import is stuck so (the runner sends them as an error and ends).
on_stuck = None


# Why a worker runs the main module's top-level code again (completed by the caller's ")").
WHY = (
    "spawn and forkserver start every worker as a fresh interpreter, which imports the program's "
    "main module again to find the functions it is sent (and what that module imports"
)


def stopped_words(module: str, ref: str) -> str:
    """What to tell the user whose ``module`` starts processes at its top level."""
    return (
        f"importing {module!r} for workload {ref!r} starts processes at its top level: {WHY}, "
        f"here {module!r}), so each worker ran that code and Python stopped it before it could "
        "start processes of its own (Python's ProcessPoolExecutor reports this as "
        "BrokenProcessPool, or waits forever when the pool starts during an import); put that "
        "code under `if __name__ == '__main__':`"
    )


class watching:
    """Around the runner's import of a user's ``module``: when a worker it started was stopped
    by Python at its start and the import has not ended ``STUCK_AFTER_S`` later, call
    ``on_stuck`` with the words (else the import would wait for that worker for ever)."""

    def __init__(self, module: str, ref: str):
        self.module, self.ref = module, ref

    def __enter__(self):
        import tempfile
        import threading

        self.directory = tempfile.mkdtemp(prefix="conlab-main-")
        self.before = os.environ.get(STOPPED_VAR)
        os.environ[STOPPED_VAR] = self.directory
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="conlab-main-watch", daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        import time

        seen_at = None
        while not self.done.wait(POLL_S):
            if seen_at is None and os.listdir(self.directory):
                seen_at = time.monotonic()
            if seen_at is not None and time.monotonic() - seen_at >= STUCK_AFTER_S:
                if on_stuck is not None and not self.done.is_set():
                    on_stuck(stopped_words(self.module, self.ref))
                return

    def stopped(self) -> bool:
        """Whether a worker was stopped by Python at its start during the import."""
        try:
            return bool(os.listdir(self.directory))
        except OSError:
            return False

    def __exit__(self, *exc_info) -> None:
        import shutil

        self.done.set()
        if self.before is None:
            os.environ.pop(STOPPED_VAR, None)
        else:
            os.environ[STOPPED_VAR] = self.before
        self.was_stopped = self.stopped()
        shutil.rmtree(self.directory, ignore_errors=True)


def adopt(module: Optional[str] = None, script: Optional[str] = None) -> None:
    """Name the main module this process's spawn and forkserver workers import: ``script`` (an
    absolute path), else this file importing ``module`` (and the modules named before). A
    program with a main module of its own (not the runner's ``python -c``) keeps it."""
    main = sys.modules.get("__main__")
    if main is None:
        return
    if getattr(main, "__file__", None) is not None and not getattr(main, _MARK, None):
        return
    if script is not None:
        main.__file__ = script
        setattr(main, _MARK, "script")
    elif getattr(main, _MARK, None) != "script":
        main.__file__ = os.path.abspath(__file__)
        setattr(main, _MARK, "lab")
    if module:
        named = [m for m in os.environ.get(IMPORTS_VAR, "").split(",") if m]
        os.environ[IMPORTS_VAR] = ",".join(dict.fromkeys([*named, module]))


def adopted() -> Optional[str]:
    """The script named by ``adopt(script=...)`` in this process, if any."""
    main = sys.modules.get("__main__")
    if getattr(main, _MARK, None) == "script":
        return getattr(main, "__file__", None)
    return None


def _nothing() -> None:
    """A worker's whole work when only its start is timed."""


def _start_s(context, script: str) -> tuple[float, int]:
    """How long one worker of ``context`` takes from start to end with ``script`` as the main
    module it imports first, doing nothing else; and its exit code."""
    import time

    main = sys.modules["__main__"]
    named = main.__file__
    main.__file__ = script
    try:
        started = time.perf_counter()
        worker = context.Process(target=_nothing)
        worker.start()
        worker.join()
        return time.perf_counter() - started, worker.exitcode
    finally:
        main.__file__ = named


def start_cost(script: str, start_method: Optional[str]) -> dict:
    """What ``--main script`` adds to a worker's start, measured outside every timed window: a
    spawned worker that imports the script first, against one that imports only the function's
    module (this file). Under fork, workers import nothing at their start: nothing measured.
    Under forkserver, the server imports it once and forks every worker from itself."""
    found: dict = {"script": os.path.abspath(script), "start_method": start_method}
    if start_method not in ("spawn", "forkserver") or adopted() is None:
        return found
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    alone, _ = _start_s(context, os.path.abspath(__file__))
    with_script, code = _start_s(context, found["script"])
    found.update(start_s=with_script, start_s_without=alone, added_s=with_script - alone)
    if code != 0:
        found["exit_code"] = code
    return found


def cost_words(found: dict) -> str:
    """``start_cost``'s figures, in words (a run's note)."""
    script = os.path.basename(str(found.get("script")))
    method = found.get("start_method")
    if method not in ("spawn", "forkserver"):
        return (
            f"--main {script}: {method} workers are copies of the runner and import nothing at "
            "their start, so it added nothing"
        )
    if "start_s" not in found:
        return f"--main {script}: not measured"
    if found.get("exit_code"):
        return (
            f"--main {script}: a worker importing it ended with exit code {found['exit_code']} "
            "(its output is stored with the run)"
        )
    who = (
        "each spawn worker imports it first"
        if method == "spawn"
        else "the forkserver imports it once and forks every worker from itself"
    )
    return (
        f"--main {script}: {who}, as __mp_main__, as Python's own do; a spawned worker took "
        f"{found['start_s'] * 1000:.0f} ms to start with it against "
        f"{found['start_s_without'] * 1000:.0f} ms with the function's module alone "
        f"({found['added_s'] * 1000:+.0f} ms)"
    )


if __name__ == "__mp_main__":  # a spawn or forkserver worker starting: import what a script would
    import importlib as _importlib

    for _name in [m for m in os.environ.get(IMPORTS_VAR, "").split(",") if m]:
        try:
            _importlib.import_module(_name)
        except RuntimeError as _exc:
            _where = os.environ.get(STOPPED_VAR)
            if BOOTSTRAP_WORDS in str(_exc) and _where and os.path.isdir(_where):
                with open(os.path.join(_where, str(os.getpid())), "w") as _note:
                    _note.write(_name)
            raise
