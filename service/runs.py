"""Stored runs as lists show them (`conlab runs`, the Runs pane): pages, filters across
databases, one run's detail, its tag, deleting and pruning."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Optional

from service.databases import Sources, engine_for
from service.reports import report


def complete_selection(db: Optional[str], typed: str) -> Optional[str]:
    """``typed`` (a selection being written) with its last term completed from what ``db``
    holds: a key (``exec`` -> ``executor:``) or a stored value (``tag:be`` -> ``tag:before``);
    None when nothing stored completes it."""
    from storage.queries import SELECTION_KEYS, key_values

    head, comma, last = typed.rpartition(",")
    before = head + comma
    key, colon, value = last.lstrip().partition(":")
    if not colon:
        keys = [k for k in SELECTION_KEYS if k.startswith(key) and key]
        return f"{before}{keys[0]}:" if keys else None
    with engine_for(db, create=False) as engine:
        found = [v for v in key_values(engine, key, value) if v != value]
    return f"{before}{key}:{found[0]}" if found else None


def runs_page(db: Optional[str], text: str = "", offset: int = 0, limit: int = 200) -> list:
    """One page of the stored runs in ``db`` whose row holds ``text`` (``tag:X``: the tag X),
    newest first, from the ``offset``-th (runs left `running` by a recorder that is gone are
    marked interrupted before the first page)."""
    from storage.listing import open_runs
    from storage.queries import RunFilter

    with open_runs(db) as runs:
        if not offset:
            runs.mark_interrupted()
        return list(runs.stream(RunFilter(text=text, offset=offset, limit=limit)))


def list_runs(db: Optional[str], tag: Optional[str] = None, *, create: bool = True) -> list[dict]:
    """Every stored run in ``db`` as run objects, newest first; runs left `running` by a
    recorder that is gone are marked interrupted first."""
    from storage.queries import list_runs as stored_runs
    from storage.queries import mark_interrupted

    with engine_for(db, create=create) as engine:
        mark_interrupted(engine)
        return stored_runs(engine, tag=tag)  # newest first


@contextmanager
def stored_runs(sources: Sources, chosen) -> Iterator[tuple[Iterator[dict], int]]:
    """The runs of ``sources`` (label, db) that ``chosen`` (storage.queries.RunFilter) picks,
    newest first across the databases, streamed; and how many they hold without its limit.
    Runs left `running` by a recorder that is gone are marked interrupted first."""
    import heapq
    from contextlib import ExitStack

    from storage.listing import open_runs

    with ExitStack() as stack:
        streams, total = [], 0
        for label, db in sources:
            runs = stack.enter_context(open_runs(db))
            runs.mark_interrupted()
            one = replace(chosen, label=label)
            total += runs.count(one)
            streams.append(runs.stream(one))
        merged = heapq.merge(*streams, key=lambda r: r.get("created_at") or "", reverse=True)
        if chosen.limit is not None:
            merged = itertools.islice(merged, chosen.limit)
        yield merged, total


def prune_runs(db: Optional[str], before, keep_tags, include_tagged: bool, dry_run: bool) -> dict:
    """`conlab db prune` (storage.upkeep.prune) on ``db``."""
    from storage.upkeep import prune

    with engine_for(db, create=False, writer=not dry_run) as engine:
        return prune(engine, before, keep_tags, include_tagged, dry_run)


# The columns of a list of runs, in `conlab runs` and the app's Runs table alike.
RUN_COLUMNS = (
    "run",
    "created",
    "machine",
    "python",
    "workload",
    "executor",
    "workers",
    "status",
    "median",
    "tag",
)


def run_row(run: dict) -> dict[str, Any]:
    """One run as a list shows it, by RUN_COLUMNS: numbers stay numbers (to sort)."""
    median = run["median_s"]
    return {
        "run": run["run_id"][:8],
        "created": iso_seconds(run.get("created_at")),
        "machine": run.get("machine") or "?",
        "python": run.get("python") or "?",
        "workload": run["workload"],
        "executor": run["executor"],
        "workers": run["workers"],
        "status": run["status"],
        "median": f"{median * 1000:.1f} ms" if median is not None else "",
        "tag": run["tag"] or "",
    }


def iso_seconds(moment: Any) -> str:
    """A stored time as every command and pane shows it: ISO 8601, UTC, to the second
    (2026-11-25T21:03:07Z); text that is no time is shown as it is."""
    from datetime import datetime, timezone

    if moment is None:
        return ""
    if not isinstance(moment, datetime):
        try:
            moment = datetime.fromisoformat(str(moment).replace("Z", "+00:00"))
        except ValueError:
            return str(moment)
    if moment.tzinfo is None:  # SQLite keeps no zone; the lab writes UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def newest_first(runs: list[dict]) -> list[dict]:
    """Runs of several databases by creation time, the newest first; runs of one second keep
    the order each database gave them (its own, finer)."""
    return sorted(runs, key=lambda r: r.get("created_at") or "", reverse=True)


def run_detail(db: Optional[str], run: dict) -> dict[str, Any]:
    """What the run's row in a list leaves out: its environment, error detail, stderr, and the
    reports' warnings for it."""
    from storage.browse import run_detail as stored_detail

    with engine_for(db) as engine:
        detail = stored_detail(engine, run["run_id"])
    return {**detail, "warnings": run_warnings(db, run)}


def run_warnings(db: Optional[str], run: dict) -> list[str]:
    """The reports' stability warnings for one run's configuration, as a report gives them."""
    if run["status"] != "ok":
        return []
    summary = report([("db", db)], f"run:{run['run_id']}").summary
    if summary.empty:
        return []
    # Alone, any run lacks its sequential baseline: that one says nothing about this run.
    return [w for w in summary.iloc[0]["warnings"] if "no sequential run" not in w]


def tag_run(db: Optional[str], run_id: str, tag: Optional[str]) -> None:
    """Set one run's tag (empty or None removes it)."""
    from storage.browse import set_tag

    with engine_for(db, writer=True) as engine:
        set_tag(engine, run_id, tag or None)


def delete_run(db: Optional[str], run_id: str) -> None:
    """Delete one run and its measurements."""
    from storage.browse import delete_run as stored_delete

    with engine_for(db, writer=True) as engine:
        stored_delete(engine, run_id)


def run_filter(**chosen: Any):
    """Which stored runs a list shows (storage.queries.RunFilter: tag, selection, since, limit,
    label, text, offset)."""
    from storage.queries import RunFilter

    return RunFilter(**chosen)
