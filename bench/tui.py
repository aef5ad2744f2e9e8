"""TUI budgets: cold start to the first screen, and key latency while a sweep runs."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import sqlite3
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

# The floor: Textual's hello world, started and timed the same way in the same turns.
HELLO_WORLD = """
from textual.app import App
from textual.widgets import Static

class Hello(App):
    def compose(self):
        yield Static("Hello, world")

Hello().run()
"""


class Terminal:
    """``argv`` started on a new pseudo-terminal (80x24 unless said), as from a shell: what it
    draws is read as it comes, keys are typed into it."""

    def __init__(self, argv: list[str], env: dict[str, str], size: tuple[int, int] = (80, 24)):
        self.main, terminal = pty.openpty()
        winsize = struct.pack("HHHH", size[1], size[0], 0, 0)
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, winsize)
        self.child = subprocess.Popen(
            argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True
        )
        os.close(terminal)
        self.seen = b""  # drawn since the last marker waited for (its tail)
        self.drawn = b""  # everything drawn, for the words of a failure

    def wait_for(self, marker: bytes, timeout_s: float = 30) -> None:
        """Read what is drawn until ``marker`` is among it (since the last call)."""
        deadline = time.monotonic() + timeout_s
        while marker not in self.seen:
            ready, _, _ = select.select([self.main], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                text = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"|", self.drawn)
                words = sorted(set(re.findall(rb"[a-zA-Z][a-zA-Z0-9 :().,/]{6,}", text)))
                raise RuntimeError(f"no {marker!r} in {timeout_s} s; drawn: {words!r}")
            chunk = os.read(self.main, 1 << 16)
            self.seen = self.seen[-4096:] + chunk
            self.drawn += chunk
        self.seen = b""

    def type(self, keys: bytes) -> None:
        os.write(self.main, keys)

    def exited_within(self, timeout_s: float) -> bool:
        """Whether the process ends within ``timeout_s`` (what is drawn meanwhile is read, so
        that it never waits on a full terminal)."""
        deadline = time.monotonic() + timeout_s
        while self.child.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.main], [], [], min(left, 0.01))
            if ready:
                try:
                    os.read(self.main, 1 << 16)
                except OSError:  # the terminal's last process has gone
                    pass
        return True

    def close(self) -> None:
        if self.child.poll() is None:
            os.killpg(self.child.pid, 9)
        self.child.wait()
        os.close(self.main)


def first_frame(argv: list[str], marker: bytes, env: dict[str, str]) -> float:
    """Seconds from starting ``argv`` on a new 80x24 pseudo-terminal to ``marker`` arriving on
    that terminal: what a user waits for, from the command to the first screen drawn."""
    started = time.perf_counter()
    app = Terminal(argv, env)
    try:
        app.wait_for(marker, timeout_s=10)
        return time.perf_counter() - started
    finally:
        app.close()


def terminal_env() -> dict[str, str]:
    # A start as a user's: a new process that reads the bytecode Python wrote on an earlier run
    # (an untimed first round writes it), not one that compiles the lab's sources each time
    # because the shell that runs the bench set PYTHONDONTWRITEBYTECODE.
    # The size is the pseudo-terminal's: COLUMNS and LINES (which pytest-xdist's workers
    # have) would override it.
    dropped = ("PYTHONDONTWRITEBYTECODE", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["TERM"] = "xterm-256color"
    return env


def bench_quit_during_sweep(bench) -> None:
    """`q` during the Lab's default sweep, then `y`: seconds until the `conlab` process has
    ended (the shell is back), its runner's group killed, its runs stored as cancelled."""
    conlab = str(Path(sys.executable).with_name("conlab"))
    times = []
    for n in range(5):
        db = str(bench.workdir / f"quit-{n}.db")
        # tall enough that the Lab's summary, which says when a runner is under way, is drawn
        app = Terminal([conlab, "--db", db], terminal_env(), size=(140, 46))
        try:
            app.wait_for(b"warm-ups")  # the form is made, after the first screen
            app.type(b"r")
            app.wait_for(b"escape cancels")  # a runner process of the sweep is under way
            time.sleep(0.5)
            app.type(b"q")
            app.wait_for(b"(y/N)")
            started = time.perf_counter()
            app.type(b"y")
            if not app.exited_within(10):
                raise RuntimeError("conlab was still there 10 s after y")
            times.append(time.perf_counter() - started)
        finally:
            app.close()
        stored = sqlite3.connect(db).execute("SELECT DISTINCT status FROM run").fetchall()
        if stored != [("cancelled",)]:
            raise RuntimeError(f"after q, y the runs are stored as {stored}, not cancelled")
    worst = max(times)
    bench.record(
        f"app: `q`, `y` during a sweep: the shell back, worst of 5 (median "
        f"{statistics.median(times):.3f}), s",
        worst,
        "<= 0.5",
        worst <= 0.5,
    )


