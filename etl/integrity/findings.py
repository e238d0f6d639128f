"""What ``verify`` found: findings by kind and id, and each account's tally."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# The stream every account has; a finding of another stream says which in its line.
AUDIT_STREAM = "audit_logs"

# Every kind a finding can have (docs/INTEGRITY.md says what each means).
KINDS = (
    "modified",
    "deleted",
    "inserted",
    "chain broken",
    "truncated",
    "bad signature",
    "missing from the external copy",
    "missing from the database",
)


@dataclass(frozen=True)
class Finding:
    """One problem verify found, and the record or ledger entry it concerns."""

    kind: str
    account: str
    record_id: str | None = None
    entry: int | None = None  # the ledger entry (or a checkpoint's size) it concerns
    detail: str = ""
    subject: str = "record"  # record or reject
    stream: str | None = None  # audit_logs, access_logs; None: a chain's or checkpoint's

    def line(self) -> str:
        where = [f"account {self.account}"]
        if self.stream not in (None, AUDIT_STREAM):
            where.append(f"stream {self.stream}")
        if self.record_id is not None:
            where.append(f"{self.subject} {self.record_id}")
        if self.entry is not None:
            where.append(f"entry {self.entry}")
        return f"INVALID: {self.kind}: {', '.join(where)}: {self.detail}"

    def fields(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "account": self.account,
            "subject": self.subject,
            "stream": self.stream,
            "record_id": self.record_id,
            "entry": self.entry,
            "detail": self.detail,
        }


@dataclass
class AccountReport:
    """What verify checked of one account, and what it found."""

    account: str
    entries: int = 0
    streams: Counter[str] = field(default_factory=Counter)  # rows checked, per stream
    checkpoints: int = 0
    checkpoints_valid: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # unsigned or unanchored ranges

    @property
    def records(self) -> int:
        """Rows whose hash was recomputed and compared, every stream's."""
        return sum(self.streams.values())

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def by_stream(self) -> dict[str, dict[str, int]]:
        """Per stream (the audit log's always, any other that has rows or findings):
        records verified and findings about its rows and rejects."""
        found = Counter(f.stream for f in self.findings if f.stream is not None)
        names = sorted({AUDIT_STREAM, *self.streams, *found})
        return {
            name: {"records_verified": self.streams[name], "findings": found[name]}
            for name in names
        }

    def fields(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "entries": self.entries,
            "records_verified": self.records,
            "checkpoints": self.checkpoints,
            "checkpoints_valid": self.checkpoints_valid,
            "streams": self.by_stream(),
            "findings": [finding.fields() for finding in self.findings],
            "notes": self.notes,
        }


def summary(reports: list[AccountReport]) -> str:
    valid = sum(r.checkpoints_valid for r in reports)
    total = sum(r.checkpoints for r in reports)
    records = sum(r.records for r in reports)
    findings = sum(len(r.findings) for r in reports)
    return f"{valid}/{total} checkpoints valid, {records} records verified, {findings} findings"
