"""The panes' names on one line, the one shown marked: clicking a name shows its pane.

One widget whose line is redrawn when another pane is shown, where Textual's TabbedContent
is a widget per tab, an animated underline and a pane that follows the focus."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class PaneTabs(Widget):
    COMPONENT_CLASSES = {"pane-tabs--active", "pane-tabs--other"}
    DEFAULT_CSS = """
    PaneTabs {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        .pane-tabs--active { color: $text; background: $primary; text-style: bold underline; }
        .pane-tabs--other { color: $text-muted; }
    }
    """

    @dataclass
    class Chosen(Message):
        """A pane's name was clicked."""

        pane: str

    active: reactive[str] = reactive("", layout=False)
    """The id of the pane shown."""

    def __init__(self, names: dict[str, str], **kwargs) -> None:
        """``names``: each pane's id and the name shown for it, in order."""
        super().__init__(**kwargs)
        self.names = names
        self.spans: list[tuple[int, int, str]] = []  # each name's first cell, end and pane

    def render(self) -> Text:
        active = self.get_component_rich_style("pane-tabs--active")
        other = self.get_component_rich_style("pane-tabs--other")
        text = Text(no_wrap=True)
        self.spans = []
        for pane, name in self.names.items():
            start = text.cell_len
            text.append(f" {name} ", active if pane == self.active else other)
            self.spans.append((start, text.cell_len, pane))
            text.append(" ")
        return text

    def on_click(self, event: events.Click) -> None:
        # by the cell clicked: an ``@click`` in the text would be drawn as a link
        for start, end, pane in self.spans:
            if start <= event.x < end:
                self.post_message(self.Chosen(pane))
