"""The parent side: start a runner under any interpreter, stream its events, cancel, time out.

The runner gets its own session (process group), so stopping it — on cancel, on timeout, or after
it ends, however it ends — is one ``killpg`` that takes its workers with it, after the processes
below the runner that left its group (experiments.reaping): no child survives a run. Its events
come on a pipe of their own; its stdout and stderr are the user's, kept in a file and stored with
the run.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

from experiments import reaping
from experiments.bootstrap import command
from experiments.executors import describe_exit
from experiments.spec import ExperimentSpec, SpecError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def runner_pythonpath() -> str:
    """A directory holding only ``experiments`` (a symlink), to put first on the runner's path.

    Adding the package's parent directory instead could be a site-packages directory, and would
    then leak one interpreter's compiled packages into another one. The directory is this
    checkout's own (two installs of the lab must not redirect each other's runners) and the
    user's own: one that another user could write to is never used.
    """
    import stat

    key = hashlib.sha256(os.path.realpath(_PACKAGE_DIR).encode()).hexdigest()[:12]
    directory = os.path.join(tempfile.gettempdir(), f"conlab-path-{os.getuid()}-{key}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        directory = tempfile.mkdtemp(prefix="conlab-path-")
    link = os.path.join(directory, "experiments")
    if os.path.realpath(link) != os.path.realpath(_PACKAGE_DIR):
        temporary = f"{link}.{os.getpid()}.tmp"
        os.symlink(_PACKAGE_DIR, temporary)
        os.replace(temporary, link)
    return directory


def runner_command(python: Optional[str], *args: str) -> list[str]:
    """The command starting a runner: ``python -c``, not ``-m``, which would put the working
    directory first on ``sys.path``, where a user's ``experiments`` folder would shadow the lab."""
    return command(
        python or sys.executable, runner_pythonpath(), "experiments.runner", "main", *args
    )


def _look_available() -> bool:
    from experiments.look import available

    return available()


@dataclass(frozen=True)
class Layout:
    """What gives one runner process a memory layout of its own: the seed of its str and bytes
    hashes (dict and set order) and the size of its environment, which moves where its stack
    starts (Mytkowicz et al., ASPLOS 2009). Recorded with each process, so a run can be replayed.
    """

    hash_seed: int
    padding: int  # bytes of environment padding

    @classmethod
    def random(cls, rng: random.Random) -> Layout:
        return cls(rng.randrange(2**32), rng.randrange(4096))

    def env(self) -> dict[str, str]:
        return {"PYTHONHASHSEED": str(self.hash_seed), "CONLAB_LAYOUT_PADDING": "x" * self.padding}

    def as_dict(self) -> dict[str, int]:
        return {"hash_seed": self.hash_seed, "padding": self.padding}


