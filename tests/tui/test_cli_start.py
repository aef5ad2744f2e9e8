"""A command's own start-up: what it loads before it reads anything, and the option values it
converts itself (tui.cli.coercion) converted as typer converts them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer.main
from typer import _coercion

import tui.cli
from tui.cli import coercion

# Raw values of every shape a command line gives an option, good and bad for each type.
SAMPLES = [
    "5", "-3", "0", "05", " 7", "1_000", "2.5", "-0.25", "1e3", "inf", "nan", "", "abc",
    "json", "JSON", "turns", "spawn", "Threading", "true", "12345678901234567890123",
    ("a",), ("a", "b"), ("1", "x"), ("5",), (), None, 5, 2.5, True,
]  # fmt: skip


def parameters():
    """Every parameter of every command of `conlab`, with its command's name."""
    tui.cli.use_option_table()
    groups = [("conlab", typer.main.get_command(tui.cli.app))]
    while groups:
        name, group = groups.pop()
        for param in group.params:
            yield f"{name} {param.name}", param
        for sub, command in getattr(group, "commands", {}).items():
            groups.append((f"{name} {sub}", command))


def converted(runtime, value, param):
    try:
        found = runtime.coerce(value, param=param, ctx=None)
        return "value", type(found), repr(found)  # repr: nan is nan
    except Exception as exc:  # typer's words for a value it refuses
        return "refused", type(exc), str(exc)


@pytest.mark.parametrize("name,param", list(parameters()), ids=lambda p: str(p))
def test_every_option_converts_every_value_as_typer_does(name, param):
    coercion.install()
    from typer import core

    ours, typers = core.build_runtime_param, _coercion.build_runtime_param
    assert ours is not typers
    for value in SAMPLES:
        if isinstance(value, tuple) != bool(param.multiple or param.nargs != 1):
            continue
        expected = converted(typers(param.type_descriptor), value, param)
        assert converted(ours(param.type_descriptor), value, param) == expected, (name, value)


# Commands that read a lab file, run one after the other in one process; then whether pydantic
# was loaded on the way.
COMMANDS = [
    ["report", "--format", "json"],
    ["report", "--format", "csv", "--select", "executor:sequential", "--min-effect", "2.5"],
    ["runs", "--json", "--limit", "5"],
]
LOADED = """
import sys
from tui.cli import main

for args in COMMANDS:
    try:
        main([*args, "--db", sys.argv[1]])
    except SystemExit as ended:
        assert ended.code == 0, (args, ended.code)
sys.stderr.write(repr("pydantic" in sys.modules))
"""


def test_commands_read_their_options_without_loading_pydantic(db_with_one_run):
    script = f"COMMANDS = {COMMANDS!r}\n{LOADED}"
    found = subprocess.run(
        [sys.executable, "-c", script, str(db_with_one_run)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stderr == "False"
