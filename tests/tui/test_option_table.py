"""One table of sweep options: `conlab run`'s flags and the Lab's fields come from it, so a new
row shows up in both with nothing else changed, and a sweep gives each option to the executors
that take it."""

from __future__ import annotations

import dataclasses

import pytest
from textual.widgets import Input, Select

import service.sweeps
from experiments import options as sweep_options
from experiments.options import OPTIONS, SpecError, with_option_fields
from experiments.spec import ExperimentSpec
from service.sweeps import plan
from tests.tui.conftest import choose, wait_until
from tui import cli
from tui.app import ConlabApp
from tui.components.lab import LabPane

THROWAWAY = dataclasses.replace(
    OPTIONS[1],
    name="throwaway_count",
    flag="--throwaway-count",
    help="a row added by the test, nowhere else",
    label="throwaway",
    placeholder="added at run time",
)


@pytest.fixture
def with_throwaway_row(monkeypatch):
    """The option table with one more row, and the spec as spec.py builds it from that table,
    for this test only."""
    monkeypatch.setattr(sweep_options, "OPTIONS", (*OPTIONS, THROWAWAY))

    @dataclasses.dataclass(frozen=True)
    @with_option_fields
    class Spec(ExperimentSpec):
        workload: str
        executor: str

    monkeypatch.setattr(service.sweeps, "ExperimentSpec", Spec)
    yield
    monkeypatch.undo()
    cli.use_option_table()  # `run` back to the real table's flags


def run_help(monkeypatch, capsys) -> str:
    monkeypatch.setenv("COLUMNS", "300")  # no flag cut short
    with pytest.raises(SystemExit) as ended:
        cli.main(["run", "--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out


def test_every_option_is_a_flag_of_conlab_run(monkeypatch, capsys):
    shown = run_help(monkeypatch, capsys)
    for option in OPTIONS:
        assert option.flag in shown and option.help.split(",")[0] in shown


def test_a_new_row_is_a_flag_of_conlab_run(monkeypatch, capsys, tmp_path, with_throwaway_row):
    shown = run_help(monkeypatch, capsys)
    assert "--throwaway-count" in shown and "a row added by the test, nowhere else" in shown
    monkeypatch.setenv("CONLAB_DB", str(tmp_path / "results.db"))
    with pytest.raises(SystemExit) as ended:
        cli.main(["run", "-w", "tiny", "-e", "threads", "--throwaway-count", "0"])
    assert ended.value.code == 2
    assert capsys.readouterr().err == (
        "conlab: throwaway_count must be between 1 and 10,000,000, not 0; "
        "change --throwaway-count\n"
    )
    assert not (tmp_path / "results.db").exists()  # refused before anything was stored


async def lab_fields(tmp_path) -> dict:
    """The Lab's fields by id: (kind, placeholder or prompt)."""
    app = ConlabApp(db=str(tmp_path / "results.db"))
    async with app.run_test(size=(150, 48)) as pilot:
        lab = app.query_one(LabPane)
        await wait_until(pilot, lambda: lab.form_made)
        fields = {w.id: ("input", w.placeholder) for w in lab.query(Input)}
        fields.update({w.id: ("menu", w.prompt) for w in lab.query(Select)})
    return fields


async def test_every_option_is_a_field_of_the_lab(tmp_path):
    fields = await lab_fields(tmp_path)
    for option in OPTIONS:
        assert option.key in fields, option.name
        kind, text = fields[option.key]
        assert option.placeholder in text


async def test_a_new_row_is_a_field_of_the_lab(tmp_path, with_throwaway_row):
    fields = await lab_fields(tmp_path)
    assert fields["throwaway_count"] == ("input", "added at run time")
    app = ConlabApp(db=str(tmp_path / "results.db"))
    async with app.run_test(size=(150, 48)) as pilot:
        lab = app.query_one(LabPane)
        await choose(pilot, lab, "tiny", ["threads"], workers="1", throwaway_count="3")
        assert [spec.throwaway_count for spec in lab.build_specs()] == [3]
        await choose(pilot, lab, "tiny", ["threads"], workers="1", throwaway_count="0")
        assert str(lab.query_one("#spec-error").render()) == (
            "throwaway_count must be between 1 and 10,000,000, not 0; change --throwaway-count"
        )


async def test_the_labs_max_tasks_per_child_reaches_the_process_pools_only(tmp_path):
    app = ConlabApp(db=str(tmp_path / "results.db"))
    async with app.run_test(size=(150, 48)) as pilot:
        lab = app.query_one(LabPane)
        await choose(pilot, lab, "cpu", ["threads", "pool"], workers="1", max_tasks_per_child="3")
        specs = {spec.executor: spec.max_tasks_per_child for spec in lab.build_specs()}
        assert specs == {"threads": None, "pool": 3}
        await choose(pilot, lab, "cpu", ["threads"], workers="1", max_tasks_per_child="3")
        assert str(lab.query_one("#spec-error").render()) == (
            "--max-tasks-per-child applies to process pools; add -e processes or -e pool "
            "or drop --max-tasks-per-child"
        )


def test_a_sweep_gives_an_option_to_the_executors_that_take_it():
    executors = ["threads", "dask", "pool"]
    specs = plan(["tiny"], executors, [2], scheduler="tcp://h:8786", chunksize=3)
    assert [(s.executor, s.scheduler, s.chunksize) for s in specs] == [
        ("threads", None, 3),  # threads ignore a chunksize: the runner records none
        ("dask", "tcp://h:8786", 3),
        ("pool", None, 3),
    ]
    with pytest.raises(
        SpecError, match="^--scheduler applies to dask and ray; add -e dask or -e ray or drop"
    ):
        plan(["tiny"], ["threads"], [2], scheduler="tcp://h:8786")
