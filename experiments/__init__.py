"""The part of concurrency-lab that runs experiments.

Standard library only, importable by any CPython >= 3.9: a spawned worker re-imports it and pays
for every import (an import-linter contract in pyproject.toml keeps it so).
"""

__version__ = "0.1.0"
