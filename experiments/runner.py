"""The runner process: one spec in on stdin, its repeats timed, JSON-lines events out on a pipe
of their own.

Protocol: the parent writes one ExperimentSpec as a JSON line on stdin and reads events from the
file descriptor named by ``--events-fd=N`` (stdout when none is given), one JSON object per line,
each with an ``event`` key:

    env       the environment and the parameters actually used (sent once validation passed)
    progress  {repeat, done, total, samples}: the newest task samples, at most every 0.1 s
    repeat    {index, warmup, wall_ns, cpu_ns, start_ns, end_ns, runner_peak_rss_bytes,
              machine_busy_ns}: one repeat, timed, with the runner's own peak resident memory
              so far and the CPU time the whole machine used meanwhile (every process's)
    tasks     {repeat, samples}: every task sample of that repeat
    control   {version, loop_ns, hash_ns}: the control (experiments.control), timed before
              the first repeat and right after each
    done      the run finished
    error     {kind, message, detail}: ``invalid`` (exit 2) or a failure (exit 1)

A sample is ``[pid, thread_id, start_ns, end_ns, gil, voluntary, involuntary, core_start,
core_end, peak_rss_bytes]``: times on the system-wide monotonic clock, then what
``experiments.timing._sample`` says (None where the platform does not say).

The events have their own pipe so that nothing a task prints can be taken for one: stdout and
stderr are the user's, and the parent stores them with the run. The runner keeps that pipe out of
every process it starts (no worker holds it, so the parent sees it end with the runner). The
parent's lines come on stdin, which the runner moves at once to a descriptor of its own, kept
from its workers as well; the tasks' stdin is /dev/null.

Options (``launch`` passes them all): ``--watch-stdin`` ends the runner and its workers when the
parent goes away (``--parent-pid=PID`` names it: on Linux the kernel then tells us; elsewhere a
thread waits for the parent's pipe to close); ``--ack`` waits after each
repeat's ``tasks`` event for a ``next`` line from the parent, so its storing of one repeat never
overlaps the timing of the next one; ``--progress`` sends ``progress`` events (a live view wants
them; without one they would only cost CPU in the parent while the run is being timed);
``--look`` adds one repeat after the others, flagged and never counted, announced by a ``look``
event and begun on the parent's ``next``, during which the parent looks at every thread
(experiments.look).

Other modes: ``--check`` reads a JSON list of specs (one line) and answers one ``check`` event
each, without running anything; ``--env`` sends the environment; ``--calibrate`` finds a size
(``--size auto``); ``--probe`` answers ``conlab advise``'s probes (experiments.probe).

``launch`` (the parent's side) starts the runner with ``bootstrap.command()``, not ``python -m``:
``-m`` would put the working directory first on ``sys.path``, where a user's folder named
``experiments`` would shadow the lab. This module imports nothing at the top: the runner loads
what a run needs when it needs it.
"""


def main(argv=None) -> int:
    """The runner's command line (the protocol above); its exit code. Whatever the mode, every
    process the runner started, however it left the runner's group, ends before the runner
    does (experiments.reaping)."""
    import sys

    from experiments import reaping

    args = sys.argv[1:] if argv is None else argv
    reaping.become_subreaper()  # before anything of the user's can start a process
    try:
        return _serve(args)
    finally:
        _end_descendants()


def _serve(args) -> int:
    out = _EventWriter(_event_stream(args))
    _end_when_stuck_importing(out)
    control = _Control(_control_fd())
    line = "" if "--env" in args else control.readline()
    # Watched before anything of the user's is imported: a module that hangs at import time must
    # not outlive the parent either.
    parent = [int(a.split("=", 1)[1]) for a in args if a.startswith("--parent-pid=")]
    acks = (
        _watch_parent(control, parent[0] if parent else None) if "--watch-stdin" in args else None
    )
    if "--env" in args:
        from experiments.environment import collect

        out.emit("env", environment=collect())
        return 0
    if "--check" in args:
        return _check(line, out)
    if "--calibrate" in args:
        return _calibrate(line, out)
    if "--probe" in args:
        return _probe(line, out)
    return _run(
        line, out, acks if "--ack" in args else None, "--progress" in args, "--look" in args
    )


def _end_when_stuck_importing(out) -> None:
    """A user's module whose pool waits forever for workers Python stopped at their start
    (experiments.mainmodule) ends the runner with the words, as bad input."""
    import os

    from experiments import mainmodule

    def stuck(words: str) -> None:
        out.emit("error", kind="invalid", message=words, detail=None)
        os._exit(2)

    mainmodule.on_stuck = stuck


