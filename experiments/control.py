"""The control: a fixed piece of work every runner process times before its first repeat and
right after each one (outside every timed window), in the same process and memory layout as the
workload.

Two runs measured minutes apart each met the machine's speed of their own minutes (this VM holds
a level for tens of seconds and moves 5-8% between levels). Dividing a process's workload time
by its control time cancels the level that process met, so stored runs can be compared across
sweeps; ``storage.stats.controlled`` decides when that is sound (the control must be seen to
track the workload).

The work is versioned: a change to it is a new ``VERSION``, and runs timed with different
versions are never compared through it. Standard library only (the runner imports it).
"""

from __future__ import annotations

import hashlib
import time

VERSION = 1
# Timed after every repeat rather than only around them all, so a process's control samples the
# level over the whole time its repeats took: a few ms each time, about 1% of a default sweep.
LOOP_N = 20_000  # a pure-Python loop: ~1.8 ms here
HASH_BLOCKS = 128  # sha256 of 128 x 16 KiB: ~1.5 ms here
_BLOCK = bytes(range(256)) * 64


def _loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def _hash(blocks: int) -> bytes:
    digest = hashlib.sha256()
    for _ in range(blocks):
        digest.update(_BLOCK)
    return digest.digest()


def _timed(work, argument) -> int:
    start = time.perf_counter_ns()
    work(argument)
    return time.perf_counter_ns() - start


def measure() -> dict:
    """The control's times now, in ns: ``{"version", "loop_ns", "hash_ns"}``."""
    return {
        "version": VERSION,
        "loop_ns": _timed(_loop, LOOP_N),
        "hash_ns": _timed(_hash, HASH_BLOCKS),
    }
