"""``verify-export``: an export file checked against its signed manifests
(``FILE.manifest``, etl.integrity.manifest) with the public keys alone: no config, no
database, so the SIEM side and an auditor run it where the file arrived.

For each manifest in order: its signature (by a given key; signed by another, unsigned or
not verifying is a finding), its byte range meeting the previous one's end (the first
starting at 0), the SHA-256 of those bytes of the file, its seq range meeting the previous
one of the same consumer and account; then the file's length against the last manifest's
end. The file and the manifests are read through etl.integrity.checks.manifest_read:
bounded, streamed, only regular files.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etl.integrity.checks.manifest_read import (
    Malformed,
    Manifest,
    manifests,
    open_regular,
)
from etl.integrity.keys import PublicKey
from etl.integrity.manifest import manifest_path, range_digest

# Every kind a finding can have (docs/INTEGRITY.md says what each means).
KINDS = (
    "malformed",
    "unsigned",
    "unknown key",
    "bad signature",
    "byte gap",
    "byte overlap",
    "modified",
    "truncated",
    "seq gap",
    "seq overlap",
    "unmanifested tail",
)


@dataclass(frozen=True)
class ManifestFinding:
    """A problem verify-export found, and the manifest and byte range it concerns."""

    kind: str
    manifest: int | None  # its number in the manifest file; None: after the last one
    start: int | None  # the byte range it concerns
    end: int | None
    detail: str

    def line(self) -> str:
        where = [] if self.manifest is None else [f"manifest {self.manifest}"]
        if self.start is not None:
            where.append(f"bytes {self.start}-{self.end}")
        return f"INVALID: {self.kind}: {', '.join(where)}: {self.detail}"

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "manifest": self.manifest, "bytes": self._range(),
                "detail": self.detail}  # fmt: skip

    def _range(self) -> list[int] | None:
        return None if self.start is None or self.end is None else [self.start, self.end]


@dataclass
class ExportReport:
    """What verify-export checked of one export file, and what it found."""

    file: str
    size: int = 0
    keys: list[str] = field(default_factory=list)  # the given keys' ids
    manifests: list[dict[str, Any]] = field(default_factory=list)
    findings: list[ManifestFinding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    valid: int = 0
    verified: int = 0  # bytes whose SHA-256 matched their manifest's

    def summary(self) -> str:
        return (
            f"{self.valid}/{len(self.manifests)} manifests valid, {self.verified} bytes "
            f"verified, {len(self.findings)} findings"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "summary": self.summary(), "file": self.file, "size": self.size,
            "keys": self.keys, "manifests_valid": self.valid,
            "bytes_verified": self.verified, "findings": [f.fields() for f in self.findings],
            "notes": self.notes, "manifests": self.manifests,
        }  # fmt: skip


def check_export(path: Path, keys: Sequence[PublicKey]) -> ExportReport:
    """``path`` against ``path.manifest``; ``ConfigError`` when either cannot be read."""
    fd = open_regular(path, "export file")
    try:
        listed = open_regular(manifest_path(path), "manifest file")
        try:
            return _Check(path, fd, keys).run(listed)
        finally:
            os.close(listed)
    finally:
        os.close(fd)


class _Check:
    def __init__(self, path: Path, fd: int, keys: Sequence[PublicKey]) -> None:
        self.fd = fd
        self.keys = {key.id: key for key in keys}
        self.report = ExportReport(str(path), os.fstat(fd).st_size, sorted(self.keys))
        self.end: int | None = 0  # where the next range must start; None: not known
        self.seqs: dict[tuple[str, str], int] = {}  # (consumer, account): its last seq
        self.signers: Counter[str] = Counter()
        self.named: dict[str, list[int]] = {}  # another file name a manifest holds: its numbers

    def run(self, listed: int) -> ExportReport:
        report = self.report
        for item in manifests(listed):
            if isinstance(item, Malformed):
                self._malformed(item)
                continue
            if item.file != path_name(report.file):
                self.named.setdefault(item.file, []).append(item.number)
            found = self._signature(item) + self._bytes(item) + self._seq(item)
            report.findings += found
            report.valid += not found
            report.manifests.append(_fields(item, not found))
        if self.end is not None and report.size > self.end:
            report.findings.append(ManifestFinding(
                "unmanifested tail", None, self.end, report.size,
                "bytes after the last manifest's end, in no manifest (an export writing, "
                "or one stopped before its manifest)",
            ))  # fmt: skip
        self._notes()
        return report

    def _malformed(self, item: Malformed) -> None:
        self.report.findings.append(ManifestFinding("malformed", item.number, None, None,
                                                    item.detail))  # fmt: skip
        self.report.manifests.append({"manifest": item.number, "valid": False,
                                      "line": item.line})  # fmt: skip
        # its ranges unknown: the next one's start, and the next seq of each, not judged
        self.end = None
        self.seqs.clear()

    def _signature(self, item: Manifest) -> list[ManifestFinding]:
        for key_id, _ in item.stamps:
            self.signers[key_id] += 1
        if not self.keys:
            return []

        def finding(kind: str, detail: str) -> list[ManifestFinding]:
            return [ManifestFinding(kind, item.number, item.start, item.end, detail)]

        for key_id, signature in item.stamps:
            if key_id in self.keys:
                if self.keys[key_id].verifies(signature, item.body):
                    return []
                return finding("bad signature", f"key {key_id}'s signature does not verify")
        if item.stamps:
            ids = ", ".join(key_id for key_id, _ in item.stamps)
            return finding("unknown key", f"signed by key {ids}, not by a given key")
        if item.bad_stamp:
            return finding("bad signature", "its signature line holds no signature")
        return finding("unsigned", "no signature, and a public key was given")

    def _bytes(self, item: Manifest) -> list[ManifestFinding]:
        found = []
        expected, self.end = self.end, item.end
        if expected is not None and item.start > expected:
            found.append(ManifestFinding("byte gap", item.number, expected, item.start,
                                         "bytes in no manifest before this one"))  # fmt: skip
        elif expected is not None and item.start < expected:
            found.append(ManifestFinding(
                "byte overlap", item.number, item.start, expected,
                "bytes the previous manifest covers already",
            ))  # fmt: skip
        digest = range_digest(self.fd, item.start, item.end)
        if digest is None:
            found.append(ManifestFinding(
                "truncated", item.number, item.start, item.end,
                f"the file ends at byte {self.report.size}, before the manifest's end",
            ))  # fmt: skip
        elif digest != item.sha256:
            found.append(ManifestFinding("modified", item.number, item.start, item.end,
                                         "the bytes' SHA-256 is not the manifest's"))  # fmt: skip
        else:
            self.report.verified += item.end - item.start
        return found

    def _seq(self, item: Manifest) -> list[ManifestFinding]:
        key = (item.consumer, item.account)
        last = self.seqs.get(key)
        self.seqs[key] = item.seq[1]
        if last is None or item.seq[0] == last + 1:
            return []
        kind = "seq gap" if item.seq[0] > last + 1 else "seq overlap"
        return [ManifestFinding(
            kind, item.number, item.start, item.end,
            f"consumer {item.consumer}, account {item.account}: seq {item.seq[0]}-"
            f"{item.seq[1]} does not follow its previous manifest's end, {last}",
        )]  # fmt: skip

    def _notes(self) -> None:
        report, total = self.report, len(self.report.manifests)
        for name, numbers in self.named.items():
            # A note, not a finding: the bytes and their SHA-256 are what is signed, and a
            # file renamed after its export (rotated, shipped) is still those bytes.
            which = f"{numbers[0]}" if len(numbers) == 1 else f"s {numbers[0]}-{numbers[-1]}"
            report.notes.append(
                f"manifest{which} ({len(numbers)} of {total}) name the file {name}, not "
                f"{path_name(report.file)}: renamed since its export, or another file's "
                "manifests (its bytes are what is checked)"
            )
        for key_id in report.keys:
            report.notes.append(f"public key {key_id}: signed {self.signers[key_id]} of "
                                f"{total} manifests")  # fmt: skip
        if not report.keys and total:
            signed = sum(self.signers.values())
            report.notes.append(
                f"no public key given (--public-key) or configured: manifests 1-{total} "
                f"unsigned as checked here ({signed} carry a signature, not checked)"
            )


def path_name(path: str) -> str:
    """The file's name as a manifest's ``file`` line holds it (``etl.integrity.manifest``)."""
    return Path(path).name


def _fields(item: Manifest, valid: bool) -> dict[str, Any]:
    return {
        "manifest": item.number, "valid": valid, "line": item.line,
        "consumer": item.consumer, "account": item.account, "file": item.file,
        "seq": list(item.seq), "bytes": [item.start, item.end], "sha256": item.sha256,
        "time": item.time, "key_ids": [key_id for key_id, _ in item.stamps],
    }  # fmt: skip
