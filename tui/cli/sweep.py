"""`conlab run`: its flags (one per row of the option table), the sweep's live progress on a
terminal, and its runs and verdicts printed."""

from __future__ import annotations

import inspect
import os
import sys
from enum import Enum
from typing import Any, Optional

import typer

from experiments import options as sweep_options
from experiments.options import parse_workers
from experiments.spec import run_label
from storage.text import as_text, number_text, printable
from tui.cli.common import (
    DB_HELP,
    JSON_HELP,
    BadInput,
    new_console,
    parse_count,
    parse_sizes,
    print_fitted,
    print_json,
)


class Order(str, Enum):
    turns = "turns"
    blocks = "blocks"


def run(
    workload: list[str] = typer.Option(
        ..., "-w", "--workload", help="built-in name, MODULE:FUNCTION or path/file.py:FUNCTION"
    ),
    executor: list[str] = typer.Option(..., "-e", "--executor", help="may be given several times"),
    order: Order = typer.Option(
        Order.turns,
        help="turns: the runs' processes take turns in a shuffled order (drift hits all alike); "
        "blocks: all processes of one run, then the next",
    ),
    target_ci: float = typer.Option(2.0, help="with --repeats auto: interval half-width, percent"),
    detect: Optional[float] = typer.Option(
        None,
        help="with --repeats auto: the smallest change (percent) a comparison of these runs "
        "should see; sets --target-ci to half of it",
    ),
    against: Optional[str] = typer.Option(
        None,
        metavar="SELECTION",
        help="measure the stored runs SELECTION picks (e.g. tag:v1) again in this sweep, taking "
        "turns with the new ones, so `report --compare` compares them within one sweep",
    ),
    max_time: Optional[float] = typer.Option(
        None, help="with --repeats auto: seconds the sweep may take (default 300)"
    ),
    db: Optional[str] = typer.Option(None, help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    **options: Any,
) -> int:
    """Run workloads on executors and store every timing."""
    from service import sweeps

    options = {o.name: options[o.key] for o in sweep_options.OPTIONS}
    workers, size, repeats = options.pop("workers"), options.pop("size"), options.pop("repeats")
    adaptive = repeats.strip().lower() == "auto"
    target_ci = _target_ci(adaptive, target_ci, detect, max_time)
    request = sweeps.SweepRequest(
        workloads=workload,
        executors=executor,
        workers=parse_workers(workers),
        pythons=options.pop("python") or [None],
        sizes=parse_sizes(size),
        params={
            "repeats": 5 if adaptive else parse_count("--repeats", repeats, "5 or auto"),
            **{name: getattr(value, "value", value) for name, value in options.items()},
        },
        order=order.value,
        target_ci=target_ci / 100 if adaptive else None,
        max_time_s=max_time,
        detect=detect / 100 if detect is not None else None,
        against=against,
    )
    prepared = sweeps.prepare(db, request)
    sweep, engine, specs = prepared.sweep, prepared.sweep.engine, prepared.sweep.specs
    for note in prepared.notes:
        sys.stderr.write(f"conlab: {printable(note)}\n")
    live = sys.stdout.isatty() and not as_json and not os.environ.get("NO_COLOR")
    if not as_json:
        for line in sweeps.detectable_note(engine, specs):
            sys.stderr.write(f"conlab: {line}\n")
    with _Progress(live, sweep) as progress, sweep.cancelled_by_signals():
        sweep.on_event = progress.on_event
        results = sweep.run()
    if as_json:
        print_json(results)
    else:
        _print_results(results, sweep.cancelled)
        _print_verdicts(engine, results)
    if any("saved_to" in r for r in results):
        _say_unsaved(results, as_json)
        return 1
    return 0 if results and all(r["status"] == "ok" for r in results) and not sweep.cancelled else 1


def _target_ci(adaptive: bool, target_ci: float, detect: Optional[float], max_time) -> float:
    """The interval half-width (percent) --repeats auto aims at: --target-ci, or half of
    --detect; BadInput for a percentage or a time out of its range."""
    if detect is not None and not adaptive:
        raise BadInput("--detect needs --repeats auto; add --repeats auto")
    if detect is not None and not 0 < detect < 100:
        raise BadInput(f"--detect must be a percentage above 0 and below 100, not {detect}")
    if detect is not None:
        # Two runs each measured to +-detect/2 see a change of `detect` about 4 times in 5.
        target_ci = detect / 2
    if adaptive and not 0 < target_ci < 100:
        raise BadInput(f"--target-ci must be a percentage above 0 and below 100, not {target_ci}")
    if max_time is not None and not 0 < max_time < 10**6:
        raise BadInput(f"--max-time must be a number of seconds above 0, not {max_time}")
    return target_ci


def _say_unsaved(results: list[dict], as_json: bool) -> None:
    """One line on the runs the database did not take: where they were saved instead, or that
    nothing could keep them but what was printed."""
    saved = [r["saved_to"] for r in results if r.get("saved_to")]
    lost = [r for r in results if "saved_to" in r and not r["saved_to"]]
    parts = []
    if saved:
        where = printable(os.path.dirname(saved[0]))
        stored = f"{len(saved)} run(s) could not be stored in the database"
        parts.append(f"{stored}; their results are saved in {where}")
    if lost:
        shown = (
            "in the JSON on stdout, with every event the runner sent"
            if as_json
            else "shown above, and nowhere else"
        )
        parts.append(
            f"{len(lost)} run(s) could not be stored in the database nor saved to a file "
            f"({printable(lost[0].get('unsaved_error'))}): their results are {shown}"
        )
    sys.stderr.write(f"conlab: {'; '.join(parts)}\n")


# How `conlab run` takes an option whose command-line form is not one value of its type: several
# worker counts or sizes, a count or "auto", an interpreter per --python.
CLI_FORMS: dict[str, tuple[Any, Any]] = {
    "workers": (Optional[str], None),
    "size": (Optional[str], None),
    "repeats": (str, "5"),
    "python": (Optional[list[str]], None),
}


def _option_parameter(option: sweep_options.SweepOption) -> inspect.Parameter:
    """``option`` as a parameter of ``run``, which typer turns into a flag."""
    if option.name in CLI_FORMS:
        annotation, default = CLI_FORMS[option.name]
    elif option.choices:
        annotation = Optional[Enum(option.key, [(c, c) for c in option.choices], type=str)]
        default = option.default
    else:
        annotation = option.type if option.default is not None else Optional[option.type]
        default = option.default
    return inspect.Parameter(
        option.key,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, option.flag, help=option.help),
        annotation=annotation,
    )


