"""The spans' walks joined into what one walk of the whole ledger finds, in its order.

Each span's findings are one walk's, in order, given what ``plan`` makes sure of at each
seam (the entry before it is there, so no gap is found at it; the seam's entry is a row
entry whose number is above every earlier row entry's, checked here from what each walk
saw: the rows one walk would have taken as inserted at the seam's entry are the last
span's leftovers). What crosses a seam is joined here:

- the records waiting for a row: one walk's dictionary of them, replayed. A record still
  waiting at the end of a span stops waiting when a later span matches its row (looked
  up by id in the snapshot: its row is in that span, and not taken as inserted there);
- the stream taken for an entry without a row before a span's first match;
- the chain's true hash at each checkpoint: a span starts from the stored hash before
  it, which is the true one unless the chain broke earlier; then the rest is chained
  again from the true hash here (a ledger with a broken chain only).

``None`` where a join cannot be sure (a record id in two streams' tables, a row entry
past the seam): the caller walks the whole ledger in one piece instead.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.integrity import streams
from etl.integrity.parallel.piece import Span, Walked
from etl.integrity.reads.rows import ROW_TABLES
from etl.integrity.sqlite.ledger import text as sqlite_text
from etl.records import chain

_LOOKUP = 500  # ids a query


def merge(conn: Connection, account: str, spans: list[Span], walks: list[Walked]) -> Walked | None:
    for before, span in zip(walks, spans[1:], strict=False):
        if before.top_seq >= span.low:  # a row entry numbers rows past the seam
            return None
    matched = _matched_later(conn, account, spans, walks)
    if matched is None:
        return None
    total = Walked(stream=spans[0].stream)
    waiting = total.pending
    stream, true, rechain_at = spans[0].stream, spans[0].previous, None
    for k, (span, walk) in enumerate(zip(spans, walks, strict=True)):
        total.findings += walk.findings
        total.counts.update(walk.counts)
        total.rejects.update(walk.rejects)
        total.reached.update(walk.reached)
        for key in matched[k].difference(walk.pending):
            waiting.pop(key, None)
        for key, (entry, since) in walk.pending.items():
            held = waiting.get(key)
            if held is not None and key not in matched[k]:
                since = held[1]  # still waiting since an earlier span's entry
            waiting[key] = (entry, since)
        stream = walk.stream or stream
        if rechain_at is None and true != span.previous:
            rechain_at = (span.after, true)
        true = walk.true_end
    total.pending = dict(sorted(waiting.items(), key=lambda item: item[1][1]))
    total.stream, total.last, total.stored = stream, walks[-1].last, walks[-1].stored
    if rechain_at is not None:
        after, true = rechain_at
        sizes = {size for size in spans[0].sizes if size > after}
        if sizes:
            total.reached.update(_rechain(conn, account, after, true, sizes))
    return total


def _rechain(
    conn: Connection, account: str, after: int, true: bytes, sizes: set[int]
) -> dict[int, bytes]:
    """The chain's true hash at each of ``sizes``, chained on from ``true`` after entry
    ``after``: what one walk carries past a break."""
    reached, expected = {}, after + 1
    for entry, kind, record_id, seq, record, _, _ in streams.entries(conn, account, after):
        if type(entry) is not int:  # SQLite's real number: at its place, as the walk takes it
            entry = expected
        record_id = sqlite_text(record_id)[0]  # SQLite's BLOB: shown as text
        true = chain.entry_hash(true, entry, kind, seq, record_id, bytes(record))
        if entry in sizes:
            reached[entry] = true
        expected = entry + 1
    return reached


def _matched_later(
    conn: Connection, account: str, spans: list[Span], walks: list[Walked]
) -> list[set[str]] | None:
    """Per span, the records waiting at the end of an earlier span that it matched."""
    matched: list[set[str]] = [set() for _ in spans]
    keys = set().union(*(walk.pending for walk in walks[:-1]))
    lows = [span.low for span in spans]
    streams_of: dict[str, str] = {}
    for stream, seq, record_id in _rows_of(conn, account, keys):
        if streams_of.setdefault(record_id, stream) != stream:
            return None  # one id in two streams' tables: which matched is one walk's to say
        if seq is None or seq < lows[0]:
            continue
        k = bisect.bisect_right(lows, seq) - 1
        if k and (seq, record_id, stream) not in walks[k].inserted:
            matched[k].add(record_id)
    return matched


def _rows_of(
    conn: Connection, account: str, keys: Iterable[str]
) -> Iterator[tuple[str, int | None, str]]:
    """(stream, stored_seq, id) of each row whose id is one of ``keys``."""
    wanted = set(keys)
    keys = sorted(wanted)
    for stream, table in ROW_TABLES.items():
        ids: list[object] = list(keys)
        if isinstance(table.c.id.type, sa.BigInteger):
            ids = [int(key) for key in keys if _is_integer(key)]
        for at in range(0, len(ids), _LOOKUP):
            query = sa.select(table.c.stored_seq, table.c.id).where(
                table.c.account == account, table.c.id.in_(ids[at : at + _LOOKUP])
            )
            for seq, record_id in conn.execute(query):
                if str(record_id) in wanted:
                    yield stream, seq, str(record_id)


def _is_integer(text: str) -> bool:
    try:
        return str(int(text)) == text and abs(int(text)) < 2**63
    except ValueError:
        return False
