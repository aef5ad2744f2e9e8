"""The layers hold because `make lint` fails when a face reaches past the application layer:
import-linter run on a copy of the tree, as it is and with one forbidden import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("experiments", "storage", "service", "tui")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_tree(to: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, to / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", to / "pyproject.toml")
    return to


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> subprocess.CompletedProcess:
    """import-linter on a copy of the tree with two forbidden imports added: a face importing
    storage, and the application layer importing textual (the tree as it is passes `make
    lint`: tests/test_setup.py)."""
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    cli = tree / "tui" / "cli.py"
    cli.write_text(
        cli.read_text().replace("import typer\n", "import typer\n\nimport storage.sharing\n", 1)
    )
    runs = tree / "service" / "runs.py"
    runs.write_text(runs.read_text() + "\nimport textual  # noqa\n")
    return lint_imports(tree)


def test_a_face_importing_storage_breaks_the_contracts(broken):
    assert broken.returncode != 0
    assert "tui.cli -> storage.sharing" in broken.stdout, broken.stdout


def test_the_application_layer_importing_textual_breaks_the_contracts(broken):
    assert broken.returncode != 0
    assert "service.runs -> textual" in broken.stdout, broken.stdout
