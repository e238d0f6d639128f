"""The ledger as ``status`` and the metrics show it: entries, the last checkpoint, and the
last ``verify`` (as recorded where verify could write) and its last clean one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.clock import iso
from etl.storage.engine import database_errors
from etl.storage.schema.integrity import checkpoints, ledger_head, verifications


@dataclass(frozen=True)
class LedgerStatus:
    """An account's ledger: its entries and its last checkpoint."""

    account: str
    entries: int
    checkpoint_size: int | None  # the last checkpoint's
    checkpoint_at: datetime | None
    checkpoint_key: str | None  # None: unsigned
    verified_at: datetime | None  # the last verify's end
    findings: int | None  # its findings
    clean_at: datetime | None  # the last verify without findings

    def json(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "last_checkpoint": None
            if self.checkpoint_size is None
            else {
                "entries": self.checkpoint_size,
                "at": iso(self.checkpoint_at),
                "key_id": self.checkpoint_key,
            },
            "last_verify": None
            if self.verified_at is None
            else {"at": iso(self.verified_at), "findings": self.findings},
            "last_clean_verify": iso(self.clean_at),
        }

    def text(self) -> str:
        checkpoint = "no checkpoint yet"
        if self.checkpoint_size is not None:
            signed = f"signed by key {self.checkpoint_key}" if self.checkpoint_key else "unsigned"
            checkpoint = (
                f"last checkpoint at entry {self.checkpoint_size:,} ({iso(self.checkpoint_at)}, "
                f"{signed})"
            )
        verified = "never verified"
        if self.verified_at is not None:
            verified = f"last verify {iso(self.verified_at)}: {self.findings} findings"
        return f"  {self.account}  {self.entries:,} entries  {checkpoint}  {verified}"


def ledger_statuses(engine: Engine, accounts: list[str]) -> list[LedgerStatus]:
    with database_errors(engine, "reading the ledger status"), engine.connect() as conn:
        return [_status(conn, account) for account in accounts]


def _status(conn: Connection, account: str) -> LedgerStatus:
    entries = conn.execute(
        sa.select(ledger_head.c.entries).where(ledger_head.c.account == account)
    ).scalar()
    last = conn.execute(
        sa.select(checkpoints.c.size, checkpoints.c.made_at, checkpoints.c.key_id)
        .where(checkpoints.c.account == account)
        .order_by(checkpoints.c.id.desc())
        .limit(1)
    ).first()
    mine = verifications.c.account == account
    newest = verifications.c.id.desc()
    verified = conn.execute(
        sa.select(verifications.c.finished_at, verifications.c.findings)
        .where(mine)
        .order_by(newest)
        .limit(1)
    ).first()
    clean = conn.execute(
        sa.select(verifications.c.finished_at)
        .where(mine, verifications.c.findings == 0)
        .order_by(newest)
        .limit(1)
    ).scalar()
    return LedgerStatus(
        account,
        int(entries or 0),
        None if last is None else int(last[0]),
        None if last is None else last[1],
        None if last is None else last[2],
        None if verified is None else verified[0],
        None if verified is None else int(verified[1]),
        clean,
    )
