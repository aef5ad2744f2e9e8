"""The layers hold because `make lint` fails when a face reaches past the application layer:
import-linter run on a copy of the tree, as it is and with one forbidden import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_face_importing_storage_breaks_the_contracts(tmp_path):
    tree = copy_tree(tmp_path)
    kept = lint_imports(tree)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    cli = tree / "tui" / "cli" / "__init__.py"
    cli.write_text(
        cli.read_text().replace("import typer\n", "import typer\n\nimport storage.sharing\n", 1)
    )
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert "tui.cli -> storage.sharing" in broken.stdout, broken.stdout


def test_the_application_layer_importing_textual_breaks_the_contracts(tmp_path):
    tree = copy_tree(tmp_path)
    runs = tree / "service" / "runs.py"
    runs.write_text(runs.read_text() + "\nimport textual  # noqa\n")
    broken = lint_imports(tree)
    assert broken.returncode != 0
    assert "service.runs -> textual" in broken.stdout, broken.stdout


def test_a_report_module_importing_back_breaks_the_contracts(tmp_path):
    """The report's modules import one way (verdicts | comparisons -> summaries -> loading):
    one import back, and make lint fails naming it."""
    tree = copy_tree(tmp_path)
    for module, back in (("loading", "summaries"), ("summaries", "comparisons")):
        path = tree / "storage" / f"{module}.py"
        kept = path.read_text()
        path.write_text(f"{kept}\nimport storage.{back}  # noqa\n")
        done = lint_imports(tree)
        path.write_text(kept)
        assert done.returncode and f"storage.{module} -> storage.{back}" in done.stdout, done.stdout
