"""Functions a user brings to the lab, as the source of a module that a benchmark or a test
writes to a file and names as MODULE:FUNCTION: each stated once, so that a benchmark and the test
of the same behaviour run the same code."""

from __future__ import annotations

# How a benchmark row names 8 tasks of bench's c_hash (hashing 28 MiB each) at size 28.
C_HASH_20MS = "8 x c_hash 28 MiB ~20 ms"

# A loop in Python bytecode: holds the GIL, so only processes (or worker interpreters) run it
# in parallel.
SPIN = """
def spin(size):
    total = 0
    for i in range(size):
        total += i * i % 7
    return total
"""

# Four kinds of function a user might bring to `conlab advise`, one for each family of answer:
# spin (pure-Python work), wait (waiting), digest (C code that releases the GIL), short (~20 us).
ADVISE_KINDS = (
    '''"""Four kinds of function a user might bring to `conlab advise`."""
import hashlib
import time

_BUFFER = bytes(4 * 2**20)  # preallocated: a fresh buffer's page faults serialise threads

'''
    + SPIN
    + """

def wait(size):
    time.sleep(size / 1000)
    return size


def digest(size):
    return hashlib.sha256(_BUFFER).hexdigest()


def short(size):
    return sum(range(1500))
"""
)
