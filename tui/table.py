"""Rows as the box-drawn table rich draws by default (``rich.box.HEAVY_HEAD``, one space either
side of each cell, left-aligned, the header bold on a terminal), written directly.

rich measures and renders every cell through a dozen objects: a fifth of a second for the 50 rows
`conlab runs` shows, and a twentieth more to load it. A table drawn here is the same characters.
Only what it draws the same way comes here: ASCII cells in a table that fits the width; rich
draws the rest (it wraps and shrinks columns, and measures wide characters).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

BOLD, RESET = "\x1b[1m", "\x1b[0m"


def box_table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, bold: bool = False
) -> Optional[str]:
    """The table of ``rows`` (cells already made printable) under ``columns``, or None when it
    is not one drawn here: a cell that is not ASCII, or a table wider than ``width``."""
    cells = [list(columns), *(list(row) for row in rows)]
    if not all(cell.isascii() for row in cells for cell in row):
        return None
    widths = [max(len(row[n]) for row in cells) for n in range(len(columns))]
    if sum(widths) + 3 * len(widths) + 1 > width:
        return None

    def rule(left: str, line: str, middle: str, right: str) -> str:
        return left + middle.join(line * (w + 2) for w in widths) + right

    def line(row: Sequence[str], edge: str, style: bool) -> str:
        padded = (f" {cell.ljust(w)} " for cell, w in zip(row, widths))
        if style:
            padded = (f"{BOLD}{cell}{RESET}" for cell in padded)
        return edge + edge.join(padded) + edge

    return "\n".join(
        [
            rule("┏", "━", "┳", "┓"),
            line(cells[0], "┃", bold),
            rule("┡", "━", "╇", "┩"),
            *(line(row, "│", False) for row in cells[1:]),
            rule("└", "─", "┴", "┘"),
        ]
    )
