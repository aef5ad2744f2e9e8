"""tui.table draws the table rich draws, character for character, or leaves it to rich."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table

from tui.table import box_table

COLUMNS = ["run", "machine", "median", "tag"]
ROWS = [
    ["94aae64d", "bench", "10.0 ms", ""],
    ["b9356b74", "", "", "a [bold]tag[/bold] that is only text"],
    ["485a9ba6", "a-rather-long-host-name", "1234.5 ms", "x"],
]


def _by_rich(columns, rows, width: int, terminal: bool = False) -> str:
    out = io.StringIO()
    table = Table()
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console = Console(file=out, width=width, force_terminal=terminal, highlight=False)
    console.print(table, markup=False)
    return out.getvalue()


@pytest.mark.parametrize("rows", [ROWS, ROWS[:1], []])
def test_a_table_is_the_one_rich_draws(rows):
    assert box_table(COLUMNS, rows, 200) + "\n" == _by_rich(COLUMNS, rows, 200)


def test_on_a_terminal_the_header_is_bold_and_the_rest_plain():
    drawn = box_table(COLUMNS, ROWS, 200, bold=True)
    header = drawn.splitlines()[1]
    assert header.startswith("┃\x1b[1m run ") and header.count("\x1b[1m") == len(COLUMNS)
    assert "\x1b" not in "".join(drawn.splitlines()[3:])


def test_what_it_would_draw_otherwise_is_left_to_rich():
    wide = box_table(COLUMNS, ROWS, 200)
    assert box_table(COLUMNS, ROWS, len(wide.splitlines()[0]) - 1) is None  # rich wraps it
    assert box_table(COLUMNS, [["ü", "", "", ""]], 200) is None  # rich measures it
    assert box_table(COLUMNS, [["表", "", "", ""]], 200) is None
