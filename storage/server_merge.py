"""Merging a lab file into a PostgreSQL server set-based: the source's rows go in with COPY,
inside the caller's one transaction, and the server picks the runs to copy with one join, by
the rule a SQLite merge follows (storage.merge). Driven through psycopg 3, which SQLAlchemy's
``postgresql+psycopg`` URLs use."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Optional

from psycopg import sql
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from storage import figures
from storage.models import progress_sql

# Rows kept by their lab-made key: a machine, interpreter or sweep the server has stays as it is.
KEYED_TABLES = (("machine", "fingerprint"), ("interpreter", "key"), ("sweep", "id"))
# A run's rows, parents first, each with the column that names its run.
RUN_TABLES = (("run", "id"), ("repeat", "run_id"), ("task_sample", "run_id"), ("process", "run_id"))


def copy_new_runs(dst: Connection, source: sqlite3.Connection) -> tuple[int, int, int]:
    """Copy the runs of ``source`` (a connection of our own to a lab file of the current schema,
    in one read transaction; its temporary tables are ours) that
    the server behind ``dst`` lacks or has not seen get as far, with their repeats, task samples,
    machines, interpreters and sweeps. Runs still `running` in the source are left out; a
    replaced run's repeats and task samples go with it. Returns (runs added, runs in the
    source, of the added: runs that replaced an unfinished copy). Nothing is committed here:
    the caller's transaction holds it all, so a failure leaves the server as it was."""
    server = dst.connection.driver_connection
    with server.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE merge_source_run (id varchar NOT NULL, status varchar) "
            "ON COMMIT DROP"
        )
        _copy(cursor, "merge_source_run", ["id", "status"], source.execute(_SOURCE_RUNS))
        cursor.execute(
            f"""CREATE TEMP TABLE merge_new_run ON COMMIT DROP AS
                SELECT s.id, t.id IS NOT NULL AS replaces
                FROM merge_source_run s LEFT JOIN run t ON t.id = s.id
                WHERE s.status IS DISTINCT FROM 'running'
                AND (t.id IS NULL OR {progress_sql("t")} < {progress_sql("s")})"""
        )
        total = cursor.execute("SELECT count(*) FROM merge_source_run").fetchone()[0]
        new_ids = [row[0] for row in cursor.execute("SELECT id FROM merge_new_run")]
        replaced = cursor.execute("SELECT count(*) FROM merge_new_run WHERE replaces").fetchone()[0]
        for table, key in reversed(RUN_TABLES):  # children first
            cursor.execute(
                f"DELETE FROM {table} WHERE {key} IN (SELECT id FROM merge_new_run WHERE replaces)"
            )
        for table, key in KEYED_TABLES:
            columns = _columns(table)
            cursor.execute(f"CREATE TEMP TABLE merge_{table} (LIKE {table}) ON COMMIT DROP")
            _copy(cursor, f"merge_{table}", columns, _select(source, table, columns))
            listed = ", ".join(columns)
            cursor.execute(
                f"INSERT INTO {table} ({listed}) SELECT {listed} FROM merge_{table} "
                f"ON CONFLICT ({key}) DO NOTHING"
            )
        if new_ids:
            chosen = _chosen_runs(source, new_ids, every=len(new_ids) == total)
            incoming = _samples(source, chosen)
            _compress_fast(cursor)
            with _checks_set_aside(cursor, when=_bulk_load(cursor, incoming)):
                for table, key in RUN_TABLES:
                    columns = _columns(table)
                    types = _binary_types(table, columns)
                    rows = _select(source, table, columns, key, chosen, types)
                    _copy(cursor, table, columns, rows, types)
            figures.refresh(dst, figures.UNFIGURED_SQL.format(runs="merge_new_run"))
    return len(new_ids), total, replaced


# The tables whose foreign keys and secondary indexes a bulk load sets aside and rebuilds.
BULK_TABLES = ("run", "repeat", "task_sample")


def _samples(source: sqlite3.Connection, chosen: str) -> int:
    where = f" WHERE run_id {chosen}" if chosen else ""
    return source.execute(f"SELECT count(*) FROM main.task_sample{where}").fetchone()[0]


def _bulk_load(cursor, incoming: int) -> bool:
    """Whether a merge bringing ``incoming`` task samples loads in bulk: when the server holds
    fewer, so checking and indexing every row again afterwards costs less than doing it row by
    row (PostgreSQL checks a foreign key with a query per row), and when this role owns the
    tables (only an owner may drop and add their constraints)."""
    held = cursor.execute(  # counted no further than it matters
        "SELECT count(*) FROM (SELECT 1 FROM task_sample LIMIT %s) AS held", (incoming,)
    ).fetchone()[0]
    if held >= incoming:
        return False
    owned = cursor.execute(
        "SELECT bool_and(pg_has_role(relowner, 'USAGE')) FROM pg_class "
        "WHERE oid = ANY(%s::regclass[])",
        (list(BULK_TABLES),),
    ).fetchone()[0]
    return bool(owned)


def _compress_fast(cursor) -> None:
    """Texts long enough to be compressed (a run's environment) are, in this transaction, with
    lz4 where the server has it (PostgreSQL 14 on, built with it): a third of pglz's time."""
    (lz4,) = cursor.execute(
        "SELECT count(*) FROM pg_settings "
        "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
    ).fetchone()
    if lz4:
        cursor.execute("SET LOCAL default_toast_compression = 'lz4'")


