"""The spawn-safe entry point: ``python -m experiments.runner`` runs one spec, JSON lines out.

Protocol: the parent writes one ExperimentSpec as a JSON line on stdin and reads events from
stdout, one JSON object per line, each with an ``event`` key:

    env       the environment and the parameters actually used (sent once validation passed)
    progress  {repeat, done, total, samples}: the newest task samples, at most every 0.1 s
    repeat    {index, warmup, wall_ns, cpu_ns, start_ns, end_ns}: one repeat, timed
    tasks     {repeat, samples}: every task sample of that repeat
    done      the run finished
    error     {kind, message, detail}: ``invalid`` (exit 2) or a failure (exit 1)

A sample is ``[pid, thread_id, start_ns, end_ns]`` on the system-wide monotonic clock.

Options (``launch`` passes them all): ``--watch-stdin`` ends the runner and its workers when the
parent goes away (``--parent-pid=PID`` names it: on Linux the kernel then tells us; elsewhere a
thread waits for stdin to close); ``--ack`` waits after each
repeat's ``tasks`` event for a ``next`` line on stdin, so the parent's storing of one repeat never
overlaps the timing of the next one; ``--progress`` sends ``progress`` events (a live view wants
them; without one they would only cost CPU in the parent while the run is being timed).

Other modes: ``--check`` reads a JSON list of specs and answers one ``check`` event each, without
running anything; ``--env`` prints the environment.

Spawned workers re-import this module as ``__mp_main__``, so it imports nothing at the top.
"""


def main(argv=None) -> int:
    from experiments.measure import main as run_main

    return run_main(argv)


if __name__ == "__main__":
    import sys

    sys.exit(main())
