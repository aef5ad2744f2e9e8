"""The executors the lab knows: registered by name, listed, and described for ``conlab list
executors``; the built-in ones (experiments.pools, experiments.interpreter_pool,
experiments.engines) and those of the modules named in ``$CONLAB_EXECUTORS``.

Everything the lab says of an executor is on its class (experiments.executor_base.Executor):
where its tasks run (``workers_are``), whether the runner's CPU clock sees them (``cpu_seen``),
advise's preference and snippet, and whether the Lab ticks it at first. The reports, ``conlab
advise`` and the app read these, never a list of names. To add an executor: write one subclass
of ``Executor`` with ``name``, ``description``, ``run`` and the facts that differ from the
defaults, then ``register`` it: here, or in a module of your own named in ``$CONLAB_EXECUTORS``
(``mod[,mod...]``), which every lab process (the CLI, the app, each runner) imports when this
module loads.
"""

from __future__ import annotations

from typing import Any, Optional

from experiments.engines import Dask, Joblib, Loky, Ray
from experiments.executor_base import (  # noqa: F401 (the names adapters and tests import here)
    Executor,
    ExecutorFailed,
    OnSample,
    Snippet,
    WorkerDied,
    _missing,
    _name_the_dead,
    describe_exit,
)
from experiments.interpreter_pool import Interpreters
from experiments.pools import Asyncio, Pool, Processes, Sequential, Threads

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
    Joblib(),
    Ray(),
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
