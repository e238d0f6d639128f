"""One account's ledger walked in spans: the first by the verify's own process, each
other by a worker (``etl.integrity.parallel.crew``), all in one snapshot, joined by
``etl.integrity.parallel.merge``; in one piece when it is too small to pay for the
workers, or when a join cannot be sure.

A seam is a row entry whose previous entry is there, numbering a row above the last
seam's: the span before it ends at that previous entry, whose stored hash the span after
it starts from; the walk before compares that stored hash with the one it computes, so
the chain is proven link by link across the seam as in one walk.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.integrity import streams
from etl.integrity.pages import MAX_KEY
from etl.integrity.parallel.crew import Crew, Task
from etl.integrity.parallel.merge import merge
from etl.integrity.parallel.piece import Span, Walked, walk
from etl.storage.engine import sqlite_path
from etl.storage.schema.integrity import ledger

# Entries a span must have: below it, a worker's start (a new interpreter, its imports,
# a connection: about half a second of a core) costs more than walking them (a second
# for 150,000 entries or more on one core).
MIN_SPAN = 100_000
_SEAM_TRIES = 5  # candidate seams past one whose previous entry is missing
# Entries this process's span has more than a worker's: a worker begins its walk about
# half a second after this process (its spawn, imports and connection), so with equal
# spans this process waited for it at the end (0.37 to 0.55 s after walks of 5 to 6 s,
# 1,000,000 entries on MariaDB with two jobs: about 90,000 entries a second each). A time,
# so a number of entries, not a share: a share would grow with the ledger.
OWN_EXTRA = 40_000
_SNAPSHOT_ID = re.compile(r"\A[0-9A-Fa-f-]+\Z")


def walk_ledger(conn: Connection, account: str, first: Span, crew: Crew | None) -> Walked:
    """The ledger from ``first`` on: in spans over ``crew`` and this process, or in one."""
    if crew is None or (conn.dialect.name == "sqlite" and sqlite_path(conn.engine.url) is None):
        return walk(conn, account, first)  # an in-memory database: no other process sees it
    spans = plan(conn, account, first, crew.size + 1)
    if len(spans) < 2:
        return walk(conn, account, first)
    head, exported = streams.head(conn, account), _export(conn)
    pipes = crew.start([Task(account, head, exported, span) for span in spans[1:]])
    walks = [walk(conn, account, spans[0])]
    for span, pipe in zip(spans[1:], pipes, strict=True):
        walks.append(crew.receive(pipe) or walk(conn, account, span))  # stale: walked here
    return merge(conn, account, spans, walks) or walk(conn, account, first)


def plan(conn: Connection, account: str, first: Span, jobs: int) -> list[Span]:
    """``first`` cut into up to ``jobs`` spans of about as many entries (the first, this
    process's, ``OWN_EXTRA`` more), each of at least ``MIN_SPAN``."""
    last = conn.execute(
        # numbers only: SQLite keeps a text or a BLOB a DBA wrote, above every number
        sa.select(sa.func.max(ledger.c.entry)).where(
            ledger.c.account == account, ledger.c.entry <= MAX_KEY
        )
    ).scalar()
    total = int(last or 0) - first.after
    count = min(jobs, total // MIN_SPAN)
    bounds = [(first.after, first.low, first.previous)]  # after, low, previous of each span
    extra = min(OWN_EXTRA, total // 4)  # spans of at least MIN_SPAN less a quarter of it
    for part in range(1, max(count, 1)):
        share = (total - extra) * part // count + extra
        seam = _seam(conn, account, first.after + 1 + share, *bounds[-1][:2])
        if seam is not None:
            bounds.append(seam)
    spans = []
    for at, (after, low, previous) in enumerate(bounds):
        upto, high = (None, None) if at + 1 == len(bounds) else bounds[at + 1][:2]
        stream = first.stream if at == 0 else None
        spans.append(Span(after, upto, low, high, previous, first.sizes, stream))
    return spans


def _seam(
    conn: Connection, account: str, target: int, after: int, low: int
) -> tuple[int, int, bytes] | None:
    """The first row entry from ``target`` on that starts a span after the span from entry
    ``after`` + 1 and row ``low``: its previous entry, its number and that entry's hash."""
    table = ledger.c
    target = max(target, after + 2)  # the span before has an entry
    for _ in range(_SEAM_TRIES):
        found = conn.execute(
            sa.select(table.entry, table.stored_seq)
            .where(
                table.account == account,
                table.entry >= target,
                table.kind == "R",
                table.stored_seq > low,
                table.stored_seq <= MAX_KEY,  # as above
            )
            .order_by(table.entry)
            .limit(1)
        ).first()
        if found is None:
            return None
        entry, seq = int(found[0]), int(found[1])
        previous = streams.entry_hash_of(conn, account, entry - 1)
        if previous is not None:
            return entry - 1, seq, bytes(previous)
        target = entry + 1
    return None


def _export(conn: Connection) -> str | None:
    """PostgreSQL's snapshot of this transaction, for the workers to read in (None
    elsewhere, or where the server refuses: a worker then checks the head it sees)."""
    if conn.dialect.name != "postgresql":
        return None
    try:
        with conn.begin_nested():
            exported = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
    except sa.exc.DBAPIError:
        return None
    return exported if isinstance(exported, str) and _SNAPSHOT_ID.match(exported) else None
