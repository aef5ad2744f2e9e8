"""Advise's answer: the recommendation (the preferred among the fastest and its ties), its speedup
with its interval, memory against the runner-up, why, the snippet, and all of it in words."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from experiments.executors import EXECUTORS, Executor, Snippet
from experiments.workloads import WORKLOADS
from service.advise.measuring import MIN_EFFECT, TAG
from service.advise.planning import DISPATCH_SHARE, Candidate
from service.advise.probes import (
    _bytes,
    _crowding,
    _ms,
    _share,
    _thread_words,
    busy,
    dispatch_s,
    thread_verdict,
    waits,
)


def _row_name(row) -> str:
    candidate = Candidate(row.executor, int(row.workers), _int(row.chunksize), label=row.python)
    return candidate.named(bool(getattr(row, "several_pythons", False)))


def _int(value) -> Optional[int]:
    return None if value is None or value != value else int(value)


def _preference(row, pythons: Sequence[str] = ()) -> tuple:
    """Among tied rows: the simpler executor, then the interpreter given first, then fewer
    workers and smaller chunks."""
    rank = getattr(EXECUTORS.get(row.executor), "preference", Executor.preference)
    python = pythons.index(row.python) if row.python in pythons else len(pythons)
    return rank, python, int(row.workers), _int(row.chunksize) or 1


def _prefer_reason(chosen, other) -> str:
    """Why ``chosen`` is preferred to the tied ``other``, from what they are and cost."""
    if chosen.executor == other.executor and chosen.python != other.python:
        memory = _memory_text(chosen, other)
        if memory:
            return f"{_row_name(chosen)} holds less memory ({memory})"
        return f"{_row_name(chosen)} runs on the first interpreter given (--python)"
    if chosen.executor == other.executor:
        return f"{_row_name(chosen)} uses fewer workers"
    if chosen.executor == "sequential":
        return "sequential needs no executor at all"
    if chosen.executor == "threads" and other.executor == "asyncio":
        return "threads needs no async rewrite"
    memory = _memory_text(chosen, other)
    if memory:
        return f"{_row_name(chosen)} holds less memory ({memory})"
    return f"{_row_name(chosen)} starts no worker processes"


def _memory_text(a, b) -> str:
    ma, mb = a.peak_rss_bytes, b.peak_rss_bytes
    if not (ma == ma and mb == mb and ma and mb):
        return ""
    return f"{_bytes(ma)} against {_bytes(mb)} for {_row_name(b)}, peaks summed over processes"


def _import_line(workload: str) -> tuple[str, str]:
    """(import statement, function name) for the snippet."""
    if workload in WORKLOADS:
        name = WORKLOADS[workload].func.__name__
        return f"from experiments.workloads import {name}", name
    module, _, name = workload.rpartition(":")
    if module.endswith(".py") or "/" in module:
        module = module.rsplit("/", 1)[-1].removesuffix(".py")
    return f"from {module} import {name}", name


def snippet(
    workload: str,
    executor: str,
    workers: int,
    chunksize: Optional[int],
    start_method: Optional[str],
    size: int,
    tasks: int,
) -> str:
    """Ready-to-paste code running the function the recommended way (the executor's own);
    "" where it has none."""
    line, func = _import_line(workload)
    async_form = getattr(WORKLOADS.get(workload), "async_func", None)
    items = f"items = [{size}] * {tasks}  # your arguments"
    afunc = getattr(async_form, "__name__", func)
    code = Snippet(line, func, afunc, items, workers, chunksize, start_method)
    found = EXECUTORS.get(executor)
    return (found.snippet(code) if found else None) or ""


def _probe_reasons(workload: str, probes: dict, tasks: int) -> list[str]:
    """What the probes found, in words with their figures."""
    cpu = probes.get("cpu_per_wall") or 0
    sized = probes.get("calibration") or {}
    how = " (--size auto)" if sized.get("grows") else ""
    if sized and not sized.get("grows"):
        how = " (its time does not grow with its argument)"
    found = [
        f"one call takes {_ms(probes['call_s'])} at size {probes['size']}{how}; its CPU time is "
        f"{_share(min(cpu, 1))} of the wall time it had a core for: it "
        + ("waits rather than works" if waits(probes) else "works rather than waits")
    ]
    if busy(probes):
        found.append(
            f"the machine was busy ({_crowding(probes)}): speedups here are smaller "
            "than on a quiet machine, and ties likelier"
        )
    verdict = thread_verdict(probes)
    found.append(
        f"{_thread_words(probes)}: "
        + {
            "overlap": "the calls overlap (it waits, or its C code releases the GIL)",
            "serial": "one ran at a time (it holds the GIL)",
            "unclear": "no clear sign either way, so threads are measured",
            "crowded": (
                "with other work on the cores these figures do not say whether the GIL or the "
                "busy machine held them back, so threads are measured"
            ),
        }[verdict]
    )
    cost, call = dispatch_s(probes), probes["call_s"]
    share = cost / max(call, 1e-9)
    found.append(
        f"a task's round trip to a worker process costs {_ms(cost)} here (argument "
        f"{_bytes(probes['argument']['bytes'])}, result {_bytes(probes['result']['bytes'])} "
        f"pickled), "
        + (f"{share:.1f}x" if share >= 1 else f"{share:.1%} of")
        + " a call: "
        + (
            "dispatch dominates, so process pools get chunks of tasks"
            if share > DISPATCH_SHARE
            else "small beside the work"
        )
    )
    return found


def answer(
    workload: str,
    probes: dict,
    candidates: list[Candidate],
    left_out: list[dict],
    summary,
    words: list[str],
    results: list[dict],
    stop_reason: str,
    tasks: int,
) -> dict:
    """The recommendation and everything behind it, as the ``--json`` object."""
    from storage.verdicts import fastest, undecided

    why = _probe_reasons(workload, probes, tasks)
    rows = summary[summary["workload"] == workload] if not summary.empty else summary
    if not rows.empty:  # every name says its interpreter when several were measured
        rows = rows.assign(several_pythons=rows["python"].nunique() > 1)
    measured = _candidate_rows(candidates, rows, results)
    base = {
        "probes": probes,
        "candidates": measured + [{**x, "left_out": True} for x in left_out],
        "sweep_id": results[0]["sweep_id"] if results else None,
        "tasks": tasks,
        "stopped": stop_reason,
    }
    if rows.empty:
        failed = [r for r in results if r["status"] != "ok"]
        reason = failed[0]["error"] if failed else "no run finished"
        return {
            "recommendation": None,
            "ties": [],
            "undecided": None,
            **base,
            "why": why + [reason],
            "snippet": "",
        }
    best, tied = fastest(rows, MIN_EFFECT)
    group = [best] + [row for row, _ in tied]
    pythons = [c.label for c in candidates if c.label]
    chosen = min(group, key=lambda row: _preference(row, list(dict.fromkeys(pythons))))
    others = rows[rows.index != chosen.name].sort_values("median_s")
    runner_up = others.iloc[0] if not others.empty else None
    start_method = _start_method(results, chosen)
    recommendation = _recommendation(chosen, start_method)
    ties = _ties(chosen, group)
    open_tie = undecided(best, tied, MIN_EFFECT)
    why += _why_chosen(chosen, group, ties, open_tie, runner_up, recommendation)
    why += _why_memory_and_guard(chosen, runner_up, recommendation, start_method)
    why.append(
        f"measured: {len(candidates)} configurations in one sweep, taking turns; {stop_reason}"
    )
    why += [w.strip() for w in words[1:]]
    code = snippet(
        workload,
        chosen.executor,
        int(chosen.workers),
        _int(chosen.chunksize),
        start_method,
        int(chosen["size"]),
        tasks,
    )
    return {
        "recommendation": recommendation,
        "ties": ties,
        "undecided": _undecided_json(open_tie),
        **base,
        "why": why,
        "snippet": code,
    }


def _recommendation(chosen, start_method: Optional[str]) -> dict:
    """The chosen row as the ``--json`` answer's recommendation."""
    is_seq = chosen.executor == "sequential"
    return {
        "python": chosen.python,
        "executor": chosen.executor,
        "workers": int(chosen.workers),
        "chunksize": _int(chosen.chunksize),
        "start_method": start_method,
        "speedup": 1.0 if is_seq else float(chosen.speedup),
        "ci": [1.0, 1.0] if is_seq else [float(chosen.speedup_low), float(chosen.speedup_high)],
        "median_s": float(chosen.median_s),
        "peak_rss_bytes": _number(chosen.peak_rss_bytes),
    }


def _ties(chosen, group: list) -> list[dict]:
    """The rows tied with ``chosen``, each with why ``chosen`` is preferred to it."""
    return [
        {
            "python": row.python,
            "executor": row.executor,
            "workers": int(row.workers),
            "chunksize": _int(row.chunksize),
            "median_s": float(row.median_s),
            "preferred": _prefer_reason(chosen, row),
        }
        for row in group
        if row.name != chosen.name
    ]


def _why_chosen(chosen, group: list, ties: list[dict], open_tie, runner_up, rec: dict) -> list:
    """Why ``chosen`` among the fastest: the tie still open, the tie, or its lead on the
    runner-up; and its speedup with its interval."""
    why = []
    if open_tie is not None:
        reasons = dict.fromkeys(t["preferred"] for t in ties)
        why.append(
            f"until more measurement tells them apart, the simplest of them is "
            f"{_row_name(chosen)} (the snippet below): " + "; ".join(reasons)
        )
    elif ties:
        names = [_row_name(chosen)] + [_row_name(r) for r in group if r.name != chosen.name]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        reasons = dict.fromkeys(t["preferred"] for t in ties)  # each reason once, in order
        why.append(f"{listed} are tied; " + "; ".join(reasons))
    elif runner_up is not None:
        slower = runner_up.median_s / chosen.median_s
        why.append(
            f"{_row_name(chosen)} is clear of the rest beyond their intervals; the "
            f"runner-up, {_row_name(runner_up)}, took {slower:.2f}x as long"
        )
    if chosen.executor != "sequential":
        ci = rec["ci"]
        why.append(
            f"{_row_name(chosen)}: {rec['speedup']:.2f}x the sequential run (95% CI "
            f"{ci[0]:.2f}–{ci[1]:.2f})"
        )
    return why


def _why_memory_and_guard(chosen, runner_up, rec: dict, start_method: Optional[str]) -> list:
    """Its memory against the runner-up's (into ``rec`` too), and why the snippet guards its
    pool's start."""
    why = []
    if runner_up is not None:
        memory = _memory_text(chosen, runner_up)
        if memory:
            rec["runner_up_peak_rss_bytes"] = _number(runner_up.peak_rss_bytes)
            why.append(f"memory: {_row_name(chosen)} {memory}")
    if EXECUTORS[chosen.executor].pickles_tasks:
        why.append(
            'the snippet starts its pool under `if __name__ == "__main__":`: the spawn '
            "and forkserver start methods import the main module in every worker, which "
            "would otherwise start pools of its own"
            + (f" ({start_method} is the default here)" if start_method else "")
        )
    return why


def _undecided_json(found) -> Optional[dict]:
    """An undecided answer (storage.verdicts.Undecided) as the ``--json`` object holds it, with
    its headline in words."""
    if found is None:
        return None
    from storage.verdicts import undecided_text

    return {
        "headline": undecided_text(found, [_row_name(r) for r in found.leaders]),
        "leaders": [
            {
                "python": row.python,
                "executor": row.executor,
                "workers": int(row.workers),
                "chunksize": _int(row.chunksize),
                "speedup": 1.0 if row.executor == "sequential" else _number(row.speedup),
                "ci": [_number(row.speedup_low), _number(row.speedup_high)],
                "median_s": float(row.median_s),
            }
            for row in found.leaders
        ],
        "processes": found.processes,
        "more_processes": found.more,
        "seconds": found.seconds,
    }


def _number(value) -> Optional[float]:
    return None if value is None or value != value else float(value)


def _start_method(results: list[dict], row) -> Optional[str]:
    for r in results:
        if (r["executor"], r["workers"], r.get("python")) == (
            row.executor,
            row.workers,
            row.python,
        ):
            return r.get("start_method")
    return None


def _candidate_rows(candidates, rows, results: list[dict]) -> list[dict]:
    """Each measured candidate with its figures (or its run's status and error)."""
    found = []
    for c in candidates:
        entry: dict[str, Any] = {
            "python": c.label,
            "executor": c.executor,
            "workers": c.workers,
            "chunksize": c.chunksize,
            "left_out": False,
        }
        run = next(
            (
                r
                for r in results
                if (r["executor"], r["workers"]) == (c.executor, c.workers)
                and r.get("python") == c.label
            ),
            None,
        )
        if run is not None:
            entry.update(status=run["status"], processes=run["processes"], error=run["error"])
        mine = rows[
            (rows["executor"] == c.executor)
            & (rows["workers"] == c.workers)
            & (rows["python"] == c.label)
        ]
        if not mine.empty:
            row = mine.iloc[0]
            entry.update(
                median_s=float(row.median_s),
                ci_low_s=_number(row.ci_low_s),
                ci_high_s=_number(row.ci_high_s),
                speedup=_number(row.speedup),
                peak_rss_bytes=_number(row.peak_rss_bytes),
            )
        found.append(entry)
    return found


def _entry_name(entry: dict, several_pythons: bool) -> str:
    """A measured candidate of the ``--json`` answer, named."""
    candidate = Candidate(
        entry["executor"], entry["workers"], entry["chunksize"], label=entry.get("python")
    )
    return candidate.named(several_pythons)


def advice_lines(found: dict) -> list[str]:
    """The answer in words: the recommendation, why, what was left out and why, the snippet
    (the CLI prints these; the Lab shows them)."""
    rec = found["recommendation"]
    several = len({c.get("python") for c in found["candidates"] if not c["left_out"]}) > 1
    open_tie = found.get("undecided")
    if rec is None:
        lines = ["no recommendation: no configuration finished"]
    elif open_tie:
        budget = open_tie.get("time_budget_s")
        lines = [open_tie["headline"] + (f" (--time-budget {budget:.0f})" if budget else "")]
    else:
        name = Candidate(
            rec["executor"], rec["workers"], rec["chunksize"], label=rec["python"]
        ).named(several)
        method = f", start method {rec['start_method']}" if rec["start_method"] else ""
        lines = [
            f"recommendation: {name}{method} — {rec['speedup']:.2f}x sequential (95% CI "
            f"{rec['ci'][0]:.2f}–{rec['ci'][1]:.2f})"
        ]
    lines += [f"  - {line}" for line in found["why"]]
    lines += [
        f"  left out {c['executor']}{' on ' + c['python'] if several and c.get('python') else ''}: "
        f"{c['reason']}"
        for c in found["candidates"]
        if c["left_out"]
    ]
    lines += [
        f"  {_entry_name(c, several)} {c['status']}: {c['error']}"
        for c in found["candidates"]
        if not c["left_out"] and c.get("status") not in (None, "ok")
    ]
    if found["snippet"]:
        lines += ["", *found["snippet"].rstrip("\n").split("\n"), ""]
    if found["sweep_id"]:
        lines.append(
            f"stored as sweep {found['sweep_id']} (tag {TAG}): conlab report "
            f"--select sweep:{found['sweep_id']}"
        )
    return lines
