"""The stored runs a new sweep measures again beside its own (`conlab run --against SELECTION`):
"stored against now" then becomes a comparison within one sweep, where the runs took turns and
met the same machine.

Only runs of this machine and interpreter can be re-measured: elsewhere the stored figure is
all there is. A baseline at another commit is the user's module at another path (two checkouts
side by side): its runs name that path, and so do the re-measured ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from storage.queries import CONFIG_COLUMNS

# What a re-measured run keeps of the stored one: every column of its configuration (the option
# table's dimensions, storage.queries.CONFIG_COLUMNS) and its tag.
CONFIGURATION = (*CONFIG_COLUMNS, "tag")


def configurations(engine: Engine, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """The distinct configurations of ``run_ids`` (finished runs), each with the interpreter it
    ran under: ``python`` (what was asked, None for conlab's own), ``machine_fingerprint`` and
    ``interpreter_key`` as stored."""
    if not run_ids:
        return []
    statement = text(
        f"SELECT {', '.join('r.' + c for c in CONFIGURATION)}, r.python_requested, "
        "r.machine_fingerprint, r.interpreter_key FROM run r "
        "WHERE r.id IN :ids ORDER BY r.created_at, r.id"
    ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as connection:
        rows = connection.execute(statement, {"ids": list(run_ids)}).mappings().all()
    found: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        config = {c: row[c] for c in CONFIGURATION}
        config["python"] = row["python_requested"]
        place = {k: row[k] for k in ("machine_fingerprint", "interpreter_key")}
        found.setdefault(tuple(sorted(map(str, config.items()))), {**config, **place})
    return list(found.values())


def here(config: dict[str, Any], environment: Optional[dict[str, Any]]) -> bool:
    """Whether ``config`` was measured where ``environment`` (its interpreter's, now) is."""
    return bool(environment) and all(
        config.get(k) == environment.get(k) for k in ("machine_fingerprint", "interpreter_key")
    )
