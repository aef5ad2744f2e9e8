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
    assert re.search(r"Contracts: \d+ kept, 0 broken\.", done.stdout), done.stdout
    assert "╔" not in done.stdout + done.stderr


# A venv built and installed: minutes on a busy machine, past the per-test timeout.
@pytest.mark.timeout(900)
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


def test_the_tests_find_a_free_threaded_build_in_the_cache(tmp_path, monkeypatch):
    """A clone's `make test` runs the free-threaded tests with a build in ~/.cache/conlab-cpython
    (where .ci/run's tool keeps them), with nothing else pointing at it."""
    from tests.conftest import CPYTHON_CACHE, cached_free_threaded, find_free_threaded

    builds = cached_free_threaded(CPYTHON_CACHE)
    if not builds:
        pytest.skip(f"no free-threaded build in {CPYTHON_CACHE} to copy the layout of")
    cache = tmp_path / "cache" / "conlab-cpython"
    (cache / "cpython-3.13.99-t" / "bin").mkdir(parents=True)
    (cache / "cpython-3.13.99-t" / "bin" / "python3.13t").symlink_to(builds[0])
    (cache / "python3.13t.path").write_text(builds[0])  # the tool's note, not a build
    for name in ("HOME", "PYENV_ROOT", "UV_PYTHON_INSTALL_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("CONLAB_TEST_FREE_THREADED", raising=False)
    assert find_free_threaded(cache) == str(cache / "cpython-3.13.99-t" / "bin" / "python3.13t")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty"))  # discovery looks there too
    assert find_free_threaded(tmp_path / "empty" / "conlab-cpython") is None


def test_a_missing_free_threaded_build_is_skipped_saying_how_to_get_one(tmp_path):
    """The skip names a way that works on a clone (no ../shared/tools there) and the cache."""
    conftest = tmp_path / "conftest.py"
    conftest.write_text(REPO.joinpath("tests", "conftest.py").read_text())
    (tmp_path / "test_one.py").write_text("def test_one(free_threaded_python):\n    pass\n")
    env = {
        **os.environ,
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "PYENV_ROOT": str(tmp_path),
        "UV_PYTHON_INSTALL_DIR": str(tmp_path),
        "CI": "",
        "PYTHONPATH": str(REPO),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",  # pytest alone: the fixture needs no plugin
    }
    env.pop("CONLAB_TEST_FREE_THREADED", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert "1 skipped" in done.stdout, done.stdout + done.stderr
    assert "uv python install 3.13t" in done.stdout
    assert str(tmp_path / "cache" / "conlab-cpython") in done.stdout
