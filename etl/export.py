"""``export``: the rows stored since a consumer's last export, as JSON lines.

Rows are read in storage order (``stored_seq``, etl.sequence), by keyset pagination in
chunks of ``chunk_rows``, up to the account's highest number when the run started (rows
stored meanwhile are the next run's): memory stays flat whatever the backlog, and records
that arrived late (older ``created_at``, stored later) come out too. Each chunk is written,
flushed and (to a file) fsynced, then the consumer's position commits together with
the file's new length. A run killed in between leaves bytes past the committed length:
the next run cuts them off before it writes, so the file holds every record once.
Standard output cannot be taken back: there, delivery is at least once.

The consumer's lock (etl.lock, named ``export:CONSUMER``) keeps two exports of one
consumer apart; a ``sync`` of the same account runs alongside.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl import consumers
from etl.db import database_errors, for_writing
from etl.errors import ConfigError, InterruptedRun, LockedError
from etl.lock import run_lock
from etl.ocsf import to_ocsf
from etl.schema import UTCDateTime
from etl.sinks import FileSink, Sink, StreamSink

log = logging.getLogger(__name__)

FORMATS = ("raw", "ocsf")
CHUNK_ROWS = 5000
# Each query reads one range of store numbers, a few chunks wide: bounded work whatever
# the planner knows (a fresh table has no statistics, and PostgreSQL would then sort the
# whole rest of the account for each chunk). Past a gap (numbers reserved for records read
# again unchanged) the range doubles, up to MAX_WINDOW.
WINDOW_CHUNKS = 4
MAX_WINDOW = 1 << 24


@dataclass(frozen=True)
class ExportOptions:
    consumer: str
    output: Path | None = None  # None: standard output
    fmt: str = "raw"
    since: datetime | None = None  # a new consumer's first export starts at this created_at
    chunk_rows: int = CHUNK_ROWS


@dataclass
class ExportSummary:
    consumer: str
    account: str
    output: str
    position_before: int
    position_after: int
    rows: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def line(self) -> str:
        return (
            f"export consumer={self.consumer} account={self.account}: {self.rows} rows, "
            f"{self.bytes} bytes to {self.output}; position {self.position_before} -> "
            f"{self.position_after}; {self.duration:.2f}s"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "event": "export_finished",
            "consumer": self.consumer,
            "account": self.account,
            "output": self.output,
            "rows": self.rows,
            "bytes": self.bytes,
            "position_before": self.position_before,
            "position_after": self.position_after,
            "duration_seconds": round(self.duration, 3),
        }


def export_accounts(
    engine: Engine,
    accounts: Sequence[str],
    options: ExportOptions,
    *,
    stdout: BinaryIO | None = None,
    stop: threading.Event | None = None,
    report: Callable[[ExportSummary], None] | None = None,
    now: Callable[[], datetime],
) -> list[ExportSummary]:
    """Export each account's new rows for ``options.consumer``, under its lock."""
    consumer = consumers.check_name(options.consumer)
    if options.output and not options.output.absolute().parent.is_dir():  # say so even if idle
        raise ConfigError(
            f"cannot write the export file {options.output}: its directory does not exist"
        )
    sink: Sink = FileSink(options.output) if options.output else StreamSink(_stdout(stdout))
    summaries = []
    with _consumer_lock(engine, consumer):
        try:
            for account in accounts:
                summary = _export_account(engine, account, options, sink, stop, now)
                summaries.append(summary)
                if report:
                    report(summary)
        finally:
            sink.close()
    return summaries


def _stdout(stream: BinaryIO | None) -> BinaryIO:
    if stream is not None:
        return stream
    import sys

    return sys.stdout.buffer


@contextmanager
def _consumer_lock(engine: Engine, consumer: str) -> Iterator[None]:
    try:
        with run_lock(engine, f"export:{consumer}"):
            yield
    except LockedError:
        raise LockedError(f"another export for consumer {consumer} is in progress") from None


