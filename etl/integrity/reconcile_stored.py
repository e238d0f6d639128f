"""What ``reconcile`` compares Zendesk's day with: the day's stored rows, hashed as the
ledger hashes them, and the signed checkpoint that covers them.

``stored_day`` reads one day of one log's table under the scope's filters in keyset pages
(flat memory, whatever the day's size) and ``compare_day`` holds them against Zendesk's;
``empty_days`` does that for a stretch of days Zendesk has no record of, with one query
for the stretch plus two a day that has stored rows (those are *extra*, and their run of
days is saved then), not two a day.
``last_signed`` finds the account's last signed checkpoint and how far its ledger reaches,
once a period, and ``Covering.of_day`` says whether it covers a day. Read only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.clock import format_time, iso
from etl.integrity.checks.raw import UNREADABLE, raw_digest
from etl.integrity.reconcile_days import DayResult
from etl.storage.schema.integrity import checkpoints, ledger

SECOND = timedelta(seconds=1)
PAGE = 5000  # stored rows read a query
_INTEGER_FILTERS = ("source_id", "actor_id")  # BIGINT columns: values compared as numbers


@dataclass(frozen=True)
class StoredScope:
    """Which stored rows a day's comparison reads: one account's of one log's table, under
    the filters that apply to it (the audit log's scope; none for another stream)."""

    table: sa.Table
    time_column: str
    account: str
    filters: Mapping[str, Sequence[str]]


def stored_day(
    conn: Connection, scope: StoredScope, start: datetime, end: datetime
) -> Iterator[tuple[Any, bytes, int | None]]:
    """(id, record hash, stored_seq) of the stored rows of ``start..end`` (inclusive, to
    the second) under the scope's filters, in keyset pages by id."""
    table = scope.table
    where = _where(scope, start, end)
    raw: Any = sa.cast(table.c.raw, sa.Text)
    if conn.dialect.name == "sqlite":  # its bytes: a DBA's text not UTF-8 is read too
        is_text = sa.func.typeof(table.c.raw) == "text"  # else NULL: no record (a BLOB)
        raw = sa.case((is_text, sa.cast(table.c.raw, sa.LargeBinary)))
    after: Any = None
    while True:
        query = sa.select(table.c.id, raw, table.c.stored_seq).where(*where)
        if after is not None:
            query = query.where(table.c.id > after)
        page = conn.execute(query.order_by(table.c.id).limit(PAGE)).all()
        for record_id, text, seq in page:
            # verify's: record_hash of the parsed text (none a record's for a text not JSON)
            yield record_id, UNREADABLE if text is None else raw_digest(text), seq
        if len(page) < PAGE:
            return
        after = page[-1][0]


def _where(scope: StoredScope, start: datetime, end: datetime) -> list[Any]:
    table = scope.table
    moment = table.c[scope.time_column]
    # Stored times may have a fraction (the access log's): the end's whole second counts.
    where = [table.c.account == scope.account, moment >= start, moment < end + SECOND]
    for key, values in scope.filters.items():
        wanted = [int(v) for v in values] if key in _INTEGER_FILTERS else list(values)
        where.append(table.c[key].in_(wanted))
    return where


def days_with_rows(
    conn: Connection, scope: StoredScope, start: datetime, end: datetime
) -> Iterator[date]:
    """The UTC dates of ``start..end`` that have stored rows under the scope, ascending:
    one query for each and one more, on the (account, time) index. Each asks for the
    first row from the next midnight on, so no database's date function or time zone is
    involved: the bounds are the same half-open ones ``stored_day`` reads."""
    first_time = sa.func.min(scope.table.c[scope.time_column])
    after = start
    while True:
        found = conn.execute(sa.select(first_time).where(*_where(scope, after, end))).scalar()
        if found is None:
            return
        day = found.astimezone(UTC).date()
        yield day
        after = datetime.combine(day + timedelta(days=1), time(), UTC)


def compare_day(
    conn: Connection,
    scope: StoredScope,
    span: tuple[datetime, datetime],
    theirs: dict[Any, bytes],
    result: DayResult,
    covering: Covering | None,
) -> None:
    """The stored rows of the day's ``span`` (inclusive, to the second) against ``theirs``,
    Zendesk's ids and record hashes; fills the result's counts, ids and checkpoint."""
    stored = unnumbered = 0
    newest_seq: int | None = None
    extra: list[Any] = []
    differ: list[Any] = []
    seen: set[Any] = set()
    for record_id, digest, seq in stored_day(conn, scope, *span):
        stored += 1
        seen.add(record_id)
        if seq is None:
            unnumbered += 1
        elif newest_seq is None or seq > newest_seq:
            newest_seq = seq
        if record_id not in theirs:
            extra.append(record_id)
        elif theirs[record_id] != digest:
            differ.append(record_id)
    if covering is not None:
        result.checkpoint = covering.of_day(newest_seq, unnumbered)
    result.at_zendesk, result.stored = len(theirs), stored
    result.missing = sorted(set(theirs) - seen)
    result.extra, result.differ = sorted(extra), sorted(differ)


def empty_days(
    conn: Connection,
    scope: StoredScope,
    spans: Sequence[tuple[str, datetime, datetime]],
    covering: Covering | None,
) -> Iterator[list[DayResult]]:
    """The results of consecutive days (date, first and last second) Zendesk returned no
    record of: one query finds which have stored rows, and only those are read (their rows
    are extra); the others are empty on both sides, exactly as ``compare_day`` finds them.
    Yielded in runs that end at a day with stored rows (or the stretch's end), for the
    caller to save as it goes: a kill in a long stretch of extra rows loses one day's read."""
    stored = set(days_with_rows(conn, scope, spans[0][1], spans[-1][2])) if spans else set()
    results: list[DayResult] = []
    for day, start, end in spans:
        result = DayResult(day, format_time(start), format_time(end))
        results.append(result)
        if date.fromisoformat(day) in stored:
            compare_day(conn, scope, (start, end), {}, result, covering)
            yield results
            results = []
        elif covering is not None:
            result.checkpoint = covering.of_day(None, 0)
    if results:
        yield results


@dataclass(frozen=True)
class Covering:
    """The account's last signed checkpoint when the period began, and the highest
    ``stored_seq`` its ledger reaches (the ledger numbers rows in ``stored_seq`` order)."""

    checkpoint: dict[str, Any]
    reached: int | None

    def of_day(self, newest_seq: int | None, unnumbered: int) -> dict[str, Any] | None:
        """The checkpoint, if it reaches every row of a day whose newest is ``newest_seq``."""
        if unnumbered:
            return None
        if newest_seq is not None and (self.reached is None or self.reached < newest_seq):
            return None
        return self.checkpoint


def last_signed(engine: Engine, account: str) -> Covering | None:
    """Looked up once a period: it is the same for every day."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.select(checkpoints.c.size, checkpoints.c.head, checkpoints.c.made_at,
                      checkpoints.c.key_id)
            .where(checkpoints.c.account == account, checkpoints.c.key_id.is_not(None))
            .order_by(checkpoints.c.size.desc(), checkpoints.c.id.desc())
            .limit(1)
        ).first()  # fmt: skip
        if found is None:
            return None
        size, head, made_at, key_id = found
        reached = conn.execute(
            sa.select(ledger.c.stored_seq)
            .where(ledger.c.account == account, ledger.c.entry <= size,
                   ledger.c.stored_seq.is_not(None))
            .order_by(ledger.c.entry.desc())
            .limit(1)
        ).scalar()  # fmt: skip
    checkpoint = {"size": int(size), "head": head, "made_at": iso(made_at), "key_id": key_id}
    return Covering(checkpoint, reached)
