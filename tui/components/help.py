"""Modal screens: help, and errors that a worker met."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

from storage.text import as_text


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; height: 80%; border: thick $primary;
                                  background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "close", id="help.close",
                        tooltip="back to the app")]  # fmt: skip

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Markdown(self.text)


class ErrorScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > VerticalScroll { width: 90; height: auto; max-height: 80%;
                                   border: thick $error; background: $surface; padding: 1 2; }
    """
    BINDINGS = [Binding("escape,enter", "dismiss", "close", id="error.close",
                        tooltip="back to the app")]  # fmt: skip

    def __init__(self, title: str, detail: str) -> None:
        super().__init__()
        self.title_text = title
        self.detail = detail

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            message = as_text(self.title_text, "bold")
            message.append_text(as_text(f"\n\n{self.detail}\n\n(escape to close)", lines=True))
            yield Static(message)
