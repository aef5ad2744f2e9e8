"""What every pane shares: a worker of its own that meets an unexpected error says so to the
app (a worker's state messages do not bubble), which shows it in a dialog, never a crash."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message
from textual.worker import Worker, WorkerState


@dataclass
class WorkerFailed(Message):
    """A pane's worker stopped with an error: its name and the error, for the app to show."""

    name: str
    error: str


class ReportsWorkerErrors:
    """Mixed into a pane: its workers' errors bubble up as WorkerFailed."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.post_message(WorkerFailed(event.worker.name, str(event.worker.error)))
