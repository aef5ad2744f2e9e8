"""What a task does: the built-in workloads, their registry, and the loader for user functions.

Every workload is a top-level function called once per task as ``f(size)``, so process executors
can pickle it by reference. To add one: write the function, then one line in ``WORKLOADS``.
"""

from __future__ import annotations

# Only cheap modules here: a spawned worker imports this file to find its task function.
import os
import sys
import time

# --- the built-in task functions ---------------------------------------------------------------
# (the modules they need are imported inside them, to keep a worker's start-up cheap)


def cpu(size: int) -> int:
    """Pure Python arithmetic: holds the GIL for the whole task."""
    total = 0
    for i in range(size):
        total += i * i % 7
    return total


def hash_bytes(size: int) -> str:
    """SHA-256 over ``size`` bytes: hashlib releases the GIL for buffers over 2 KiB."""
    import hashlib  # imported here: a spawned worker that never hashes should not pay for it

    return hashlib.sha256(bytes(size)).hexdigest()


def sleep_ms(size: int) -> int:
    """Sleep ``size`` milliseconds: waiting, not working."""
    time.sleep(size / 1000)
    return size


async def sleep_ms_async(size: int) -> int:
    """The async form of ``sleep_ms``, for the asyncio executor."""
    import asyncio

    await asyncio.sleep(size / 1000)
    return size


def file_io(size: int) -> int:
    """Write ``size`` bytes to a temp file, fsync, read them back: the kernel does the work."""
    import tempfile

    payload = b"x" * size
    with tempfile.TemporaryFile() as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
        handle.seek(0)
        return len(handle.read())


def tiny(size: int) -> int:
    """Almost no work: what is left is the executor's dispatch overhead."""
    return size


async def tiny_async(size: int) -> int:
    """The async form of ``tiny``: the event loop's own overhead."""
    return size


def transfer(size: int) -> bytes:
    """Return ``size`` bytes: for process executors the cost is pickling the result back."""
    return bytes(size)


def _http_address() -> tuple[str, int]:
    address = os.environ.get("CONLAB_HTTP_ADDRESS")  # experiments.serve.ADDRESS_VAR
    if not address:
        raise RuntimeError(
            "the http workload needs the lab's local server; run it through conlab, which "
            "starts one (or run `python -m experiments.serve` and set CONLAB_HTTP_ADDRESS)"
        )
    host, _, port = address.rpartition(":")
    return host, int(port)


def http_get(size: int) -> int:
    """GET ``size`` bytes from the lab's local HTTP server: waiting on a socket, the real
    thing that ``sleep`` imitates."""
    import http.client

    host, port = _http_address()
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        connection.request("GET", f"/{size}")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200 or len(body) != size:
        raise OSError(f"GET /{size} gave HTTP {response.status} with {len(body)} bytes")
    return len(body)


