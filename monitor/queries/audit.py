"""The audit log (admins only): who submitted, killed, retried, changed priorities, issued tokens.

The dispatcher writes table ``audit`` (migration 0010: ``id, time, actor, vo, action, target,
detail``). The monitor reads whatever columns the table has (reflected per request, so a column
added later shows without a change here), newest first by ``id`` (or ``time``), filtered by the
text columns it knows; a database without the table gets a page that says so, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, MetaData, Table, func, inspect, select

from monitor.filters import parse_int

AUDIT_TABLE = "audit"
FILTERS = ("actor", "vo", "action", "target")
"""Columns ``/audit/?actor=alice&action=kill`` filters on (exact match), when the table has them."""
PER_PAGE = 200
PARAMS = frozenset({*FILTERS, "page"})


def audit_page(conn: Connection, params: Mapping[str, str]) -> dict[str, Any]:
    """One page of audit records, newest first, with the total (``present`` False without the table)."""
    if not inspect(conn).has_table(AUDIT_TABLE):
        return {"present": False, "columns": [], "filters": [], "rows": [], "total": 0, "pagenum": 1, "pages": 1}
    table = Table(AUDIT_TABLE, MetaData(), autoload_with=conn)
    names = [c.name for c in table.columns]
    filters = [f for f in FILTERS if f in names]
    where = [table.c[f] == params[f].strip() for f in filters if params.get(f, "").strip()]
    page = parse_int(params, "page", 1, minimum=1, maximum=1_000_000)
    order = [table.c[k].desc() for k in ("id", "time") if k in names] or [table.c[names[0]].desc()]
    total = int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())
    rows = conn.execute(
        select(table).where(*where).order_by(*order).limit(PER_PAGE).offset((page - 1) * PER_PAGE)
    ).all()
    return {
        "present": True,
        "columns": names,
        "filters": filters,
        "rows": [{k: _plain(v) for k, v in row._mapping.items()} for row in rows],
        "total": total,
        "pagenum": page,
        "pages": max(1, -(-total // PER_PAGE)),
    }


def _plain(value: Any) -> Any:
    """A JSON-safe cell: bytes as text, times and other objects as their string form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
