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


# Imports back against the report's order (verdicts | comparisons -> summaries -> loading).
REPORT_IMPORTS_BACK = [("loading", "summaries"), ("summaries", "comparisons")]


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> subprocess.CompletedProcess:
    """import-linter on a copy of the tree with forbidden imports added: a face importing
    storage, the application layer importing textual, and two of the report's modules each
    importing back (the tree as it is passes `make lint`: tests/test_setup.py)."""
    tree = copy_tree(tmp_path_factory.mktemp("tree"))
    cli = tree / "tui" / "cli" / "__init__.py"
    cli.write_text(
        cli.read_text().replace("import typer\n", "import typer\n\nimport storage.sharing\n", 1)
    )
    runs = tree / "service" / "runs.py"
    runs.write_text(runs.read_text() + "\nimport textual  # noqa\n")
    for module, back in REPORT_IMPORTS_BACK:
        path = tree / "storage" / f"{module}.py"
        path.write_text(f"{path.read_text()}\nimport storage.{back}  # noqa\n")
    return lint_imports(tree)


def test_a_face_importing_storage_breaks_the_contracts(broken):
    assert broken.returncode != 0
    assert "tui.cli -> storage.sharing" in broken.stdout, broken.stdout


def test_the_application_layer_importing_textual_breaks_the_contracts(broken):
    assert broken.returncode != 0
    assert "service.runs -> textual" in broken.stdout, broken.stdout


@pytest.mark.parametrize("module, back", REPORT_IMPORTS_BACK)
def test_a_report_module_importing_back_breaks_the_contracts(broken, module, back):
    """The report's modules import one way (verdicts | comparisons -> summaries -> loading):
    one import back, and make lint fails naming it."""
    assert broken.returncode != 0
    assert f"storage.{module} -> storage.{back}" in broken.stdout, broken.stdout
