"""Advise's probes (experiments.probe, in a runner process of its own) and how to read them: whether
a function waits or works, whether two threads overlap, what a task's dispatch costs, whether the
machine was busy; and the figures in words."""

from __future__ import annotations

from typing import Optional

from experiments import launch

# Below this CPU/wall a function waits (sleep, a socket) rather than works.
WAITS_BELOW = 0.2
# Two threads at least this much faster than one after the other: the calls overlap.
OVERLAPS_FROM = 1.3
# Voluntary switches of the two threads per 10 ms: a thread holding the GIL makes the other
# wait every 5 ms switch interval (2-4 per 10 ms here for pure Python; hashlib 0-0.3).
FEW_GIL_WAITS = 0.5
MANY_GIL_WAITS = 1.5
# ... without those counts (not Linux): under this speedup, on a machine that gave the probe
# its CPU, they ran one at a time.
SERIAL_BELOW = 1.1
HAD_THE_CPU = 0.9
# The probes waited for a core this share of their time: the machine is busy (say so).
BUSY_FROM = 0.1
# ... or the 1-minute load average per core was this high (the lab itself adds about one
# process: 0.5 a core on two).
BUSY_LOAD = 1.0


class AdviseFailed(Exception):
    """The function failed while being probed (it raised, ended its process): nothing was
    measured or stored. One line naming what happened and the fix."""


def characterise(workload: str, size, timeout_s: float, python: Optional[str] = None) -> dict:
    """The probes of ``workload`` at ``size`` (int, or "auto"); AdviseFailed when a call failed,
    SpecError when they take over ``timeout_s``."""
    found = launch.probe(workload, size, python, timeout_s=timeout_s)
    if "failed" in found:
        raise AdviseFailed(
            f"{workload} failed while being probed ({found['failed']}), so nothing was measured; "
            "fix the function so that it runs as f(size)"
        )
    return found


def _ms(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 0.001:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def _bytes(count: Optional[float]) -> str:
    if count is None:
        return "?"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count:.0f} B"


def _share(fraction: float) -> str:
    return f"{fraction:.1%}" if fraction < 0.1 else f"{fraction:.0%}"


def dispatch_s(probes: dict) -> float:
    """What one task costs to send to a worker process and back: the pool's round trip plus
    pickling its argument and result (measured by the probes)."""
    extra = (probes["argument"].get("s") or 0) + (probes["result"].get("s") or 0)
    return probes["process_pool"]["round_trip_s"] + extra


def waits(probes: dict) -> bool:
    return (probes.get("cpu_per_wall") or 0) < WAITS_BELOW


def busy(probes: dict) -> bool:
    """Whether other work crowded the machine: the probes waited for a core a good share of
    their time, or the load average per core was high before the probes or after the sweep."""
    return (probes.get("core_wait_share") or 0) >= BUSY_FROM or _load(probes) >= BUSY_LOAD


def _load(probes: dict) -> float:
    return max(probes.get("load_per_core") or 0, probes.get("load_per_core_after") or 0)


def _crowding(probes: dict) -> str:
    """What the probes measured of other work on the machine, in words."""
    waited = _share(probes.get("core_wait_share") or 0)
    return (
        f"the probe waited {waited} of its time for a core; load up to {_load(probes):.1f} per core"
    )


def thread_verdict(probes: dict) -> str:
    """``overlap``, ``serial``, ``crowded`` or ``unclear``: what two threads calling at once
    showed. Their speedup when it is plain; on a busy machine, nothing more (its cores make
    threads wait as the GIL does); else how often they waited for the GIL; else, where that is
    not known, a speedup of about 1 when the probe had a core."""
    two = probes["two_threads"]
    speedup, waits = two.get("speedup") or 0, two.get("gil_waits_per_10ms")
    if speedup >= OVERLAPS_FROM:
        return "overlap"
    if busy(probes):
        # Other work's cores also make threads wait (a switch a turn), and a socket's waits look
        # the same: on a busy machine no figure of the probe says "the GIL".
        return "crowded"
    if waits is not None:
        # A call that does not keep its core busy switches for its own waits (a socket, a
        # pipe) as often as for the GIL: many switches say "serial" only of one that does.
        worked = (probes.get("cpu_per_wall") or 0) >= HAD_THE_CPU
        return (
            "overlap"
            if waits < FEW_GIL_WAITS
            else "serial"
            if waits >= MANY_GIL_WAITS and worked
            else ("unclear")
        )
    if speedup < SERIAL_BELOW and (probes.get("cpu_per_wall") or 0) >= HAD_THE_CPU:
        return "serial"
    return "unclear"


def _thread_words(probes: dict) -> str:
    """The two-thread probe's figures, in words."""
    two = probes["two_threads"]
    words = (
        f"two threads calling it at once ran {two.get('speedup') or 0:.2f}x as fast as one "
        "after the other"
    )
    if two.get("gil_waits_per_10ms") is not None:
        words += f" and waited for the GIL {two['gil_waits_per_10ms']:.1f} times per 10 ms"
    return words
