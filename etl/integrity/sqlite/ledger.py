"""SQLite's page of the ledger, in a form that cannot stop ``verify``.

SQLite keeps whatever a DBA writes in a column: a real, a text or a BLOB in ``entry`` or
``stored_seq``, a BLOB in ``kind`` or ``record_id``, a text in a hash, a text that is not
UTF-8 anywhere. The page's query reads each column only where it holds what the job
stores, and else puts in ``kind`` the words saying which column does not (a kind the job
never writes, so the walk names it as ``chain broken`` at that entry): the usual entry
costs SQLite a few ``typeof`` tests and Python nothing. A text that is not UTF-8 cannot be
told in SQL; the driver refuses to decode it, and only then is the page read again with
``record_id`` and ``note`` as bytes (``columns``, ``repair``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# What ``kind`` reads as where a column holds another storage class, each test in turn
# (a text or a BLOB in ``entry`` sorts above every number: no page's range reads it, so
# the walk finds its entry missing).
_ODD = (
    ("typeof({entry}) != 'integer'", "its entry number is not stored as an integer"),
    ("typeof({stored_seq}) NOT IN ('integer', 'null')", "its stored_seq is not an integer"),
    ("typeof({record_id}) NOT IN ('text', 'null')", "its record_id is not stored as text"),
    ("typeof({record_hash}) != 'blob'", "its record_hash is not stored as bytes"),
    ("typeof({entry_hash}) != 'blob'", "its entry_hash is not stored as bytes"),
    ("typeof({note}) NOT IN ('text', 'null')", "its note is not stored as text"),
    ("{kind} NOT IN ('R', 'X', 'A')", "its kind is not R, X or A stored as text"),
)
NOT_UTF8 = {
    "record_id": "its record_id is not UTF-8 text",
    "note": "its note is not UTF-8 text",
}


def _kind(q: Callable[[str], str]) -> str:
    names = {n: q(n) for n in ("entry", "kind", "record_id", "stored_seq", "note")}
    names |= {n: q(n) for n in ("record_hash", "entry_hash")}
    tests = " ".join(f"WHEN {test.format(**names)} THEN '{words}'" for test, words in _ODD)
    return f"CASE {tests} ELSE {names['kind']} END"


def columns(q: Callable[[str], str], texts_as_bytes: bool = False) -> str:
    """The page's columns (``etl.integrity.streams.Entry``): a real ``entry`` as it is (the
    walk takes it for the entry it follows), a ``stored_seq`` or a hash of another class
    as NULL or no bytes, a BLOB in ``record_id`` or ``note`` as its bytes: ``kind``'s words
    say the entry is broken. Where ``texts_as_bytes``, ``record_id`` and ``note`` as bytes:
    after the driver refused to decode one."""
    seq, record_id, note = q("stored_seq"), q("record_id"), q("note")
    if texts_as_bytes:
        record_id, note = f"CAST({record_id} AS BLOB)", f"CAST({note} AS BLOB)"
    hashes = [f"CASE typeof({h}) WHEN 'blob' THEN {h} ELSE X'' END" for h in map(q, _HASHES)]
    seq = f"CASE typeof({seq}) WHEN 'integer' THEN {seq} END"
    return ", ".join([q("entry"), _kind(q), record_id, seq, *hashes, note])


_HASHES = ("record_hash", "entry_hash")


def repair(rows: list[Any]) -> list[Any]:
    """The rows read with ``texts_as_bytes`` as ``columns``' are, a text that is not
    UTF-8 named in ``kind`` (shown with U+FFFD where it is the record id)."""
    repaired = []
    for entry, kind, record_id, seq, record, stored, note in rows:
        texts = []
        for name, value in (("record_id", record_id), ("note", note)):
            value, utf8 = text(value)
            texts.append(value)
            if not utf8:
                kind = NOT_UTF8[name]
        repaired.append((entry, kind, texts[0], seq, record, stored, texts[1]))
    return repaired


def text(value: Any) -> tuple[str | None, bool]:
    """Bytes SQLite gave for a text column (a BLOB, or a text read as bytes) as text, with
    U+FFFD where they are not UTF-8, and whether they were; a text or None as it is."""
    if value is None or isinstance(value, str):
        return value, True
    try:
        return bytes(value).decode(), True
    except UnicodeDecodeError:
        return bytes(value).decode(errors="replace"), False
