"""A one-line question in a modal: enter answers, escape leaves things as they are."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from storage.text import as_text


class Prompt(ModalScreen[Optional[str]]):
    """Dismissed with the text entered (stripped), or None on escape."""

    DEFAULT_CSS = """
    Prompt { align: center middle; }
    Prompt > Vertical { width: 80; height: auto; border: thick $primary; padding: 1 2;
                        background: $surface; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel", id="prompt.cancel",
                        tooltip="leave things as they are")]  # fmt: skip

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(as_text(self.question))
            yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    @on(Input.Submitted)
    def answer(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())
