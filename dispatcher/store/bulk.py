"""Bulk writes on PostgreSQL: ``COPY`` for many rows, ids drawn from the sequence in one query.

An executemany ``INSERT`` of a thousand 37-column job rows is one statement with 37,000
placeholders that SQLAlchemy renders and psycopg re-parses on every batch: it was the largest
single cost of the dispatcher under load (more than a quarter of its CPU while jobs were being
submitted). ``COPY ... FROM STDIN`` streams the rows through psycopg's C row formatter instead,
with no statement to parse. ``COPY`` cannot return generated ids, so inserts that need them take
the ids first (:func:`allocate_ids`) and copy them in explicitly.

Both run on the caller's connection, inside its transaction. PostgreSQL only: callers keep their
portable ``INSERT`` for SQLite, or call :func:`append_rows`, which picks for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Table


def copy_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Append ``rows`` (tuples in ``columns`` order) to ``table`` with ``COPY FROM STDIN``."""
    unknown = [name for name in columns if name not in table.c]
    if unknown:  # the names go into the statement: only the table's own columns
        raise KeyError(f"{table.name} has no column(s) {unknown}")
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def append_rows(conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) whose generated ids nobody needs back:
    ``COPY`` on PostgreSQL, an executemany ``INSERT`` elsewhere."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        copy_rows(conn, table, columns, rows)
    else:
        conn.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])


def allocate_ids(conn: Connection, column: Column[Any], n: int) -> list[int]:
    """``n`` new values of ``column``'s sequence, ascending (one round trip)."""
    if n <= 0:
        return []
    table = column.table
    stmt = "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)"
    ids = [r[0] for r in conn.exec_driver_sql(stmt, (table.name, column.name, n))]  # type: ignore[attr-defined]
    ids.sort()  # later ids for later jobs: claim order among equal priorities is panda_id order
    return ids
