"""Where ``export``'s consumers stand, for ``status`` and the metrics: per consumer,
account and stream its position and backlog (rows stored after it, not exported yet), and
``status``'s text and JSON of them. Read only: the positions are written by the export
(``etl.export.consumers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.clock import iso
from etl.common.settings import AUDIT_LOGS
from etl.export.streams import STREAMS, split_key
from etl.storage.schema.state import export_consumers

_table = export_consumers.c


@dataclass(frozen=True)
class ConsumerStatus:
    """A consumer's position in an account's rows and what it has not exported yet."""

    consumer: str
    account: str
    position: int
    backlog: int  # rows stored after the position: not exported yet
    file_path: str | None
    updated_at: datetime
    stream: str = AUDIT_LOGS


def statuses(conn: Connection, accounts: list[str] | None = None) -> list[ConsumerStatus]:
    """Every consumer's position and backlog, per account (only ``accounts`` if given),
    by consumer then account. The backlog is a count over the (account, stored_seq)
    index from the position on: cheap while consumers keep up."""
    query = sa.select(export_consumers).order_by(_table.consumer, _table.account)
    if accounts is not None:
        query = query.where(_table.account.in_(accounts))
    result = []
    for row in conn.execute(query).mappings().all():
        consumer, stream = split_key(row["consumer"])
        table = STREAMS[stream].table if stream in STREAMS else None
        backlog = 0 if table is None else conn.execute(
            sa.select(sa.func.count())
            .select_from(table)
            .where(table.c.account == row["account"])
            .where(table.c.stored_seq > row["position"])
        ).scalar_one()  # fmt: skip
        result.append(
            ConsumerStatus(
                consumer=consumer,
                account=row["account"],
                position=int(row["position"]),
                backlog=int(backlog),
                file_path=row["file_path"],
                updated_at=row["updated_at"],
                stream=stream,
            )
        )
    return result


@dataclass(frozen=True)
class ExportStatuses:
    """``status``'s view of the consumers: a text section and JSON per account."""

    statuses: list[ConsumerStatus]

    def json(self, account: str) -> list[dict[str, Any]]:
        return [
            {
                "consumer": s.consumer,
                "stream": s.stream,
                "position": s.position,
                "backlog": s.backlog,
                "file": s.file_path,
                "updated_at": iso(s.updated_at),
            }
            for s in self.statuses
            if s.account == account
        ]

    def text(self) -> str:
        lines = ["export consumers"]
        for s in self.statuses:
            where = s.file_path or "stdout"
            whose = f"{s.consumer} ({s.account}{_stream_text(s.stream)})"
            lines.append(
                f"  {whose}  position {s.position:,}  backlog {s.backlog:,} "
                f"rows  last moved {iso(s.updated_at)}  -> {where}"
            )
        return "\n".join(lines)


def read_statuses(engine: Engine, accounts: list[str]) -> list[ConsumerStatus]:
    """``statuses`` in a connection of its own, database failures as ``DatabaseError``."""
    from etl.storage.engine import database_errors

    with database_errors(engine, "reading export consumers"), engine.connect() as conn:
        return statuses(conn, accounts)


def _stream_text(stream: str) -> str:
    return "" if stream == AUDIT_LOGS else f", {stream}"
