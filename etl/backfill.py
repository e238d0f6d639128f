"""A long window read in parallel time slices, written by one thread.

Used by ``etl.sync.read_window`` when the window is longer than ``[sync] parallel_after``
(a first run, a long outage, a resync) and ``[sync] workers`` > 1, and by every sync of
an account whose previous backfill did not finish.

The plan. A window is a set of **slices** ``[start, end]`` that cover it without gaps
(neighbours overlap by ``BOUND_SLACK``: bounds may be exclusive). It starts as one
slice. A slice is read in ascending ``created_at`` order by one fetcher thread, cursor
page after cursor page. Density is uneven and unknown in advance, so slices are made by
**work stealing**: a free fetcher splits the slice with the most pages left (estimated
from what its pages have covered so far) at the middle of its unread part. The first
split happens after the window's first page, which bounds the data: a run with nothing
new costs one request, and a first run from 2007 is not cut into empty years.

Checkpoints. A sync persists its plan in ``zendesk_audit_sync_slices``; each slice's
``position`` (the newest ``created_at`` committed in it) and ``done`` flag commit in the
same transaction as the rows that move them. A killed backfill resumes every unfinished
slice at ``position - BOUND_SLACK``. The account's watermark moves to the **contiguous
read point**, the lowest read point of the unfinished slices (its position, else its
start), never further; when every slice is done it becomes the plan's end and the plan
is deleted. A resync keeps its plan in memory only and never moves the watermark.

Splits and crashes. A split ends slice A at ``m`` and adds B = ``[m - 1 s, old end]`` in
one transaction, committed before B's fetcher starts; A's fetcher, whose query still
runs to the old end, stops at the first page that reaches ``m``. If the process dies
before that commit, A still covers everything: a lost split only costs re-reading.

The pipeline. Fetchers (each with its own ``ZendeskClient``, all sharing the account's
``RateLimiter``) parse their pages and put them in a bounded queue; the calling thread
drains it, merging consecutive pages into batches of up to ``BATCH_ROWS`` rows (one upsert
each), while the fetchers fetch the next pages. While pages keep waiting, consecutive
batches share one transaction of up to ``TRANSACTION_ROWS`` rows (or ``TRANSACTION_SECONDS``):
a database writes each index page a transaction touches once, so larger transactions cost
it less per row. Slices, watermark and counters change in memory only once their
transaction has committed. Memory is bounded by the queue.

How many fetch. As many requests are kept in flight as the budget can use at the latency
the run measures (``etl.concurrency.target``: rate x recent slow latency, with a margin),
at most ``workers``; the target is recomputed after every write round, so it rises and
falls with the latency and with the limiter's allowance (after a 429, or when other apps
use the quota). Fetchers take a slot of a ``Gate`` of that size around each request:
when the target falls, the surplus park between pages. Fetchers are added only while the
writer keeps up: when a page per running fetcher (at least ``WRITER_BEHIND_PAGES``; at
2,500/min a few always wait between two writes) already waits in the queue, the run is
bound by the writer, and another fetcher would only take CPU time from it.

Stopping. When ``hooks.stop`` is set (SIGTERM) the fetchers stop after their current
request, the writer commits the pages it has already received and the run raises
``InterruptedRun``. A fetcher's error stops the run the same way, with that error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from etl import concurrency
from etl.client import ZendeskClient
from etl.errors import InterruptedRun
from etl.pagination import audit_log_params, iter_pages
from etl.records import Reject
from etl.run import Run, split_records
from etl.store import BatchTransaction, SliceRow, SliceUpdate, WriteResult, utc_now
from etl.window import BOUND_SLACK, latest_end, reread_from

log = logging.getLogger(__name__)

BATCH_ROWS = 1000  # rows per upsert when pages queue up
# While pages keep waiting, batches share a transaction of up to this many rows or seconds:
# on SQLite a 5,000-row transaction costs about 25% less per row than five of 1,000 (fewer
# index pages and WAL checkpoints written per row). Fetch-bound runs commit every batch.
TRANSACTION_ROWS = 5000
TRANSACTION_SECONDS = 0.25
QUEUE_PAGES_PER_WORKER = 4  # fetched pages waiting for the writer, per worker...
QUEUE_MAX_PAGES = 64  # ... up to this many: memory stays flat whatever ``workers`` is
# Pages waiting that mean the writer is behind, so no fetcher is added: a page per running
# fetcher, and at least this many (at 40 pages a second a few wait between two writes).
WRITER_BEHIND_PAGES = 4
MIN_SPLIT_PAGES = 4.0  # split a slice only if about this many pages are left in it
MIN_SPLIT_SPAN = timedelta(seconds=4)  # ... and this much unread time
# Once a page is in, the writer waits up to this long for more (up to ``BATCH_ROWS`` rows)
# before writing: fewer, larger batches when fetchers outpace it only slightly.
BATCH_WAIT = 0.05  # seconds
POLL = 0.1  # seconds: how often blocked threads look at the stop flags
JOIN_TIMEOUT = 2.0  # seconds given to fetchers to notice a stop (they are daemons)


@dataclass(eq=False)
class Slice:
    """A slice of the window: what is committed, and what its fetcher has seen."""

    id: int | None  # in zendesk_audit_sync_slices; None when the plan is not persisted
    start: datetime
    end: datetime
    position: datetime | None = None  # newest created_at committed
    done: bool = False  # committed as read to its end
    # Fetch side, guarded by Backfill._lock:
    running: bool = False
    fetched: bool = False  # its fetcher has read its last page
    frontier: datetime | None = None  # newest created_at fetched
    pages: int = 0  # pages fetched by the current fetcher
    density: float | None = None  # pages per second of created_at, once estimated

    def read_from(self) -> datetime:
        """Where reading (again) starts: the checkpoint's own second is read again."""
        if self.position is None:
            return self.start
        return max(self.start, self.position - BOUND_SLACK)

    def read_point(self) -> datetime:
        """Every record of the slice created before this is stored."""
        return self.start if self.position is None else max(self.start, self.position)

    def pages_left(self) -> float:
        """Estimated pages between the frontier and the end (inf: not yet known)."""
        point = self.frontier or self.start
        span = max((self.end - point).total_seconds(), 0.0)
        if self.density is None:
            return float("inf") if self.running and self.pages == 0 else 0.0
        return self.density * span


