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
from experiments.spec import run_label
from service.present import svg
from service.present.lanes import PALETTE
from service.present.svg import escaped, missing, ms
from storage.comparisons import Comparison
from storage.queries import NUMBER_COLUMNS
from storage.summaries import BASELINE_KEY, CONFIG
from storage.text import csv_cell, markdown_text, number_text
from storage.verdicts import told_apart_by as reports_told_apart_by

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


def _number(value: float, spec: str) -> str:
    return "–" if missing(value) else format(value, spec)


def _fmt(column: str, value: Any) -> str:
    if missing(value):
        return "–"
    if column.endswith("_s"):
        return ms(value)
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


def options_apart(rows: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The options besides ``keys`` and the workers that some of ``rows`` alike in them differ
    in: what splits one executor's runs into lines of a speedup chart (loky and threading)."""
    return reports_told_apart_by(rows, [*keys, "workers"])


def with_options(name: str, values: dict[str, Any], apart: Sequence[str]) -> str:
    """``name`` with the options in ``apart`` that ``values`` holds, by their labels in the
    option table, as a report names a configuration: ``joblib with joblib on threading``."""
    given = [
        f"{BY_NAME[c].label} {_option_text(values[c])}"
        for c in apart
        if values.get(c) is not None and values[c] == values[c]  # NaN: the option not given
    ]
    return f"{name} with {' and '.join(given)}" if given else name


def _option_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    # an interval as one word, its unit once: "271.4–275.9 ms", "1.90–1.98x"
    if column == "ci_low_s":
        low, high = row["ci_low_s"], row["ci_high_s"]
        if missing(low) or missing(high):
            return f"{_fmt(column, low)}–{_fmt(column, high)}"
        return f"{low * 1000:.1f}–{high * 1000:.1f}\u00a0ms"
    if column == "speedup_low":
        return f"{_number(row['speedup_low'], '.2f')}–{_fmt(column, row['speedup_high'])}"
    if column in ("size", "tasks"):
        return number_text(row[column])
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
            # (a key the selections differ in is in no row's config: "–", never "None")
            "workload": str(c.config.get("workload", "–")),
            "executor": str(c.config.get("executor", "–")),
            "workers": _fmt("workers", c.config.get("workers")),
            "A": ms(c.a_median_s),
            "B": ms(c.b_median_s),
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


# A piece of work: what a section of the page is about, named in its heading; the key its
# verdicts and its speedups are computed over (storage.verdicts.verdicts_by_work).
WORK_KEY = BASELINE_KEY
WORK_NAMED = ("machine", "python", "workload", "size", "tasks")  # in the heading's own words

# The page's layout: the text column at most 1200 px; a table wider than it scrolls inside its
# own box; charts side by side while they fit, else one under the other, scaled down (never cut)
# on a page narrower than one; a long name breaks anywhere rather than widen the page.
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em auto;padding:0 2em;max-width:1200px;"
    "overflow-wrap:anywhere}"
    "section{border-top:1px solid #ccc;margin-top:2em}h2 small{font-weight:normal;color:#555}"
    ".box{overflow-x:auto;max-width:100%}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
    "padding:3px 6px;text-align:right}td{white-space:nowrap}th{overflow-wrap:normal}"
    "td:first-child,th:first-child{text-align:left;position:sticky;left:0;background:#fff}"
    ".charts{display:flex;flex-wrap:wrap;gap:1.5em 2.5em;align-items:flex-start;margin:1em 0}"
    "figure{margin:0;max-width:100%}figcaption{font-weight:bold;margin-bottom:.3em}"
    "svg.chart{display:block;max-width:100%;height:auto}"
    ".legend{list-style:none;padding:0;margin:.4em 0 0;font-size:12px;display:flex;"
    "flex-wrap:wrap;gap:.2em 1.2em;max-width:480px}"
    ".legend svg{margin-right:.4em}.verdict{font-size:1.05em}"
    ".compared td:last-child,.compared th:last-child{text-align:left}"
)


def html_page(
    summary: pd.DataFrame,
    said: Sequence[Sequence[str]],
    compared: Optional[tuple] = None,
    timeline: Optional[tuple] = None,
) -> str:
    """One self-contained page: the comparison, then a section per piece of work (its verdict,
    its charts, its rows), then one run's timeline; no script, no external URL. ``said`` is
    each piece of work's verdicts (storage.verdicts.verdicts_by_work), in the summary's order."""
    parts = ["<h1>concurrency-lab report</h1>"]
    if compared:
        parts.append(f'<section class="compared">{_html_comparison(compared)}</section>')
    said = list(said)
    groups = summary.groupby(WORK_KEY, dropna=False) if not summary.empty else []
    for n, (key, rows) in enumerate(groups):
        parts.append(_html_work(key, rows, said[n] if n < len(said) else []))
    if timeline is not None:
        run = escaped(timeline[0][:8])
        charts = [svg.timeline_chart(f"task timeline of run {timeline[0][:8]}", timeline[1])]
        if len(timeline) > 2 and timeline[2]:
            charts.append(
                svg.states_chart(f"what each thread did, run {timeline[0][:8]}", timeline[2])
            )
        parts.append(
            f"<section><h2>One run up close: {run}</h2>"
            f'<div class="charts">{"".join(charts)}</div></section>'
        )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>concurrency-lab report</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def _html_comparison(compared: tuple) -> str:
    """B against A as the Markdown report has it, each table in a box that scrolls."""
    import markdown_it  # shipped with rich

    # The Markdown escapes every string from the data; raw HTML is off as well, so that
    # nothing a database holds can become an element or an attribute of the page.
    page = (
        markdown_it.MarkdownIt("commonmark", {"html": False})
        .enable("table")
        .render("\n".join(_markdown_comparison(*compared)))
    )
    return page.replace("<table>", '<div class="box"><table>').replace("</table>", "</table></div>")


