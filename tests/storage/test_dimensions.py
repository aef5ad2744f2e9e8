"""Every option that shapes a run is a dimension of the report, generated from the option table:
two runs that differ in one option only are two report rows, each selectable by the option's
key, a comparison of the two says they differ in it, and each run's column holds its value.

Options whose values the table gives (choices, whole numbers) are measured for real with a tiny
`conlab run`; the others (an address, a file, an interpreter) go through the real recorder."""

from __future__ import annotations

import itertools
import multiprocessing
import sqlite3

import pytest

from experiments.executors import EXECUTORS
from experiments.options import OPTIONS, SweepOption, takers
from storage.queries import OPTION_COLUMNS, PLACE_OPTIONS
from storage.summaries import BASELINE_KEY
from storage.text import markdown_text

DIMENSIONS = [option for option in OPTIONS if option.dimension]


def two_values(option: SweepOption) -> list:
    """Two values of ``option`` that a run takes here; for text without choices, two that only
    the recorder sees (no cluster, file or second interpreter is needed to store them)."""
    if option.name == "start_method":
        return [m for m in option.choices if m in multiprocessing.get_all_start_methods()][:2]
    if option.choices:
        return list(option.choices[:2])
    if option.type is int:
        first = max(option.low or 1, 1)
        return [first, first + 1]
    return [option.example, f"{option.example}-other"]


def measured(option: SweepOption) -> bool:
    """Whether a real run can take each of ``option``'s two values here."""
    return option.name not in PLACE_OPTIONS and (bool(option.choices) or option.type is int)


# What a run of an option needs besides it (CPython refuses max_tasks_per_child with fork).
NEEDS = {"max_tasks_per_child": {"start_method": "spawn"}}


def executor_for(option: SweepOption) -> str:
    names = takers(option, EXECUTORS.values())
    return "threads" if "threads" in names else names[0]


def _real_runs(conlab, option: SweepOption, values: list) -> None:
    for value, tag in zip(values, "ab"):
        options = {"workers": 2, "tasks": 2, "size": 1, "repeats": 1, "warmups": 0, "tag": tag}
        options.update(NEEDS.get(option.name, {}))
        options[option.name] = value
        args = ["run", "-w", "tiny", "-e", executor_for(option)]
        for name, given in options.items():
            args += [f"--{name.replace('_', '-')}", str(given)]
        result = conlab(*args, "--processes", "1")
        assert result.returncode == 0, result.stderr


def _recorded_runs(db_path, option: SweepOption, values: list) -> list:
    """Two runs through the real recorder; what the report shows of each (the interpreter's
    version for an option that is where a run was measured)."""
    from experiments.spec import ExperimentSpec
    from storage.database import open_engine
    from tests.helpers import environment, record_run

    engine = open_engine(db_path, writer=True)
    shown = []
    try:
        for n, (value, tag) in enumerate(zip(values, "ab")):
            version = f"3.1{n}.1" if option.name in PLACE_OPTIONS else "3.12.1"
            fingerprint = "f" * 20
            env = environment(fingerprint, "box", "cpu", version)
            env["interpreter_key"] = f"{fingerprint}-{version}"
            spec = ExperimentSpec(
                workload="tiny",
                executor=executor_for(option),
                tasks=2,
                repeats=3,
                warmups=0,
                tag=tag,
                **{option.name: value},
            )
            record_run(engine, spec, env, [10.0, 10.1, 10.2], resolved={option.name: value})
            shown.append(version if option.name in PLACE_OPTIONS else value)
    finally:
        engine.dispose()
    return shown


def _rows(conlab, *args: str) -> list[dict]:
    result = conlab("report", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return result.json()["summary"]


def _table_configurations(markdown: str) -> list[list[str]]:
    """The rows of a Markdown report's summary table, each cut before its figures (``proc.``)."""
    lines = markdown.splitlines()
    at = lines.index("## Summary") + 2
    width = lines[at].split(" | ").index("proc.")
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[at + 2 :])
    return [row.split(" | ")[:width] for row in rows]


