"""The lab's benchmarks (`make bench`): its own cost against hand-written equivalents."""

from __future__ import annotations

import compileall
from pathlib import Path

# The lab's packages, beside this one in the checkout.
LAB_PACKAGES = ("experiments", "storage", "service", "tui")


def compile_the_lab() -> None:
    """The lab's modules compiled for this interpreter, as `pip install` leaves an installed lab
    (and its libraries, pandas among them): a command run under PYTHONDONTWRITEBYTECODE would
    otherwise compile them from source each time, which no installed lab does."""
    root = Path(__file__).resolve().parent.parent
    for package in LAB_PACKAGES:
        compileall.compile_dir(root / package, quiet=1)