def _html_work(key: tuple, rows: pd.DataFrame, lines: Sequence[str]) -> str:
    """One piece of work's section: its verdict first, then its charts, then its rows."""
    work = dict(zip(WORK_KEY, key))
    machine, python, workload = work["machine"], work["python"], work["workload"]
    about = [f"size {number_text(work['size'])}", f"{number_text(work['tasks'])} tasks"]
    about += [f"{k.replace('_', ' ')} {work[k]}" for k in WORK_KEY if k not in WORK_NAMED]
    about.append(f"on {machine}, Python {python}")
    heading = f"<h2>{escaped(workload)} <small>{escaped(', '.join(about))}</small></h2>"
    verdict = ""
    if lines:
        # the heading names the work: the sentence goes on from where it names it
        first = lines[0].strip().removeprefix(f"{workload} on {machine}, Python {python}: ")
        verdict = f'<p class="verdict"><strong>Verdict:</strong> {escaped(first)}</p>'
        more = "".join(f"<li>{escaped(line.strip())}</li>" for line in lines[1:])
        verdict += f"<ul>{more}</ul>" if more else ""
    charts = "".join(_work_charts(rows))
    return (
        f'<section class="work">{heading}{verdict}<div class="charts">{charts}</div>'
        f"{_html_table(rows)}</section>"
    )


def _work_charts(rows: pd.DataFrame) -> list[str]:
    """One piece of work's charts: speedup per worker count, time and memory per executor,
    each executor in one colour in all three."""
    names = sorted({str(e) for e in rows["executor"]})
    colour = {name: PALETTE[n % len(PALETTE)] for n, name in enumerate(names)}
    charts = []
    speedups = {
        name: [
            (float(r.workers), float(r.speedup))
            for r in group.itertuples()
            if math.isfinite(r.speedup)
        ]
        for values, name, group in speedup_groups(rows, ["executor"])
        if values["executor"] != "sequential"
    }
    speedups = {k: v for k, v in speedups.items() if v}
    if speedups:
        title = "speedup against the sequential run"
        charts.append(svg.line_chart(title, speedups, ideal=True, colours=colour))
    timed = [r for r in rows.itertuples() if math.isfinite(r.median_s)]
    bars = [(_configuration(r), float(r.median_s)) for r in timed]
    colours = [colour[str(r.executor)] for r in timed]
    charts.append(svg.bar_chart("median time per executor", bars, colours=colours))
    held = [r for r in rows.itertuples() if r.peak_rss_bytes > 0]
    memory = [(_configuration(r), float(r.peak_rss_bytes)) for r in held]
    if memory:
        colours = [colour[str(r.executor)] for r in held]
        charts.append(svg.bar_chart("peak memory per executor", memory, svg.mib, colours))
    return charts


def speedup_groups(rows: pd.DataFrame, keys: Sequence[str]) -> list[tuple[dict, str, Any]]:
    """``rows`` (summary rows) split into the lines of a speedup chart: runs alike in ``keys``
    (the executor last) and in the options that tell them apart (``options_apart``) are one
    line over their workers. Each line: its values of those, its name (the executor and those
    options: ``joblib with joblib on loky``), its rows by workers."""
    apart = options_apart(rows, keys)
    lines = []
    for key, group in rows.groupby([*keys, *apart], dropna=False, sort=True):
        values = dict(zip([*keys, *apart], key))
        name = with_options(str(values[keys[-1]]), values, apart)
        lines.append((values, name, group.sort_values("workers")))
    return lines


# The rows of one piece of work: its heading names the work, and each interval is one cell.
HTML_COLUMNS = [
    (c, {"ci_low_s": "95% CI", "speedup_low": "speedup CI"}.get(c, label))
    for c, label in COLUMNS
    if c not in WORK_KEY and c not in ("ci_high_s", "speedup_high")
]


def _configuration(row) -> str:
    """A summary row as its charts and warnings name it: ``threads x4``."""
    return run_label(row.executor, row.workers, False)


def _cell(column: str, row, label: str) -> str:
    """A table cell's text; an interval with neither end measured is one "–"."""
    text = _compact(column, row, label)
    return "–" if set(text) == {"–"} else text


def _html_table(rows: pd.DataFrame) -> str:
    """One piece of work's rows as a table in a box that scrolls where the page is narrower,
    and the rows' warnings under it."""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in HTML_COLUMNS)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{escaped(_cell(c, row, label))}</td>" for c, label in HTML_COLUMNS)
        + "</tr>"
        for _, row in rows.iterrows()
    )
    warned = "".join(
        f"<li>{escaped(_configuration(row))}: {escaped('; '.join(row.warnings))}</li>"
        for row in rows.itertuples()
        if len(row.warnings)
    )
    warnings = f'<ul class="warnings">{warned}</ul>' if warned else ""
    return f'<div class="box"><table><tr>{head}</tr>{body}</table></div>{warnings}'


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
