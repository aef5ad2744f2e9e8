"""The app's title line: the palette's icon on the left, the title and the database in the middle.

One widget drawing one line, where Textual's Header is four (icon, title, clock space, and the
header around them): the first screen pays for each widget it holds."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widget import Widget

ICON = " ⭘ "  # clicked: the command palette, as Header's icon


class TitleBar(Widget):
    DEFAULT_CSS = """
    TitleBar { dock: top; width: 100%; height: 1; background: $panel; color: $foreground; }
    """

    def on_mount(self) -> None:
        self.tooltip = "click the icon for the command palette (ctrl+p)"
        self.watch(self.app, "title", self.refresh, init=False)
        self.watch(self.app, "sub_title", self.refresh, init=False)

    def render(self) -> Text:
        title = Text(self.app.title)
        if self.app.sub_title:
            title.append(f" — {self.app.sub_title}", style="dim")
        width = self.size.width
        line = Text(ICON, no_wrap=True, overflow="ellipsis")
        # centred on the line, as Header's title, unless the icon would be covered
        line.append(" " * max((width - title.cell_len) // 2 - len(ICON), 1))
        line.append_text(title)
        return line

    async def on_click(self, event: events.Click) -> None:
        if event.x < len(ICON):
            event.stop()
            await self.run_action("app.command_palette")
