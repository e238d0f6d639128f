"""What ``reconcile`` found per UTC day, and where an unfinished one keeps its finished days.

A ``DayResult`` is one day's comparison: Zendesk's records against the stored rows, by id
and by the canonical record hash (``etl.records.chain.record_hash``, as ``verify``'s).
Each finished day is saved at once in ``zendesk_audit_reconcile_days`` under its account
and period (``since..until``), with the scope it was read under: a reconcile of the same
period killed half-way resumes from there instead of reading those days from the API
again. A reconcile that completes deletes its period's rows, so the next one of the same
period reads afresh. The records tables are never written.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.common.clock import format_time
from etl.storage.schema.integrity import reconcile_days

# Zendesk's own limits, said in every report: what its audit log does not hold cannot be
# copied, so no reconcile can show it missing.
COVERAGE = (
    "Zendesk's audit log omits end-user activity and the creation of users (by end users "
    "or by sign-up); what Zendesk does not log is neither copied nor reconciled"
)
IDS_IN_LINE = 5  # ids named per kind on a day's text line; --json names them all


@dataclass
class DayResult:
    day: str  # YYYY-MM-DD, UTC
    start: str  # the part of the day compared, both bounds inclusive, to the second
    end: str
    at_zendesk: int = 0  # storable records Zendesk returned
    stored: int = 0  # rows stored for the day (under the scope's filters)
    # ids (integers in the audit log, text in the access log)
    missing: list[Any] = field(default_factory=list)  # at Zendesk, not stored
    extra: list[Any] = field(default_factory=list)  # stored, not at Zendesk
    differ: list[Any] = field(default_factory=list)  # both, with different record hashes
    rejected: int = 0  # records Zendesk returned that the job keeps as rejects, not rows
    requests: int = 0  # API requests this day's read made
    checked_at: str = ""
    version: str = ""  # the tool's version that checked it
    # The last signed checkpoint whose ledger covers every row of the day (None: none yet).
    checkpoint: dict[str, Any] | None = None

    @property
    def matches(self) -> bool:
        return not (self.missing or self.extra or self.differ)

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), "matches": self.matches}

    @classmethod
    def from_fields(cls, values: dict[str, Any]) -> DayResult:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in values.items() if k in known})

    def line(self) -> str:
        verdict = "matches" if self.matches else "DIFFERS"
        parts = [
            f"{self.day} {verdict}: {self.at_zendesk} at Zendesk, {self.stored} stored",
            _ids("missing", self.missing),
            _ids("extra", self.extra),
            _ids("differ", self.differ),
        ]
        if self.rejected:
            parts.append(f"{self.rejected} kept as rejects")
        cp = self.checkpoint
        parts.append(
            f"signed checkpoint {cp['size']} of {cp['made_at']} (key {cp['key_id']})"
            if cp
            else "no signed checkpoint covers it yet"
        )
        return ", ".join(parts)


def _ids(kind: str, ids: list[Any]) -> str:
    if not ids:
        return f"0 {kind}"
    shown = ", ".join(str(i) for i in ids[:IDS_IN_LINE])
    more = f" and {len(ids) - IDS_IN_LINE} more" if len(ids) > IDS_IN_LINE else ""
    return f"{len(ids)} {kind} ({shown}{more})"


def period_key(since: datetime, until: datetime) -> str:
    return f"{format_time(since)}..{format_time(until)}"


def finished_days(engine: Engine, account: str, period: str, scope: str) -> dict[str, DayResult]:
    """The days of this period an earlier, unfinished reconcile finished under the same
    scope; rows read under another scope are dropped (those days are read again)."""
    table = reconcile_days
    where = sa.and_(table.c.account == account, table.c.period == period)
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(where, table.c.scope != scope))
        rows = conn.execute(sa.select(table.c.day, table.c.result).where(where)).all()
    return {day: DayResult.from_fields(json.loads(text)) for day, text in rows}


def save_day(
    engine: Engine, account: str, period: str, scope: str, result: DayResult, now: datetime
) -> None:
    """One finished day, committed at once (a kill after it does not lose it); over the
    same day of a reconcile of the same period that ran at the same time."""
    table = reconcile_days
    with engine.begin() as conn:
        conn.execute(
            sa.delete(table).where(
                table.c.account == account, table.c.period == period, table.c.day == result.day
            )
        )
        conn.execute(
            sa.insert(reconcile_days).values(
                account=account, period=period, day=result.day, scope=scope,
                result=json.dumps(result.fields(), separators=(",", ":")), checked_at=now,
            )
        )  # fmt: skip


def forget(engine: Engine, account: str, period: str) -> None:
    """A completed reconcile's progress, once reported: the next of the same period
    starts afresh."""
    table = reconcile_days
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.account == account, table.c.period == period))
