"""``export``: the rows stored since a consumer's last export, as JSON lines.

Rows are read in storage order (``stored_seq``, etl.storage.sequence), by keyset pagination in
chunks of ``chunk_rows``, read ahead in a thread (etl.export.read), up to the account's
highest number when the run started (rows stored meanwhile are the next run's): memory
stays flat whatever the backlog, and records that arrived late (older ``created_at``,
stored later) come out too. Each chunk is written, flushed and (to a file) fsynced, then
the consumer's position commits together with the file's new length. A run killed in
between leaves bytes past the committed length: the next run cuts them off before it
writes, so the file holds every record once. Standard output cannot be taken back:
there, delivery is at least once.

The consumer's lock (etl.storage.locking.lock, named ``export:CONSUMER``) keeps two exports of one
consumer apart; a ``sync`` of the same account runs alongside. The lock is a session lock,
which can be lost while the export goes on: so the consumer's write epoch is taken with it
(etl.storage.locking.fence), and every transaction of the export checks it first, then writes
the file, then commits the position. An export whose lock went to another one is refused
before it touches the file again; one that checked first finishes its chunk before the
other can begin (and cut the file back to what is committed).

A consumer exports the streams it chose (``--streams``, saved as its rows: etl.export.streams),
each account's streams one after the other into the same file, each with its own position:
every chunk commits one stream's position with the file's length, so each stream is
exported exactly once whatever the moment of a kill.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.engine import Engine

from etl.common.clock import utc_now
from etl.common.errors import ConfigError, InterruptedRun, LockedError
from etl.common.settings import AUDIT_LOGS
from etl.export import consumers
from etl.export.read import Reader, read_ahead
from etl.export.sinks import FileSink, Sink, StreamSink
from etl.export.streams import STREAMS, ExportStream, check_streams, forget_streams
from etl.storage.engine import database_errors, for_writing
from etl.storage.locking.fence import EXPORT, Fence, take_fence
from etl.storage.locking.lock import run_lock

log = logging.getLogger(__name__)

FORMATS = ("raw", "ocsf")
CHUNK_ROWS = 5000


@dataclass(frozen=True)
class ExportOptions:
    """What one export writes: for which consumer, where, in what format, from when."""

    consumer: str
    output: Path | None = None  # None: standard output
    fmt: str | None = None  # None: the consumer's saved format (a new consumer's: raw)
    since: datetime | None = None  # a new consumer's first export starts at this created_at
    chunk_rows: int = CHUNK_ROWS
    reset_options: bool = False  # take fmt and since in place of the consumer's saved ones
    streams: tuple[str, ...] | None = None  # None: the consumer's (a new one's: the audit log)


@dataclass
class ExportSummary:
    """What one export wrote for one account, and the positions before and after."""

    consumer: str
    account: str
    output: str
    position_before: int
    position_after: int
    rows: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0
    stopped: bool = False  # by a signal, after the last committed chunk
    stream: str = AUDIT_LOGS

    def line(self) -> str:
        stream = "" if self.stream == AUDIT_LOGS else f" stream={self.stream}"
        return (
            f"export consumer={self.consumer} account={self.account}{stream}: {self.rows} rows, "
            f"{self.bytes} bytes to {self.output}; position {self.position_before} -> "
            f"{self.position_after}; {self.duration:.2f}s{'; stopped' if self.stopped else ''}"
        )

    def fields(self) -> dict[str, Any]:
        return {
            "event": "export_finished",
            "consumer": self.consumer,
            "account": self.account,
            "stream": self.stream,
            "output": self.output,
            "rows": self.rows,
            "bytes": self.bytes,
            "position_before": self.position_before,
            "position_after": self.position_after,
            "duration_s": round(self.duration, 3),
            "status": "stopped" if self.stopped else "success",
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
    with _consumer_lock(engine, consumer) as fence:
        # the first account's audit-log start says the consumer's streams: still one query
        # for a run with nothing new
        first = _read_start(engine, consumer, accounts[0], AUDIT_LOGS) if accounts else None
        saved = None if first is None else first.streams
        chosen, dropped = check_streams(consumer, saved, options.streams, options.reset_options)
        run = _Run(fence, sink, stop, now, report)
        try:
            for account in accounts:
                for name in chosen:
                    new = options.streams is not None and name not in (saved or ())
                    known = first if (account, name) == (accounts[0], AUDIT_LOGS) else None
                    summaries.append(_export_account(engine, account, STREAMS[name], options,
                                                     run, new, known))  # fmt: skip
        finally:
            sink.close()
        if dropped:  # last: the rows of the streams kept carry the file and options by now
            with (
                database_errors(engine, "saving the export streams"),
                for_writing(engine).begin() as tx,
            ):
                fence.check(tx)
                forget_streams(tx, consumer, dropped)
    return summaries


@dataclass(frozen=True)
class _Run:
    """What every account's export in one run shares."""

    fence: Fence
    sink: Sink
    stop: threading.Event | None
    now: Callable[[], datetime]
    report: Callable[[ExportSummary], None] | None


