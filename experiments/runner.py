"""The runner's entry point: one spec in on stdin, JSON-lines events out on a pipe of their own.

Protocol: the parent writes one ExperimentSpec as a JSON line on stdin and reads events from the
file descriptor named by ``--events-fd=N`` (stdout when none is given), one JSON object per line,
each with an ``event`` key:

    env       the environment and the parameters actually used (sent once validation passed)
    progress  {repeat, done, total, samples}: the newest task samples, at most every 0.1 s
    repeat    {index, warmup, wall_ns, cpu_ns, start_ns, end_ns, runner_peak_rss_bytes}: one
              repeat, timed, with the runner's own peak resident memory so far
    tasks     {repeat, samples}: every task sample of that repeat
    done      the run finished
    error     {kind, message, detail}: ``invalid`` (exit 2) or a failure (exit 1)

A sample is ``[pid, thread_id, start_ns, end_ns, gil, voluntary, involuntary, core_start,
core_end, peak_rss_bytes]``: times on the system-wide monotonic clock, then what
``experiments.workloads._sample`` says (None where the platform does not say).

The events have their own pipe so that nothing a task prints can be taken for one: stdout and
stderr are the user's, and the parent stores them with the run. The runner keeps that pipe out of
every process it starts (no worker holds it, so the parent sees it end with the runner).

Options (``launch`` passes them all): ``--watch-stdin`` ends the runner and its workers when the
parent goes away (``--parent-pid=PID`` names it: on Linux the kernel then tells us; elsewhere a
thread waits for stdin to close); ``--ack`` waits after each
repeat's ``tasks`` event for a ``next`` line on stdin, so the parent's storing of one repeat never
overlaps the timing of the next one; ``--progress`` sends ``progress`` events (a live view wants
them; without one they would only cost CPU in the parent while the run is being timed).

Other modes: ``--check`` reads a JSON list of specs (one line) and answers one ``check`` event
each, without running anything; ``--env`` sends the environment; ``--calibrate`` finds a size
(``--size auto``); ``--probe`` answers ``conlab advise``'s probes (experiments.probe).

``launch`` starts the runner with ``command()``, not ``python -m``: ``-m`` would put the working
directory first on ``sys.path``, where a user's folder named ``experiments`` would shadow the lab.
This module imports nothing at the top, so importing it costs a worker nothing.
"""

# Run by ``python -c`` before anything else: refuses interpreters older than 3.9 in words the
# parent shows (it parses on Python 2 too), takes off ``sys.path`` the working directory that
# ``-c`` put first (``""``; none under -I or PYTHONSAFEPATH) and puts the lab's own directory
# there. The workload loader adds the user's module paths after it (``user_module_paths``).
_BOOTSTRAP = """\
# conlab: {module}
import sys
if sys.version_info < (3, 9):
    sys.stderr.write("conlab: Python %d.%d cannot run the lab's runner; pass --python with "
                     "CPython 3.9 or newer\\n" % sys.version_info[:2])
    sys.exit(2)
if sys.path and sys.path[0] == "":
    del sys.path[0]
sys.path.insert(0, {lab_dir!r})
from {module} import {function} as main
sys.exit(main())
"""


def command(python: str, lab_dir: str, module: str, function: str, *args: str) -> list:
    """The command line running ``module.function()`` under ``python`` with ``lab_dir`` (where
    the lab's ``experiments`` package is) first on ``sys.path`` and the working directory off it;
    ``args`` are its ``sys.argv[1:]``."""
    code = _BOOTSTRAP.format(lab_dir=lab_dir, module=module, function=function)
    return [python, "-c", code, *args]


def main(argv=None) -> int:
    from experiments.measure import main as run_main

    return run_main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
