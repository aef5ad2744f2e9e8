"""The panes' names on one line, the one shown marked: clicking a name shows its pane.

One widget whose line is redrawn when another pane is shown, where Textual's TabbedContent
is a widget per tab, an animated underline and a pane that follows the focus."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
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

    active: reactive[str] = reactive("", layout=False)
    """The id of the pane shown."""

    def __init__(self, names: dict[str, str], **kwargs) -> None:
        """``names``: each pane's id and the name shown for it, in order."""
        super().__init__(**kwargs)
        self.names = names

    def render(self) -> Text:
        active = self.get_component_rich_style("pane-tabs--active")
        other = self.get_component_rich_style("pane-tabs--other")
        text = Text(no_wrap=True)
        for pane, name in self.names.items():
            click = Style(meta={"@click": f"app.show({pane!r})"})
            text.append(f" {name} ", (active if pane == self.active else other) + click)
            text.append(" ")
        return text