def _stdout(stream: BinaryIO | None) -> BinaryIO:
    if stream is not None:
        return stream
    import sys

    return sys.stdout.buffer


def _read_start(engine: Engine, consumer: str, account: str, stream: str) -> consumers.Start:
    with database_errors(engine, "reading the export position"), engine.connect() as conn:
        start = consumers.read_start(conn, consumer, account, stream)
        conn.rollback()
    return start


@contextmanager
def _consumer_lock(engine: Engine, consumer: str) -> Iterator[Fence]:
    """The consumer's lock and, taken with it, its write epoch (stamped by the wall clock:
    the injected ``now`` is the positions' clock)."""
    try:
        with run_lock(engine, consumer, namespace="export"):
            yield take_fence(engine, EXPORT, consumer, utc_now())
    except LockedError:
        raise LockedError(f"another export for consumer {consumer} is in progress") from None


def _export_account(
    engine: Engine, account: str, stream: ExportStream, options: ExportOptions, run: _Run,
    new: bool, start: consumers.Start | None = None,
) -> ExportSummary:  # fmt: skip
    """``new``: the consumer starts this stream in this run, so its row is made even where
    the account has nothing of it yet (the row says the consumer exports the stream).
    ``start``: what was read of it already."""
    sink, now, report = run.sink, run.now, run.report
    if start is None:
        start = _read_start(engine, options.consumer, account, stream.name)
    chosen = consumers.check_options(
        options.consumer, start.saved, options.fmt, options.since, options.reset_options
    )
    position = start.position or 0
    summary = ExportSummary(options.consumer, account, sink.name, position, position,
                            stream=stream.name)  # fmt: skip
    unrecorded = start.position is None and not new
    if start.nothing_new() and (start.saved == chosen or unrecorded):
        return _reported(summary, report)
    writer = for_writing(engine)
    # Read again, fenced: the file is cut back to the committed length only by the epoch's
    # holder, and before any other export can take the epoch. The options are saved in the
    # same transaction, before anything is written, so a run killed at any point resumes
    # with them.
    with database_errors(engine, "preparing the export file"), writer.begin() as tx:
        run.fence.check(tx)
        start = consumers.read_start(tx, options.consumer, account, stream.name)
        position = start.position or 0
        summary = ExportSummary(options.consumer, account, sink.name, position, position,
                                stream=stream.name)  # fmt: skip
        begin = None
        if start.saved != chosen or (start.position is None and (start.head is not None or new)):
            since_upto = start.since_upto if start.position is not None else start.head
            begin = consumers.Begin(chosen, since_upto)
        # a new row takes the consumer's file as committed, as its other rows have it
        known = None if start.file_path is None else (start.file_path, start.file_length or 0)
        if start.nothing_new():  # new options with nothing to export, or rows deleted meanwhile
            if begin is not None and (start.position is not None or new):
                consumers.save(tx, options.consumer, account, position, now(), known, begin,
                               stream.name)  # fmt: skip
            return _reported(summary, report)
        baseline = sink.prepare(start.file_path, start.file_length)
        if baseline is not None or begin is not None:
            consumers.save(tx, options.consumer, account, position, now(), baseline or known,
                           begin, stream.name)  # fmt: skip
        head = start.head
        assert head is not None  # nothing_new() otherwise
    # --since shapes a consumer's first export of the account: the rows numbered up to
    # the account's head when it began, even when it resumes after a kill
    since_upto = start.since_upto if begin is None else begin.since_upto
    since = None
    if chosen.since is not None and since_upto is not None and position < since_upto:
        since = (chosen.since, since_upto)
    reader = Reader(engine, account, stream, fmt=chosen.fmt, chunk_rows=options.chunk_rows)
    try:
        with read_ahead(engine, lambda: reader.batches(position, head, since)) as batches:
            for batch in batches:
                if run.stop is not None and run.stop.is_set():
                    raise InterruptedRun("stopped by a signal; the export resumes at its position")
                data = reader.lines(batch.rows) if batch.rows else b""
                if sink.at_least_once and batch.rows:
                    # A pipe blocks as long as its reader likes: written before the
                    # transaction, so a slow reader never holds SQLite's one write lock
                    # (a sync would wait behind it). Delivery there is at least once anyway.
                    sink.write(data)
                with database_errors(engine, "saving the export position"), writer.begin() as tx:
                    run.fence.check(tx)  # first: a refused export never writes the file
                    file = sink.write(data) if batch.rows and not sink.at_least_once else None
                    consumers.save(tx, options.consumer, account, batch.position, now(), file,
                                   stream=stream.name)  # fmt: skip
                summary.rows += len(batch.rows)
                summary.bytes += len(data)
                summary.position_after = batch.position
    except InterruptedRun:
        summary.stopped = True  # what was written and committed is in the summary line too
        _reported(summary, report)
        raise
    return _reported(summary, report)


def _reported(
    summary: ExportSummary, report: Callable[[ExportSummary], None] | None
) -> ExportSummary:
    summary.duration = time.monotonic() - summary.started
    if report:
        report(summary)
    return summary
