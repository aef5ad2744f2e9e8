"""The base of every dialog: a frame at the centre of the screen over the app, closed with
escape, which answers ``CANCEL`` (leaving things as they are)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen

Answer = TypeVar("Answer")


class Modal(ModalScreen[Answer]):
    """Subclasses yield their content from ``body()``; the class ``alarm`` frames in red."""

    DEFAULT_CSS = """
    Modal { align: center middle; }
    Modal > .frame { width: 84; max-width: 96%; height: auto; max-height: 90%;
                     border: thick $primary; background: $surface; padding: 1 2; }
    Modal.alarm > .frame { border: thick $error; }
    Modal Label { width: 1fr; }
    Modal .buttons { height: auto; margin-top: 1; }
    Modal .buttons Button { margin-right: 2; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "close", id="modal.cancel", tooltip="leave things as they are")
    ]
    CANCEL: ClassVar[Any] = None  # what escape answers

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="frame"):
            yield from self.body()

    def body(self) -> ComposeResult:
        yield from ()

    def action_cancel(self) -> None:
        self.dismiss(self.CANCEL)
