"""Reports as text people read: a terminal table, Markdown, CSV, JSON, and one self-contained
HTML page with inline SVG charts (no script, no CDN, works offline)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from typing import Any, Optional

import pandas as pd

from experiments.options import BY_NAME
from storage.lanes import PALETTE, lane_label, lane_numbers
from storage.queries import NUMBER_COLUMNS
from storage.reports import CONFIG, Comparison
from storage.reports import told_apart_by as reports_told_apart_by
from storage.text import csv_cell, markdown_text, printable

COLUMNS = [
    ("machine", "machine"),
    ("python", "python"),
    ("workload", "workload"),
    ("size", "size"),
    ("tasks", "tasks"),
    ("executor", "executor"),
    ("start_method", "start"),
    ("workers", "workers"),
    ("processes", "proc."),
    ("repeats", "n"),
    ("median_s", "median"),
    ("ci_low_s", "95% CI low"),
    ("ci_high_s", "95% CI high"),
    ("iqr_s", "IQR"),
    ("cv", "CV"),
    ("min_s", "min"),
    ("speedup", "speedup"),
    ("speedup_low", "speedup low"),
    ("speedup_high", "speedup high"),
    ("efficiency", "eff."),
    ("karp_flatt", "serial"),
    ("startup_s", "start-up"),
    ("in_flight", "in flight"),
    ("cpu_per_wall", "CPU/wall"),
    ("peak_rss_bytes", "peak mem"),
    ("worker_peak_rss_bytes", "worker mem"),
    ("involuntary_switches", "invol. switches"),
    ("core_moves", "core moves"),
    ("cores_used", "cores"),
]


def _missing(value: Any) -> bool:
    """None, NaN or an infinity: a figure that could not be measured (a zero time, no baseline)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def _ms(value: float) -> str:
    return "–" if _missing(value) else f"{value * 1000:.1f} ms"


def _number(value: float, spec: str) -> str:
    return "–" if _missing(value) else format(value, spec)


def _fmt(column: str, value: Any) -> str:
    if _missing(value):
        return "–"
    if column.endswith("_s"):
        return _ms(value)
    if column in ("cv", "efficiency"):
        return f"{value:.0%}"
    if column in ("speedup", "speedup_low", "speedup_high", "in_flight", "cpu_per_wall"):
        return f"{value:.2f}x"
    if column == "karp_flatt":
        return f"{value:.2f}"
    if column.endswith("_bytes"):
        return f"{value / 2**20:.0f} MiB"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# Columns a terminal table leaves out when every row has the same value (said in its caption).
CONSTANT_WHEN_SHARED = ("machine", "python", "size", "tasks", "start_method")


