"""A long window read in parallel time slices, written by one thread.

Used by ``etl.sync.account.read_window`` when the window is longer than ``[sync] parallel_after``
(a first run, a long outage, a resync) and ``[sync] workers`` > 1, and by every sync of
an account whose previous backfill did not finish.

The plan (slices, work-stealing splits, the contiguous read point) is ``etl.sync.plan.Plan``,
pure; this module runs threads over it and persists what it decides.

Checkpoints. A sync persists its plan in ``zendesk_audit_sync_slices``; each slice's
``position`` (the newest ``created_at`` committed in it) and ``done`` flag commit in the
same transaction as the rows that move them. A killed backfill resumes every unfinished
slice at ``position - BOUND_SLACK``. The account's watermark moves to the plan's
contiguous read point, never further; when every slice is done it becomes the plan's
end and the plan is deleted. A resync keeps its plan in memory only and never moves the
watermark.

Splits and crashes. A split ends slice A at ``m`` and adds B = ``[m - 1 s, old end]`` in
one transaction, committed before B's fetcher starts; A's fetcher, whose query still
runs to the old end, stops at the first page that reaches ``m``. If the process dies
before that commit, A still covers everything: a lost split only costs re-reading.

The pipeline. Fetchers (each with its own ``ZendeskClient``, all sharing the account's
``RateLimiter``; the backfill closes those it made) parse their pages and put them in a
bounded queue; the calling thread drains it (``etl.sync.writer``: batches, transactions,
checkpoints committed with their rows) while the fetchers fetch the next pages. Memory is
bounded by the queue.

How many fetch. As many requests are kept in flight as the budget can use at the latency
the run measures (``etl.zendesk.concurrency.target``: rate x recent slow latency, with a margin),
at most ``workers``; the target is recomputed after every write round, so it rises and
falls with the latency and with the limiter's allowance (after a 429, or when other apps
use the quota). Fetchers take a slot of a ``Gate`` of that size around each request:
when the target falls, the surplus park between pages. Fetchers are added only while the
writer keeps up: when a page per running fetcher (at least ``WRITER_BEHIND_PAGES``; at
2,500/min a few always wait between two writes) already waits in the queue, the run is
bound by the writer, and another fetcher would only take CPU time from it.

Who goes first. A fetcher's requests wait for the budget with its slice's estimated
pages left as their priority (``RateLimiter.acquire``): the slices that would finish
last are read fastest, so the slices end together and few are split at the end of a
run, where each split costs a request.

Stopping. When ``hooks.stop`` is set (SIGTERM) the fetchers stop after their current
request, the writer commits the pages it has already received and the run raises
``InterruptedRun``. A fetcher's error stops the run the same way, with that error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime

from etl.common.clock import utc_now
from etl.common.errors import InterruptedRun, OutOfTime
from etl.storage.store import SliceRow
from etl.sync.plan import Plan, Slice
from etl.sync.run import Run, split_records
from etl.sync.window import latest_end
from etl.sync.writer import Failed, Page, Writer
from etl.zendesk import concurrency
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import audit_log_params, iter_pages

log = logging.getLogger(__name__)

QUEUE_PAGES_PER_WORKER = 4  # fetched pages waiting for the writer, per worker...
QUEUE_MAX_PAGES = 64  # ... up to this many: memory stays flat whatever ``workers`` is
# Pages waiting that mean the writer is behind, so no fetcher is added: a page per running
# fetcher, and at least this many (at 40 pages a second a few wait between two writes).
WRITER_BEHIND_PAGES = 4
POLL = 0.1  # seconds: how often blocked threads look at the stop flags
JOIN_TIMEOUT = 2.0  # seconds given to fetchers to notice a stop (they are daemons)


class Backfill:
    """One run's parallel read of ``window``; ``run()`` returns when it is all stored."""

    def __init__(self, run: Run, *, workers: int | None = None) -> None:
        self.account = run.account
        self.store = run.store
        self.window = run.window
        self.summary = run.summary
        self.advance = run.advance
        self.hooks = run.hooks
        self._run = run
        account, client = run.account, run.client
        self.workers = max(1, workers if workers is not None else account.sync.workers)
        self._main_client = client
        self._made: list[ZendeskClient] = []  # the fetchers' own clients, closed at the end
        self._free: list[ZendeskClient] = [client]
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._queue: queue.Queue[Page | Failed] = queue.Queue(
            maxsize=min(QUEUE_PAGES_PER_WORKER * self.workers, QUEUE_MAX_PAGES)
        )
        self._gate = concurrency.Gate(1)
        self._threads: list[threading.Thread] = []
        self._plan = self._load_plan()
        self._writer = Writer(run, self._plan, self._queue)
        self._page_size = account.zendesk.page_size

    # -- the run -----------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._schedule()
            while self._writer.busy():
                self._stop_if_asked()
                failure = self._writer.write_round()
                if failure is not None:  # keep the pages other fetchers already have
                    self._cancel.set()
                    self._writer.drain_and_commit()
                    raise failure.error
                self._schedule()
            if not self._plan.finished():  # pragma: no cover - a bug
                raise RuntimeError("the backfill ended with unread slices")
            if self.advance:
                # Never past Zendesk's time, which the responses told (etl.sync.window).
                end = latest_end(self.account, self._main_client, utc_now())
                self.store.finish_plan(self.account.name, min(self._plan.end, end))
        finally:
            self._cancel.set()
            self._main_client.priority = 0.0  # the run's own client: first come again
            deadline = time.monotonic() + JOIN_TIMEOUT
            for thread in self._threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            self._close_clients()

    def _close_clients(self) -> None:
        """Close the clients this backfill made, their requests counted in the run's."""
        for client in self._made:
            self.summary.add_client_stats(client.stats)
            client.close()
        self._made.clear()

    def _stop_if_asked(self) -> None:
        if self.hooks.stopping():
            self._cancel.set()
            self._writer.drain_and_commit()
            raise InterruptedRun(f"stopped by a signal after committing {self.summary.pages} pages")
        if self._run.out_of_time():  # [sync] max_run_time: stop like a signal, but exit 0
            self._cancel.set()
            self._writer.drain_and_commit()
            raise OutOfTime(self._run.out_of_time_line(f"{self.summary.pages} pages"))

    # -- the plan ----------------------------------------------------------------------

    def _load_plan(self) -> Plan:
        """A resync's plan lives in memory; a sync's is stored, and resumed if it is there."""
        name, window = self.account.name, self.window
        if not self.advance:
            return Plan.whole(window)
        stored = self.store.slices(name)
        if not stored:
            (row,) = self.store.add_slices(name, [(window.start, window.end)])
            return Plan.whole(window, row.id)
        plan = Plan([_from_row(r) for r in stored], window.start, max(r.end for r in stored))
        log.info(
            "resuming the backfill of %s: %d of %d slices unfinished, up to %s",
            name, sum(not r.done for r in stored), len(stored), plan.end.isoformat(),
        )  # fmt: skip
        tail = plan.tail(window, self.account)  # time has passed since the plan was made
        if tail is not None:
            plan.slices += [_from_row(r) for r in self.store.add_slices(name, [tail])]
        return plan

    # -- fetchers ----------------------------------------------------------------------

    def _schedule(self) -> None:
        """Give every free worker a slice: an unstarted one, else half of a busy one."""
        if self._cancel.is_set():
            return
        limiter = self._main_client.limiter
        wanted = concurrency.target(limiter.rate(), limiter.latencies.quantile(), self.workers)
        self._gate.resize(wanted)
        running = self._writer.fetchers
        while running < wanted:
            behind = max(min(self.workers, WRITER_BEHIND_PAGES), running)
            if running and self._queue.qsize() >= behind:
                # The writer is behind: another fetcher would only compete with it for the
                # CPU (and the GIL). Fetch-bound runs (real latency) keep the queue short.
                return
            with self._lock:
                target = self._plan.unstarted() or self._plan.split_candidate()
            if target is None:
                return
            if isinstance(target, tuple):
                victim, middle = target
                target = self._split(victim, middle)
                if target is None:
                    return
            self._start(target)
            running = self._writer.fetchers

    def _split(self, victim: Slice, middle: datetime) -> Slice | None:
        """End ``victim`` at ``middle``, committed with the new slice for the rest."""
        old_end = victim.end
        with self._lock:  # the fetcher may have passed the middle meanwhile
            rest = self._plan.cut(victim, middle)
        if rest is None:
            return None
        if victim.id is not None:
            new = _from_row(self.store.split_slice(self.account.name, victim.id, middle, rest))
        else:
            new = Slice(None, *rest)
        self._plan.add_split(new, victim)
        log.debug(
            "split %s..%s at %s", victim.start.isoformat(), old_end.isoformat(), middle.isoformat()
        )
        return new

    def _start(self, target: Slice) -> None:
        client = self._free.pop() if self._free else self._new_client()
        with self._lock:
            target.begin()
        self._writer.fetchers += 1
        thread = threading.Thread(
            target=self._fetch, args=(target, client), name="backfill-fetcher", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _new_client(self) -> ZendeskClient:
        worker = self._main_client.worker()
        self._made.append(worker)
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
                with self._lock:  # the slices that would finish last (or unknown: inf) first
                    client.priority = target.pages_left()
                with self._gate.slot(self._cancel.is_set, POLL) as held:
                    page = next(pages, None) if held else None
                if page is None or self._cancel.is_set():
                    self._free.append(client)
                    return
                rows, rejects = split_records(page.records, self.account.name, utc_now())
                newest = max((r["created_at"] for r in rows), default=None)
                oldest = min((r["created_at"] for r in rows), default=None)
                with self._lock:
                    position, last = target.took_page(newest, oldest, page.has_more)
                if last:  # free before the writer hears of it, so the next slice can use it
                    self._free.append(client)
                self._put(Page(target, rows, rejects, len(page.records), position, last))
                if last:
                    return
        except BaseException as exc:  # handed to the writer, which stops the run with it
            with self._lock:
                target.running = False
            self._free.append(client)
            self._put(Failed(target, exc))

    def _put(self, item: Page | Failed) -> None:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=POLL)
                return
            except queue.Full:
                continue


def _from_row(row: SliceRow) -> Slice:
    return Slice(row.id, row.start, row.end, row.position, row.done)


def run_backfill(run: Run, *, workers: int | None = None) -> None:
    """Read ``run.window`` in parallel slices. The requests of the clients it makes for
    its fetchers (which it closes) are added to ``run.summary``; ``run.client``'s are not."""
    Backfill(run, workers=workers).run()
