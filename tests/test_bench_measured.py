"""The benchmarks' whole-command measure (bench.storage.measured): a command's peak memory is
its own, whatever the bench process holds when it starts the command."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# A bench process that holds 300 MB when it measures a command holding almost nothing.
BIG_PARENT = textwrap.dedent(
    """
    import sys
    from bench.storage import measured

    held = bytearray(300 * 1024 * 1024)
    for at in range(0, len(held), 4096):
        held[at] = 1
    elapsed, peak_mb = measured([sys.executable, "-c", "pass"], {})
    print(peak_mb)
    """
)


def test_a_commands_peak_memory_is_its_own_not_the_bench_processs():
    found = subprocess.run(
        [sys.executable, "-c", BIG_PARENT], capture_output=True, text=True, check=True
    )
    peak_mb = float(found.stdout)
    assert 0 < peak_mb < 100, f"`python -c pass` measured at {peak_mb} MB"
