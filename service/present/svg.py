"""The HTML report's charts as inline SVG (no script, no CDN): lines, bars, a timeline of tasks
and the states of each thread; every text in them escaped, long labels fitted to their room."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any, Optional

import pandas as pd

from service.present.lanes import PALETTE, lane_label, lane_numbers
from storage.text import printable


def missing(value: Any) -> bool:
    """None, NaN or an infinity: a figure that could not be measured (a zero time, no baseline)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def ms(value: float) -> str:
    return "–" if missing(value) else f"{value * 1000:.1f} ms"


def escaped(value: Any) -> str:
    """Data (a workload, a host name...) as SVG/HTML text: escaped, control characters shown."""
    return html.escape(printable(value))


# The width of one character of 11 px chart text, at most (wide sans fonts such as DejaVu Sans):
# a label is shortened to the room its chart gives it, never drawn past the chart's edge.
CHAR_PX = 7.0


def fitted(label: str, room_px: float) -> str:
    """``label`` as chart text in ``room_px``: cut with "…" when longer; its whole text is in
    the element's title (what a pointer over it shows)."""
    fits = max(int(room_px / CHAR_PX), 2)
    shown = label if len(label) <= fits else label[: fits - 1] + "…"
    return f"<title>{escaped(label)}</title>{escaped(shown)}"


def tick_text(value: float) -> str:
    """An axis tick as people write it: 0.25, 1.5, 12, 1,500 (never 1.5e+03)."""
    if abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def tick_step(top: float) -> float:
    """The step of five round ticks (1, 2, 2.5 or 5 times a power of ten) that reach past
    ``top``."""
    if not top > 0:
        return 1.0
    power = 10 ** math.floor(math.log10(top / 5))
    return next(power * m for m in (1, 2, 2.5, 5, 10) if power * m * 5 >= top)


def svg_open(width: float, height: float, title: str) -> str:
    """A chart's box: its drawn size, scaled down (never cut) where the page is narrower."""
    return (
        f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escaped(title)}">'
    )


def figure(title: str, svg: str, legend: Sequence[tuple[str, str]] = ()) -> str:
    """A chart under its title and above its legend (name, colour), both page text that wraps,
    so that neither is cut by the chart's box."""
    if not svg:
        return ""
    keys = "".join(
        '<li><svg class="key" width="10" height="10" aria-hidden="true">'
        f'<rect width="10" height="10" fill="{colour}"/></svg>{escaped(name)}</li>'
        for name, colour in legend
    )
    below = f'<ul class="legend">{keys}</ul>' if keys else ""
    return f"<figure><figcaption>{escaped(title)}</figcaption>{svg}{below}</figure>"


def line_chart(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    ideal: bool = False,
    x_label: str = "workers",
    y_label: str = "speedup",
    colours: Optional[dict[str, str]] = None,
) -> str:
    """A line chart with its legend; with ``ideal`` the y = x line is drawn dashed; each
    series in its ``colours`` entry, else the palette's in turn."""
    width, height, left, right, top, bottom = 480, 260, 50, 20, 12, 40
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    x_max = max(x for x, _ in points) or 1
    step = tick_step(max([y for _, y in points] + ([x_max] if ideal else [])))
    y_max = step * 5

    def sx(x: float) -> float:
        return left + (x / x_max) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y / y_max) * (height - top - bottom)

    out = [
        svg_open(width, height, title),
        f'<line x1="{left}" y1="{sy(0)}" x2="{width - right}" y2="{sy(0)}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{sy(0)}" stroke="#333"/>',
        f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle" '
        f'font-size="12">{x_label}</text>',
        f'<text x="12" y="{(top + sy(0)) / 2}" font-size="12" transform="rotate(-90 12 '
        f'{(top + sy(0)) / 2})" text-anchor="middle">{y_label}</text>',
    ]
    for tick in sorted({x for x, _ in points}):
        out.append(
            f'<text x="{sx(tick):.1f}" y="{sy(0) + 15}" text-anchor="middle" '
            f'font-size="11">{tick_text(tick)}</text>'
        )
    for i in range(6):
        y = step * i
        out.append(
            f'<text x="{left - 5}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{tick_text(y)}</text>"
        )
    legend = []
    if ideal:
        out.append(
            f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(x_max)}" y2="{sy(x_max)}" '
            'stroke="#999" stroke-dasharray="4 4"><title>ideal</title></line>'
        )
        legend.append(("ideal (dashed): as many times faster as workers", "#999"))
    for n, (name, values) in enumerate(series.items()):
        colour = (colours or {}).get(name, PALETTE[n % len(PALETTE)])
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(values))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for x, y in values:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                f"<title>{escaped(name)}: {y:.2f} at {x:g}</title></circle>"
            )
        legend.append((name, colour))
    out.append("</svg>")
    return figure(title, "\n".join(out), legend)


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def bar_chart(
    title: str, bars: list[tuple[str, float]], shown=ms, colours: Sequence[str] = ()
) -> str:
    """A bar per (label, value), the value written after its bar; each bar in its
    ``colours`` entry, else the palette's in turn."""
    width, bar_height, value_room = 480, 18, 80
    pad = min(max((len(label) for label, _ in bars), default=4) * CHAR_PX, 200) + 10
    height = 12 + bar_height * len(bars)
    top = max((v for _, v in bars), default=1) or 1
    out = [svg_open(width, height, title)]
    for n, (label, value) in enumerate(bars):
        y = 6 + n * bar_height
        length = (value / top) * (width - pad - value_room)
        out.append(
            f'<text x="{pad - 6}" y="{y + 12}" text-anchor="end" font-size="11">'
            f"{fitted(label, pad - 10)}</text>"
            f'<rect x="{pad}" y="{y}" width="{length:.1f}" height="{bar_height - 4}" '
            f'fill="{colours[n] if n < len(colours) else PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{pad + length + 4:.1f}" y="{y + 12}" font-size="11">'
            f"{shown(value)}</text>"
        )
    out.append("</svg>")
    return figure(title, "\n".join(out))