def told_apart_by(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """The options that COLUMNS leave out and that some rows alike in every shown column differ
    in (``joblib x2`` on loky and on threading), each with its label in the option table: a
    table shows them, or it would show two rows that look the same."""
    shown = [c for c, _ in COLUMNS if c in CONFIG]
    return [(c, BY_NAME[c].label) for c in reports_told_apart_by(summary, shown)]


def _with_told_apart(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """COLUMNS, with ``told_apart_by``'s after the workers."""
    at = [c for c, _ in COLUMNS].index("workers") + 1
    return [*COLUMNS[:at], *told_apart_by(summary), *COLUMNS[at:]]


def summary_rows(summary: pd.DataFrame, compact: bool = False) -> list[dict[str, str]]:
    columns = _with_told_apart(summary)
    if compact:
        shared = {c for c in CONSTANT_WHEN_SHARED if summary[c].map(str).nunique() <= 1}
        columns = [(c, label) for c, label in columns if c not in shared]
        # A terminal has room for the interval and the speedup with theirs in one cell each.
        columns = [
            (c, {"ci_low_s": "95% CI", "speedup_low": "speedup CI"}.get(c, label))
            for c, label in columns
            if c
            not in (
                "min_s",
                "ci_high_s",
                "speedup_high",
                "iqr_s",
                "worker_peak_rss_bytes",
                "cores_used",
            )
        ]
        return [
            {label: _compact(column, row, label) for column, label in columns}
            | {"warnings": "; ".join(row["warnings"])}
            for _, row in summary.iterrows()
        ]
    return [
        {label: _fmt(column, row[column]) for column, label in columns}
        | {"warnings": "; ".join(row["warnings"])}
        for _, row in summary.iterrows()
    ]


def _compact(column: str, row, label: str) -> str:
    if column == "ci_low_s":
        return f"{_fmt(column, row['ci_low_s'])}–{_fmt(column, row['ci_high_s'])}"
    if column == "speedup_low":
        return f"{_fmt(column, row['speedup_low'])}–{_fmt(column, row['speedup_high'])}"
    return _fmt(column, row[column])


def shared_caption(summary: pd.DataFrame) -> str:
    """The values every row shares, for the caption of a compact table."""
    parts = []
    for column in CONSTANT_WHEN_SHARED:
        values = summary[column].map(str).unique()
        if len(values) == 1 and values[0] not in ("None", "nan"):
            parts.append(f"{column.replace('_', ' ')} {values[0]}")
    return ", ".join(parts)


# Counts: whole numbers in every format (a column with a NULL comes back from SQL as floats).
WHOLE_COLUMNS = (*NUMBER_COLUMNS, "processes", "repeats")


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _whole_columns(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.assign(
        **{
            c: pd.Series([_whole(v) for v in summary[c]], index=summary.index, dtype=object)
            for c in WHOLE_COLUMNS
            if c in summary
        }
    )


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary as plain JSON values (NaN becomes null, counts whole numbers)."""
    records = []
    for _, row in _whole_columns(summary).iterrows():
        record = {}
        # every dimension of a configuration, the ones the table leaves out too
        extra = [c for c in CONFIG if c not in dict(COLUMNS)]
        extra += ["sequential_s", "q1_s", "q3_s", "spread", "run_order", "warnings"]
        for column in [c for c, _ in COLUMNS] + extra:
            value = row[column]
            if isinstance(value, float) and math.isnan(value):
                value = None
            elif hasattr(value, "item"):
                value = value.item()
            record[column] = value
        records.append(record)
    return records


def comparison_records(comparisons: Sequence[Comparison]) -> list[dict[str, Any]]:
    return [
        {
            **{k: (v.item() if hasattr(v, "item") else v) for k, v in c.config.items()},
            "a_median_s": c.a_median_s,
            "b_median_s": c.b_median_s,
            "ratio": c.ratio,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "p_value": c.p_value,
            "verdict": c.verdict,
            "a_repeats": c.a_repeats,
            "b_repeats": c.b_repeats,
            "a_processes": c.a_processes,
            "b_processes": c.b_processes,
            "basis": c.basis,
            "basis_why": c.basis_why,
            "raw_ratio": c.raw.ratio if c.raw else c.ratio,
            "raw_ci_low": c.raw.low if c.raw else c.ci_low,
            "raw_ci_high": c.raw.high if c.raw else c.ci_high,
            "raw_verdict": c.raw.verdict if c.raw else c.verdict,
            **{
                f"controlled_{k}": getattr(c.controlled, k, None)
                for k in ("ratio", "low", "high", "verdict")
            },
            "detectable": c.detectable,
            "sweeps_note": c.sweeps_note,
            **{f"control_{k}": getattr(c.tracking, k, None) for k in ("r", "slope", "processes")},
        }
        for c in comparisons
    ]


def comparison_rows(comparisons: Sequence[Comparison]) -> list[dict[str, str]]:
    return [
        {
            "workload": str(c.config.get("workload")),
            "executor": str(c.config.get("executor")),
            "workers": _fmt("workers", c.config.get("workers")),
            "A": _ms(c.a_median_s),
            "B": _ms(c.b_median_s),
            "B/A": _number(c.ratio, ".3f"),
            "95% CI": f"{_number(c.ci_low, '.3f')}–{_number(c.ci_high, '.3f')}",
            "p": _number(c.p_value, ".3f"),
            "basis": c.basis,
            "raw B/A": _number(c.raw.ratio if c.raw else c.ratio, ".3f"),
            "ctl B/A": _number(c.controlled.ratio, ".3f") if c.controlled else "–",
            "processes": f"{c.a_processes}/{c.b_processes}",
            "n": f"{c.a_repeats}/{c.b_repeats}",
            "verdict": verdict_text(c),
        }
        for c in comparisons
    ]


def verdict_text(c: Comparison) -> str:
    """The verdict, and for a tie the largest change it leaves possible."""
    if c.detectable is None:
        return c.verdict
    return f"{c.verdict}: none beyond ±{c.detectable:.1%}"


def basis_lines(comparisons: Sequence[Comparison]) -> list[str]:
    """Which comparison the verdicts stand on and why, and how the sweeps were used, each
    reason once."""
    said = [f"verdicts {c.basis_why}" for c in comparisons if c.basis_why]
    said += [c.sweeps_note for c in comparisons if c.sweeps_note]
    return list(dict.fromkeys(said))


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_nothing to show_\n"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        lines.append("| " + " | ".join(markdown_text(row[h]) for h in headers) + " |")
    return "\n".join(lines) + "\n"


def markdown(summary: pd.DataFrame, words: list[str], compared: Optional[tuple] = None) -> str:
    parts = ["# concurrency-lab report\n"]
    if compared:
        parts += _markdown_comparison(*compared)
    parts += ["## Summary\n", markdown_table(summary_rows(summary))]
    if words:
        said = "\n".join(f"- {markdown_text(w.strip())}" for w in words)
        parts += ["## What it means\n", said + "\n"]
    return "\n".join(parts)


def _markdown_comparison(comparisons, geomean, differences, a, b) -> list[str]:
    parts = [
        f"## {markdown_text(b)} against {markdown_text(a)}\n",
        markdown_table(comparison_rows(comparisons)),
        f"Geometric mean of B/A: **{_number(geomean, '.3f')}**\n",
        *(f"{markdown_text(line)}\n" for line in basis_lines(comparisons)),
    ]
    if differences:
        differ = "; ".join(f"{k}: {va} vs {vb}" for k, (va, vb) in differences.items())
        parts.append(f"The selections differ in: {markdown_text(differ)}\n")
    return parts


# --- HTML with inline SVG charts ---------------------------------------------------------------


def _svg_text(value: Any) -> str:
    """Data (a workload, a host name...) as SVG/HTML text: escaped, control characters shown."""
    return html.escape(printable(value))


def _svg_lines(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    ideal: bool = False,
    x_label: str = "workers",
    y_label: str = "speedup",
) -> str:
    """A line chart; with ``ideal`` the y = x line is drawn dashed."""
    width, height, pad = 520, 300, 45
    points = [p for values in series.values() for p in values]
    if not points:
        return ""
    x_max = max(x for x, _ in points) or 1
    y_max = max([y for _, y in points] + ([x_max] if ideal else [])) * 1.1 or 1

    def sx(x: float) -> float:
        return pad + (x / x_max) * (width - 2 * pad)

    def sy(y: float) -> float:
        return height - pad - (y / y_max) * (height - 2 * pad)

    out = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{_svg_text(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        f"{_svg_text(title)}</text>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#333"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="12">'
        f"{x_label}</text>",
        f'<text x="12" y="{height / 2}" font-size="12" transform="rotate(-90 12 '
        f'{height / 2})" text-anchor="middle">{y_label}</text>',
    ]
    for tick in sorted({x for x, _ in points}):
        out.append(
            f'<text x="{sx(tick):.1f}" y="{height - pad + 15}" text-anchor="middle" '
            f'font-size="11">{tick:g}</text>'
        )
    for i in range(5):
        y = y_max * i / 4
        out.append(
            f'<text x="{pad - 5}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="11">'
            f"{y:.2g}</text>"
        )
    if ideal:
        out.append(
            f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(x_max)}" y2="{sy(x_max)}" '
            'stroke="#999" stroke-dasharray="4 4"><title>ideal</title></line>'
        )
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(values))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for x, y in values:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}">'
                f"<title>{_svg_text(name)}: {y:.2f} at {x:g}</title></circle>"
            )
        out.append(
            f'<text x="{width - pad + 4}" y="{pad + 14 * n}" font-size="11" '
            f'fill="{colour}">{_svg_text(name)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def _svg_bars(title: str, bars: list[tuple[str, float]], shown=_ms) -> str:
    width, bar_height, pad = 520, 18, 150
    height = 40 + bar_height * len(bars)
    top = max((v for _, v in bars), default=1) or 1
    out = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{_svg_text(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        f"{_svg_text(title)}</text>",
    ]
    for n, (label, value) in enumerate(bars):
        y = 30 + n * bar_height
        length = (value / top) * (width - pad - 70)
        out.append(
            f'<text x="{pad - 6}" y="{y + 12}" text-anchor="end" font-size="11">'
            f"{_svg_text(label)}</text>"
            f'<rect x="{pad}" y="{y}" width="{length:.1f}" height="{bar_height - 4}" '
            f'fill="{PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{pad + length + 4}" y="{y + 12}" font-size="11">'
            f"{shown(value)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)


def _svg_timeline(title: str, timeline: pd.DataFrame) -> str:
    """One lane per worker (pid/thread), a bar per task, for the first counted repeat."""
    if timeline.empty:
        return ""
    counted = timeline[~timeline["warmup"].astype(bool)]
    repeat = (counted if not counted.empty else timeline)["repeat_index"].min()
    tasks = timeline[timeline["repeat_index"] == repeat]
    lanes = lane_numbers(zip(tasks["pid"], tasks["thread_id"]))
    width, lane_height, pad = 520, 22, 90
    height = 50 + lane_height * len(lanes)
    end = max(tasks["end_ms"].max(), 1e-9)
    out = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{_svg_text(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        f"{_svg_text(title)} (repeat {int(repeat)}, {end:.1f} ms)</text>",
    ]
    for worker, n in lanes.items():
        label = lane_label(lanes, worker)
        out.append(
            f'<text x="{pad - 6}" y="{40 + n * lane_height}" text-anchor="end" '
            f'font-size="11">{label}</text>'
        )
    for task in tasks.itertuples():
        n = lanes[(task.pid, task.thread_id)]
        x = pad + task.start_ms / end * (width - pad - 10)
        w = max((task.end_ms - task.start_ms) / end * (width - pad - 10), 1)
        colour, where = _core_colour(task)
        out.append(
            f'<rect x="{x:.1f}" y="{28 + n * lane_height}" width="{w:.1f}" '
            f'height="{lane_height - 6}" fill="{colour}">'
            f"<title>task {task.task_index}: {task.start_ms:.2f}–{task.end_ms:.2f} ms"
            f"{where}</title></rect>"
        )
    out.append("</svg>")
    return "\n".join(out)


# Each thread state's colour (storage.states' letters); on a core: the core's palette colour.
STATE_COLOURS = {"W": "#edc948", "L": "#e15759", "I": "#76b7b2", "S": "#dddddd", "B": "#b07aa1"}


def _svg_states(title: str, thread_states: str) -> str:
    """One lane per thread of a looked-at repeat, a bar per state (storage.states), with the
    state and its core in each bar's title and a legend below."""
    from storage import states

    lanes, span_us = states.decode(thread_states)
    if not lanes:
        return ""
    names = states.labels(lanes)
    width, lane_height, pad = 520, 22, 90
    legend_y = 36 + lane_height * len(lanes)
    out = [
        f'<svg width="{width}" height="{legend_y + 40}" role="img" '
        f'aria-label="{_svg_text(title)}">',
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14">'
        f"{_svg_text(title)} ({span_us / 1000:.1f} ms)</text>",
    ]
    scale = (width - pad - 10) / span_us
    for n, lane in enumerate(lanes):
        y = 28 + n * lane_height
        out.append(
            f'<text x="{pad - 6}" y="{y + 12}" text-anchor="end" font-size="11">'
            f"{_svg_text(names[(lane.pid, lane.tid)])}</text>"
        )
        for start, stop, letter, core in lane.spans(span_us):
            colour = PALETTE[core % len(PALETTE)] if letter == "C" else STATE_COLOURS[letter]
            what = f"on core {core}" if letter == "C" else states.STATES[letter][0]
            out.append(
                f'<rect x="{pad + start * scale:.1f}" y="{y}" '
                f'width="{max((stop - start) * scale, 0.5):.1f}" height="{lane_height - 6}" '
                f'fill="{colour}"><title>{what}: {start / 1000:.1f}–{stop / 1000:.1f} ms'
                "</title></rect>"
            )
    x = 10
    for letter, colour in (("C", PALETTE[0]), *STATE_COLOURS.items()):
        words = "on a core (colour: which)" if letter == "C" else states.STATES[letter][0]
        out.append(f'<rect x="{x}" y="{legend_y}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{x + 14}" y="{legend_y + 9}" font-size="10">{words}</text>')
        x += 14 + 6 * len(words) + 10
        if x > width - 80:
            x, legend_y = 10, legend_y + 16
    out.append("</svg>")
    return "\n".join(out)


def _core_colour(task) -> tuple[str, str]:
    """A task's colour by the core it ended on (by its number where cores were not recorded),
    and where it ran: "on core 1", or "moved from core 0 to core 1"."""
    start, end = getattr(task, "core_start", None), getattr(task, "core_end", None)
    if _missing(end) or _missing(start):
        return PALETTE[task.task_index % len(PALETTE)], ""
    start, end = int(start), int(end)
    where = f", on core {end}" if start == end else f", moved from core {start} to core {end}"
    return PALETTE[end % len(PALETTE)], where


def html_page(
    summary: pd.DataFrame,
    words: list[str],
    compared: Optional[tuple] = None,
    timeline: Optional[tuple] = None,
) -> str:
    """One self-contained page: tables, verdicts and SVG charts; no external URL."""
    import markdown_it  # shipped with rich

    # The Markdown escapes every string from the data; raw HTML is off as well, so that
    # nothing a database holds can become an element or an attribute of the page.
    body = (
        markdown_it.MarkdownIt("commonmark", {"html": False})
        .enable("table")
        .render(markdown(summary, words, compared))
    )
    charts = []
    for (machine, python, workload, size, tasks), rows in summary.groupby(
        ["machine", "python", "workload", "size", "tasks"], dropna=False
    ):
        label = f"{workload} (size {size:g}, {tasks:g} tasks) on {machine}, Python {python}"
        speedups = {
            executor: [
                (float(r.workers), float(r.speedup))
                for r in group.itertuples()
                if math.isfinite(r.speedup)
            ]
            for executor, group in rows.groupby("executor")
            if executor != "sequential"
        }
        speedups = {k: v for k, v in speedups.items() if v}
        if speedups:
            charts.append(_svg_lines(f"speedup: {label}", speedups, ideal=True))
        bars = [
            (f"{r.executor} x{int(r.workers)}", float(r.median_s))
            for r in rows.itertuples()
            if math.isfinite(r.median_s)
        ]
        charts.append(_svg_bars(f"time per executor: {label}", bars))
        memory = [
            (f"{r.executor} x{int(r.workers)}", float(r.peak_rss_bytes))
            for r in rows.itertuples()
            if r.peak_rss_bytes > 0
        ]
        if memory:
            charts.append(_svg_bars(f"peak memory per executor: {label}", memory, _mib))
    if timeline is not None:
        charts.append(_svg_timeline(f"task timeline of run {timeline[0][:8]}", timeline[1]))
        if len(timeline) > 2 and timeline[2]:
            charts.append(_svg_states(f"what each thread did, run {timeline[0][:8]}", timeline[2]))
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}svg{margin:1em 1em 0 0}"
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>concurrency-lab report</title><style>{style}</style></head><body>\n"
        f"{body}\n<h2>Charts</h2>\n<div>{''.join(charts)}</div>\n</body></html>\n"
    )


def csv_report(summary: pd.DataFrame) -> str:
    """The summary as CSV; no text cell can be a spreadsheet formula, numbers stay numbers."""
    frame = summary.drop(columns=["warnings"]).assign(
        warnings=["; ".join(w) for w in summary["warnings"]]
    )
    # Counts as whole numbers: a column with a missing value would be written 1.0.
    return _whole_columns(frame.map(csv_cell)).to_csv(index=False)


def json_report(summary: pd.DataFrame, words: list[str], compared: Optional[tuple]) -> str:
    data: dict[str, Any] = {"summary": summary_records(summary), "verdicts": words}
    if compared:
        comparisons, geomean, differences, a, b = compared
        data["comparison"] = {
            "a": a,
            "b": b,
            "rows": comparison_records(comparisons),
            "geomean_ratio": geomean,
            "environment_differences": {k: list(v) for k, v in differences.items()},
        }
    return json.dumps(data, indent=2, default=str) + "\n"