def use_option_table() -> None:
    """Give ``run`` one flag per row of the option table (typer reads the signature)."""
    fixed = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for p in inspect.signature(run, follow_wrapped=False).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in _option_keys
    ]
    added = [_option_parameter(option) for option in sweep_options.OPTIONS]
    _option_keys.clear()
    _option_keys.update(p.name for p in added)
    # after -w and -e, before the options of the sweep as a whole (--order ... --json)
    run.__signature__ = inspect.Signature(fixed[:2] + added + fixed[2:], return_annotation=int)


_option_keys: set[str] = set()
use_option_table()


class _Progress:
    """Rich live progress on a terminal; nothing otherwise."""

    def __init__(self, live: bool, sweep):
        self.live = live
        self.sweep = sweep
        self._progress = None

    def __enter__(self):
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}", markup=False),  # a workload path is text
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=new_console(stderr=True),
                transient=True,
            )
            self._progress.__enter__()
            self._overall = self._progress.add_task("processes", total=self.sweep.planned)
            self._current = None
        return self

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.__exit__(*exc)
        return False

    def on_event(self, spec, event) -> None:
        if self._progress is None:
            return
        kind = event.get("event")
        if kind == "env":
            from service.sweeps import process_label, process_tasks

            label = printable(process_label(spec, event))
            self._current = self._progress.add_task(label, total=process_tasks(spec))
        elif kind == "tasks" and self._current is not None:
            # Per repeat, between timings: mid-repeat updates would take CPU from the run.
            self._progress.update(self._current, completed=(event["repeat"] + 1) * spec.tasks)
        elif kind in ("done", "error"):
            total = max(self.sweep.planned, self.sweep.launched)
            self._progress.update(self._overall, completed=self.sweep.launched, total=total)
            if self._current is not None:
                self._progress.remove_task(self._current)
                self._current = None


def _print_results(results: list[dict], cancelled: bool) -> None:
    """The sweep's runs, one line each, fitted to the terminal as the report is: what every
    run shares said once above them, errors and notes below."""
    from service.sweeps import speedups as run_speedups

    speedups = run_speedups(results)
    rows = [
        {
            "python": r.get("python") or "",
            "workload": r["workload"],
            "size": number_text(r["size"]),
            "executor": r["executor"],
            "workers": str(r["workers"]),
            "start": r["start_method"] or "",
            "status": r["status"],
            "median": f"{r['median_s'] * 1000:.1f} ms" if r["median_s"] is not None else "",
            "95% interval": _interval_text(r),
            "speedup": speedups.get(r["run_id"], ""),
        }
        for r in results
    ]
    shared = [c for c in ("workload", "size", "python") if len({row[c] for row in rows}) == 1]
    said = {"workload": "{}", "size": "size {}", "python": "Python {}"}
    title = "runs: " + ", ".join(said[c].format(rows[0][c]) for c in shared if rows[0][c])
    identity = [c for c in ("python", "workload", "size") if c not in shared]
    failed = ["status"] if any(row["status"] != "ok" for row in rows) else []
    required = [*identity, "executor", "workers", *failed, "median", "95% interval"]
    if_room = ["speedup"] + (["start"] if any(row["start"] for row in rows) else [])
    console = new_console()
    print_fitted([(title, rows)], required, if_room, console)
    for r in results:
        name = run_label(r["executor"], r["workers"])
        if r["error"]:
            console.print(as_text(f"{name}: {r['error']}"))
        for note in r.get("notes", []):
            console.print(as_text(f"{name}: {note}"))
        if r.get("target_ci_met") is False:
            console.print(as_text(f"{name}: its interval did not reach --target-ci in --max-time"))
    if cancelled:
        console.print("cancelled: the run in progress was stored as cancelled; later runs skipped")


def _print_verdicts(engine, results: list[dict]) -> None:
    from service.sweeps import sweep_report

    found = sweep_report(engine, results)
    if found is not None:
        console = new_console()
        for line in found.verdicts:
            console.print(as_text(line))


def _interval_text(r: dict) -> str:
    if r.get("ci_low_s") is None or r.get("ci_high_s") is None:
        return ""
    return f"{r['ci_low_s'] * 1000:.1f}–{r['ci_high_s'] * 1000:.1f} ms"
