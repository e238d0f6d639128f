"""The ledger's hashes: what each entry commits to, byte for byte (docs/INTEGRITY.md).

A record's hash is SHA-256 over its canonical JSON (``etl.records.canonical``); a
reject's over the canonical JSON of ``{"reason", "record_id", "raw"}`` as stored; an
adoption entry's over its note's UTF-8 text. An entry's hash chains it to the one before:

    entry_hash = SHA-256( b"zendesk-audit-etl/ledger/v1\\0"
                          || previous entry_hash            (32 bytes)
                          || entry number                   (8 bytes, big-endian)
                          || kind                           (1 byte: R row, X reject, A adopted)
                          || stored_seq, 0 when none        (8 bytes, big-endian, signed)
                          || length of record id in bytes   (2 bytes, big-endian)
                          || record id, UTF-8 ("" when none)
                          || record hash                    (32 bytes) )

The "previous" hash of an account's first entry is its genesis:
SHA-256(b"zendesk-audit-etl/genesis/v1\\0" || account name in UTF-8), so that one
account's chain cannot pass for another's. The tag carries the format version: a later
format gets a new tag, and old entries keep verifying under theirs.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

from etl.records.canonical import canonical_json

ENTRY_TAG = b"zendesk-audit-etl/ledger/v1\0"
GENESIS_TAG = b"zendesk-audit-etl/genesis/v1\0"
ROW, REJECT, ADOPTED = "R", "X", "A"
KINDS = (ROW, REJECT, ADOPTED)

_sha256 = hashlib.sha256
_TAGGED = hashlib.sha256(ENTRY_TAG)
_FIXED = struct.Struct(">Q1sqH")  # entry number, kind, stored_seq, record id's length


def record_hash(raw: Any) -> bytes:
    """SHA-256 of a stored record (``raw``, as ``json.loads`` gives it)."""
    return _sha256(canonical_json(raw).encode()).digest()


def reject_hash(record_id: str | None, reason: str, raw: str) -> bytes:
    """SHA-256 of a stored reject: its record id, reason and raw text, as stored."""
    text = canonical_json({"raw": raw, "reason": reason, "record_id": record_id})
    return _sha256(text.encode()).digest()


def note_hash(note: str) -> bytes:
    """SHA-256 of an adoption entry's note."""
    return _sha256(note.encode()).digest()


def genesis(account: str) -> bytes:
    return _sha256(GENESIS_TAG + account.encode()).digest()


def entry_hash(
    previous: bytes,
    entry: int,
    kind: str,
    stored_seq: int | None,
    record_id: str | None,
    record: bytes,
) -> bytes:
    """The hash of entry number ``entry`` (see the module for the bytes)."""
    rid = (record_id or "").encode()
    # The job's kinds are one ASCII byte. Another (a DBA's, found as such by ``verify``)
    # must still give a hash, not an error: its UTF-8 bytes, of which ``1s`` keeps the first.
    fixed = _FIXED.pack(entry, kind.encode(), stored_seq or 0, len(rid))
    digest = _TAGGED.copy()  # the tag hashed once, not once an entry
    digest.update(b"".join((previous, fixed, rid, record)))
    return digest.digest()