def bench_cold_start(bench) -> None:
    db = str(bench.workdir / "tui.db")
    conlab = str(Path(sys.executable).with_name("conlab"))
    env = terminal_env()
    commands = {
        "conlab": ([conlab, "--db", db], b"workload"),  # the Lab's first box
        "hello": ([sys.executable, "-c", HELLO_WORLD], b"Hello, world"),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for n in range(1 + 7):  # the app and the floor take turns; the first round is not timed
        for name, (argv, marker) in commands.items():
            took = first_frame(argv, marker, env)
            if n:
                times[name].append(took)
    value = statistics.median(times["conlab"])
    floor = statistics.median(times["hello"])
    over = statistics.median(a - b for a, b in zip(times["conlab"], times["hello"]))
    bench.record(
        "app: `conlab` to its first screen on an 80x24 terminal, s (median of 7)",
        value,
        "<= 0.25",
        value <= 0.25,
    )
    bench.show("  the floor: Textual's hello world, same turns, s (median of 7)", floor)
    # The budget was 0.25 s where the floor was 0.15 s: 0.10 s above it.
    bench.record("  above the floor, turn by turn, s (median of 7)", over, "<= 0.10", over <= 0.10)


def bench_key_latency(bench) -> None:
    from textual import events

    from tui.app import ConlabApp
    from tui.components.lab import LabPane
    from tui.components.timeline import Timeline

    async def measure() -> list[float]:
        app = ConlabApp(db=str(bench.workdir / "keys.db"))
        latencies = []
        async with app.run_test(size=(140, 46)) as pilot:
            lab = app.query_one(LabPane)
            lab.choose("cpu", ["processes"], workers="2", repeats="40")  # outlasts the measurement
            await pilot.press("escape", "r")
            while not lab.form_made:  # the timeline is made after the first screen
                await pilot.pause(0.05)
            # The keys come once the sweep is under way: a repeat recorded and drawn (the
            # sweep's first moments load the storage layer, a cost of its own).
            timeline = lab.query_one(Timeline)
            while not timeline.samples:
                await pilot.pause(0.05)
            await pilot.pause(0.5)
            drawn = []
            # Handled: the app has chosen the pane the key asks for (its action runs). Drawn:
            # the screen has been refreshed since, with the pane on it.
            key_in: dict = {}

            def chosen(pane: str) -> None:
                if pane == key_in["target"] and "handled" not in key_in:
                    key_in["handled"] = time.perf_counter()
                    app.call_after_refresh(refreshed)

            def refreshed() -> None:
                key_in["drawn"] = time.perf_counter()
                key_in["done"].set()

            app.watch(app, "shown", chosen, init=False)
            for n in range(20):
                target, key = (("runs", "2"), ("lab", "1"))[n % 2]
                key_in.clear()
                key_in.update(target=target, done=asyncio.Event())
                # The key goes in as a terminal's would. (Pilot.press would also wait for the
                # app to go idle, which a live run is not.)
                started = time.perf_counter()
                app.post_message(events.Key(key, key))
                await key_in["done"].wait()
                latencies.append(key_in["handled"] - started)
                drawn.append(key_in["drawn"] - started)
                await asyncio.sleep(0.1)
            assert lab.busy, f"the sweep ended early: {lab.query_one('#summary').render()}"
            await pilot.press("escape")
            while lab.busy:
                await pilot.pause(0.05)
        return latencies, drawn

    latencies, drawn = asyncio.run(measure())
    worst = max(latencies) * 1000
    bench.record(
        f"app: key handled during a 2-process cpu sweep, worst of 20 (median "
        f"{statistics.median(latencies) * 1000:.0f}), ms",
        worst,
        "<= 50",
        worst <= 50,
    )
    bench.show(
        f"  and its pane drawn on the screen, worst of 20 (median "
        f"{statistics.median(drawn) * 1000:.0f}), ms",
        max(drawn) * 1000,
    )


BENCHMARKS = [bench_cold_start, bench_key_latency, bench_quit_during_sweep]
