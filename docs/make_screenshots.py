"""Save the screenshots in README and docs/app.md with the app: `python docs/make_screenshots.py`.

Runs a small real sweep into a scratch database, then saves each screen as SVG in docs/.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from textual.widgets import Button, Input

from tui.app import ConlabApp
from tui.components.lab import LabPane

DOCS = Path(__file__).resolve().parent


async def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        app = ConlabApp(db=str(Path(scratch) / "results.db"))
        async with app.run_test(size=(140, 46)) as pilot:
            lab = app.query_one(LabPane)
            lab.choose(
                "cpu",
                ["sequential", "threads", "processes"],
                workers="2",
                size="150000",
                repeats="3",
            )
            await pilot.press("escape", "r")
            while not lab.busy:
                await pilot.pause(0.05)
            while lab.busy:
                await pilot.pause(0.1)
            await app.workers.wait_for_complete()
            app.query_one("#selection-a", Input).value = "executor:threads"
            app.query_one("#selection-b", Input).value = "executor:processes"
            app.query_one("#compare-button", Button).press()
            for pane in ("lab", "runs", "compare", "machine"):
                app.action_show(pane)
                await app.workers.wait_for_complete()
                await pilot.pause(0.3)
                path = app.save_screenshot(filename=f"{pane}.svg", path=str(DOCS))
                print(path, file=sys.stderr)
            await pilot.resize_terminal(80, 24)
            app.action_show("lab")
            await pilot.pause(0.3)
            path = app.save_screenshot(filename="lab-80x24.svg", path=str(DOCS))
            print(path, file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