@contextmanager
def _checks_set_aside(cursor, *, when: bool) -> Iterator[None]:
    """With ``when``: the foreign keys and the non-unique indexes of BULK_TABLES are dropped
    meanwhile and made again from their own definitions afterwards (one join checks every row,
    one sort builds each index), as PostgreSQL's guide to populating a database advises. In
    the caller's transaction: a failure puts them back with everything else. The tables are
    locked for others until the commit."""
    if not when:
        yield
        return
    constraints = [
        (table, name, definition)
        for table in BULK_TABLES
        for name, definition in cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE contype = 'f' AND conrelid = %s::regclass",
            (table,),
        )
    ]
    # regclass names come quoted (and qualified) as SQL needs them
    indexes = cursor.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = ANY(%s::regclass[]) AND NOT indisunique AND NOT indisprimary",
        (list(BULK_TABLES),),
    ).fetchall()
    for table, name, _ in constraints:
        cursor.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
    for name, _ in indexes:
        cursor.execute(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))
    yield
    # the index builds sort every row: in memory, as far as this transaction is concerned
    cursor.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for _, definition in indexes:
        cursor.execute(sql.SQL(definition))
    for table, name, definition in constraints:
        cursor.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(table), sql.Identifier(name), sql.SQL(definition)
            )
        )


_SOURCE_RUNS = "SELECT id, status FROM run"


def _columns(table: str) -> list[str]:
    """The columns a copy fills: all but the row numbers the target gives (repeats, task
    samples); keys the lab makes (run ids, fingerprints) are kept."""
    key = SQLModel.metadata.tables[table].primary_key.columns
    numbered = len(key) == 1 and next(iter(key)).type.python_type is int
    return [c.name for c in SQLModel.metadata.tables[table].c if not (numbered and c.primary_key)]


def _chosen_runs(source: sqlite3.Connection, run_ids: list[str], *, every: bool) -> str:
    """A SQL condition on the source's run ids that holds for ``run_ids``: none at all when
    they are ``every`` run of the source, else membership in a temporary table of them."""
    if every:
        return ""
    source.execute("CREATE TEMP TABLE merge_new_run (id TEXT PRIMARY KEY) WITHOUT ROWID")
    source.executemany("INSERT INTO temp.merge_new_run VALUES (?)", ((i,) for i in run_ids))
    return "IN (SELECT id FROM temp.merge_new_run)"


def _select(
    source: sqlite3.Connection,
    table: str,
    columns: list[str],
    key: str = "",
    chosen: str = "",
    types: Optional[list[str]] = None,
) -> sqlite3.Cursor:
    """The rows of ``table`` (those of the ``chosen`` runs), read for a copy in ``types``."""
    where = f" WHERE {key} {chosen}" if chosen else ""
    listed = [
        _within_int4(column) if kind == "int4" else column
        for column, kind in zip(columns, types or [""] * len(columns))
    ]
    return source.execute(f"SELECT {', '.join(listed)} FROM main.{table}{where}")


# The binary form of each column type a copy sends that way, by the name the server's schema
# gives the type (int4, int8, and varchar, whose binary form is its text).
_BINARY = {"INTEGER": "int4", "BIGINT": "int8", "VARCHAR": "text"}
_INT4 = (-(2**31), 2**31 - 1)


def _binary_types(table: str, columns: list[str]) -> Optional[list[str]]:
    """The binary type of each of ``columns`` when they are all whole numbers and texts (a
    run's task samples): those go in binary form, with nothing to format or parse. None for a
    table with any other (dates, flags, fractions go as text, for the server to parse as their
    columns' types)."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()
    types = [
        _BINARY.get(SQLModel.metadata.tables[table].c[name].type.compile(dialect=dialect))
        for name in columns
    ]
    return None if None in types else types


def _within_int4(column: str) -> str:
    """``column`` as read for a binary copy into an int4: a value out of its range is read as
    text, which the copy refuses (psycopg would send it cut to 32 bits, without a word)."""
    low, high = _INT4
    return (
        f"CASE WHEN {column} NOT BETWEEN {low} AND {high} THEN CAST({column} AS TEXT) "
        f"ELSE {column} END"
    )


def _copy(
    cursor, table: str, columns: list[str], rows: Iterable[tuple], types: Optional[list[str]] = None
) -> None:
    """``rows`` into ``table`` with one COPY: binary when ``types`` names each column's binary
    type (``_binary_types``), a value of another type refused with its column named; else in
    text form, the server parsing every value as its column's type (SQLite's text dates and 0/1
    flags alike) and refusing what is not one. A thread of psycopg's sends each buffer while
    this one reads and formats the next."""
    from psycopg.copy import QueuedLibpqWriter

    binary = " (FORMAT BINARY)" if types else ""
    writer = QueuedLibpqWriter(cursor)
    with cursor.copy(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN{binary}", writer=writer
    ) as copy:
        if types is not None:
            copy.set_types(types)
        try:
            for row in rows:
                copy.write_row(row)
        except TypeError:
            if types is None:
                raise
            raise _not_of_its_type(table, columns, types, row) from None


def _not_of_its_type(table: str, columns: list[str], types: list[str], row: tuple) -> Exception:
    import psycopg

    for column, kind, value in zip(columns, types, row):
        if kind == "int4" and isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            return psycopg.DataError(f"{table}.{column} holds {value}, out of int4's range")
        expected = str if kind == "text" else int
        if value is not None and type(value) is not expected:
            shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
            return psycopg.DataError(f"{table}.{column} holds {shown}, not a value of type {kind}")
    return psycopg.DataError(f"a row of {table} holds a value its columns cannot take")


def refusals() -> tuple[type[Exception], ...]:
    """What a copy raises when the server or the source refuses a row: the merge's refusal."""
    import psycopg

    return psycopg.Error, sqlite3.Error