@dataclass
class _Page:
    slice: Slice
    rows: list[dict[str, Any]]
    rejects: list[Reject]
    records: int
    position: datetime | None  # the page's newest created_at, within the slice
    last: bool  # the slice is read to its end


@dataclass(frozen=True)
class _Written:
    """A batch written in an open transaction: what changes once it commits."""

    pages: int
    records: int
    touched: dict[Slice, tuple[datetime | None, bool]]  # slices' new (position, done)
    watermark: datetime | None  # the account's new watermark, if it moves
    result: WriteResult


@dataclass
class _Failed:
    slice: Slice
    error: BaseException


@dataclass
class _Batch:
    pages: list[_Page] = field(default_factory=list)
    rows: int = 0

    def add(self, page: _Page) -> None:
        self.pages.append(page)
        self.rows += len(page.rows)


class Backfill:
    """One run's parallel read of ``window``; ``run()`` returns when it is all stored."""

    def __init__(
        self, run: Run, *, clients: list[ZendeskClient], workers: int | None = None
    ) -> None:
        self._run = run
        self.account = run.account
        self.store = run.store
        self.run_id = run.id
        self.window = run.window
        self.summary = run.summary
        self.advance = run.advance
        self.hooks = run.hooks
        account, client, window = run.account, run.client, run.window
        self.workers = max(1, workers if workers is not None else account.sync.workers)
        self._main_client = client
        self._clients = clients  # every client used, for the request counts
        self._free: list[ZendeskClient] = [client]
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._queue: queue.Queue[_Page | _Failed] = queue.Queue(
            maxsize=min(QUEUE_PAGES_PER_WORKER * self.workers, QUEUE_MAX_PAGES)
        )
        self._gate = concurrency.Gate(1)
        self._threads: list[threading.Thread] = []
        self._slices: list[Slice] = []
        self._running = 0
        self._plan_end = window.end
        self._watermark = run.summary.watermark_before
        self._page_size = account.zendesk.page_size

    # -- the run -----------------------------------------------------------------------

    def run(self) -> None:
        self._plan()
        try:
            self._schedule()
            while self._running or not self._queue.empty():
                self._stop_if_asked()
                failure = self._write_round()
                if failure is not None:  # keep the pages other fetchers already have
                    self._cancel.set()
                    self._drain_and_commit()
                    raise failure.error
                self._schedule()
            if not all(s.done for s in self._slices):  # pragma: no cover - a bug
                raise RuntimeError("the backfill ended with unread slices")
            if self.advance:
                # Never past Zendesk's time, which the responses told (etl.window).
                end = latest_end(self.account, self._main_client, utc_now())
                self.store.finish_plan(self.account.name, min(self._plan_end, end))
        finally:
            self._cancel.set()
            deadline = time.monotonic() + JOIN_TIMEOUT
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))

    def _stop_if_asked(self) -> None:
        if self.hooks.stopping():
            self._cancel.set()
            self._drain_and_commit()
            raise InterruptedRun(f"stopped by a signal after committing {self.summary.pages} pages")

    def _drain_and_commit(self) -> None:
        """Commit the whole pages already received; fetches in flight are dropped."""
        batch = _Batch()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Page):
                batch.add(item)
        if batch.pages:
            self._commit(batch)

    # -- the plan ----------------------------------------------------------------------

    def _plan(self) -> None:
        name = self.account.name
        window = self.window
        if not self.advance:
            self._slices = [Slice(None, window.start, window.end)]
            return
        stored = self.store.slices(name)
        if not stored:
            self._slices = [
                _from_row(r) for r in self.store.add_slices(name, [(window.start, window.end)])
            ]
            return
        self._slices = [_from_row(r) for r in stored]
        plan_end = max(s.end for s in self._slices)
        unfinished = [s for s in self._slices if not s.done]
        log.info(
            "resuming the backfill of %s: %d of %d slices unfinished, up to %s",
            name, len(unfinished), len(self._slices), plan_end.isoformat(),
        )  # fmt: skip
        if window.end > plan_end:
            # Time has passed since the plan was made: read on to the new end, re-reading
            # the overlap before the old end as the run after a finished plan would.
            tail_start = max(reread_from(plan_end, self.account), window.start)
            self._slices += [
                _from_row(r) for r in self.store.add_slices(name, [(tail_start, window.end)])
            ]
            plan_end = window.end
        self._plan_end = plan_end

    # -- fetchers ----------------------------------------------------------------------

    def _schedule(self) -> None:
        """Give every free worker a slice: an unstarted one, else half of a busy one."""
        if self._cancel.is_set():
            return
        limiter = self._main_client.limiter
        wanted = concurrency.target(limiter.rate(), limiter.latencies.quantile(), self.workers)
        self._gate.resize(wanted)
        while self._running < wanted:
            behind = max(min(self.workers, WRITER_BEHIND_PAGES), self._running)
            if self._running and self._queue.qsize() >= behind:
                # The writer is behind: another fetcher would only compete with it for the
                # CPU (and the GIL). Fetch-bound runs (real latency) keep the queue short.
                return
            with self._lock:
                target = self._unstarted() or self._split_candidate()
            if target is None:
                return
            if isinstance(target, tuple):
                victim, middle = target
                target = self._split(victim, middle)
                if target is None:
                    return
            self._start(target)

    def _unstarted(self) -> Slice | None:
        for s in self._slices:  # by start: the contiguous read point moves first
            if not s.done and not s.running and not s.fetched:
                return s
        return None

    def _split_candidate(self) -> tuple[Slice, datetime] | None:
        busy = [s for s in self._slices if s.running and s.density is not None]
        if not busy:
            return None
        victim = max(busy, key=Slice.pages_left)
        if victim.pages_left() < MIN_SPLIT_PAGES:
            return None
        point = victim.frontier or victim.start
        span = victim.end - point
        if span < MIN_SPLIT_SPAN:
            return None
        middle = point + span / 2
        return victim, middle.replace(microsecond=0)

    def _split(self, victim: Slice, middle: datetime) -> Slice | None:
        """End ``victim`` at ``middle``, committed with the new slice for the rest."""
        old_end = victim.end
        rest = (middle - BOUND_SLACK, old_end)
        with self._lock:  # the fetcher may have passed the middle meanwhile
            frontier = victim.frontier or victim.start
            if not victim.running or frontier >= rest[0]:
                return None
            victim.end = middle
        if victim.id is not None:
            row = self.store.split_slice(self.account.name, victim.id, middle, rest)
            new = _from_row(row)
        else:
            new = Slice(None, *rest)
        new.density = victim.density
        self._slices.append(new)
        self._slices.sort(key=lambda s: s.start)  # stable: the victim stays first
        log.debug(
            "split %s..%s at %s", victim.start.isoformat(), old_end.isoformat(), middle.isoformat()
        )
        return new

    def _start(self, target: Slice) -> None:
        client = self._free.pop() if self._free else self._new_client()
        with self._lock:
            target.running = True
            target.fetched = False
            target.pages = 0
            target.frontier = None
        self._running += 1
        thread = threading.Thread(
            target=self._fetch, args=(target, client), name="backfill-fetcher", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _new_client(self) -> ZendeskClient:
        worker = self._main_client.worker()
        self._clients.append(worker)
        return worker

    def _fetch(self, target: Slice, client: ZendeskClient) -> None:
        """A fetcher thread: read ``target`` page by page into the queue."""
        try:
            with self._lock:
                start, end = target.read_from(), target.end
            params = audit_log_params(
                start, end, self.account.sync.filters, page_size=self._page_size
            )
            pages = iter_pages(client, params)
            while True:
                with self._gate.slot(self._cancel.is_set, POLL) as held:
                    page = next(pages, None) if held else None
                if page is None or self._cancel.is_set():
                    self._free.append(client)
                    return
                rows, rejects = split_records(page.records, self.account.name, utc_now())
                newest = max((r["created_at"] for r in rows), default=None)
                oldest = min((r["created_at"] for r in rows), default=None)
                with self._lock:
                    target.pages += 1
                    if newest is not None and oldest is not None:
                        if target.frontier is None or newest > target.frontier:
                            target.frontier = newest
                        # Density is uneven and recent pages predict the next ones best:
                        # a moving average of pages per second of created_at.
                        here = 1.0 / max((newest - oldest).total_seconds(), 1.0)
                        before = target.density if target.pages > 1 else None
                        target.density = here if before is None else (before + here) / 2
                    # Past the end (a split moved it): the next slice reads on from there.
                    last = not page.has_more or (
                        target.frontier is not None and target.frontier > target.end
                    )
                    position = None if newest is None else min(newest, target.end)
                    if last:
                        target.fetched = True
                        target.running = False
                if last:  # free before the writer hears of it, so the next slice can use it
                    self._free.append(client)
                self._put(_Page(target, rows, rejects, len(page.records), position, last))
                if last:
                    return
        except BaseException as exc:  # handed to the writer, which stops the run with it
            with self._lock:
                target.running = False
            self._free.append(client)
            self._put(_Failed(target, exc))

    def _put(self, item: _Page | _Failed) -> None:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=POLL)
                return
            except queue.Full:
                continue

    # -- the writer --------------------------------------------------------------------

    def _collect(self) -> tuple[_Batch, _Failed | None]:
        """Wait for a page, then take what else is queued or arrives within ``BATCH_WAIT``
        (while fetchers run), up to ``BATCH_ROWS`` rows."""
        batch = _Batch()
        while True:
            try:
                item = self._queue.get(timeout=POLL)
                break
            except queue.Empty:
                if self.hooks.stopping():
                    return batch, None
                if not self._running:
                    return batch, None
        deadline = time.monotonic() + BATCH_WAIT
        while True:
            if isinstance(item, _Failed):
                self._running -= 1
                return batch, item
            batch.add(item)
            if item.last:
                self._running -= 1
            if batch.rows >= BATCH_ROWS:
                return batch, None
            try:
                wait = deadline - time.monotonic() if self._running else 0.0
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                return batch, None

    def _write_round(self) -> _Failed | None:
        """Write what the fetchers have queued: one batch, and more into the same
        transaction while pages keep waiting (up to ``TRANSACTION_ROWS`` rows or
        ``TRANSACTION_SECONDS``); then, once it has committed, take it into account.

        The transaction begins only once a page is in: SQLite's write lock is not held
        while the writer waits for the network."""
        batch, failure = self._collect()
        if not batch.pages:
            return failure
        written: list[_Written] = []
        with self.store.transaction() as transaction:
            deadline = time.monotonic() + TRANSACTION_SECONDS
            rows = 0
            while True:
                written.append(self._write(transaction, batch, written))
                rows += batch.rows
                if (
                    failure is not None
                    or rows >= TRANSACTION_ROWS
                    or self._queue.empty()
                    or time.monotonic() >= deadline
                    or self.hooks.stopping()
                ):
                    break
                batch, failure = self._collect()
                if not batch.pages:
                    break
        for each in written:
            self._committed(each)
        return failure

    def _commit(self, batch: _Batch) -> None:
        """``batch`` in a transaction of its own."""
        with self.store.transaction() as transaction:
            written = self._write(transaction, batch, [])
        self._committed(written)

    def _write(
        self, transaction: BatchTransaction, batch: _Batch, earlier: list[_Written]
    ) -> _Written:
        """Write ``batch`` after the ``earlier`` batches of the same open transaction."""
        pending: dict[Slice, tuple[datetime | None, bool]] = {}
        watermark_before = self._watermark
        for each in earlier:
            pending.update(each.touched)
            watermark_before = each.watermark or watermark_before
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        touched: dict[Slice, tuple[datetime | None, bool]] = {}
        records = 0
        for page in batch.pages:
            rows.extend(page.rows)
            rejects.extend(page.rejects)
            records += page.records
            s = page.slice
            position, done = touched.get(s) or pending.get(s, (s.position, s.done))
            if page.position is not None and (position is None or page.position > position):
                position = page.position
            touched[s] = (position, done or page.last)
        for s, (_, done) in touched.items():
            if done:  # read to its end: everything up to it is in
                touched[s] = (s.end, True)
        watermark = self._read_point(pending | touched) if self.advance else None
        if watermark is not None and watermark_before is not None and watermark <= watermark_before:
            watermark = None
        updates = [
            SliceUpdate(s.id, position, done)
            for s, (position, done) in touched.items()
            if s.id is not None
        ]
        result = transaction.write_batch(
            self.account.name,
            self.run_id,
            rows,
            rejects,
            pages=len(batch.pages),
            watermark=watermark,
            slices=updates,
        )
        return _Written(len(batch.pages), records, touched, watermark, result)

    def _committed(self, written: _Written) -> None:
        """Take a committed batch into account: slices, watermark, counters, progress."""
        for s, (position, done) in written.touched.items():
            s.position, s.done = position, done
        if written.watermark is not None:
            self._watermark = written.watermark
        self._run.committed(written.pages, written.records, written.result, self._read_point({}))

    def _read_point(self, pending: dict[Slice, tuple[datetime | None, bool]]) -> datetime | None:
        """The contiguous read point once ``pending`` commits: every record created
        before it is stored (None: nothing can be said yet)."""
        lowest: datetime | None = None
        for s in self._slices:
            position, done = pending.get(s, (s.position, s.done))
            if done:
                continue
            point = s.start if position is None else max(s.start, position)
            if lowest is None or point < lowest:
                lowest = point
        if lowest is None:
            return self._plan_end
        return lowest if lowest > self.window.start else None


def _from_row(row: SliceRow) -> Slice:
    return Slice(row.id, row.start, row.end, row.position, row.done)


def run_backfill(run: Run, *, clients: list[ZendeskClient], workers: int | None = None) -> None:
    """Read ``run.window`` in parallel slices; every client used is appended to ``clients``."""
    Backfill(run, clients=clients, workers=workers).run()
