"""A task timeline's lanes and colours, one definition for the app's live timeline and the HTML
report's: one lane per worker (pid, thread) in order of first appearance, named by thread when
all ran in one process, else by pid."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7")


def lane_numbers(workers: Iterable[tuple[Any, Any]]) -> dict[tuple[Any, Any], int]:
    """Each (pid, thread) worker's lane number, in order of first appearance."""
    return {worker: n for n, worker in enumerate(dict.fromkeys(workers))}


def lane_label(lanes: dict[tuple[Any, Any], int], worker: tuple[Any, Any]) -> str:
    """``thread N`` when every lane is a thread of one process, else ``pid P``."""
    one_pid = len({pid for pid, _ in lanes}) == 1
    return f"thread {lanes[worker] + 1}" if one_pid and len(lanes) > 1 else f"pid {worker[0]}"
