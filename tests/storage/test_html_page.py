"""The HTML report as a browser shows it: a real report of real runs, rendered in Debian's
headless Chromium at the widths people read it at, and measured from the page's DOM."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import run_args

INSTALL = "apt-get install -y chromium"

# Headless, as root, on a machine without a network: no sandbox, no GPU, nothing fetched.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Written into a copy of the page (the report itself runs no script): what a reader would see
# go wrong, measured after layout, as JSON in <pre id="measured">.
# - the page wider than the window (a sideways scroll of the whole page);
# - an element past the window's edge, unless it is inside a box that scrolls;
# - a box that is not scrolling holding more than it shows (scrollWidth > clientWidth): text cut;
# - a chart's text past its chart's box (an SVG cuts what is drawn outside it);
# - two blocks (headings, paragraphs, lists, charts, tables) drawn over each other.
MEASURE = r"""<script>
(() => {
  const width = document.documentElement.clientWidth;
  const problems = [];
  const named = (e) => {
    const text = (e.textContent || "").trim().replace(/\s+/g, " ").slice(0, 70);
    const kind = e.getAttribute("class") ? "." + e.getAttribute("class") : "";
    return `${e.tagName.toLowerCase()}${kind} "${text}"`;
  };
  const scrolls = (e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const scrolled = (e) => {
    for (let p = e.parentElement; p; p = p.parentElement) if (scrolls(p)) return true;
    return false;
  };
  const pageWidth = document.documentElement.scrollWidth;
  if (pageWidth > width) problems.push(`the page is ${pageWidth} px wide in ${width} px`);
  for (const e of document.body.querySelectorAll("*")) {
    if (e.closest("svg") !== null && e.tagName.toLowerCase() !== "svg") continue;
    if (e.tagName === "SCRIPT") continue;
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (!scrolled(e) && (r.right > width + 0.5 || r.left < -0.5))
      problems.push(`past the page's edge: ${named(e)} at ${r.left}..${r.right} px`);
    if (!scrolls(e) && e.clientWidth > 0 && e.scrollWidth > e.clientWidth + 1)
      problems.push(`cut: ${named(e)} holds ${e.scrollWidth} px in ${e.clientWidth} px`);
  }
  for (const svg of document.querySelectorAll("svg")) {
    const box = svg.getBoundingClientRect();
    for (const t of svg.querySelectorAll("text")) {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 ||
          r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        problems.push(`cut by its chart's edge: ${named(t)}`);
    }
  }
  const blocks = [...document.body.querySelectorAll("h1, h2, p, ul, figure, div, table")];
  for (let i = 0; i < blocks.length; i++) {
    for (let j = i + 1; j < blocks.length; j++) {
      const [a, b] = [blocks[i], blocks[j]];
      if (a.contains(b) || b.contains(a)) continue;
      const [ra, rb] = [a.getBoundingClientRect(), b.getBoundingClientRect()];
      const across = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
      const down = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
      if (across > 0.5 && down > 0.5) problems.push(`${named(a)} over ${named(b)}`);
    }
  }
  const kind = (e) => e.tagName === "FIGURE" ? "chart" : e.tagName === "P" ? "verdict" : "rows";
  const order = [...document.querySelectorAll("section.work")]
    .map((s) => [...s.querySelectorAll("p.verdict, figure, div.box")].map(kind));
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({width, problems, order,
    charts: document.querySelectorAll("svg.chart").length});
  document.body.appendChild(out);
})();
</script>"""


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; outside CI a test without it skips, under CI=true it fails."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"no chromium on PATH under CI=true; .ci/run installs it: {INSTALL}")
    pytest.skip(f"no chromium on PATH; install it with: {INSTALL}")


def measured(chromium: str, page: Path, width: int) -> dict:
    """``page`` as ``chromium`` lays it out in a window ``width`` px wide (MEASURE)."""
    copy = page.with_name(f"measured-{width}.html")
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    with tempfile.TemporaryDirectory(prefix="conlab-chromium-") as profile:
        shown = subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},1000",
                "--dump-dom",
                copy.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
    found = re.search(r'<pre id="measured">(.*?)</pre>', shown.stdout, re.S)
    assert found, f"Chromium gave no measurements:\n{shown.stderr[-3000:]}"
    return json.loads(html.unescape(found.group(1)))


# A user's own function with the long names a real module has.
LONG_MODULE = "a_module_with_a_rather_long_name_for_reports"
LONG_FUNCTION = "compress_the_whole_input_with_a_long_function_name"


@pytest.fixture
def report_page(chromium, conlab, user_dir, tmp_path) -> Path:
    """`conlab report --format html` of real runs of two pieces of work, one of them a user's
    function with a long name, the other at a size of millions (4 MiB), with a comparison."""
    (user_dir / f"{LONG_MODULE}.py").write_text(
        f"import zlib\n\n\ndef {LONG_FUNCTION}(size):\n    return len(zlib.compress(b'x' * size))\n"
    )
    executors = ("sequential", "threads", "processes")
    for workload, size in (("hash", 4 * 2**20), (f"{LONG_MODULE}:{LONG_FUNCTION}", 100_000)):
        args = run_args(workload, *executors, workers=2, size=size, tasks=4, repeats=2)
        ran = conlab(*args, timeout=300)
        assert ran.returncode == 0, ran.stderr
    page = tmp_path / "summary.html"
    compare = ("--compare", "executor:threads", "executor:processes")
    made = conlab("report", "--format", "html", *compare, "--output", str(page))
    assert made.returncode == 0, made.stderr
    return page


def test_the_html_report_fits_the_window_at_1400_and_800_px(chromium, report_page):
    text = report_page.read_text()
    assert "4,194,304" in text and not re.search(r"\d\.?\d*e[+-]\d", text)  # no 4.1943e+06
    assert "executor:processes against executor:threads" in text
    for width in (1400, 800):
        found = measured(chromium, report_page, width)
        assert width - 20 <= found["width"] <= width, found["width"]  # the window measured
        assert found["problems"] == [], (width, found["problems"])
        # per piece of work: the verdict first, then its charts, then its rows
        assert len(found["order"]) == 2, found["order"]
        for order in found["order"]:
            assert order[0] == "verdict" and order[-1] == "rows" and "chart" in order, order
        assert found["charts"] >= 6


def test_names_without_a_break_wrap_or_shorten_inside_the_page(chromium, tmp_path):
    """A database (real SQLite, through the real recorder) whose host, CPU, Python, workload,
    executor, start method and tags are 150 characters without a space: every name wraps
    or is shortened inside its box at 1400 and 800 px."""
    from tests.storage.test_reports import hostile_database, rendered

    texts = [f"{n}-" + "averyverylongunbrokenname" * 6 for n in range(10)]
    sweeps = hostile_database(tmp_path / "long.db", texts)
    page = tmp_path / "long.html"
    page.write_text(rendered(tmp_path / "long.db", sweeps, labels=texts[:2])[0])
    for width in (1400, 800):
        found = measured(chromium, page, width)
        assert found["problems"] == [], (width, found["problems"])
        assert len(found["order"]) == 2 and found["charts"] >= 4, found
