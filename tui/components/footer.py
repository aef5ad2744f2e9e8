"""The footer: the keys of what has the focus, on one line that is redrawn, never laid out again.

Textual's Footer is a widget per key, made again (and the whole screen laid out again) each
time the bindings may have changed: on every change of focus, several times per pane shown.
This one is a single widget of fixed height whose text changes; a key is clicked as pressed,
and hovering one shows its tooltip, as in Textual's. (Clicks are found by the cell clicked,
not by an ``@click`` in the text, which Textual would draw as a link.)"""

from __future__ import annotations

from typing import NamedTuple

from rich.style import Style
from rich.text import Text
from textual import events
from textual.widget import Widget


class ShownKey(NamedTuple):
    key: str  # the key pressed when it is clicked
    display: str
    description: str
    enabled: bool
    tooltip: str


class KeysFooter(Widget):
    COMPONENT_CLASSES = {"keys-footer--key", "keys-footer--description"}
    DEFAULT_CSS = """
    KeysFooter {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        .keys-footer--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        .keys-footer--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
    }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spans: list[tuple[int, int, ShownKey]] = []  # each key's first cell and end

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen) -> None:
        if screen is self.screen:
            self.refresh()  # a repaint: the height is one line, whatever the keys

    def shown_keys(self) -> tuple[list[ShownKey], ShownKey | None]:
        """The keys to show, one per action (the first key bound to it), and the palette's."""
        app = self.app
        keys: dict[str, ShownKey] = {}
        palette = None
        for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items():
            shown = ShownKey(
                key,
                app.get_key_display(binding),
                binding.description,
                enabled,
                tooltip or binding.tooltip or binding.description,
            )
            if key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette = shown
            elif binding.show:
                keys.setdefault(binding.action, shown)
        return list(keys.values()), palette

    def render(self) -> Text:
        keys, palette = self.shown_keys()
        key_style = self.get_component_rich_style("keys-footer--key")
        description_style = self.get_component_rich_style("keys-footer--description")
        self.spans = []

        def add(text: Text, shown: ShownKey) -> None:
            start = text.cell_len
            dim = Style(dim=not shown.enabled)
            text.append(f" {shown.display} ", key_style + dim)
            text.append(f"{shown.description} ", description_style + dim)
            self.spans.append((start, text.cell_len, shown))

        text = Text(no_wrap=True)
        for shown in keys:
            add(text, shown)
        if palette is None:
            return text
        # The palette's key keeps its place at the right; the others give way to it.
        right = Text(no_wrap=True)
        add(right, palette)
        room = max(self.size.width - right.cell_len, 0)
        if text.cell_len > room:
            text.truncate(room, overflow="ellipsis")
            self.spans = [span for span in self.spans[:-1] if span[1] <= room]
        start = max(room, text.cell_len)
        text.append(" " * (start - text.cell_len))
        self.spans.append((start, start + right.cell_len, palette))
        return text + right

    def key_at(self, x: int) -> ShownKey | None:
        return next((shown for start, end, shown in self.spans if start <= x < end), None)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        shown = self.key_at(event.x)
        self.tooltip = shown.tooltip if shown is not None else None

    def on_click(self, event: events.Click) -> None:
        shown = self.key_at(event.x)
        if shown is None:
            return
        if shown.enabled:
            self.app.simulate_key(shown.key)
        else:
            self.app.bell()
