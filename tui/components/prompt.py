"""Dialogs that ask: a line of text (Prompt), or yes or no before something that cannot be
undone (Confirm; YesNo also takes y and n). Escape leaves things as they are."""

from __future__ import annotations

from typing import Optional

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label

from storage.text import as_text
from tui.components.modal import Modal


class Prompt(Modal[Optional[str]]):
    """Dismissed with the text entered (stripped), or None on escape."""

    AUTO_FOCUS = "#prompt-input"

    def __init__(self, question: str, value: str = "", placeholder: str = "") -> None:
        super().__init__()
        self.question = question
        self.value = value
        self.placeholder = placeholder

    def body(self) -> ComposeResult:
        yield Label(as_text(self.question))
        yield Input(value=self.value, placeholder=self.placeholder, id="prompt-input")

    @on(Input.Submitted)
    def answer(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())


class Confirm(Modal[bool]):
    """Yes or no; "keep" has the focus, so enter keeps everything as it is."""

    CANCEL = False
    AUTO_FOCUS = "#no"

    def __init__(self, question: str, yes: str = "Delete", no: str = "Keep") -> None:
        super().__init__(classes="alarm")
        self.question = question
        self.yes = yes
        self.no = no

    def body(self) -> ComposeResult:
        yield Label(as_text(self.question), classes="question")
        with Horizontal(classes="buttons"):
            yield Button(self.no, id="no")
            yield Button(self.yes, variant="error", id="yes")

    @on(Button.Pressed)
    def answer(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class YesNo(Confirm):
    """A Confirm whose question ends "(y/N)": y answers yes; n, escape and enter no."""

    BINDINGS = [
        Binding("y", "answer(True)", "yes", id="yesno.yes", tooltip="yes"),
        Binding("n", "answer(False)", "no", id="yesno.no", tooltip="no (the default)"),
    ]

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
