"""What ``verify`` found: findings by kind and id, and each account's tally."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
    kind: str
    account: str
    record_id: str | None = None
    entry: int | None = None  # the ledger entry (or a checkpoint's size) it concerns
    detail: str = ""
    subject: str = "record"  # record or reject

    def line(self) -> str:
        where = [f"account {self.account}"]
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
            "record_id": self.record_id,
            "entry": self.entry,
            "detail": self.detail,
        }


@dataclass
class AccountReport:
    account: str
    entries: int = 0
    records: int = 0  # rows whose hash was recomputed and compared
    checkpoints: int = 0
    checkpoints_valid: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # unsigned or unanchored ranges

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def fields(self) -> dict[str, Any]:
        return {
            "account": self.account,
            "entries": self.entries,
            "records_verified": self.records,
            "checkpoints": self.checkpoints,
            "checkpoints_valid": self.checkpoints_valid,
            "findings": [finding.fields() for finding in self.findings],
            "notes": self.notes,
        }


def summary(reports: list[AccountReport]) -> str:
    valid = sum(r.checkpoints_valid for r in reports)
    total = sum(r.checkpoints for r in reports)
    records = sum(r.records for r in reports)
    findings = sum(len(r.findings) for r in reports)
    return f"{valid}/{total} checkpoints valid, {records} records verified, {findings} findings"