async def http_get_async(size: int) -> int:
    """The async form of ``http_get``: the same request on the event loop's socket calls,
    received straight into one buffer (asyncio's streams copy a large body several times)."""
    import asyncio
    import socket

    host, port = _http_address()
    loop = asyncio.get_running_loop()
    with socket.socket() as sock:
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        await loop.sock_sendall(sock, f"GET /{size} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        buffer = bytearray(size + 4096)  # the body and its head (HTTP/1.0: ends at close)
        view, got = memoryview(buffer), 0
        while got < len(buffer):
            received = await loop.sock_recv_into(sock, view[got:])
            if not received:
                break
            got += received
    head, _, body = bytes(view[: min(got, 4096)]).partition(b"\r\n\r\n")
    length = got - len(head) - 4
    if head.split(b" ", 2)[1:2] != [b"200"] or length != size:
        raise OSError(f"GET /{size} gave {head[:40]!r} with {length} bytes")
    return length


# --- the registry ----------------------------------------------------------------------------


class Workload:
    """A task function with what a user needs to know to pick it.

    A plain class rather than a dataclass: ``dataclasses`` would pull ``inspect`` into every
    spawned worker and double its start-up.
    """

    __slots__ = ("name", "func", "description", "default_size", "async_func", "service")

    def __init__(
        self, name: str, func, description: str, default_size: int, async_func=None, service=None
    ):
        self.name = name
        self.func = func
        self.description = description
        self.default_size = default_size
        self.async_func = async_func
        # "module:function" of a context manager the runner holds open around every repeat
        # (a server the tasks talk to); a name, so only a run that needs it imports it.
        self.service = service

    def __repr__(self) -> str:
        return f"Workload({self.name!r})"


# Default sizes make one task take roughly 10-50 ms on a current x86 core.
WORKLOADS = {
    w.name: w
    for w in (
        Workload("cpu", cpu, "pure Python arithmetic: holds the GIL", 400_000),
        Workload("hash", hash_bytes, "SHA-256 of a buffer: releases the GIL", 32 * 2**20),
        Workload("sleep", sleep_ms, "sleeps size ms: waiting, not working", 20, sleep_ms_async),
        Workload("io", file_io, "write, fsync and read back a temp file", 8 * 2**20),
        Workload("tiny", tiny, "almost no work: dispatch overhead", 1, tiny_async),
        Workload("transfer", transfer, "returns size bytes: pickling cost", 32 * 2**20),
        Workload(
            "http",
            http_get,
            "GETs size bytes from a local HTTP server: real I/O waits",
            32 * 2**20,
            http_get_async,
            service="experiments.serve:running",
        ),
    )
}


class WorkloadError(ValueError):
    """A workload reference that cannot be resolved; the message names the fix."""


def resolve(ref: str) -> Workload:
    """The workload named ``ref``: a built-in name, ``MODULE:FUNCTION`` or ``file.py:FUNCTION``.

    User functions are imported from the user's module paths (``user_module_paths``), which
    come after the lab's own directory: a user's module is found, and cannot shadow the lab.
    """
    if ref in WORKLOADS:
        return WORKLOADS[ref]
    if ":" not in ref:
        raise WorkloadError(
            f"unknown workload {ref!r}{_suggest(ref, WORKLOADS)}; "
            "use a built-in name (conlab list workloads) or MODULE:FUNCTION"
        )
    module_ref, _, func_name = ref.rpartition(":")
    if not module_ref or not func_name:
        raise WorkloadError(f"workload {ref!r} is not MODULE:FUNCTION; write it like mymod:work")
    module = _import_module(module_ref, ref)
    func = getattr(module, func_name, None)
    if func is None:
        raise WorkloadError(
            f"module {module.__name__!r} has no function {func_name!r}; "
            f"check the name after the colon in {ref!r}"
        )
    if not callable(func):
        raise WorkloadError(f"{ref!r} is not callable; name a function taking one int (size)")
    import inspect

    doc = (inspect.getdoc(func) or "user function").strip().splitlines()[0]
    if inspect.iscoroutinefunction(func):
        return Workload(ref, func, doc, 1, async_func=func)
    return Workload(ref, func, doc, 1)


def user_module_paths() -> list[str]:
    """Where a user's modules are found, in Python's own order: the working directory, then
    the entries of ``PYTHONPATH`` (but the lab's own directory, which launch puts there)."""
    lab = _lab_dir()
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    paths = [os.getcwd()] + [os.path.abspath(entry) for entry in entries if entry]
    return [path for path in dict.fromkeys(paths) if path != lab]


def _lab_dir() -> str:
    """The directory this ``experiments`` package was imported from."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _use_paths(paths: list) -> None:
    """Put ``paths`` on ``sys.path`` in their order, right after the lab's own directory (so a
    spawned worker, which gets this ``sys.path``, finds the same modules)."""
    lab = _lab_dir()
    rest = [path for path in sys.path if path not in paths]
    at = rest.index(lab) + 1 if lab in rest else 0
    sys.path[:] = rest[:at] + paths + rest[at:]


def _import_module(module_ref: str, ref: str):
    paths = user_module_paths()
    if module_ref.endswith(".py") or os.sep in module_ref or "/" in module_ref:
        path = os.path.abspath(module_ref)
        if not os.path.isfile(path):
            raise WorkloadError(f"no file {module_ref!r} for workload {ref!r}; check the path")
        # Import the file under its own name from its own directory, so that a spawned worker
        # (which gets the parent's sys.path) can import it again to unpickle the function.
        directory, filename = os.path.split(path)
        module_ref = os.path.splitext(filename)[0]
        paths = [directory] + [p for p in paths if p != directory]
    _use_paths(paths)
    import importlib

    from experiments import mainmodule

    mainmodule.adopt(module_ref)  # spawn's workers start by importing it, as a script's would
    watch = mainmodule.watching(module_ref, ref)
    try:
        with watch:
            module = importlib.import_module(module_ref)
    except SystemExit as exc:
        raise WorkloadError(
            f"importing {module_ref!r} for workload {ref!r} called sys.exit({exc.code!r}); "
            "put the module's script code under `if __name__ == '__main__':`"
        ) from None
    except Exception as exc:
        if watch.was_stopped:  # the module's own pool, broken by its workers' start
            raise WorkloadError(mainmodule.stopped_words(module_ref, ref)) from None
        shadowing = shadowed_standard_module()
        if shadowing is not None:  # the cause, whatever it broke on the way
            raise WorkloadError(shadowing) from None
        _refuse_import(exc, module_ref, ref)
    return module


def _refuse_import(exc: Exception, module_ref: str, ref: str) -> None:
    """Raise the WorkloadError saying why importing ``module_ref`` raised ``exc``."""
    if isinstance(exc, ImportError):
        raise WorkloadError(
            f"cannot import {module_ref!r} for workload {ref!r} ({exc}); "
            "run from its directory or add it to PYTHONPATH"
        ) from None
    raise WorkloadError(
        f"importing {module_ref!r} for workload {ref!r} raised "
        f"{type(exc).__name__}: {exc}; fix the module so it imports"
    ) from None


def _standard_module_names() -> frozenset:
    """The top-level modules of this interpreter's standard library."""
    names = getattr(sys, "stdlib_module_names", None)  # 3.10+
    if names is not None:
        return names
    found = set(sys.builtin_module_names)
    for folder in _standard_folders():
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        found.update(e.split(".")[0] for e in entries if e != "site-packages")
    return frozenset(found)


def _standard_folders() -> set:
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    return {os.path.realpath(stdlib), os.path.realpath(os.path.join(stdlib, "lib-dynload"))}


def shadowed_standard_module():
    """Words naming a file of the user's (in the working directory or on ``PYTHONPATH``) that
    was imported in place of the standard-library module of its name, and the fix; or None."""
    user_paths = {os.path.realpath(path) for path in user_module_paths()} - _standard_folders()
    names = _standard_module_names()
    for name, module in list(sys.modules.items()):
        found = getattr(module, "__file__", None) if name in names else None
        if not found:
            continue
        found = os.path.realpath(found)
        if os.path.basename(found).startswith("__init__."):
            found = os.path.dirname(found)  # a package: its folder
        if os.path.dirname(found) in user_paths:
            return (
                f"{found} has the name of Python's standard module {name!r} and was imported "
                "in its place, which breaks the lab and your workers; rename it"
            )
    return None


def _suggest(name: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
