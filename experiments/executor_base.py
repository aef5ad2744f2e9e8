"""The interface every executor adapter implements (``Executor``), what advise's snippet is made
from (``Snippet``), the errors a run raises, and the plumbing several adapters share: naming a dead
worker, a process pool's guarded snippet, an optional extra's availability."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional

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