def _export_account(
    engine: Engine,
    account: str,
    options: ExportOptions,
    sink: Sink,
    stop: threading.Event | None,
    now: Callable[[], datetime],
) -> ExportSummary:
    reader = _Reader(engine, account, options)
    with database_errors(engine, "reading the export position"), engine.connect() as conn:
        start = consumers.read_start(conn, options.consumer, account)
        conn.rollback()
        position = start.position or 0
        summary = ExportSummary(options.consumer, account, sink.name, position, position)
        if start.nothing_new():
            summary.duration = time.monotonic() - summary.started
            return summary
        # --since only shapes a consumer's first export of the account
        since = options.since if not start.position else None
        writer = for_writing(engine)
        baseline = sink.prepare(start.file_path, start.file_length)
        if baseline is not None:
            with database_errors(engine, "saving the export file"), writer.begin() as tx:
                consumers.save(tx, options.consumer, account, position, now(), baseline)
        head = start.head
        assert head is not None  # nothing_new() otherwise
        window = options.chunk_rows * WINDOW_CHUNKS
        while position < head:
            if stop is not None and stop.is_set():
                raise InterruptedRun("stopped by a signal; the export resumes at its position")
            upto = min(position + window, head)
            chunk = reader.chunk(conn, position, upto, since)
            # every number up to head is settled (etl.sequence): a window read whole
            # leaves nothing behind, and its empty rest is passed over
            full = len(chunk) == options.chunk_rows
            position = chunk[-1][0] if full else upto
            window = options.chunk_rows * WINDOW_CHUNKS if chunk else min(window * 2, MAX_WINDOW)
            if not chunk and position < head:
                continue  # a gap in the numbers: save the position with the next rows
            file = None
            if chunk:
                data = b"".join(reader.render(seq, raw) for seq, raw in chunk)
                file = sink.write(data)
                summary.rows += len(chunk)
                summary.bytes += len(data)
            with database_errors(engine, "saving the export position"), writer.begin() as tx:
                consumers.save(tx, options.consumer, account, position, now(), file)
            summary.position_after = position
    summary.duration = time.monotonic() - summary.started
    return summary


class _Reader:
    """One account's rows after a position, a chunk at a time, and their JSON lines."""

    def __init__(self, engine: Engine, account: str, options: ExportOptions) -> None:
        raw = "raw::text" if engine.dialect.name == "postgresql" else "raw"  # not decoded
        where = "account = :account AND stored_seq > :after AND stored_seq <= :upto"
        self._query = sa.text(
            f"SELECT stored_seq, {raw} FROM zendesk_audit_logs WHERE {where} "
            "ORDER BY stored_seq LIMIT :limit"
        )
        self._since_query = sa.text(
            f"SELECT stored_seq, {raw} FROM zendesk_audit_logs WHERE {where} "
            "AND created_at >= :since ORDER BY stored_seq LIMIT :limit"
        ).bindparams(sa.bindparam("since", type_=UTCDateTime(fsp=0)))
        self._engine = engine
        self._account = account
        self._limit = options.chunk_rows
        self._ocsf = options.fmt == "ocsf"
        self._account_json = json.dumps(account, ensure_ascii=False)

    def chunk(self, conn: Connection, after: int, upto: int, since: datetime | None) -> list[Any]:
        params: dict[str, Any] = {
            "account": self._account, "after": after, "upto": upto, "limit": self._limit
        }  # fmt: skip
        query = self._query
        if since is not None:
            query, params["since"] = self._since_query, since
        with database_errors(self._engine, "reading rows to export"):
            rows = conn.execute(query, params).all()
            conn.rollback()  # no snapshot held between chunks
        return [(int(seq), raw if isinstance(raw, str) else raw.decode()) for seq, raw in rows]

    def render(self, seq: int, raw: str) -> bytes:
        """One JSON line: the OCSF event, or the record with ``account`` and ``stored_seq``
        added (spliced into its JSON text: no decoding)."""
        if self._ocsf:
            return _json_line(to_ocsf(_loads(raw), self._account, raw, sequence=seq))
        text = raw.rstrip()
        if '"account"' in text or '"stored_seq"' in text:  # Zendesk sends neither; ours win
            record = _loads(text)
            record.update(account=self._account, stored_seq=seq)
            return _json_line(record)
        return f'{text[:-1]},"account":{self._account_json},"stored_seq":{seq}}}\n'.encode()


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
