"""What every pane shares: a worker of its own that meets an unexpected error says so to the
app (a worker's state messages do not bubble), which shows it in a dialog, never a crash; and
the hidden panes are made after the first screen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from textual.message import Message
from textual.widget import Widget
from textual.worker import Worker, WorkerState


@dataclass
class WorkerFailed(Message):
    """A pane's worker stopped with an error: its name and the error, for the app to show."""

    name: str
    error: str


@dataclass
class PaneMounted(Message):
    """A pane made after the first screen is there: the app gives it the keys if it is shown."""

    pane: object


class ReportsWorkerErrors:
    """Mixed into a pane: its workers' errors bubble up as WorkerFailed; its mount is said."""

    def on_mount(self) -> None:
        self.post_message(PaneMounted(self))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.post_message(WorkerFailed(event.worker.name, str(event.worker.error)))


class AfterFirstScreen(Widget):
    """Stands for a pane until the first screen is drawn, then makes it (as Textual's Lazy), and
    not at all when the app is already closing by then (it would mount into a pane that is gone).

    It is given how to make the pane, not the pane: the pane's module (and what that imports) is
    loaded after the first screen too. The app calls ``make``, so that the pane binds to the app's
    reactives as it would in the app's ``compose``."""

    DEFAULT_CSS = "AfterFirstScreen { display: none; }"

    def __init__(self, make: Callable[[], Widget], id: Optional[str] = None) -> None:
        super().__init__(id=id)  # an id lets the app's stylesheet keep the pane's place
        self.make = make

    def render(self) -> str:
        return ""  # a blank where the pane will be, not the widget's name

    async def mount_composed_widgets(self, widgets: list) -> None:
        parent = self.parent
        if parent is None:
            return

        async def mount() -> None:
            if not parent.is_attached or not self.is_attached:
                return
            self.display = False  # its place goes to what it makes, never to both at once
            await parent.mount(self.make(), after=self)
            await self.remove()

        self.call_after_refresh(self.app.call_later, mount)
