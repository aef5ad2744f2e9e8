"""Dialogs: help built from the key bindings, and errors that a worker met."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Markdown, Static

from storage.text import as_text
from tui.components.modal import Modal

INTRO = (
    "# conlab\n\n**For this work, on this machine, with this Python: which way of running it "
    "concurrently is fastest, and why?**\n"
)
OUTRO = (
    "In the Lab: up/down picks the workload (or write MODULE:FUNCTION), space ticks executors, "
    "the fields set the parameters (empty means the default shown). Bad input is shown under "
    "the fields, with how to fix it."
)


def declared_bindings(node) -> list[Binding]:
    """The bindings the lab's own classes give ``node``, the most derived class first (a
    Textual widget's own keys, the same in every app, are the widget's to show)."""
    found = []
    for cls in type(node).__mro__:
        if cls.__module__.partition(".")[0] == "tui" and "BINDINGS" in cls.__dict__:
            found += [
                b if isinstance(b, Binding) else Binding(*b) for b in cls.__dict__["BINDINGS"]
            ]
    return found


def binding_groups(app, where: Callable[[Any], str]) -> list[tuple[str, list[Binding]]]:
    """Every binding a user can press on the app's screen, grouped by ``where(node)``: the
    app's own ("everywhere"), then each pane's and each widget's in it, in screen order."""
    groups: dict[str, list[Binding]] = {"everywhere": declared_bindings(app)}
    for node in app.screen_stack[0].walk_children():
        bindings = declared_bindings(node)
        if bindings:
            groups.setdefault(where(node), []).extend(bindings)
    return list(groups.items())


def bindings_table(groups: Iterable[tuple[str, Iterable[Binding]]], key_display) -> str:
    """Markdown: one row per binding of each (where, bindings) group: keys, what, and more."""
    rows = ["| where | key | what it does |", "|---|---|---|"]
    for where, bindings in groups:
        for binding in bindings:
            keys = " ".join(f"`{key_display(key)}`" for key in binding.key.split(","))
            what = binding.tooltip or binding.description
            rows.append(f"| {where} | {keys} | {what} |")
    return "\n".join(rows)


class HelpScreen(Modal[None]):
    BINDINGS = [
        Binding(
            "escape,q,question_mark,f1",
            "cancel",
            "close",
            id="help.close",
            tooltip="back to the app",
        ),
    ]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def body(self) -> ComposeResult:
        yield Markdown(self.text)


class ErrorScreen(Modal[None]):
    BINDINGS = [
        Binding("escape,enter", "cancel", "close", id="error.close", tooltip="back to the app")
    ]

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(classes="alarm")
        self.title_text = title
        self.detail = detail

    def __rich_repr__(self):  # what failed, wherever the screen is printed (a test's failure)
        yield "title", self.title_text
        yield "detail", self.detail

    def body(self) -> ComposeResult:
        message = as_text(self.title_text, "bold")
        message.append_text(as_text(f"\n\n{self.detail}\n\n(escape to close)", lines=True))
        yield Static(message)
