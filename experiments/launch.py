"""The parent side: start a runner under any interpreter, stream its events, cancel, time out.

The runner gets its own session (process group), so stopping it — on cancel, on timeout, or after
it ends — is one ``killpg`` that takes its workers with it: no child survives a run.
"""

from __future__ import annotations

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

from experiments.spec import ExperimentSpec, SpecError

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def runner_pythonpath() -> str:
    """A directory holding only ``experiments`` (a symlink), to put on the runner's PYTHONPATH.

    Adding the package's parent directory instead could be a site-packages directory, and would
    then leak one interpreter's compiled packages into another one.
    """
    # One directory per installed copy of the lab: two checkouts or venvs must not swap links.
    copy = hashlib.sha1(_PACKAGE_DIR.encode()).hexdigest()[:12]
    directory = os.path.join(tempfile.gettempdir(), f"conlab-path-{os.getuid()}-{copy}")
    link = os.path.join(directory, "experiments")
    if os.path.realpath(link) != os.path.realpath(_PACKAGE_DIR):
        os.makedirs(directory, exist_ok=True)
        temporary = f"{link}.{os.getpid()}.tmp"
        os.symlink(_PACKAGE_DIR, temporary)
        os.replace(temporary, link)
    return directory


def runner_command(python: Optional[str], *args: str) -> list[str]:
    return [python or sys.executable, "-m", "experiments.runner", *args]


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


def _json_lines(text: str) -> list[dict]:
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a user function that printed to stdout: not ours, ignore it
    return events


def _run_quick(
    python: Optional[str], args: list[str], stdin: str, timeout_s: float, silent_ok: bool = False
) -> list[dict]:
    try:
        proc = subprocess.run(
            runner_command(python, *args),
            input=stdin,
            capture_output=True,
            text=True,
            env=runner_env(),
            timeout=timeout_s,
        )
    except FileNotFoundError:
        raise SpecError(
            f"no Python interpreter at {python!r}; "
            "pass --python with a path from `conlab list pythons`"
        ) from None
    except PermissionError:
        raise SpecError(
            f"{python!r} is not executable; pass --python with an interpreter"
        ) from None
    except subprocess.TimeoutExpired:
        raise SpecError(
            f"the runner under {python or sys.executable} did not answer in "
            f"{timeout_s:.0f} s (a user module doing work at import time?); "
            "guard that work with `if __name__ == '__main__':`"
        ) from None
    events = _json_lines(proc.stdout)
    if not events and not (silent_ok and proc.returncode != 1):
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise SpecError(
            f"{python or sys.executable} could not start the runner ({last}); "
            "pass --python with CPython 3.9 or newer"
        )
    return events


def check(
    specs: list[ExperimentSpec], python: Optional[str] = None, timeout_s: float = 60.0
) -> dict[str, dict]:
    """Validate specs in the interpreter that will run them, starting nothing else.

    Returns each run id's resolved parameters; raises SpecError for the first spec that cannot run.
    """
    payload = json.dumps([json.loads(spec.to_json()) for spec in specs])
    resolved = {}
    for event in _run_quick(python, ["--check"], payload, timeout_s):
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
    afterwards ``status`` is ``ok``, ``failed``, ``cancelled`` or ``invalid`` and ``error`` says
    why when it is not ok. ``cancel()`` may be called from any thread at any time.

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
    ):
        self.spec = spec
        self.progress = progress
        self.layout = layout  # None: the runner inherits this process's environment as it is
        self.python = python or spec.python
        self.timeout_s = timeout_s if timeout_s is not None else spec.timeout_s
        self.status: Optional[str] = None
        self.error: Optional[str] = None
        self.detail: Optional[str] = None
        self.stderr = ""
        self.returncode: Optional[int] = None
        self._process: Optional[subprocess.Popen] = None
        self._stopped_because: Optional[str] = None
        self._lock = threading.Lock()

    def events(self) -> Iterator[dict]:
        stderr_file = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 (closed below)
        try:
            self._start(stderr_file)
            timer = self._start_timer()
            try:
                yield from self._read_events()
            except BaseException:  # Ctrl-C, or the consumer stopped listening: stop the run
                self._stop("cancelled")
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                self._finish(stderr_file)
        finally:
            stderr_file.close()

    def run(self) -> list[dict]:
        """Run to the end and return every event."""
        return list(self.events())

    def cancel(self) -> None:
        self._stop("cancelled")

    # --- internals ---

    def _start(self, stderr_file) -> None:
        try:
            self._process = subprocess.Popen(
                runner_command(
                    self.python,
                    "--watch-stdin",
                    f"--parent-pid={os.getpid()}",
                    "--ack",
                    *(["--progress"] if self.progress else []),
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr_file,
                env=runner_env(self.layout),
                start_new_session=True,
                bufsize=1,
                text=True,
            )
        except (FileNotFoundError, PermissionError) as exc:
            raise SpecError(
                f"cannot start {self.python!r} ({exc.strerror}); "
                "pass --python with a working interpreter"
            ) from None
        self._process.stdin.write(self.spec.to_json() + "\n")
        self._process.stdin.flush()
        with self._lock:
            if self._stopped_because:  # cancelled before the process existed
                self._kill_group()

    def _start_timer(self) -> Optional[threading.Timer]:
        if not self.timeout_s:
            return None
        timer = threading.Timer(self.timeout_s, self._stop, args=("timeout",))
        timer.daemon = True
        timer.start()
        return timer

    def _read_events(self) -> Iterator[dict]:
        for line in self._process.stdout:
            if not line.startswith("{"):
                continue  # a user function printing to stdout
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
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

    def _send(self, line: str) -> None:
        try:
            self._process.stdin.write(line + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the runner is gone; its end of the event stream says why

    def _stop(self, reason: str) -> None:
        with self._lock:
            if self._stopped_because or self.status is not None:
                return
            self._stopped_because = reason
            if self._process is not None:
                self._kill_group()

    def _kill_group(self) -> None:
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _finish(self, stderr_file) -> None:
        process = self._process
        if process is None:
            return
        if self.status is None and not self._stopped_because:
            # The event stream ended early (the consumer stopped, or the runner died).
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._stopped_because = self._stopped_because or "cancelled"
        self._kill_group()  # whatever the runner left behind goes with it
        self.returncode = process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        stderr_file.seek(0)
        self.stderr = stderr_file.read().decode("utf-8", "replace")
        self._settle()

    def _settle(self) -> None:
        if self._stopped_because == "timeout":
            self.status = "failed"
            self.error = (
                f"timed out after {self.timeout_s:g} s; the runner and its workers were killed"
            )
        elif self._stopped_because == "cancelled":
            self.status, self.error = "cancelled", "cancelled by the user"
        elif self.status is None:
            self.status = "failed"
            self.error = f"the runner process died ({describe_returncode(self.returncode)})"
            last = self.stderr.strip().splitlines()
            if last:
                self.error += f": {last[-1]}"
        if self.status == "failed" and "bootstrapping phase" in self.stderr:
            # CPython's words when a spawned child starts a process while importing __main__
            # or a module: the user's code has no `if __name__ == "__main__":` guard.
            self.error += (
                "; a module the workers import starts processes when imported: put "
                "that code under `if __name__ == '__main__':`"
            )


def describe_returncode(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
