"""TUI budgets: cold start to the first screen, and key latency while a sweep runs."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

COLD_START = """
import sys, time
from tui.app import ConlabApp

class Timed(ConlabApp):
    def on_ready(self) -> None:
        print(time.perf_counter() - START, flush=True)
        self.exit()

START = float(sys.argv[1])
Timed(db=sys.argv[2]).run(headless=True)
"""

# The floor: Textual's hello world, timed the same way on the same machine in the same turns.
HELLO_WORLD = """
import sys, time
from textual.app import App
from textual.widgets import Static

class Hello(App):
    def compose(self):
        yield Static("Hello, world")

    def on_ready(self) -> None:
        print(time.perf_counter() - START, flush=True)
        self.exit()

START = float(sys.argv[1])
Hello().run(headless=True)
"""


def bench_cold_start(bench) -> None:
    db = str(bench.workdir / "tui.db")
    # A cold start as a user's: a new process that reads the bytecode Python wrote on an earlier
    # run (the untimed first round writes it), not one that compiles the lab's sources each time
    # because the shell that runs the bench set PYTHONDONTWRITEBYTECODE.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["NO_COLOR"] = "1"

    def once(script: str) -> float:
        # time.perf_counter is system-wide monotonic on Linux: the child can subtract our start.
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", script, str(start), db],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return float(out.strip().splitlines()[-1])

    times: dict[str, list[float]] = {COLD_START: [], HELLO_WORLD: []}
    for n in range(1 + 5):  # the app and the floor take turns; the first round is not timed
        for script, taken in times.items():
            took = once(script)
            if n:
                taken.append(took)
    value = statistics.median(times[COLD_START])
    bench.record(
        "app: cold start to first screen, s (median of 5)", value, "<= 0.25", value <= 0.25
    )
    bench.show(
        "  the floor: Textual's hello world, same turns, s (median of 5)",
        statistics.median(times[HELLO_WORLD]),
    )


def bench_key_latency(bench) -> None:
    from textual import events
    from textual.widgets import TabbedContent

    from tui.app import ConlabApp
    from tui.components.lab import LabPane

    async def measure() -> list[float]:
        app = ConlabApp(db=str(bench.workdir / "keys.db"))
        latencies = []
        async with app.run_test(size=(140, 46)) as pilot:
            lab = app.query_one(LabPane)
            lab.choose("cpu", ["processes"], workers="2", repeats="40")  # outlasts the measurement
            await pilot.press("escape", "r")
            while lab.sweep is None:
                await pilot.pause(0.05)
            await pilot.pause(0.5)
            tabs = app.query_one(TabbedContent)
            for n in range(20):
                target, key = (("runs", "2"), ("lab", "1"))[n % 2]
                # The key goes in as a terminal's would; the clock stops when the pane changed.
                # (Pilot.press would also wait for the app to go idle, which a live run is not.)
                started = time.perf_counter()
                app.post_message(events.Key(key, key))
                while tabs.active != target:
                    await asyncio.sleep(0.001)
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0.1)
            assert lab.busy, f"the sweep ended early: {lab.query_one('#summary').render()}"
            await pilot.press("escape")
            while lab.busy:
                await pilot.pause(0.05)
        return latencies

    latencies = asyncio.run(measure())
    worst = max(latencies) * 1000
    bench.record(
        f"app: key handled during a 2-process cpu sweep, worst of 20 (median "
        f"{statistics.median(latencies) * 1000:.0f}), ms",
        worst,
        "<= 50",
        worst <= 50,
    )


BENCHMARKS = [bench_cold_start, bench_key_latency]