def timeline_chart(title: str, timeline: pd.DataFrame) -> str:
    """One lane per worker (pid/thread), a bar per task, for the first counted repeat."""
    if timeline.empty:
        return ""
    counted = timeline[~timeline["warmup"].astype(bool)]
    repeat = (counted if not counted.empty else timeline)["repeat_index"].min()
    tasks = timeline[timeline["repeat_index"] == repeat]
    lanes = lane_numbers(zip(tasks["pid"], tasks["thread_id"]))
    width, lane_height, pad = 480, 22, 90
    height = 12 + lane_height * len(lanes)
    end = max(tasks["end_ms"].max(), 1e-9)
    title = f"{title} (repeat {int(repeat)}, {end:.1f} ms)"
    out = [svg_open(width, height, title)]
    for worker, n in lanes.items():
        out.append(
            f'<text x="{pad - 6}" y="{18 + n * lane_height}" text-anchor="end" '
            f'font-size="11">{fitted(lane_label(lanes, worker), pad - 10)}</text>'
        )
    for task in tasks.itertuples():
        n = lanes[(task.pid, task.thread_id)]
        x = pad + task.start_ms / end * (width - pad - 10)
        w = max((task.end_ms - task.start_ms) / end * (width - pad - 10), 1)
        colour, where = core_colour(task)
        out.append(
            f'<rect x="{x:.1f}" y="{6 + n * lane_height}" width="{w:.1f}" '
            f'height="{lane_height - 6}" fill="{colour}">'
            f"<title>task {task.task_index}: {task.start_ms:.2f}–{task.end_ms:.2f} ms"
            f"{where}</title></rect>"
        )
    out.append("</svg>")
    return figure(title, "\n".join(out))


# Each thread state's colour (storage.states' letters); on a core: the core's palette colour.
STATE_COLOURS = {"W": "#edc948", "L": "#e15759", "I": "#76b7b2", "S": "#dddddd", "B": "#b07aa1"}


def states_chart(title: str, thread_states: str) -> str:
    """One lane per thread of a looked-at repeat, a bar per state (storage.states), with the
    state and its core in each bar's title and a legend below."""
    from service.present import states
    from storage.states import STATES, decode

    lanes, span_us = decode(thread_states)
    if not lanes:
        return ""
    names = states.labels(lanes)
    width, lane_height, pad = 480, 22, 90
    title = f"{title} ({span_us / 1000:.1f} ms)"
    out = [svg_open(width, 12 + lane_height * len(lanes), title)]
    scale = (width - pad - 10) / span_us
    for n, lane in enumerate(lanes):
        y = 6 + n * lane_height
        out.append(
            f'<text x="{pad - 6}" y="{y + 12}" text-anchor="end" font-size="11">'
            f"{fitted(names[(lane.pid, lane.tid)], pad - 10)}</text>"
        )
        for start, stop, letter, core in lane.spans(span_us):
            colour = PALETTE[core % len(PALETTE)] if letter == "C" else STATE_COLOURS[letter]
            what = f"on core {core}" if letter == "C" else STATES[letter][0]
            out.append(
                f'<rect x="{pad + start * scale:.1f}" y="{y}" '
                f'width="{max((stop - start) * scale, 0.5):.1f}" height="{lane_height - 6}" '
                f'fill="{colour}"><title>{what}: {start / 1000:.1f}–{stop / 1000:.1f} ms'
                "</title></rect>"
            )
    out.append("</svg>")
    legend = [("on a core (colour: which)", PALETTE[0])] + [
        (STATES[letter][0], colour) for letter, colour in STATE_COLOURS.items()
    ]
    return figure(title, "\n".join(out), legend)


def core_colour(task) -> tuple[str, str]:
    """A task's colour by the core it ended on (by its number where cores were not recorded),
    and where it ran: "on core 1", or "moved from core 0 to core 1"."""
    start, end = getattr(task, "core_start", None), getattr(task, "core_end", None)
    if missing(end) or missing(start):
        return PALETTE[task.task_index % len(PALETTE)], ""
    start, end = int(start), int(end)
    where = f", on core {end}" if start == end else f", moved from core {start} to core {end}"
    return PALETTE[end % len(PALETTE)], where
