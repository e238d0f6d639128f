"""What ``verify`` checks once the ledger is walked (``etl.integrity.verify``): the rejects
against their entries, the head row against the chain's end, and each checkpoint's
signature and whether the chain reaches it.

Each check reports through ``find`` (the walk's, which adds a finding to the account's
report), so the findings and their wording are the walk's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Protocol

from etl.integrity.findings import AccountReport
from etl.integrity.keys import PublicKey
from etl.integrity.note import Checkpoint
from etl.records import chain

# A reject as its entry records it: the record id and the reject's hash.
RejectKey = tuple[str | None, bytes]


class Find(Protocol):
    def __call__(
        self,
        kind: str,
        record_id: str | None,
        entry: int | None,
        detail: str,
        subject: str = "record",
        stream: str | None = None,
    ) -> None: ...


def compare_rejects(
    find: Find,
    stored_rejects: Iterable[tuple[str | None, str, str, str | None, bool]],
    ledgered: Counter[RejectKey],
) -> None:
    """The reject rows (``streams.rejects``) against the reject entries walked; one not
    readable as text matches no entry (an ``inserted`` reject, its entry's ``deleted``)."""
    stored: Counter[RejectKey] = Counter()
    kept: dict[RejectKey, str | None] = {}  # the stream of each
    for record_id, reason, raw, stream, readable in stored_rejects:
        digest = chain.reject_hash(record_id, reason, raw) if readable else b""
        key = (record_id, digest)
        stored[key] += 1
        kept[key] = stream
    for key, count in (stored - ledgered).items():
        for _ in range(count):
            find(
                "inserted",
                key[0],
                None,
                "a reject no entry records",
                subject="reject",
                stream=kept[key],
            )
    for (record_id, _), count in (ledgered - stored).items():
        for _ in range(count):
            find(
                "deleted",
                record_id,
                None,
                "a reject's entry has no reject row",
                subject="reject",
            )


def check_head(find: Find, found: tuple[int, str] | None, last: tuple[int, bytes]) -> None:
    """The head row (``streams.head``) against the ledger's last entry and its hash."""
    entries, stored = last
    if found is None:
        if entries:
            find("chain broken", None, entries, "the ledger has no head row")
        return
    if found[0] > entries:
        find(
            "truncated",
            None,
            found[0],
            f"the head counts {found[0]} entries, the ledger ends at {entries}",
        )
    elif found[0] < entries or found[1] != stored.hex():
        find("chain broken", None, entries, "the head row does not match the ledger")


def check_checkpoints(
    find: Find,
    report: AccountReport,
    checkpoints: list[Checkpoint],
    public_keys: Iterable[PublicKey],
    reached: dict[int, bytes],
    start: int,
    last: int,
) -> None:
    """Each checkpoint from entry ``start`` on: signed by a key given and reached by the
    chain (``reached``: the chain's true hash at each checkpoint's size); a note for the
    entries no valid signed checkpoint covers."""
    keys = {key.id: key for key in public_keys}
    anchored = start - 1
    for made in sorted(checkpoints, key=lambda c: c.size):
        if made.size < start and made.size >= 0:
            continue
        report.checkpoints += 1
        ok = _signature_ok(find, made, keys) and _reached(find, made, reached, last)
        if ok:
            report.checkpoints_valid += 1
            if made.signature is not None and keys:
                anchored = max(anchored, made.size)
    if anchored < last:
        why = "unsigned" if not keys else "not covered by a valid signed checkpoint"
        report.notes.append(f"entries {anchored + 1} to {last}: {why}")


def _signature_ok(find: Find, made: Checkpoint, keys: dict[str, PublicKey]) -> bool:
    if made.size < 0:
        find("bad signature", None, None, f"a checkpoint in {made.origin} does not parse")
        return False
    if made.signature is None or not keys:
        return True  # unsigned, or no public key to check it with: a note says so
    key = keys.get(made.key_id or "")
    if key is None:
        find(
            "bad signature",
            None,
            made.size,
            f"checkpoint signed by key {made.key_id}, which is not among the public keys given",
        )
        return False
    if not key.verifies(made.signature, made.body):
        find("bad signature", None, made.size, "the checkpoint's signature is wrong")
        return False
    return True


def _reached(find: Find, made: Checkpoint, reached: dict[int, bytes], last: int) -> bool:
    if made.size > last:
        find(
            "truncated",
            None,
            made.size,
            f"a checkpoint covers {made.size} entries, the ledger ends at {last}",
        )
        return False
    if made.size == 0 or reached.get(made.size) != made.head:
        find(
            "chain broken",
            None,
            made.size,
            "the chain does not reach the checkpoint (its head differs)",
        )
        return False
    return True
