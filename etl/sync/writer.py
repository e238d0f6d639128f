"""The backfill's writer: the fetchers' pages, from their queue into the database.

Consecutive pages merge into batches of up to ``BATCH_ROWS`` rows (one upsert each);
while pages keep waiting, consecutive batches share one transaction of up to
``TRANSACTION_ROWS`` rows (or ``TRANSACTION_SECONDS``): a database writes each index page
a transaction touches once, so larger transactions cost it less per row. Each batch
carries its slices' checkpoints and the account's watermark (``etl.sync.plan``); the plan,
the watermark and the run's counters change in memory only once the transaction has
committed. It runs on the calling thread, between the scheduler's rounds (``etl.sync.backfill``).
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.records.audit import Reject
from etl.storage.store import BatchTransaction, SliceUpdate, WriteResult
from etl.sync.plan import Plan, Progress, Proof, Slice, saved
from etl.sync.run import Run

BATCH_ROWS = 1000  # rows per upsert when pages queue up
# While pages keep waiting, batches share a transaction of up to this many rows or seconds:
# on SQLite a 5,000-row transaction costs about 25% less per row than five of 1,000 (fewer
# index pages and WAL checkpoints written per row). Fetch-bound runs commit every batch.
TRANSACTION_ROWS = 5000
TRANSACTION_SECONDS = 0.25
# Once a page is in, the writer waits up to this long for more (up to ``BATCH_ROWS`` rows)
# before writing: fewer, larger batches when fetchers outpace it only slightly.
BATCH_WAIT = 0.05  # seconds
POLL = 0.1  # seconds: how often the waiting writer looks at the stop flag


@dataclass
class Page:
    """A fetched page, parsed, for the writer."""

    slice: Slice
    rows: list[dict[str, Any]]
    rejects: list[Reject]
    records: int
    proof: Proof | None  # what the page proves about its slice (None: no page, see request)
    last: bool  # its fetcher is finished: the slice is covered by what was fetched
    request: bool = True  # False: no page, only a fetcher saying it is finished

    @property
    def position(self) -> datetime | None:
        """How far the page reads, for the page hook."""
        return None if self.proof is None else self.proof.value


@dataclass(frozen=True)
class _Written:
    """A batch written in an open transaction: what changes once it commits."""

    pages: int
    records: int
    touched: Progress  # slices' new (position, done)
    watermark: datetime | None  # the account's new watermark, if it moves
    result: WriteResult


@dataclass
class Failed:
    """A fetcher's error: the writer stops the run with it."""

    slice: Slice
    error: BaseException


@dataclass
class _Batch:
    """Pages the writer holds until it commits them together."""

    pages: list[Page] = field(default_factory=list)
    rows: int = 0

    def add(self, page: Page) -> None:
        self.pages.append(page)
        self.rows += len(page.rows)


class Writer:
    """Writes what ``fetchers`` fetchers put in ``pages``, into ``run``'s account."""

    def __init__(self, run: Run, plan: Plan, pages: queue.Queue[Page | Failed]) -> None:
        self._run = run
        self._plan = plan
        self._queue = pages
        self.account = run.account
        self.store = run.log
        self.run_id = run.id
        self.advance = run.advance
        self.hooks = run.hooks
        self.fetchers = 0  # running fetchers: their last page (or failure) is still to come
        self._watermark = run.summary.watermark_before

    def busy(self) -> bool:
        """Pages are still to come, or waiting."""
        return bool(self.fetchers) or not self._queue.empty()

    def drain_and_commit(self) -> None:
        """Commit the whole pages already received; fetches in flight are dropped."""
        batch = _Batch()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, Page):
                batch.add(item)
        if batch.pages:
            self._commit(batch)

    def _collect(self) -> tuple[_Batch, Failed | None]:
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
                if not self.fetchers:
                    return batch, None
        deadline = time.monotonic() + BATCH_WAIT
        while True:
            if isinstance(item, Failed):
                self.fetchers -= 1
                return batch, item
            batch.add(item)
            if item.last:
                self.fetchers -= 1
            if batch.rows >= BATCH_ROWS:
                return batch, None
            try:
                wait = deadline - time.monotonic() if self.fetchers else 0.0
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                return batch, None

    def write_round(self) -> Failed | None:
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
        pending: Progress = {}
        watermark_before = self._watermark
        for each in earlier:
            pending.update(each.touched)
            watermark_before = each.watermark or watermark_before
        rows: list[dict[str, Any]] = []
        rejects: list[Reject] = []
        for page in batch.pages:
            rows.extend(page.rows)
            rejects.extend(page.rejects)
        records = sum(page.records for page in batch.pages)
        requests = sum(page.request for page in batch.pages)
        touched = self._plan.progress(((p.slice, p.proof) for p in batch.pages), pending)
        watermark = (
            self._plan.watermark(pending | touched, watermark_before) if self.advance else None
        )
        updates = [
            SliceUpdate(s.id, *saved(s, state)) for s, state in touched.items() if s.id is not None
        ]
        result = transaction.write_batch(
            self.account.name,
            self.run_id,
            rows,
            rejects,
            pages=requests,
            watermark=watermark,
            slices=updates,
        )
        return _Written(requests, records, touched, watermark, result)

    def _committed(self, written: _Written) -> None:
        """Take a committed batch into account: slices, watermark, counters, progress."""
        self._plan.commit(written.touched)
        if written.watermark is not None:
            self._watermark = written.watermark
        read_point = self._plan.read_point({})
        # Read without the fetchers' lock: an estimate for the progress bar, a page or
        # two off at worst while a fetcher updates its slice.
        self._run.summary.parallel = True
        self._run.summary.pages_left = self._plan.pages_left()
        self._run.committed(written.pages, written.records, written.result, read_point)
