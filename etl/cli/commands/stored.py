"""``list --stream access_logs``: the access log's stored copy, from the database.

The audit log's ``list`` asks Zendesk; the access log's reads the rows ``sync`` stored,
which is what outlives Zendesk's 90 days (docs/ACCESS_LOGS.md). Filters are the table's
indexed questions: ``--since``/``--until`` on ``timestamp``, ``user_id``, ``ip_address``,
and ``path``: the URL path as stored, or anything below it (``/api/v2/tickets/7`` matches
``/api/v2/tickets/7.json`` and ``/api/v2/tickets/7/comments.json``, not ticket 70).
Each line is the record as Zendesk sent it (its stored ``raw``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.cli.arguments import ACCESS_FILTER_KEYS
from etl.common.errors import ConfigError
from etl.storage.schema.logs import access_logs

TABLE_COLUMNS = ("timestamp", "id", "user_id", "ip_address", "method", "url", "status",
                 "client")  # fmt: skip
_CHUNK = 1000  # rows fetched at a time: a large --limit streams


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def access_query(
    account: str,
    *,
    since: datetime | None,
    until: datetime | None,
    filters: Mapping[str, Sequence[str]],
    descending: bool,
    limit: int,
) -> sa.Select[Any]:
    """The stored access rows of ``account`` that match; several values of a key match
    any of them."""
    unknown = sorted(set(filters) - set(ACCESS_FILTER_KEYS))
    if unknown:
        raise ConfigError(
            f"--filter {unknown[0]} is not one of the access log's: {', '.join(ACCESS_FILTER_KEYS)}"
        )
    c = access_logs.c
    query = sa.select(c.raw, *(c[name] for name in TABLE_COLUMNS)).where(c.account == account)
    if since is not None:
        query = query.where(c.timestamp >= since)
    if until is not None:
        query = query.where(c.timestamp <= until)
    for key in ("user_id", "ip_address"):
        if key in filters:
            query = query.where(c[key].in_(list(filters[key])))
    if "path" in filters:
        query = query.where(sa.or_(*(_below(path) for path in filters["path"])))
    order = (c.timestamp.desc(), c.id.desc()) if descending else (c.timestamp, c.id)
    return query.order_by(*order).limit(limit)


def _below(path: str) -> sa.ColumnElement[bool]:
    """``path`` itself, ``path.json`` (or any extension), or anything under ``path/``."""
    path = path.rstrip("/") or "/"
    like = _escape_like(path)
    return sa.or_(
        access_logs.c.path == path,
        access_logs.c.path.like(f"{like}.%", escape="\\"),
        access_logs.c.path.like(f"{like}/%", escape="\\"),
    )


def stored_access(engine: Engine, query: sa.Select[Any]) -> Iterator[dict[str, Any]]:
    """The rows of ``query``: each its ``raw`` record, with the table's columns under
    ``_row`` for the table format."""
    from etl.storage.engine import database_errors

    with database_errors(engine, "reading the access log"), engine.connect() as conn:
        result = conn.execution_options(stream_results=True).execute(query)
        for rows in result.partitions(_CHUNK):
            for raw, *values in rows:
                record = json.loads(raw) if isinstance(raw, str | bytes) else raw
                yield {"record": record, "row": dict(zip(TABLE_COLUMNS, values, strict=True))}


def write_access(engine: Engine, query: sa.Select[Any], fmt: str | None) -> int:
    """The rows written."""
    from etl.cli import terminal

    out: TextIO = sys.stdout
    rows = stored_access(engine, query)
    if (fmt or ("table" if out.isatty() else "json")) == "table":
        table = [r["row"] for r in rows]
        out.write(terminal.records_table(table, columns=TABLE_COLUMNS))
        return len(table)
    written = 0
    for row in rows:
        out.write(json.dumps(row["record"], sort_keys=True) + "\n")
        out.flush()
        written += 1
    return written
