"""The report on a terminal: a comparison, or the summary in one table per work with its
warnings once each below it, then the verdicts; as many columns as fit, a line naming the rest."""

from __future__ import annotations

from storage.text import number_text
from tui.cli.common import new_console, print_fitted, say


def print_report_table(found, wide: bool = False) -> None:
    """A comparison, or the summary with its warnings once each below it, then the verdicts.
    Without ``wide`` each table holds the columns people read first, as many as fit the
    terminal, and a line names the rest."""
    from service.present import render

    console = new_console()
    left_out: list[str] = []
    if found.comparison:
        left_out += _print_comparison(found.comparison, wide, console)
    if not found.summary.empty:
        rows = render.summary_rows(found.summary, compact=True)
        notes = _warnings_below(rows, list(found.summary["warnings"]))
        if wide:
            title = f"summary: {render.shared_caption(found.summary)}"
            print_fitted([(title, rows)], list(rows[0]), [], console)
        else:
            left_out += _print_summary_groups(found.summary, rows, console)
        for line in notes:
            say(line, console)
    for line in found.verdicts:
        say(line, console)
    if left_out:
        shown = ", ".join(dict.fromkeys(left_out))
        say(f"not shown: {shown}; `conlab report --wide` shows them (csv, json, html hold all)")


# The terminal's comparison and summary: the columns always shown, then those shown while they
# fit, in this order; `--wide` shows every column.
COMPARISON_COLUMNS = ["workload", "executor", "workers", "B/A", "95% CI", "verdict"]
COMPARISON_IF_ROOM = ["A", "B"]
SUMMARY_COLUMNS = ["#", "executor", "start", "workers", "median", "95% CI"]
SUMMARY_IF_ROOM = ["speedup", "eff.", "CPU/wall", "peak mem"]


def _print_comparison(compared, wide: bool, console) -> list[str]:
    """The comparison table, then what its verdicts stand on; the columns left out."""
    from service.present import render

    rows = render.comparison_rows(compared.rows)
    title = f"{compared.b} against {compared.a}"
    workloads = {row["workload"] for row in rows}
    if len(workloads) == 1 and not wide:  # one workload: said once, in the title
        title += f": {workloads.pop()}"
        rows = [{k: v for k, v in row.items() if k != "workload"} for row in rows]
    if wide:
        left_out = print_fitted([(title, rows)], list(rows[0]), [], console)
    else:
        required = [c for c in COMPARISON_COLUMNS if c in rows[0]]
        left_out = print_fitted([(title, rows)], required, COMPARISON_IF_ROOM, console)
    say(f"geometric mean of B/A: {compared.geomean:.3f}", console)
    for line in render.basis_lines(compared.rows):
        say(line, console)
    for name, (va, vb) in compared.differences.items():
        say(f"the selections differ in {name}: {va} vs {vb}", console)
    return left_out


def _print_summary_groups(summary, rows: list[dict], console) -> list[str]:
    """One table per work (machine, Python, workload, size, tasks: what a speedup is measured
    against), its rows numbered across tables; the columns left out."""
    from service.present import render
    from service.reports import work_key

    key_columns = work_key()
    groups: dict[tuple, list[dict]] = {}
    for (_, figures), row in zip(summary.iterrows(), rows):
        groups.setdefault(tuple(figures[c] for c in key_columns), []).append(row)
    titled = [(_work_title(dict(zip(key_columns, key))), group) for key, group in groups.items()]
    # an option that tells apart rows otherwise alike is shown as the executor is
    apart = [label for _, label in render.told_apart_by(summary)]
    required = [c for c in [*SUMMARY_COLUMNS, *apart] if c in rows[0]]
    return print_fitted(titled, required, SUMMARY_IF_ROOM, console) + [
        c for c in rows[0] if c not in required + SUMMARY_IF_ROOM + list(_IN_TITLE)
    ]


# The summary's columns a work's title says instead (terminal labels, render.COLUMNS).
_IN_TITLE = ("machine", "python", "workload", "size", "tasks")


def _work_title(work: dict) -> str:
    return (
        f"{work['workload']}, size {number_text(work['size'])}, {number_text(work['tasks'])} "
        f"tasks, Python {work['python']}, {work['machine']}"
    )


def _warnings_below(rows: list[dict], warnings: list[list[str]]) -> list[str]:
    """Take the warnings out of a terminal table's rows (a long cell wraps every row onto
    several lines): each warning once, with the rows it applies to by number, in a "#"
    column."""
    by_warning: dict[str, list[int]] = {}
    for number, (row, row_warnings) in enumerate(zip(rows, warnings), 1):
        row.pop("warnings", None)
        for warning in row_warnings:
            by_warning.setdefault(warning, []).append(number)
        row["#"] = str(number)
        row.update({k: row.pop(k) for k in list(row) if k != "#"})  # "#" first
    return [
        f"warning (row{'s' * (len(numbers) > 1)} {', '.join(map(str, numbers))}): {warning}"
        for warning, numbers in by_warning.items()
    ]
