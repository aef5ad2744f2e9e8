"""Ending every process a run started, wherever it went.

A worker that calls ``os.setsid()``, or a task that daemonises (the double fork), leaves the
runner's process group, so one ``killpg`` cannot reach it. The runner therefore makes itself a
child subreaper (Linux): a process below it whose parent ends becomes the runner's child, not
init's, and so stays in the runner's tree, which can be walked from ``/proc`` and ended -- by
the runner as it exits, or by the parent while the runner still lives. Should the runner die
first (killed -9 by someone else), its orphans are found by the mark in their environment.

Standard library only; ctypes is optional (without it the runner is no subreaper).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Optional

_PR_SET_CHILD_SUBREAPER = 36
# The environment variable a runner is started with, holding a mark of its own that every
# process it starts inherits (launch sets it; see ``marked``).
MARK_VAR = "CONLAB_RUNNER_MARK"
_WALKS = 100  # at most this many walks of a tree that keeps forking (a fork bomb)


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux 3.4+). True if so."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (ImportError, OSError, AttributeError):
        return False


def _children() -> Optional[dict]:
    """The live (not zombie) processes' pids by their parent's pid, from /proc; None without
    a /proc to read."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    children: dict = {}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # it ended meanwhile
            continue
        fields = stat.rpartition(b")")[2].split()  # the name before may hold anything
        if len(fields) < 2 or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def descendants(pid: int) -> Optional[list]:
    """Every live process below ``pid``, or None where there is no /proc to walk."""
    children = _children()
    if children is None:
        return None
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def marked(mark: str) -> Optional[list]:
    """Every live process started with ``MARK_VAR=mark`` in its environment (it inherits it
    from the runner, wherever it went: an orphan init adopted too), or None without /proc."""
    needle = f"{MARK_VAR}={mark}".encode()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    found = []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):  # a zombie's reads empty
                    found.append(int(entry))
        except (OSError, ValueError):  # another user's, ended meanwhile, or no process
            continue
    return found


def end_descendants(pid: int) -> bool:
    """SIGKILL every process below ``pid``; False where there is no /proc to walk (nothing
    was done). See ``_stop_then_kill``."""
    return _stop_then_kill(lambda: descendants(pid))


def end_marked(mark: str) -> bool:
    """SIGKILL every process ``marked`` with ``mark``; False without /proc."""
    return _stop_then_kill(lambda: marked(mark))


def _stop_then_kill(find) -> bool:
    """SIGKILL every process ``find()`` lists. Each is stopped first, since a stopped process
    cannot fork, and ``find`` asked again until it lists none still running; then all are
    killed at once. False when ``find`` gives None (it cannot look)."""
    stopped: set = set()
    for _ in range(_WALKS):
        found = find()
        if found is None:
            return False
        running = [p for p in found if p not in stopped]
        if not running:
            break
        for p in running:
            _signal(p, signal.SIGSTOP)
        stopped.update(running)
    for p in stopped:
        _signal(p, signal.SIGKILL)
    return True
