"""The option table: every row is a spec field that validation checks, and every executor option
an executor lists is a row."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from experiments import options
from experiments.executors import EXECUTORS
from experiments.options import OPTIONS, SpecError, not_taken, with_option_fields
from experiments.spec import ExperimentSpec, prepare

SPEC_FIELDS = {f.name: f for f in dataclasses.fields(ExperimentSpec)}
# Values that some option refuses: out of bounds, of the wrong type, or not text at all.
BAD_VALUES = (-1, 0, 10**13, 1.5, "", " ", "not a url", "nonesuch", "\udc9b")


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_option_is_a_spec_field_that_validation_checks(option):
    assert SPEC_FIELDS[option.name].default == option.default
    spec = ExperimentSpec(workload="tiny", executor="processes")
    spec.replace(**{option.name: option.default}).validate()  # its default is fine
    refused = []
    for value in BAD_VALUES:
        try:
            spec.replace(**{option.name: value}).validate()
        except SpecError as exc:
            refused.append(str(exc))
    assert refused, f"validation takes every value for {option.flag}"
    assert all("\n" not in message for message in refused)


def test_a_new_row_is_a_spec_field_that_validation_checks(monkeypatch):
    added = dataclasses.replace(OPTIONS[1], name="throwaway_count", flag="--throwaway-count")
    monkeypatch.setattr(options, "OPTIONS", (*OPTIONS, added))

    @dataclass(frozen=True)
    @with_option_fields
    class Spec(ExperimentSpec):  # as spec.py builds ExperimentSpec, under the longer table
        workload: str
        executor: str

    assert Spec(workload="tiny", executor="threads").throwaway_count == added.default
    Spec(workload="tiny", executor="threads", throwaway_count=3).validate()
    with pytest.raises(SpecError) as refused:
        Spec(workload="tiny", executor="threads", throwaway_count=0).validate()
    assert str(refused.value) == (
        "throwaway_count must be between 1 and 10,000,000, not 0; change --throwaway-count"
    )


def test_every_option_an_executor_takes_is_in_the_table():
    names = {option.name for option in OPTIONS if option.for_executors}
    for executor in EXECUTORS.values():
        assert set(executor.options) <= names, executor.name


@pytest.mark.parametrize(
    "option", [o for o in OPTIONS if o.elsewhere == "refused"], ids=lambda o: o.name
)
def test_an_option_refused_elsewhere_names_the_executors_that_take_it(option):
    value = (
        option.choices[-1]
        if option.choices
        else {"scheduler": "tcp://127.0.0.1:8786"}.get(option.name, 2)
    )
    spec = ExperimentSpec(workload="tiny", executor="threads", **{option.name: value})
    with pytest.raises(SpecError) as refused:
        prepare(spec)
    takers = [e.name for e in EXECUTORS.values() if option.name in e.options]
    assert str(refused.value) == (
        f"{option.flag} applies to {option.applies_to}, not threads; drop it or choose "
        + " or ".join(f"-e {name}" for name in takers)
    )
    assert takers
    for name in takers:
        assert not_taken(EXECUTORS[name], {option.name: value}) is None