@pytest.mark.parametrize("option", DIMENSIONS, ids=[o.name for o in DIMENSIONS])
def test_runs_that_differ_in_one_option_are_two_rows_selected_compared_and_stored(
    conlab, db_path, option
):
    values = two_values(option)
    assert len(values) == 2, f"no two values of {option.name} to run here"
    if measured(option):
        _real_runs(conlab, option, values)
        shown = values
    else:
        shown = _recorded_runs(db_path, option, values)
    column = "python" if option.name in PLACE_OPTIONS else option.name
    key = "python" if option.name in PLACE_OPTIONS else option.key

    rows = _rows(conlab)
    assert sorted(map(str, (r[column] for r in rows))) == sorted(map(str, shown)), rows

    table = conlab("report", "--format", "markdown").stdout
    first, second = _table_configurations(table)
    assert first != second, f"the table shows two rows alike:\n{table}"
    # the terminal's table, fitted to its width, keeps the column that tells them apart
    said = conlab("report")
    left_out = [ln for ln in (said.stdout + said.stderr).splitlines() if "not shown:" in ln]
    assert option.label not in " ".join(left_out), said.stdout

    for value in shown:
        picked = _rows(conlab, "--select", f"{key}:{value}")
        assert [str(r[column]) for r in picked] == [str(value)], picked

    compared = conlab("report", "--compare", "tag:a", "tag:b", "--format", "json")
    assert compared.returncode == 0, compared.stderr
    differences = compared.json()["comparison"]["environment_differences"]
    assert differences[column] == [str(shown[0]), str(shown[1])], differences
    said = conlab("report", "--compare", "tag:a", "tag:b", "--format", "markdown").stdout
    line = [ln for ln in said.splitlines() if ln.startswith("The selections differ in: ")]
    assert line and f" {markdown_text(column)}: " in f" {line[0].partition(': ')[2]}", said

    if option.name not in PLACE_OPTIONS:
        stored = (
            sqlite3.connect(db_path)
            .execute(f"SELECT {option.name} FROM run ORDER BY tag")
            .fetchall()
        )
        assert [str(v) for (v,) in stored] == [str(v) for v in values]


# A process whose option table has one more row, added before storage is imported (its columns,
# keys and configuration are made from the table then): two runs that differ in it only, through
# the real recorder into a new file, read back as every report reads them.
NEW_ROW = r"""
import dataclasses, json, sys
from experiments import options
row = dataclasses.replace(
    options.BY_NAME["backend"], name="flavour", flag="--flavour", label="flavour",
    choices=("vanilla", "mint"), for_executors=False, elsewhere="ignored",
)
options.OPTIONS = (*options.OPTIONS, row)
options.BY_NAME["flavour"] = row
import sqlite3
from experiments.spec import ExperimentSpec
from storage.database import open_engine
from storage.comparisons import compare
from storage.loading import load_processes, load_repeats, select
from storage.summaries import summarize
from tests.helpers import environment, record_run

path = sys.argv[1]
engine = open_engine(path, writer=True)
env = environment("f" * 20, "box", "cpu", "3.12.1")
for flavour, tag in (("vanilla", "a"), ("mint", "b")):
    spec = ExperimentSpec(workload="tiny", executor="threads", tasks=2, repeats=3, warmups=0,
                          tag=tag, flavour=flavour)
    record_run(engine, spec, env, [10.0, 10.1, 10.2], resolved={"flavour": flavour})
sources = [("db", engine)]
summary = summarize(load_processes(sources))
picked = summarize(select(load_processes(sources), "flavour:mint"))
_, _, differences = compare(load_repeats(sources), "tag:a", "tag:b")
engine.dispose()
stored = sqlite3.connect(path).execute("SELECT flavour FROM run ORDER BY tag").fetchall()
print(json.dumps({
    "rows": sorted(summary["flavour"]), "picked": list(picked["flavour"]),
    "differences": differences.get("flavour"), "stored": [v for (v,) in stored],
}))
"""


def test_a_new_option_row_is_a_dimension_with_nothing_else_changed(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    found = subprocess.run(
        [sys.executable, "-c", NEW_ROW, str(tmp_path / "lab.db")],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr
    result = json.loads(found.stdout)
    assert result == {
        "rows": ["mint", "vanilla"],
        "picked": ["mint"],
        "differences": ["vanilla", "mint"],
        "stored": ["vanilla", "mint"],
    }


NAMED = [
    option
    for option in DIMENSIONS
    if option.name in OPTION_COLUMNS and option.name not in (*BASELINE_KEY, "workers")
]


@pytest.mark.parametrize("option", NAMED, ids=[o.name for o in NAMED])
def test_the_words_name_two_rows_that_differ_in_one_option_apart(option):
    """What a report says names each configuration: two that differ only in an option (tied
    here) are named with it, not as "joblib x2 and joblib x2"."""
    from storage.loading import processes_of
    from storage.summaries import summarize
    from storage.verdicts import verdicts
    from tests.storage.test_reports import frame

    walls = [0.5, 0.51, 0.5, 0.5, 0.51]
    repeats = frame(
        [
            {"executor": "sequential", "workers": 1, "walls": [1.0, 1.01, 1.0, 1.0, 1.01]},
            {"executor": "joblib", "workers": 2, "walls": walls, "run": "a"},
            {"executor": "joblib", "workers": 2, "walls": walls, "run": "b"},
        ]
    )
    first, second = two_values(option)
    repeats.loc[repeats["run_id"] == "a", option.name] = first
    repeats.loc[repeats["run_id"] == "b", option.name] = second
    words = " ".join(verdicts(summarize(processes_of(repeats))))
    assert f"joblib x2 with {option.label} {first} " in words, words
    assert f"joblib x2 with {option.label} {second} " in words, words
