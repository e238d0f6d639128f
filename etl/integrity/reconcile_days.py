"""What ``reconcile`` found per UTC day, and where an unfinished one keeps its finished days.

A ``DayResult`` is one day's comparison: Zendesk's records against the stored rows, by id
and by the canonical record hash (``etl.records.chain.record_hash``, as ``verify``'s); an
``AccountReconcile`` is a period's days, its totals and its report (text or JSON).
Each finished day is saved at once in ``zendesk_audit_reconcile_days`` under its account
and period (``since..until``), with the scope it was read under: a reconcile of the same
period killed half-way resumes from there instead of reading those days from the API
again. A reconcile that completes deletes its period's rows, so the next one of the same
period reads afresh. The records tables are never written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    """One day compared: what Zendesk returned and what is stored."""

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


@dataclass
class AccountReconcile:
    """One account's reconcile: the period compared, day by day."""

    account: str
    stream: str
    since: str
    until: str
    scope: Mapping[str, Any]
    days: list[DayResult] = field(default_factory=list)
    resumed: int = 0  # days taken from an earlier, unfinished reconcile of the period
    requests: int = 0  # API requests this run made

    @property
    def matches(self) -> bool:
        return all(day.matches for day in self.days)

    def totals(self) -> dict[str, int]:
        days = self.days
        return {
            "days": len(days),
            "days_differing": sum(not d.matches for d in days),
            "at_zendesk": sum(d.at_zendesk for d in days),
            "stored": sum(d.stored for d in days),
            "missing": sum(len(d.missing) for d in days),
            "extra": sum(len(d.extra) for d in days),
            "differ": sum(len(d.differ) for d in days),
            "rejected": sum(d.rejected for d in days),
        }

    def summary(self) -> str:
        t = self.totals()
        verdict = "complete" if self.matches else "DIFFERS"
        resumed = f" ({self.resumed} from an earlier run)" if self.resumed else ""
        return (
            f"account {self.account} {self.stream} {self.since}..{self.until}: {verdict}: "
            f"{t['days']} days{resumed}, {t['days_differing']} differing; "
            f"{t['at_zendesk']} at Zendesk, {t['stored']} stored, {t['missing']} missing, "
            f"{t['extra']} extra, {t['differ']} differ; {self.requests} API requests"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "account": self.account, "stream": self.stream,
            "since": self.since, "until": self.until,
            "scope": dict(self.scope), "matches": self.matches, "totals": self.totals(),
            "days_resumed": self.resumed, "requests": self.requests,
            "days": [day.fields() for day in self.days], "summary": self.summary(),
        }  # fmt: skip


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


def save_days(
    engine: Engine, account: str, period: str, scope: str, results: list[DayResult],
    now: datetime,
) -> None:  # fmt: skip
    """Finished consecutive days, committed at once (a kill after it does not lose them),
    in one delete and one multi-row insert however many; over the same days of a reconcile
    of the same period that ran at the same time."""
    if not results:
        return
    table = reconcile_days
    rows = [
        {"account": account, "period": period, "day": result.day, "scope": scope,
         "result": json.dumps(result.fields(), separators=(",", ":")), "checked_at": now}
        for result in results
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.delete(table).where(
                table.c.account == account, table.c.period == period,
                table.c.day >= results[0].day, table.c.day <= results[-1].day,
            )
        )  # fmt: skip
        conn.execute(sa.insert(table), rows)


def forget(engine: Engine, account: str, period: str) -> None:
    """A completed reconcile's progress, once reported: the next of the same period
    starts afresh."""
    table = reconcile_days
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.account == account, table.c.period == period))
