"""Finding the Python interpreters on this machine: the running one, ``python3.X`` on PATH, pyenv
and uv installs, free-threaded builds. Each candidate is asked what it is, in parallel.

The candidate answering imports this module and nothing more than ``describe_this`` needs: a
free-threaded 3.13 spins on its import locks with ``sched_yield`` (thousands of times in a start),
and on a busy machine each yield can give a whole time slice away, so every module imported
there costs seconds. What only the asking side uses is imported inside its functions."""

from __future__ import annotations

import os
import sys

MINIMUM = (3, 9)  # experiments/ runs on CPython 3.9 and newer


def describe_this() -> int:
    """Run under the interpreter being probed (started with ``-S``): what it is, as one Python
    literal on stdout, from ``sys`` alone (``platform``, ``json`` and ``re`` are not imported)."""
    from experiments.timing import gil_enabled

    abiflags = getattr(sys, "abiflags", None)
    if abiflags is None:  # Windows: no ABI flags to read
        import sysconfig

        free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    else:
        free_threaded = "t" in abiflags
    name = sys.implementation.name
    info = {
        "executable": sys.executable,
        "version": sys.version.split()[0],
        "implementation": {"cpython": "CPython", "pypy": "PyPy"}.get(name, name),
        "version_info": list(sys.version_info[:3]),
        "free_threaded": free_threaded,
        "gil_enabled": gil_enabled(),
    }
    print(repr(info))
    return 0


def candidates() -> list[str]:
    """Paths that may be Python interpreters, the running one first, without duplicates."""
    import glob
    import shutil

    found = [sys.executable]
    names = [f"python3.{minor}{t}" for minor in range(9, 20) for t in ("", "t")] + ["python3"]
    for name in names:
        path = shutil.which(name)
        if path:
            found.append(path)
    home = os.path.expanduser("~")
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.join(home, ".pyenv"))
    found += sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin", "python3*")))
    uv_root = os.environ.get(
        "UV_PYTHON_INSTALL_DIR", os.path.join(home, ".local", "share", "uv", "python")
    )
    found += sorted(glob.glob(os.path.join(uv_root, "*", "bin", "python3*")))
    found += cached_builds()
    unique, seen = [], set()
    for path in found:
        if path.endswith(("-config", ".py")) or not os.access(path, os.X_OK):
            continue
        try:  # one file under several names (symbolic or hard links) is one candidate
            stat = os.stat(path)
        except OSError:
            continue
        key = (stat.st_dev, stat.st_ino)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def cached_builds() -> list[str]:
    """The interpreters of the CPython builds cached in ``~/.cache/conlab-cpython`` (where the
    shared build tool keeps them; ``$XDG_CACHE_HOME`` when set), a free-threaded name (python3.13t)
    before the plain one of the same build."""
    import glob

    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    pattern = os.path.join(cache, "conlab-cpython", "*", "bin", "python3.*")
    return sorted(glob.glob(pattern), key=lambda path: (os.path.dirname(path), path[-1] != "t"))


# How long a candidate may take to say what it is: a real interpreter answers in well under a
# second (a free-threaded build on a busy machine in one or two); past this it is left out.
ANSWER_WITHIN_S = 5.0


def probe(path: str, timeout_s: float = 60.0) -> dict | None:
    """What the interpreter at ``path`` is, or None when it does not run or is too old."""
    return _described(path, _answer(path, timeout_s))


def _answer(path: str, timeout_s: float = ANSWER_WITHIN_S) -> str | None:
    """The last line ``describe_this`` printed under the interpreter at ``path``, or None when
    it printed none within ``timeout_s``. The candidate runs in a session of its own, and its
    whole process group is killed unless it ended by itself: none of it is left running."""
    import subprocess

    from experiments.bootstrap import command
    from experiments.launch import runner_pythonpath

    # The lab's own code answers, under the interpreter's own bootstrap (which refuses < 3.9),
    # without site: it needs the standard library only.
    python, *rest = command(path, runner_pythonpath(), "experiments.pythons", "describe_this")
    try:
        process = subprocess.Popen(
            [python, "-S", *rest],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            # the GIL as the build starts it, whatever this shell asks of it
            env={k: v for k, v in os.environ.items() if k != "PYTHON_GIL"},
            start_new_session=True,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        output = b""
    finally:
        _end(process)
    try:
        return output.decode().strip().splitlines()[-1]
    except (ValueError, IndexError):  # output not text, or none
        return None


def _end(process) -> None:
    """Kill what is left of a candidate's process group unless it was reaped (while unreaped,
    even ended, its group id is still its own), then reap it."""
    import signal

    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError, PermissionError):  # no process groups
            process.kill()
    process.wait()


def _described(path: str, answer: str | None) -> dict | None:
    """``answer`` read as ``describe_this``'s literal, with ``path``; None when it is not one or
    names an interpreter too old. In the calling thread only: ``ast.literal_eval`` in several
    threads at once can fail in CPython 3.11 ("AST constructor recursion depth mismatch")."""
    import ast

    if answer is None:
        return None
    try:
        info = ast.literal_eval(answer)
        if tuple(info["version_info"][:2]) < MINIMUM:
            return None
    except (ValueError, SyntaxError, LookupError, TypeError):
        return None
    info["path"] = path
    return info


def discover() -> list[dict]:
    """Every usable interpreter (CPython >= 3.9), one per distinct executable, newest first."""
    from concurrent.futures import ThreadPoolExecutor

    paths = candidates()
    with ThreadPoolExecutor(max_workers=8) as pool:  # the processes answer in parallel
        answers = list(pool.map(_answer, paths))
    infos = [info for info in map(_described, paths, answers) if info]
    unique, seen = [], set()
    for info in infos:
        key = os.path.realpath(info["executable"])
        if key not in seen:
            seen.add(key)
            info["current"] = key == os.path.realpath(sys.executable)
            unique.append(info)
    unique.sort(key=lambda i: (i["version_info"], i["free_threaded"]), reverse=True)
    return unique


def executors_under(path: str, timeout_s: float = 60.0) -> list[dict]:
    """The executors and their availability as the interpreter at ``path`` says, with its own
    site-packages (the extras installed there). SpecError when it does not answer."""
    import json
    import subprocess

    from experiments.bootstrap import command
    from experiments.launch import runner_pythonpath
    from experiments.spec import SpecError

    asking = command(path, runner_pythonpath(), "experiments.executors", "describe_this")
    try:
        proc = subprocess.run(
            asking, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        raise SpecError(
            f"{path} did not say which executors it can run; pass --python with CPython 3.9 "
            "or newer (see `conlab list pythons`)"
        ) from None
