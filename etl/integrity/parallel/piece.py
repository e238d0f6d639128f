"""One piece of ``verify``'s walk: the ledger's entries of a span, merged with the rows
their ``stored_seq`` numbers, each record hash and entry hash recomputed.

The whole ledger is one span (``verify --jobs 1``); with more jobs, each process walks
a span of its own (``etl.integrity.parallel.crew``) and ``etl.integrity.parallel.merge``
joins what they found into what one walk would have found, in its order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from etl.integrity import pages, streams
from etl.integrity.checks import derived, raw, usual
from etl.integrity.findings import Finding
from etl.integrity.reads import rows as row_reads
from etl.integrity.sqlite.ledger import text as sqlite_text
from etl.records import chain

_sha256 = hashlib.sha256
_FIXED = struct.Struct(">Q1sqH")  # as etl.records.chain's: number, kind, seq, id's length
_KIND_BYTES = {kind: kind.encode() for kind in chain.KINDS}
FIRST_SEQ = -(2**63)


@dataclass(frozen=True)
class Span:
    """Entries after ``after`` up to ``upto`` (None: the last), rows numbered from ``low``
    to before ``high`` (None: the last); ``previous`` is the stored hash of the entry
    before it (the genesis hash before the first), ``stream`` the stream of the last row
    matched before it (None: not known yet, ``merge`` fills it in)."""

    after: int
    upto: int | None
    low: int
    high: int | None
    previous: bytes
    sizes: frozenset[int]  # checkpoints' sizes: the chain's true hash is kept there
    stream: str | None


@dataclass
class Walked:
    """What a span's walk found (sent back from a worker process: plain values)."""

    findings: list[Finding] = field(default_factory=list)
    # record id -> (its last entry without a row, the entry from which it has been
    # waiting): records whose last entry here has no row (their stream is told by the id,
    # ``etl.integrity.verify``)
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)  # rows matched, per stream
    rejects: Counter[tuple[str | None, bytes]] = field(default_factory=Counter)
    reached: dict[int, bytes] = field(default_factory=dict)  # size -> the true hash there
    last: int = 0  # the last entry walked
    stored: bytes = b""  # its stored hash
    true_end: bytes = b""  # the chain's true hash there, from the span's ``previous``
    stream: str | None = None  # the stream of the last row matched (or the span's)
    top_seq: int = FIRST_SEQ  # the highest stored_seq a row entry named
    inserted: set[tuple[int, str, str]] = field(default_factory=set)  # (seq, id, stream)


class _Repeated(Exception):
    """A JSON object holding a key twice."""


def _no_repeats(pairs: list[tuple[str, Any]]) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        raise _Repeated


def repeats_a_key(text: str | bytes, record: bytes) -> bool:
    """Whether an object in the JSON ``text`` holds a key twice. Parsers keep the last
    value (the canonical form, so the record hash, too); SQLite's and MariaDB's JSON
    functions read the first: such a text reads as its entry's record in one and as
    another in SQL. The canonical text itself (``record`` its hash) cannot."""
    data = text.encode() if isinstance(text, str) else text
    if _sha256(data).digest() == record:
        return False
    try:
        json.loads(text, object_pairs_hook=_no_repeats)
    except _Repeated:
        return True
    except (ValueError, RecursionError):  # not JSON: ``matches`` said so already
        return False
    return False


def walk(conn: Connection, account: str, span: Span) -> Walked:
    """Walk ``span`` in ``conn``'s transaction, the next page fetched while one is checked."""
    done = Walked(stream=span.stream, last=span.after, stored=span.previous)
    with pages.prefetching(conn):
        rows = row_reads.rows(conn, account, span.low, span.high)
        entries = streams.entries(conn, account, span.after, span.upto)
        _Piece(conn, account, span, done).run(entries, rows)
    done.counts.pop(None, None)  # type: ignore[call-overload]
    return done


