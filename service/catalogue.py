"""What the lab knows of this machine and the machines in a database."""

from __future__ import annotations

from typing import Any, Optional


def machines(db: Optional[str]) -> list[dict[str, Any]]:
    """The machines in ``db`` (see storage.queries.machine_objects), read as the runs are
    listed (storage.listing: a lab file through sqlite3 alone)."""
    from storage.listing import open_runs

    with open_runs(db) as stored:
        return stored.machines()


def this_machine() -> dict[str, Any]:
    """This machine's and interpreter's facts, as recorded with every run."""
    from experiments.environment import collect

    return collect()


def workloads() -> dict:
    """The built-in workloads by name (experiments.workloads.Workload: description, default
    size, whether it has an async form)."""
    from experiments.workloads import WORKLOADS

    return WORKLOADS


def executors(python: Optional[str] = None) -> list[dict]:
    """Every executor: its name, description, whether it is available (under ``python``, as
    `conlab run --python` runs it; default this one) and why not."""
    from experiments.executors import describe
    from experiments.pythons import executors_under

    return describe() if python is None else executors_under(python)


def interpreters() -> list[dict]:
    """The Python interpreters found on this machine (3.9 and newer), for --python."""
    from experiments.pythons import discover

    return discover()


def environment(python: Optional[str] = None) -> dict[str, Any]:
    """The facts of this machine and ``python`` (default this one), as recorded with a run."""
    from experiments import launch

    return launch.environment(python)


def fitness(info: dict[str, Any]) -> tuple[tuple[str, ...], list[str]]:
    """The fields that say whether a machine is fit to measure, and its problems in ``info``
    (``environment``'s facts), each with its fix."""
    from experiments.environment import FITNESS_FIELDS, problems

    return tuple(FITNESS_FIELDS), problems(info)


def executors_not_loaded() -> Optional[str]:
    """Why a module $CONLAB_EXECUTORS names cannot be imported, in one line; None when each
    loads (importing the executors to find out)."""
    from experiments.executors import not_loaded

    return not_loaded()


def interpreter(path: str) -> Optional[dict]:
    """What the interpreter at ``path`` is (as ``interpreters`` lists one), or None when it is
    no Python this lab can run."""
    from experiments.pythons import probe

    return probe(path)
