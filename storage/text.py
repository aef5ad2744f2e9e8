"""Text from outside the lab (a database someone sent, a path, what a user typed) made safe to
show. Such text is only ever text: never rich or Textual markup, never a terminal control
sequence, never Markdown or HTML, never a spreadsheet formula. Every output (the CLI, the app's
panes, the reports) passes such strings through the one function here that fits it."""

from __future__ import annotations

import math
import re
from typing import Any

# C0 controls (ESC starts every terminal sequence: colours, cursor moves, window titles, OSC 8
# links), DEL, C1 controls (0x9b is a one-character CSI, 0x9d an OSC), lone surrogates (the
# bytes of a path or argument that are not UTF-8, which no UTF-8 output can write), and the
# bidirectional controls (marks, embeddings, overrides, isolates: U+061C, U+200E-F,
# U+202A-E, U+2066-9), which reorder what follows them so that one name reads as another.
# Compiled at first use (a millisecond each): text that ``str.isprintable`` passes holds none.
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CONTROLS = {
    False: f"[\x00-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]",
    True: f"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff{_BIDI}]",  # keeps \t, \n
}

# What CommonMark (and its table extension) reads as more than a character inside a line:
# escapes, code, emphasis, links and images, autolinks and raw HTML, entities, strikethrough,
# table cells, a heading's closing hashes. Each of them written with a backslash is the character
# itself. At the start of a line (a list item's text) a list marker or an underline is a block.
_MARKDOWN = re.compile(r"([\\`*_\[\]<>!&~|#])")
_MARKDOWN_BLOCK_START = re.compile(r"^(?=[-+=]|\d{1,9}[.)](?:\s|$))(\d*)")

# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def printable(value: Any, *, lines: bool = False) -> str:
    """``value`` as text whose every control character is written as a visible escape (ESC as
    ``\\x1b``, U+202E as ``\\u202e``), so it cannot move the cursor, retitle a window, reorder
    or hide what follows it.
    ``lines=True`` keeps newlines and tabs (tracebacks, captured stderr); ``None`` is ""."""
    text = "" if value is None else str(value)
    if text.isprintable():
        return text
    return re.sub(_CONTROLS[lines], _escape, text)  # (re caches the compiled pattern)


def _escape(match: re.Match) -> str:
    return repr(match.group())[1:-1]  # "\x1b", "\n", "\x9b": Python's own spelling


def as_text(value: Any, style: str = "", *, lines: bool = False):
    """``value`` as a rich ``Text`` for a terminal table or a Textual widget: shown as it is,
    never parsed as markup (``[/x]`` is four characters, ``[@click=...]`` no action)."""
    from rich.text import Text

    return Text(printable(value, lines=lines), style=style)


def markdown_text(value: Any) -> str:
    """``value`` as Markdown that renders as exactly its text (one line, surrounding spaces
    dropped), wherever it stands in a line: no HTML, link, image, emphasis, list or table cell
    can come out of it."""
    escaped = _MARKDOWN.sub(r"\\\1", printable(value).strip())
    return _MARKDOWN_BLOCK_START.sub(r"\1\\", escaped)


def csv_cell(value: Any) -> Any:
    """``value`` for a CSV cell: text that a spreadsheet would run as a formula gets a leading
    ``'`` (OWASP); numbers, and text that is a plain number such as ``-3.5``, stay as they are."""
    if not isinstance(value, str):
        return value
    value = printable(value)
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def number_text(value: Any) -> str:
    """A count or a size (size, tasks, workers) as people write it, never in scientific
    notation: 4,194,304 (not 4.1943e+06), 2.5; "–" for a figure that is missing (None, NaN, an
    infinity); anything else as printable text."""
    if value is None or isinstance(value, bool):
        return "–" if value is None else str(value)
    if not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        return printable(value)
    number = float(value)
    if not math.isfinite(number):
        return "–"
    if number.is_integer():
        return f"{int(number):,}"
    return f"{number:,.6f}".rstrip("0").rstrip(".")
