"""``export``'s reads: an account's rows after a position, chunk by chunk, read ahead.

``Reader.batches`` reads one stream's table (etl.export.streams) in storage order
(``stored_seq``, etl.storage.sequence) by keyset pagination, ``chunk_rows`` at a time,
up to the account's highest number when the run started. Each query reads one range of
numbers, a few chunks wide: bounded work whatever the planner knows (a fresh table has no
statistics, and PostgreSQL would then sort the whole rest of the account for each chunk).
Past a gap (numbers reserved for records read again unchanged, or the other stream's) the
range doubles, up to ``MAX_WINDOW``.

``ReadAhead`` runs those reads in a thread of its own, a bounded number of chunks ahead:
the database server finds and sends the next chunk while this one is turned into lines,
written and committed (the server's part of a chunk takes about as long as ours). Memory
stays bounded by ``depth`` chunks. SQLite's reads run inline (``read_ahead``).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.settings import AUDIT_LOGS
from etl.export.streams import STREAMS, ExportStream
from etl.storage.engine import database_errors

WINDOW_CHUNKS = 4
MAX_WINDOW = 1 << 24
READ_AHEAD = 2  # chunks read and waiting, besides the one being written


@dataclass(frozen=True)
class Batch:
    """Rows to write, then ``position`` to commit (all numbers up to it are read)."""

    position: int
    rows: list[tuple[int, str]]  # (stored_seq, the raw JSON text), in storage order


class Reader:
    """One account's rows of one stream for one export: the queries made once, run per
    chunk."""

    def __init__(
        self,
        engine: Engine,
        account: str,
        stream: ExportStream = STREAMS[AUDIT_LOGS],
        *,
        fmt: str,
        chunk_rows: int,
    ) -> None:
        table = stream.table
        # the raw JSON as the database holds it, as text, never decoded here
        raw = (
            sa.cast(table.c.raw, sa.Text)
            if engine.dialect.name == "postgresql"
            else sa.type_coerce(table.c.raw, sa.Text)
        )
        seq = table.c.stored_seq
        select = sa.select(seq, raw).where(
            table.c.account == sa.bindparam("account"),
            seq > sa.bindparam("after"),
            seq <= sa.bindparam("upto"),
        )
        ordered = select.order_by(seq).limit(sa.bindparam("limit"))
        self._query = ordered
        time = table.c[stream.time_column]
        self._since_query = ordered.where(time >= sa.bindparam("since", type_=time.type))
        self._engine = engine
        self._account = account
        self._limit = chunk_rows
        self._ocsf = stream.ocsf if fmt == "ocsf" else None
        # a stream other than the audit log names itself in each raw line
        named = "" if stream.name == AUDIT_LOGS else f',"stream":{json.dumps(stream.name)}'
        self._stream = None if stream.name == AUDIT_LOGS else stream.name
        self._tail = f',"account":{json.dumps(account, ensure_ascii=False)}{named},"stored_seq":'

    def batches(
        self, after: int, head: int, since: tuple[datetime, int] | None
    ) -> Generator[Batch, None, None]:
        """The rows numbered in ``(after, head]``, a chunk a batch; a range found empty
        short of ``head`` makes no batch (its numbers commit with the next rows).
        ``since`` (a time, a number): of the rows numbered up to that number, only those
        created at or after that time."""
        window = self._limit * WINDOW_CHUNKS
        position = after
        with self._engine.connect() as conn:
            while position < head:
                upto = min(position + window, head)
                created = None
                if since is not None and position < since[1]:
                    created, upto = since[0], min(upto, since[1])
                rows = self._chunk(conn, position, upto, created)
                # every number up to head is settled (etl.storage.sequence): a range read whole
                # leaves nothing behind, and its empty rest is passed over
                position = rows[-1][0] if len(rows) == self._limit else upto
                window = self._limit * WINDOW_CHUNKS if rows else min(window * 2, MAX_WINDOW)
                if rows or position >= head:
                    yield Batch(position, rows)

    def _chunk(
        self, conn: Connection, after: int, upto: int, since: datetime | None
    ) -> list[tuple[int, str]]:
        params: dict[str, Any] = {
            "account": self._account, "after": after, "upto": upto, "limit": self._limit
        }  # fmt: skip
        query = self._query
        if since is not None:
            query, params["since"] = self._since_query, since
        with database_errors(self._engine, "reading rows to export"):
            found = conn.execute(query, params).all()  # one fetchall, not a fetch a row
            rows = [(int(n), raw if isinstance(raw, str) else raw.decode()) for n, raw in found]
            conn.rollback()  # no snapshot held between chunks
        return rows

    def lines(self, rows: list[tuple[int, str]]) -> bytes:
        """The rows' JSON lines: OCSF events, or the records with ``account`` and
        ``stored_seq`` added."""
        account = self._account
        if self._ocsf:
            ocsf = self._ocsf
            return b"".join(
                _json_line(ocsf(_loads(raw), account, raw, sequence=seq)) for seq, raw in rows
            )
        tail, stream = self._tail, self._stream
        return "".join([raw_line(seq, raw, account, tail, stream) for seq, raw in rows]).encode()


def raw_line(seq: int, raw: str, account: str, tail: str, stream: str | None = None) -> str:
    """The record's JSON text with ``account``, ``stream`` (if given) and ``stored_seq``
    added, spliced in (no decoding; ``tail`` is ``,"account":ACCOUNT,"stored_seq":``, with
    ``"stream":STREAM,`` before ``"stored_seq"`` when given)."""
    text = raw.rstrip()
    ours = '"account"' in text or '"stored_seq"' in text or bool(stream and '"stream"' in text)
    if ours:  # Zendesk sends none of them; ours win
        record = _loads(text)
        record.update(account=account, stored_seq=seq)
        if stream:
            record["stream"] = stream
        return _json_line(record).decode()
    return f"{text[:-1]}{tail}{seq}}}\n"


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # an integer past 64 bits: the json module keeps it
        return json.loads(text)


def _json_line(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # an integer past 64 bits
        return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


T = TypeVar("T")
_PUT_WAIT_S = 0.1  # how soon a closed ReadAhead's thread notices


def read_ahead(
    engine: Engine, make: Callable[[], Generator[T, None, None]]
) -> AbstractContextManager[Iterable[T]]:
    """``make()``'s items, read ahead in a thread from a database server; SQLite works in
    this process, where a thread would only take turns with this one for the interpreter
    lock (measured: no faster), so its reads run inline."""
    if engine.dialect.name == "sqlite":
        return closing(make())
    return ReadAhead(make)


class ReadAhead(Generic[T]):
    """The items of ``make()`` (called in the thread, so that what it opens is opened
    and closed there), made up to ``depth`` ahead of their use; an error comes out where
    its item would have. ``close()`` (or leaving the ``with``) stops the thread after
    the item it is making, and waits for it."""

    def __init__(
        self, make: Callable[[], Generator[T, None, None]], depth: int = READ_AHEAD
    ) -> None:
        self._make = make
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="export-read", daemon=True)
        self._thread.start()

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        while True:
            done, value = self._queue.get()
            if done:
                if value is not None:
                    raise value
                return
            yield value

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _run(self) -> None:
        items = None
        try:
            items = self._make()
            for item in items:
                if not self._put((False, item)):
                    return
            self._put((True, None))
        except BaseException as exc:  # handed to the reader, which raises it
            self._put((True, exc))
        finally:
            if items is not None:
                items.close()  # what it opened (a connection) closes in this thread

    def _put(self, entry: tuple[bool, Any]) -> bool:
        while not self._closed.is_set():
            try:
                self._queue.put(entry, timeout=_PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False