def _event_stream(args):
    """Where events go: the pipe ``--events-fd=N`` names, kept from every process this runner
    starts, or stdout."""
    import os
    import sys

    fds = [int(a.split("=", 1)[1]) for a in args if a.startswith("--events-fd=")]
    if not fds:
        return sys.stdout
    fd = fds[0]
    os.set_inheritable(fd, False)  # a started program (exec) does not get it
    if hasattr(os, "register_at_fork"):
        # A forked worker does not keep it either: /dev/null takes its place, so the parent sees
        # the pipe end when the runner does, and a worker that writes there writes nowhere.
        null = os.open(os.devnull, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        os.register_at_fork(after_in_child=lambda: os.dup2(null, fd, inheritable=False))
    return open(fd, "w", encoding="utf-8", closefd=False)


def _control_fd() -> int:
    """The parent's control pipe (the spec, then ``next`` lines), moved off stdin to a file
    descriptor of its own, which no process this runner starts keeps (a forked worker gets
    /dev/null there); stdin becomes /dev/null, so a task reading it reads an empty file."""
    import os

    try:
        fd = os.dup(0)  # not inheritable: a started program (exec) does not get it
    except OSError:  # no stdin at all: a control pipe at its end
        fd = os.open(os.devnull, os.O_RDONLY)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if hasattr(os, "register_at_fork"):
        null = os.open(os.devnull, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        os.register_at_fork(after_in_child=lambda: os.dup2(null, fd, inheritable=False))
    return fd


class _EventWriter:
    def __init__(self, stream):
        import json

        self._dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
        self._stream = stream

    def emit(self, event: str, **fields) -> None:
        fields["event"] = event
        self._stream.write(self._dumps(fields) + "\n")
        self._stream.flush()


def _check(text: str, out: _EventWriter) -> int:
    import json

    from experiments.spec import ExperimentSpec, SpecError, prepare

    try:
        items = json.loads(text)
        if not isinstance(items, list):
            raise ValueError("expected a JSON list of specs")
    except ValueError as exc:
        out.emit("error", kind="invalid", message=f"--check needs a JSON list of specs ({exc})")
        return 2
    status = 0
    for item in items:
        try:
            spec = ExperimentSpec.from_dict(item)
            prepared = prepare(spec)
            out.emit("check", run_id=spec.run_id, ok=True, resolved=prepared.resolved())
        except (SpecError, TypeError) as exc:
            out.emit(
                "check",
                run_id=item.get("run_id") if isinstance(item, dict) else None,
                ok=False,
                error=str(exc),
            )
            status = 2
    return status


def _request(text: str, out: _EventWriter):
    """``(request, workload)`` of a ``--calibrate`` or ``--probe`` JSON request; ``(None, None)``
    after an ``invalid`` error event when it names no importable workload."""
    import json

    from experiments.workloads import WorkloadError, resolve

    try:
        request = json.loads(text)
        return request, resolve(request["workload"])
    except (ValueError, KeyError, TypeError, WorkloadError) as exc:
        out.emit("error", kind="invalid", message=str(exc), detail=None)
        return None, None


def _calibrate(text: str, out: _EventWriter) -> int:
    """``--size auto``: find the workload's size in this interpreter (experiments.calibrate)."""
    from experiments.calibrate import calibrate_answering_early

    request, workload = _request(text, out)
    if workload is None:
        return 2
    try:
        calibrate_answering_early(
            workload.func,
            request.get("fallback_size") or 1,
            lambda found: out.emit("calibrated", **found),
        )
    except BaseException as exc:  # the run itself will meet this failure and record it
        out.emit("calibrated", size=request.get("fallback_size") or 1, failed=_named(exc))
    return 0


def _probe(text: str, out: _EventWriter) -> int:
    """``conlab advise``'s probes of one workload (experiments.probe): one ``probed`` event, or
    one with ``failed`` when a call of the function raised."""

    from experiments.environment import usable_cores
    from experiments.executors import EXECUTORS
    from experiments.probe import probe

    request, workload = _request(text, out)
    if workload is None:
        return 2
    if workload.async_func is workload.func:
        out.emit(
            "error",
            kind="invalid",
            detail=None,
            message=(
                f"{workload.name} is an async def, which only asyncio can run; give advise a plain "
                "def f(size) (asyncio is measured when the workload has an async form)"
            ),
        )
        return 2
    start_method = EXECUTORS["processes"].default_start_method()
    try:
        found = probe(
            workload,
            request.get("size", "auto"),
            request.get("fallback_size") or 1,
            usable_cores(),
            start_method,
        )
    except BaseException as exc:  # the function's own failure: advise reports it, ends
        out.emit("probed", failed=_named(exc))
        _kill_workers()
        return 0
    # what can run this function under this interpreter, which may not be the one advise runs
    # in (worker interpreters load it in one, which may refuse its module)
    found["unavailable"] = {
        name: e.unavailable_reason() or (e.check_workload(workload) if e.pickles_tasks else None)
        for name, e in EXECUTORS.items()
    }
    out.emit("probed", **found)
    return 0


def _run(line: str, out: _EventWriter, acks, progress: bool, look: bool = False) -> int:
    from experiments.environment import collect
    from experiments.spec import ExperimentSpec, SpecError, prepare
    from experiments.timing import gil_enabled

    gil_at_start = gil_enabled()
    try:
        spec = ExperimentSpec.from_json(line)
        _adopt_main(spec)
        with _gil_watch() as enabled_by:
            prepared = prepare(spec)
    except (SpecError, TypeError) as exc:
        out.emit("error", kind="invalid", message=str(exc), detail=None)
        return 2
    import os

    environment = collect(prepared.start_method)
    if prepared.options.get("main"):  # what the entry script adds to a worker's start
        from experiments.mainmodule import start_cost

        environment["main"] = start_cost(prepared.options["main"], prepared.start_method)
    environment["gil_at_start"] = gil_at_start  # before the user's module was imported
    if enabled_by:
        environment["gil_enabled_by"] = enabled_by
    for option in ("scheduler", "backend", "loop"):  # recorded with the run
        if getattr(prepared, option) is not None:
            environment[option] = getattr(prepared, option)
    if prepared.executor.implementation() is not None:  # which InterpreterPoolExecutor ran
        environment["executor_implementation"] = prepared.executor.implementation()
    out.emit(
        "env",
        environment=environment,
        resolved=prepared.resolved(),
        runner_pid=os.getpid(),
    )
    from experiments import control
    from experiments.bootstrap import cache_own_bytecode
    from experiments.timing import load_core_reader

    load_core_reader()  # here, so that forked workers inherit it
    cache_own_bytecode()  # here, so that no worker compiles the lab's modules
    try:
        with _service(prepared.workload), prepared.executor.session(prepared) as started:
            if started:  # what starting the engine cost, outside every timed window
                out.emit("session", **started)
            out.emit("control", **control.measure())
            timed = prepared.spec.warmups + prepared.spec.repeats
            for index in range(timed):
                _run_repeat(prepared, index, out, progress)
                if acks is not None:
                    acks.acquire()  # the parent has stored this repeat: time the next one
            if look and acks is not None:
                out.emit("look")
                acks.acquire()  # the parent looks at every thread from now on
                _run_repeat(prepared, timed, out, False, look=True)
                acks.acquire()
    except BaseException as exc:  # SystemExit/KeyboardInterrupt from a task are failures too
        _fail(exc, out)
    out.emit("done")
    return 0


def _adopt_main(spec) -> None:
    """``--main``: the entry script this runner's spawn and forkserver workers import first,
    for an executor that takes it (before the workload's module is imported)."""
    main = getattr(spec, "main", None)
    if not isinstance(main, str) or not main:
        return
    import os

    from experiments.executors import EXECUTORS
    from experiments.mainmodule import adopt

    executor = EXECUTORS.get(spec.executor)
    if executor is not None and "main" in executor.options:
        adopt(script=os.path.abspath(main))


class _gil_watch:
    """Around importing the user's module: the modules that turned the GIL back on, as the
    interpreter names them in its RuntimeWarning (an extension that does not declare
    free-threading support). Every other warning is shown as it would have been."""

    def __enter__(self) -> list:
        import warnings

        self._catching = warnings.catch_warnings(record=True)
        self._caught = self._catching.__enter__()
        self.modules: list = []
        return self.modules

    def __exit__(self, *exc_info) -> None:
        import re
        import warnings

        self._catching.__exit__(*exc_info)
        for w in self._caught:
            found = re.search(r"GIL\) has been enabled to load module '([^']+)'", str(w.message))
            if found:
                self.modules.append(found.group(1))
            else:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _service(workload):
    """The context the workload's tasks need around all repeats (e.g. a local server)."""
    if workload.service is None:
        import contextlib

        return contextlib.nullcontext()
    import importlib

    module, _, name = workload.service.partition(":")
    return getattr(importlib.import_module(module), name)()


def _run_repeat(
    prepared, index: int, out: _EventWriter, progress: bool, look: bool = False
) -> None:
    import time

    from experiments import control
    from experiments.timing import machine_busy_ns

    items = [prepared.size] * prepared.spec.tasks
    samples = []
    total = len(items)
    monotonic_ns = time.monotonic_ns
    progress_every_ns = 100_000_000
    # Without --progress the first progress event is due in a year: one comparison per task.
    next_progress_ns = monotonic_ns() + (progress_every_ns if progress else 365 * 86400 * 10**9)
    sent = 0
    readings: dict = {}  # (pid, thread) -> its schedstat readings in this repeat

    def on_sample(sample) -> None:
        nonlocal next_progress_ns, sent
        samples.append(sample[1:11])  # drop the task's result: only its timing is kept
        if len(sample) > 11 and sample[11] is not None:
            readings.setdefault(sample[1:3], []).extend(r for r in sample[11] if r is not None)
        if monotonic_ns() >= next_progress_ns:
            # A bounded batch keeps the cost inside the timed window negligible; every sample
            # is sent in the `tasks` event after the repeat anyway.
            out.emit(
                "progress",
                repeat=index,
                done=len(samples),
                total=total,
                samples=samples[max(sent, len(samples) - 256) :],
            )
            sent = len(samples)
            next_progress_ns = monotonic_ns() + progress_every_ns

    busy_before = machine_busy_ns()
    cpu_before = _cpu_ns()
    start_ns = monotonic_ns()
    prepared.executor.run(prepared, items, on_sample)
    end_ns = monotonic_ns()
    cpu_ns = _cpu_ns() - cpu_before
    busy_after = machine_busy_ns()
    # The control right after the repeat, before anything waits: the core is as the work left
    # it (after a pause a core comes back slower for a while, and the work never saw that).
    timed_control = None if look else control.measure()
    if not look:  # the looked-at repeat is no part of the run's progress
        out.emit("progress", repeat=index, done=len(samples), total=total, samples=[])
    out.emit(
        "repeat",
        index=index,
        warmup=index < prepared.spec.warmups or look,
        look=look,
        wall_ns=end_ns - start_ns,
        cpu_ns=cpu_ns,
        start_ns=start_ns,
        end_ns=end_ns,
        runner_peak_rss_bytes=_peak_rss_bytes(),
        machine_busy_ns=None if busy_before is None else busy_after - busy_before,
        workers=worker_split(readings),
    )
    out.emit("tasks", repeat=index, samples=samples)
    if timed_control is not None:
        out.emit("control", **timed_control)


def worker_split(readings: dict) -> list:
    """Each worker thread's ``[pid, thread, span_ns, on_core_ns, core_wait_ns]`` between its
    first and last schedstat reading of the repeat (the rest of the span it was blocked: on a
    lock, the GIL's included, in I/O or asleep); a thread read once has no span to split."""
    split = []
    for (pid, thread), found in readings.items():
        if len(found) < 2:
            continue
        first, last = min(found), max(found)
        span, on_core, waited = (last[i] - first[i] for i in range(3))
        split.append([pid, thread, span, on_core, waited])
    return split


def _cpu_ns() -> int:
    """User + system CPU of this process and its reaped children (pool workers, once joined)."""
    try:
        import resource
    except ImportError:  # Windows: os.times has no child times there, but it is what exists
        import os

        t = os.times()
        return int((t.user + t.system + t.children_user + t.children_system) * 1e9)
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return int(total * 1e9)


def _peak_rss_bytes():
    """This runner's own peak resident memory so far, or None where the platform has none."""
    try:
        import resource
    except ImportError:
        return None
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _fail(exc: BaseException, out: _EventWriter) -> None:
    """Report a failed run, stop every worker, and end the runner without waiting on them."""
    import os
    import sys
    import traceback

    from experiments.executors import ExecutorFailed, WorkerDied

    kind = "worker_died" if isinstance(exc, WorkerDied) else "task_error"
    if isinstance(exc, WorkerDied):
        message = f"a worker died: {exc}"
    elif isinstance(exc, ExecutorFailed):
        kind, message = "executor_failed", str(exc)
    elif _is_pickling_error(exc):
        message = (
            f"a task's result could not be pickled to send it back ({_message(exc)}); return plain "
            "data (numbers, strings, bytes, lists, dicts) from the function"
        )
    else:
        message = f"a task raised {_named(exc)}"
    from experiments.workloads import shadowed_standard_module

    shadowing = shadowed_standard_module()  # a user's file standing in for a standard module
    if shadowing is not None and not isinstance(exc, WorkerDied):
        message += f" ({shadowing})"
    try:
        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # an exception that breaks even the traceback module: its name stays
        detail = None
    out.emit("error", kind=kind, message=message, detail=detail)
    _kill_workers()
    _end_descendants()
    sys.stdout.flush()
    # os._exit: a normal exit would join executor threads stuck in a task that never returns.
    os._exit(1)


def _message(exc: BaseException) -> str:
    """``str(exc)``; for an exception whose ``__str__`` raises, words saying so."""
    try:
        return str(exc)
    except Exception as err:
        return f"<its message could not be read: str() raised {type(err).__name__}>"


def _first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, "" for none."""
    return (_message(exc).strip().splitlines() or [""])[0]


def _named(exc: BaseException) -> str:
    """``ValueError: the first line of its message``, or the name alone."""
    text = _first_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_pickling_error(exc: BaseException) -> bool:
    import pickle

    text = _message(exc)
    return (
        isinstance(exc, pickle.PicklingError)
        or type(exc).__name__ == "MaybeEncodingError"
        or "pickle" in text.lower()
        and ("Can't" in text or "cannot" in text)
    )


def _kill_workers() -> None:
    import sys

    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return
    for child in multiprocessing.active_children():
        try:
            child.kill()
        except OSError:
            pass


def _watch_parent(control, parent_pid):
    """Arrange for this runner and its workers to end when the parent goes away, and return an
    object whose ``acquire()`` waits for the parent's ``next`` line.

    On Linux the kernel signals us when the parent dies (PR_SET_PDEATHSIG), so no thread is
    added to the measured process: an idle thread blocked in read() is not free here -- it made
    a single-threaded loop measurably faster than the same loop in a plain script, and the
    lab's figures must be the plain script's. Elsewhere a thread watches the control pipe
    (``control``, a ``_Control``) for its end.
    """
    if _die_with_parent(parent_pid):
        return control
    import threading

    acks = threading.Semaphore(0)

    def watch() -> None:
        # Raw reads, not a buffered reader's readline(): a thread blocked inside a buffered
        # reader holds its lock, and a forked worker closing that reader would deadlock on it.
        while control.acquire():
            acks.release()

    threading.Thread(target=watch, name="conlab-parent-watch", daemon=True).start()
    return acks


class _Control:
    """Reads the parent's lines (raw reads: see ``_watch_parent``): the first one, then
    ``next`` lines; end of file after the first means the parent is gone."""

    def __init__(self, fd: int):
        self.fd = fd
        self.pending = b""

    def _line(self) -> bytes:
        import os

        while b"\n" not in self.pending:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:  # end of file: what came before it is the last line
                line, self.pending = self.pending, b""
                return line
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line + b"\n"

    def readline(self) -> str:
        """The next line, "" at end of file."""
        return self._line().decode("utf-8", "replace")

    def acquire(self) -> bool:
        if not self._line():
            _end_with_parent()
        return True


def _die_with_parent(parent_pid) -> bool:
    """Linux: have the kernel send SIGTERM when the parent dies, and end then. True if set."""
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux") or parent_pid is None:
        return False
    try:
        import ctypes  # optional: an interpreter built without it watches the pipe instead

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, int(signal.SIGTERM), 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            return False
    except (ImportError, OSError, AttributeError):
        return False

    runner_pid = os.getpid()

    def on_sigterm(signum, frame) -> None:
        if os.getpid() != runner_pid:
            # A forked worker that had no time to drop this handler (register_at_fork below):
            # it ends as SIGTERM ends a process (a pool stopping its survivors must not see them
            # "exit with code 3" and name them the cause).
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if os.getppid() != parent_pid:  # the kernel's word: the parent is gone
            _end_with_parent()
        _end_by_sigterm()  # someone else's SIGTERM

    signal.signal(signal.SIGTERM, on_sigterm)
    # A forked worker takes SIGTERM's default at once: a pool forked from a thread (joblib's
    # multiprocessing backend) that SIGTERMed a worker blocked on its queue's lock waited
    # forever for it now and then while the worker had this handler.
    os.register_at_fork(after_in_child=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL))
    if os.getppid() != parent_pid:  # the parent died before the kernel was told
        _end_with_parent()
    return True


def _end_by_sigterm() -> None:
    """End as SIGTERM ends a process, workers first, so the parent reports what happened."""
    import os
    import signal

    _kill_workers()
    _end_descendants()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _end_with_parent() -> None:
    """The parent is gone: stop every worker and this runner, now."""
    import os
    import signal

    _kill_workers()
    _end_descendants()
    if os.getpgrp() == os.getpid():  # launch made us a session leader: take the whole group
        os.killpg(0, signal.SIGKILL)
    os._exit(3)


def _end_descendants() -> None:
    """End every process below this one, those that left its process group too."""
    import os

    from experiments import reaping

    reaping.end_descendants(os.getpid())
