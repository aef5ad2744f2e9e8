"""A newcomer's set-up: the README gets them from a clone to a first answer in one screen and
links the rest, and `make install` and `make lint` print what matters and nothing else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

# One terminal screen of the README: what it shows before anything else.
SCREEN_LINES = 40


def _links(markdown: Path) -> list[str]:
    """The relative link targets in ``markdown`` (web addresses and anchors alone left out)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t[0] != "#"]


def test_the_readmes_first_screen_walks_from_clone_to_a_shared_database():
    """Clone, the two commands, an own function advised and run, a comparison and a shared
    database, all before the first screen ends."""
    screen = "\n".join(REPO.joinpath("README.md").read_text().splitlines()[:SCREEN_LINES])
    for step in (
        "git clone",
        "make run",
        "make test",
        "conlab advise mymod:f",
        "conlab run -w mymod:f",
        "conlab report --compare",
        "conlab db export",
        "--db theirs.db",
    ):
        assert step in screen, f"{step!r} is not on the README's first screen"


def test_the_reference_is_in_docs_pages_the_readme_links():
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 2 * SCREEN_LINES
    linked = {REPO / t for t in _links(readme)}
    for page in ("app", "cli", "advise", "reports", "sentences", "sharing", "measurement"):
        assert REPO / "docs" / f"{page}.md" in linked, f"README does not link docs/{page}.md"
    assert REPO / "docs" / "faults.md" in linked and REPO / "docs" / "development.md" in linked
    # what other parts of the project point people at is where they point
    assert "## Faults" not in readme.read_text()
    assert "| a task raises" in REPO.joinpath("docs", "faults.md").read_text()
    assert "`make bench GROUPS=core`" in REPO.joinpath("docs", "development.md").read_text()


@pytest.mark.parametrize("page", ["README.md", *(f"docs/{p.name}" for p in REPO.glob("docs/*.md"))])
def test_every_relative_link_leads_to_a_file(page):
    source = REPO / page
    for target in _links(source):
        assert (source.parent / target).exists(), f"{page} links {target}, which is not there"


def test_make_lint_prints_no_logo():
    done = subprocess.run(
        ["make", "-s", "lint"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout
    assert "╔" not in done.stdout + done.stderr


@pytest.mark.slow
def test_make_install_prints_no_editable_install_banner(tmp_path):
    """A fresh .venv (the app and one small extra) installed as `make install` does:
    pip's and the project's own words only, not setuptools' notice in a box of asterisks."""
    venv = tmp_path / ".venv"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    done = subprocess.run(
        ["make", "-s", "install", f"VENV={venv}", "EXTRAS=postgres", f"PYTHON={sys.executable}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (venv / "bin" / "conlab").exists()
    output = done.stdout + done.stderr
    assert "Editable installation" not in output and "*****" not in output, output
