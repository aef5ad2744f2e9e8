"""What every pane shares: a worker of its own that meets an unexpected error says so to the
app (a worker's state messages do not bubble), which shows it in a dialog, never a crash; and
the hidden panes are made after the first screen."""

from __future__ import annotations

from dataclasses import dataclass

from textual.lazy import Lazy
from textual.message import Message
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


class AfterFirstScreen(Lazy):
    """A pane made after the first screen is drawn (Textual's Lazy), and not at all when the app
    is already closing by then (Lazy would then mount into a pane that is gone, and fail)."""

    async def mount_composed_widgets(self, widgets: list) -> None:
        parent = self.parent
        if parent is None:
            return

        async def mount() -> None:
            if not parent.is_attached:
                return
            await parent.mount(self._replace_widget, after=self)
            await self.remove()

        self.call_after_refresh(mount)