def runner_env(layout: Optional[Layout] = None) -> dict[str, str]:
    env = dict(os.environ)
    if layout is not None:
        env.update(layout.env())
    paths = [runner_pythonpath()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _start_runner(
    python: Optional[str], args: list[str], output, layout: Optional[Layout] = None
) -> tuple[subprocess.Popen, int]:
    """Start a runner in a session of its own (with ``layout``'s environment, if given), its
    stdout and stderr into the file ``output`` and its events into a pipe of their own; returns
    the process and that pipe's read end.

    FileNotFoundError or PermissionError when ``python`` cannot be run.
    """
    read_fd, write_fd = os.pipe()
    env = runner_env(layout)
    mark = env[reaping.MARK_VAR] = os.urandom(16).hex()  # what every process of this run inherits
    try:
        process = subprocess.Popen(
            runner_command(
                python,
                f"--events-fd={write_fd}",
                "--watch-stdin",
                f"--parent-pid={os.getpid()}",
                *args,
            ),
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=output,
            env=env,
            start_new_session=True,
            pass_fds=(write_fd,),
            bufsize=1,
            text=True,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    process.conlab_mark = mark  # type: ignore[attr-defined]
    return process, read_fd


class _EventPipe:
    """The read end of a runner's event pipe, watched together with the runner itself, so that
    a process the runner left holding the pipe cannot keep the parent waiting for its end.

    The runner is watched without being reaped (until then its process group stays its own, so
    a ``killpg`` cannot hit another): with a pidfd where there is one, else ``waitid``.
    """

    def __init__(self, process: subprocess.Popen, fd: int):
        self.process = process
        self.fd: Optional[int] = fd
        os.set_blocking(fd, False)
        try:
            self.pidfd: Optional[int] = os.pidfd_open(process.pid)
        except (AttributeError, OSError):  # not Linux 5.3+: look at the runner twice a second
            self.pidfd = None

    def lines(self, timeout_s: Optional[float] = None) -> Iterator[bytes]:
        """Event lines until the pipe ends, or the runner has ended and all it sent is read.
        TimeoutError past ``timeout_s``."""
        import select
        import time

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        watched = [self.fd] if self.pidfd is None else [self.fd, self.pidfd]
        buffer, searched, ended = bytearray(), 0, False
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                if ended:
                    return
                wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
                if self.pidfd is None:
                    wait_s = 0.5 if wait_s is None else min(wait_s, 0.5)
                ready = select.select(watched, [], [], wait_s)[0]
                if not ready and deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError from None
                ended = self._runner_ended(ready)
                continue
            if not chunk:
                return
            buffer += chunk
            while True:
                end = buffer.find(b"\n", searched)
                if end < 0:
                    searched = len(buffer)
                    break
                line = bytes(buffer[:end])
                del buffer[: end + 1]
                searched = 0
                yield line

    def _runner_ended(self, ready: list) -> bool:
        if self.pidfd is not None:
            return self.pidfd in ready
        try:
            flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
            return os.waitid(os.P_PID, self.process.pid, flags) is not None
        except ChildProcessError:  # reaped already
            return True
        except AttributeError:  # no waitid (macOS): poll, which reaps
            return self.process.poll() is not None

    def close(self) -> None:
        for fd in (self.fd, self.pidfd):
            if fd is not None:
                os.close(fd)
        self.fd = self.pidfd = None


def _events(lines) -> Iterator[dict]:
    for line in lines:
        try:
            yield json.loads(line)
        except ValueError:
            continue  # the last line of a runner killed while writing it


def _killpg(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(process: subprocess.Popen) -> bool:
    """SIGKILL the runner, its process group, and every process below it, those that left the
    group too (a worker that called setsid(), a task's daemon: the runner is their subreaper),
    and every process started with the runner's mark (an orphan of a runner that died first).
    The group is stopped first, so that nothing in it starts more meanwhile. Call it only while
    the runner is unreaped (its pid and group id are then its own). True when the processes
    below it could be walked (/proc), False when only the group was killed."""
    _killpg(process, signal.SIGSTOP)
    walked = reaping.end_descendants(process.pid)
    mark = getattr(process, "conlab_mark", None)
    if mark is not None:
        reaping.end_marked(mark)
    _killpg(process, signal.SIGKILL)
    return walked


def _end(process: subprocess.Popen, pipe: Optional[_EventPipe]) -> int:
    """Kill what is left of a runner's group, reap the runner, close its pipes; its exit code."""
    _kill_group(process)  # before the wait: an unreaped runner keeps its group id its own
    code = process.wait()
    if process.stdin is not None:
        try:
            process.stdin.close()
        except OSError:
            pass
    if pipe is not None:
        pipe.close()
    return code


# What is kept of a runner's output (its stdout and stderr, with its tasks'): this many bytes
# from its start and as many from its end. A task printing once per call would otherwise grow
# the database, and this process's memory, by what it printed.
KEPT_OUTPUT = 32_768


def _read(output) -> str:
    """The runner's output in ``output`` (a binary file): whole up to ``2 * KEPT_OUTPUT``
    bytes, else its first and last ``KEPT_OUTPUT`` bytes around a line saying how many were left
    out. Reads at most that much, whatever the file's size."""
    size = output.seek(0, os.SEEK_END)
    output.seek(0)
    if size <= 2 * KEPT_OUTPUT:
        return output.read().decode("utf-8", "replace")
    head = output.read(KEPT_OUTPUT)
    output.seek(size - KEPT_OUTPUT)
    tail = output.read(KEPT_OUTPUT)
    # A character cut at either end is dropped, not shown as a replacement mark.
    head_text = codecs.getincrementaldecoder("utf-8")("replace").decode(head, final=False)
    tail = tail.lstrip(bytes(range(0x80, 0xC0)))
    return (
        f"{head_text}\n[... {size - len(head) - len(tail):,} bytes left out ...]\n"
        f"{tail.decode('utf-8', 'replace')}"
    )


# What a worker raises because its runner went away: a consequence, never the cause.
_AFTERMATH = ("BrokenPipeError", "ConnectionResetError", "EOFError")


def why_it_ended(output: str, returncode: Optional[int]) -> Optional[str]:
    """The line of a runner's output that says why it ended, or None.

    A runner that exited printed its reason last: the lab's own words (``conlab: ...``), or the
    final line of its last traceback -- not a worker's broken pipe or a warning (resource_tracker's
    leaked-semaphore notice). A runner killed by a signal printed nothing itself: only CPython's
    ``Fatal Python error`` (before an abort) speaks for it, never what its workers printed.
    """
    found = None
    in_traceback = False
    killed = returncode is not None and returncode < 0
    for line in output.splitlines():
        if line.startswith("Fatal Python error:"):
            found = line
        elif killed:
            continue
        elif line.startswith("conlab: "):
            found = line
        elif line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            in_traceback = False
            if not line.startswith(_AFTERMATH):
                found = line
    return found


def _run_quick(
    python: Optional[str],
    args: list[str],
    stdin: str,
    timeout_s: float,
    silent_ok: bool = False,
    timed_out: Optional[str] = None,
    answered=bool,
) -> list[dict]:
    """Run a runner in a mode that answers and ends (``--check``, ``--env``, ``--calibrate``,
    ``--probe``); its events. ``silent_ok``: a runner that ended without a word and without a
    traceback (the function it was calling ended the process) answers no events instead of an
    error. ``timed_out``: the message when it does not answer in ``timeout_s``. ``answered``:
    whether the events are a whole answer (else the runner's end is the error)."""
    exe = python or sys.executable
    with tempfile.TemporaryFile() as output:
        try:
            process, fd = _start_runner(python, args, output)
        except FileNotFoundError:
            raise SpecError(
                f"no Python interpreter at {python!r}; "
                "pass --python with a path from `conlab list pythons`"
            ) from None
        except PermissionError:
            raise SpecError(
                f"{python!r} is not executable; pass --python with an interpreter"
            ) from None
        pipe = _EventPipe(process, fd)
        try:
            try:
                process.stdin.write(stdin + "\n")
                process.stdin.flush()
            except OSError:
                pass  # it ended already: its output says why
            events = list(_events(pipe.lines(timeout_s)))
        except TimeoutError:
            if timed_out is not None:
                raise SpecError(timed_out) from None
            raise SpecError(
                f"the runner under {exe} did not answer in {timeout_s:.0f} s (a user module "
                "doing work at import time?); guard that work with `if __name__ == '__main__':`"
            ) from None
        finally:
            returncode = _end(process, pipe)
        if answered(events) or (silent_ok and not events and returncode != 1):
            return events
        why = why_it_ended(_read(output), returncode)
    if why is not None and why.startswith("conlab: "):  # the runner's own words
        raise SpecError(f"{exe}: {why[len('conlab: ') :]}")
    raise SpecError(
        f"the runner under {exe} ended without answering ({describe_exit(returncode)}"
        + (f": {why}" if why else "")
        + "); pass --python with CPython 3.9 or newer, or keep the workload's module from "
        "ending the process when imported"
    )


def check_specs(
    specs: list[ExperimentSpec], python: Optional[str] = None, timeout_s: float = 60.0
) -> dict[str, dict]:
    """Validate specs in the interpreter that will run them, starting nothing else.

    Returns each run id's resolved parameters; raises SpecError for the first spec that cannot run.
    """
    payload = json.dumps([json.loads(spec.to_json()) for spec in specs])

    def answered(events: list) -> bool:  # a refusal, or a check of every spec
        kinds = [event.get("event") for event in events]
        return "error" in kinds or kinds.count("check") == len(specs)

    resolved = {}
    for event in _run_quick(python, ["--check"], payload, timeout_s, answered=answered):
        if event.get("event") == "error":
            raise SpecError(event.get("message", "the runner refused the specs"))
        if event.get("event") == "check":
            if not event.get("ok"):
                raise SpecError(event.get("error") or "invalid spec")
            resolved[event["run_id"]] = event["resolved"]
    return resolved


def calibrate(
    workload: str, python: Optional[str] = None, fallback_size: int = 1, timeout_s: float = 120.0
) -> dict:
    """``--size auto`` for ``workload`` under ``python``: see experiments.calibrate.

    A function that fails while being calibrated (raises, ends its process) gets
    ``fallback_size`` and a ``failed`` reason: the run then meets the failure and records it."""
    payload = json.dumps({"workload": workload, "fallback_size": fallback_size})
    events = _run_quick(python, ["--calibrate"], payload, timeout_s, silent_ok=True)
    if not events:  # the function ended the process: the run will say how
        return {"size": fallback_size, "failed": "the process ended during a call"}
    for event in events:
        if event.get("event") == "error":
            raise SpecError(event.get("message") or f"cannot load {workload}")
        if event.get("event") == "calibrated":
            return event
    raise SpecError(f"finding a size for {workload} gave no answer; pass --size N")


def probe(
    workload: str,
    size,
    python: Optional[str] = None,
    fallback_size: int = 1,
    timeout_s: float = 120.0,
) -> dict:
    """``conlab advise``'s probes of ``workload`` at ``size`` (an int, or "auto") under
    ``python``: see experiments.probe. A function that raises or ends its process gives a
    ``failed`` reason; one that does not return within ``timeout_s`` is a SpecError."""
    payload = json.dumps({"workload": workload, "size": size, "fallback_size": fallback_size})
    events = _run_quick(
        python,
        ["--probe"],
        payload,
        timeout_s,
        silent_ok=True,
        timed_out=(
            f"probing {workload} took over {timeout_s:g} s (a call that never returns?); "
            "pass a smaller --size or a larger --time-budget, or fix the function"
        ),
    )
    if not events:
        return {"failed": "the process ended during a call"}
    for event in events:
        if event.get("event") == "error":
            raise SpecError(event.get("message") or f"cannot load {workload}")
        if event.get("event") == "probed":
            return {k: v for k, v in event.items() if k != "event"}
    raise SpecError(f"probing {workload} gave no answer; check that it runs as f(size)")


def environment(python: Optional[str] = None, timeout_s: float = 60.0) -> dict:
    """What ``python`` (this interpreter by default) and its machine are."""
    for event in _run_quick(python, ["--env"], "", timeout_s):
        if event.get("event") == "env":
            return event["environment"]
    raise SpecError(
        f"{python or sys.executable} did not report its environment; "
        "pass --python with CPython 3.9 or newer"
    )


class Launch:
    """One run of one spec in a runner process.

    Iterate ``events()`` for the runner's events (``progress`` ones only with ``progress=True``);
    afterwards ``status`` is ``ok``, ``failed``, ``cancelled`` or ``invalid``, ``error`` says
    why when it is not ok, and ``stderr`` is everything the runner and its workers printed
    (stdout and stderr, in the order written). ``cancel()`` may be called from any thread.

    Iterate in the thread that called ``events()`` first, and keep that thread alive until the
    iteration ends: on Linux the runner ends itself when the thread that started it exits.
    """

    def __init__(
        self,
        spec: ExperimentSpec,
        python: Optional[str] = None,
        timeout_s: Optional[float] = None,
        progress: bool = False,
        layout: Optional[Layout] = None,
        look: bool = False,
    ):
        self.spec = spec
        self.progress = progress
        # One more repeat after the others, not counted, whose threads are looked at from here
        # (experiments.look) where the platform allows it.
        self.look = look and _look_available()
        self._looking = None  # the look while the looked-at repeat runs
        self._looked = False  # its repeat event came; its tasks event is next
        self.layout = layout  # None: the runner inherits this process's environment as it is
        self.python = python or spec.python
        self.timeout_s = timeout_s if timeout_s is not None else spec.timeout_s
        self.status: Optional[str] = None
        self.error: Optional[str] = None
        self.detail: Optional[str] = None
        self.stderr = ""
        self.returncode: Optional[int] = None
        self._process: Optional[subprocess.Popen] = None
        self._pipe: Optional[_EventPipe] = None
        self._stopped_because: Optional[str] = None
        self._walked = False  # the processes below the runner were found and killed too
        self._lock = threading.Lock()

    def events(self) -> Iterator[dict]:
        output = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed below)
        try:
            self._start(output)
            timer = self._start_timer()
            try:
                yield from self._read_events()
            except BaseException:  # Ctrl-C, or the consumer stopped listening: stop the run
                self._stop("cancelled")
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                self._finish(output)
        finally:
            output.close()

    def run(self) -> list[dict]:
        """Run to the end and return every event."""
        return list(self.events())

    def cancel(self) -> None:
        self._stop("cancelled")

    # --- internals ---

    def _start(self, output) -> None:
        try:
            self._process, fd = _start_runner(
                self.python,
                ["--ack", *(["--progress"] if self.progress else []), *(["--look"] * self.look)],
                output,
                self.layout,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise SpecError(
                f"cannot start {self.python!r} ({exc.strerror}); "
                "pass --python with a working interpreter"
            ) from None
        self._pipe = _EventPipe(self._process, fd)
        self._send(self.spec.to_json())
        with self._lock:
            if self._stopped_because:  # cancelled before the process existed
                self._walked = _kill_group(self._process)

    def _start_timer(self) -> Optional[threading.Timer]:
        if not self.timeout_s:
            return None
        timer = threading.Timer(self.timeout_s, self._stop, args=("timeout",))
        timer.daemon = True
        timer.start()
        return timer

    def _read_events(self) -> Iterator[dict]:
        for event in _events(self._pipe.lines()):
            kind = event.get("event")
            if kind == "look":  # the runner is about to time the looked-at repeat
                from experiments.look import ThreadLook

                self._looking = ThreadLook(self._process.pid).start()
                self._send("next")
                continue
            if event.get("look") or (kind == "tasks" and self._looked):
                # The looked-at repeat is no repeat of the run: what was seen replaces it.
                if kind == "repeat":
                    event = self._looked_at(event)
                    self._looked = True
                else:  # its tasks: stored by nobody, acknowledged as every repeat's
                    self._looked = False
                    self._send("next")
                    continue
            if kind == "done":
                self.status = "ok"
            elif kind == "error":
                self.status = "invalid" if event.get("kind") == "invalid" else "failed"
                self.error = event.get("message")
                self.detail = event.get("detail")
            yield event
            if kind == "tasks":
                # The consumer has handled (stored) this repeat: let the runner time the next.
                self._send("next")

    def _looked_at(self, repeat: dict) -> dict:
        """The ``looked`` event that stands for the looked-at ``repeat``: what each thread did
        (experiments.look's text) during it, and its wall time."""
        from experiments.look import encode

        lanes = self._looking.stop() if self._looking is not None else {}
        self._looking = None
        states = encode(lanes, repeat["start_ns"], repeat["end_ns"], self._process.pid)
        return {"event": "looked", "thread_states": states, "wall_ns": repeat.get("wall_ns")}

    def _send(self, line: str) -> None:
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the runner is gone; how it ended says why

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self._stopped_because or self.status is not None or self.returncode is not None:
                return
            self._stopped_because = reason
            if self._process is not None:
                self._walked = _kill_group(self._process)

    def _finish(self, output) -> None:
        if self._looking is not None:  # the run ended during the looked-at repeat
            self._looking.stop()
            self._looking = None
        process = self._process
        if process is None:
            return
        if self.status is None and not self._stopped_because:
            # The event stream ended early (the consumer stopped, or the runner died).
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._stopped_because = self._stopped_because or "cancelled"
        with self._lock:  # no cancel() may signal the group once the runner is reaped
            self.returncode = _end(process, self._pipe)  # what it left behind goes with it
        self.stderr = _read(output)
        self._settle()

    def _settle(self) -> None:
        if self._stopped_because == "timeout":
            killed = (
                "the runner and every process below it were killed"
                if self._walked
                else "the runner's process group was killed"
            )
            self.status, self.error = "failed", f"timed out after {self.timeout_s:g} s; {killed}"
        elif self._stopped_because == "cancelled":
            self.status, self.error = "cancelled", "cancelled by the user"
        elif self.status is None:
            self.status = "failed"
            self.error = f"the runner process died ({describe_exit(self.returncode)})"
            why = why_it_ended(self.stderr, self.returncode)
            if why:
                self.error += f": {why}"
            if self.spec.executor == "interpreters":
                self.error += (
                    "; worker interpreters run inside the runner's process, so a task that "
                    "ends its process (os._exit, a crash) ends the run"
                )
        if self.status == "failed" and "bootstrapping phase" in self.stderr:
            # CPython's words when a spawned child starts a process while importing __main__
            # or a module: the user's code has no `if __name__ == "__main__":` guard.
            from experiments.mainmodule import WHY

            self.error += (
                "; a module the workers import starts processes when imported (Python's "
                f"ProcessPoolExecutor reports this as BrokenProcessPool): {WHY}, so each "
                "worker ran that code again and Python stopped it); put that code under "
                "`if __name__ == '__main__':`"
            )