class _Piece:
    def __init__(self, conn: Connection, account: str, span: Span, done: Walked) -> None:
        self.account, self.span, self.done = account, span, done
        # SQLite and MariaDB give back the text the store wrote: a record of plain values
        # is its own canonical text (etl.records.audit), hashed as it is. PostgreSQL's
        # jsonb text has spaces, so it is never: parsed, as is any text the quick hash
        # does not match (``raw.matches``).
        self.quick = conn.dialect.name != "postgresql"
        # SQLite writes the derived columns' array as orjson does (``derived.differing``)
        self.compact = conn.dialect.name == "sqlite"
        # there, the usual row's columns told by one comparison of bytes (``checks.usual``)
        checkers = {name: usual.checker(made) for name, made in derived.STREAMS.items()}
        self.usual = {name: same for name, same in checkers.items() if same and self.compact}

    def run(self, entries: Iterator[streams.Entry], rows: Iterator[row_reads.StoredRow]) -> None:
        """The hot loop of verify, written for speed (tuples as the driver gives them, the
        entry hash's bytes written out as ``etl.records.chain.entry_hash`` makes them for
        the three kinds): it ran at 28,000 records/s through SQLAlchemy's rows."""
        done, span, find = self.done, self.span, self._find
        row = next(rows, None)
        expected, previous = span.after + 1, span.previous
        true_head = previous
        tag, pack, sha, kinds = chain.ENTRY_TAG, _FIXED.pack, _sha256, _KIND_BYTES
        sizes, reached, pending, counts = span.sizes, done.reached, done.pending, done.counts
        matches, stream, matched = raw.parsed_match, done.stream, 0  # matched: a count
        quick, top = self.quick, done.top_seq
        differing, derive, compact = derived.differing, derived.STREAMS, self.compact
        vouched, usual_row = row_reads.VOUCHED, self.usual.get
        for entry, kind, record_id, seq, record, stored, note in entries:
            if entry != expected:
                if type(entry) is not int:  # SQLite's real: ``kind`` names it, at its place
                    entry = expected
                elif entry > expected:
                    missing = f"entries {expected} to {entry - 1} are missing"
                    find("chain broken", None, entry, missing)
            if type(record) is not bytes:  # a driver's memoryview
                record = bytes(record)
            if note is not None and kind != chain.ADOPTED:  # no hash covers it: none written
                find(
                    "chain broken", record_id, entry, f"entry {entry}: a note the job never writes"
                )
            if kind == "R":
                number, key = seq or 0, record_id or ""
                if number > top:
                    top = number
                while row is not None and row[0] < number:
                    self._inserted(row)
                    row = next(rows, None)
                # a row at this number under another id (its id edited) is passed once
                while row is not None and row[0] == number and str(row[1]) != key:
                    self._inserted(row)
                    row = next(rows, None)
                if row is None or row[0] != number:
                    self._wait(key, entry)
                else:
                    if pending:
                        pending.pop(key, None)
                    text, compare, parsed = row[2], True, None
                    if row[3] != stream:  # another stream's row: counted apart
                        counts[stream] += matched  # type: ignore[index]
                        stream, matched = row[3], 0
                    matched += 1
                    if not (quick and type(text) is bytes and sha(text).digest() == record):
                        if text is None:  # SQLite's raw stored as a BLOB or a number
                            reason = f"the row (stored_seq {number}): {row_reads.NOT_TEXT}"
                            find("modified", key, entry, reason, stream=stream)
                            compare = False
                        elif not (same := matches(text, record))[0]:  # parsed: read once
                            find(
                                "modified",
                                key,
                                entry,
                                f"the row (stored_seq {number}) differs from its ledger entry",
                                stream=stream,
                            )
                            compare = False  # reported once: its columns are not compared
                        elif quick and repeats_a_key(text, record):  # jsonb (PostgreSQL) keeps one
                            find(
                                "modified",
                                key,
                                entry,
                                f"the row (stored_seq {number}) repeats a key: SQL's JSON "
                                "functions read its first value, its ledger entry the last",
                                stream=stream,
                            )
                            compare = False
                        else:
                            parsed = same[1]
                    if (
                        compare
                        and text is not None
                        and row[4] != vouched  # PostgreSQL's own check said they agree
                        and not (
                            parsed is None
                            and (quick_check := usual_row(stream)) is not None
                            and quick_check(text, row[4])
                        )
                        and (changed := differing(derive[stream], text, row[4], compact, parsed))
                    ):
                        find(
                            "modified",
                            key,
                            entry,
                            f"the row (stored_seq {number}): {', '.join(changed)} "
                            f"{'differs' if len(changed) == 1 else 'differ'} from what its "
                            "raw gives",
                            stream=stream,
                        )
                    row = next(rows, None)
            elif kind == chain.REJECT:
                done.rejects[(record_id, record)] += 1
            elif kind == chain.ADOPTED:
                if chain.note_hash(note or "") != record:
                    find("chain broken", record_id, entry, "an adoption entry was altered")
            else:  # a kind the job never writes, or SQLite's words for an odd column
                odd = kind if len(kind) > 1 else f"its kind {kind!r} is not one the job writes"
                record_id = sqlite_text(record_id)[0]  # SQLite's BLOB: shown as text
                find("chain broken", record_id, entry, f"entry {entry}: {odd}")
            code = kinds.get(kind)
            if code is None:  # not a kind the job writes: the reference function says
                computed = chain.entry_hash(previous, entry, kind, seq, record_id, record)
            else:
                rid = record_id.encode() if record_id else b""
                fixed = pack(entry, code, seq or 0, len(rid))
                computed = sha(b"".join((tag, previous, fixed, rid, record))).digest()
            if true_head is previous:
                true_head = computed
            else:  # diverged at an earlier break: the true chain goes its own way
                true_head = chain.entry_hash(true_head, entry, kind, seq, record_id, record)
            if computed != stored:
                find("chain broken", record_id, entry, "the entry's hash does not match")
                previous = bytes(stored)
            else:
                previous = computed
            if entry in sizes:
                reached[entry] = true_head
            expected = entry + 1
        counts[stream] += matched  # type: ignore[index]
        for left in rows if row is None else itertools.chain((row,), rows):
            self._inserted(left)  # past the span's last entry
        done.stream, done.top_seq = stream, top
        done.last, done.stored, done.true_end = expected - 1, previous, true_head

    def _wait(self, key: str, entry: int) -> None:
        """An entry without its row: a version since superseded, or a deleted record."""
        pending = self.done.pending
        waiting = pending.get(key)
        pending[key] = (entry, entry if waiting is None else waiting[1])

    def _inserted(self, row: Any) -> None:
        record_id = str(row[1])
        self.done.inserted.add((row[0], record_id, row[3]))
        self._find(
            "inserted",
            record_id,
            None,
            f"a row (stored_seq {row[0]}) no entry records",
            stream=row[3],
        )

    def _find(
        self,
        kind: str,
        record_id: str | None,
        entry: int | None,
        detail: str,
        subject: str = "record",
        stream: str | None = None,
    ) -> None:
        self.done.findings.append(
            Finding(kind, self.account, record_id, entry, detail, subject, stream)
        )
