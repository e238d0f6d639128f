"""A long window read in parallel time slices, written by one thread.

Used by ``etl.sync.account.read_window`` when the window is longer than ``[sync] parallel_after``
(a first run, a long outage, a resync) and ``[sync] workers`` > 1, and by every sync of
an account whose previous backfill did not finish.

The plan (slices, work-stealing splits, the contiguous read point) is ``etl.sync.plan.Plan``,
pure; this module runs threads over it, and ``etl.sync.planstore`` persists what it decides.

Checkpoints. A sync persists its plan in ``zendesk_audit_sync_slices``; each slice's
``position`` (the newest ``created_at`` its upward pages proved), its ``end`` (moved down to
what its downward pages left unproven) and ``done`` commit in the same transaction as the
rows that prove them, and only what committed pages prove is ever committed
(``etl.sync.plan``); every answer is first checked to be in order and inside its query's
window (``etl.sync.pagecheck``). A killed backfill resumes every unfinished slice at
``position - BOUND_SLACK``. The account's watermark moves to the plan's contiguous read
point, never further; when every slice is done it becomes the plan's end and the plan is
deleted. A resync keeps its plan in memory only and never moves the watermark.

Readers and splits. A free fetcher reads an unread slice upwards; else it reads a slice
that only has an upward reader (which has read a page there) downwards from its end, and
the two meet wherever they meet (no request is spent on a guessed split point); a
downward reader that left a gap estimated under a page to the upward one is taken up again,
its query resumed at its cursor (``_left``), if the upward one reads on (bursty data fool
estimates, and a slice read by one fetcher at a page per latency holds the run's end); else it
cuts the largest unread gap (``Plan.split_candidate``): in the middle, or, when many
readers are wanted (the start of a run), into as many equal parts as they need at once,
each cut committed before the new readers start, the top part taking the gap's downward
reader. If the process dies before a cut's commit, the victim still covers the rest.
Slices are bounded (``SLICES_PER_WORKER``), and each split needs a page read since: a
server that ignores the window cannot make a run split forever.

The pipeline. Fetchers (each with its own ``ZendeskClient``, all sharing the account's
``RateLimiter``; the backfill closes those it made) parse their pages and put them in a
bounded queue; the calling thread drains it (``etl.sync.writer``: batches, transactions,
checkpoints committed with their rows) while the fetchers fetch the next pages. Memory is
bounded by the queue.

How many fetch. As many requests are kept in flight as the budget can use at the latency
the run measures (``etl.zendesk.concurrency.target``: rate x recent slow latency, with a
margin), at most ``workers``; new slices are cut only for what the budget needs at the
median latency (each costs about a request where its readers meet), the rest of the target
reading the slices there are from their other end. The target is recomputed after every
write round, so it rises and falls with the latency and with the limiter's allowance (after
a 429, or when other apps use the quota). Fetchers take a slot of a ``Gate`` of that size
around each request: when the target falls, the surplus park between pages. Fetchers are
added only while the writer keeps up: when a page per running fetcher (at least
``WRITER_BEHIND_PAGES``; at 2,500/min a few always wait between two writes) already waits
in the queue, or the queue is full, the run is bound by the writer, and another fetcher
would only take CPU time from it.

Who goes first. A fetcher's requests wait for the budget with its slice's estimated
pages left as their priority (``RateLimiter.acquire``): the slices that would finish
last are read fastest, so the slices end together.

Which log. The run's ``Stream`` (``etl.sync.logs``) says how a slice is asked for and
read (the audit log's ``created_at``, the access log's ``timestamp``); its ``LogState``
keeps the plan, the pages and the watermark (the audit log's in ``Store``, another log's
in ``etl.storage.streams.StreamStore``, its plan under its own name). Every log's
fetchers take the account's one ``RateLimiter``: one budget, whichever log is read.

Stopping. When ``hooks.stop`` is set (SIGTERM) the fetchers stop after their current
request, the writer commits the pages it has already received and the run raises
``InterruptedRun``. A fetcher's error stops the run the same way, with that error.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from etl.common.clock import utc_now
from etl.common.errors import InterruptedRun, OutOfTime
from etl.sync.pagecheck import WindowCheck
from etl.sync.plan import SLICES_PER_WORKER, Reader
from etl.sync.planstore import load_plan, split
from etl.sync.run import Run
from etl.sync.window import latest_end
from etl.sync.writer import Failed, Page, Writer
from etl.zendesk import concurrency
from etl.zendesk.client import ZendeskClient
from etl.zendesk.pagination import Page as IterPage
from etl.zendesk.pagination import iter_pages

QUEUE_PAGES_PER_WORKER = 4  # fetched pages waiting for the writer, per worker...
QUEUE_MAX_PAGES = 64  # ... up to this many: memory stays flat whatever ``workers`` is
# Pages waiting that mean the writer is behind, so no fetcher is added: a page per running
# fetcher, and at least this many (at 40 pages a second a few wait between two writes).
WRITER_BEHIND_PAGES = 4
POLL = 0.1  # seconds: how often blocked threads look at the stop flags
HANDOVER_PAGES = 2.0  # pages left in a gap below which its downward reader stops
JOIN_TIMEOUT = 2.0  # seconds given to fetchers to notice a stop (they are daemons)


def writer_behind(queued: int, running: int, workers: int, capacity: int) -> bool:
    """Whether ``queued`` pages waiting for the writer mean it is behind: a page per running
    fetcher, at least ``WRITER_BEHIND_PAGES`` (or ``workers``, if fewer), and always a full
    queue: past ``capacity`` fetchers a page each can never wait, so without that bound
    fetchers would be added up to ``workers`` while the writer falls behind."""
    return queued >= min(max(min(workers, WRITER_BEHIND_PAGES), running), capacity)


class Backfill:
    """One run's parallel read of ``window``; ``run()`` returns when it is all stored."""

    def __init__(self, run: Run, *, workers: int | None = None) -> None:
        self.account = run.account
        self.store = run.log
        self.stream = run.stream
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
        # The queries of downward readers that stopped short, as they left them: a follower
        # goes on along the same cursor instead of asking their last second again.
        self._left: dict[Reader, tuple[WindowCheck, Iterator[IterPage]]] = {}
        self._threads: list[threading.Thread] = []
        self._plan = load_plan(run)
        self._writer = Writer(run, self._plan, self._queue)
        # Splits are bounded whatever the answers say (a server ignoring the window once
        # made a backfill split forever): every run ends by itself.
        self.max_slices = max(len(self._plan.slices), 1) + SLICES_PER_WORKER * self.workers

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

    # -- fetchers ----------------------------------------------------------------------

    def _schedule(self) -> None:
        """Give every free worker a reader: an unread slice upwards, else a slice read
        upwards only downwards from its end, else the half of a gap (a split)."""
        if self._cancel.is_set():
            return
        limiter = self._main_client.limiter
        wanted = concurrency.target(limiter.rate(), limiter.latencies.quantile(), self.workers)
        # Readers on slices there are, up to ``wanted``; new slices (each costs about a
        # request where its readers meet) only for what the budget needs at the typical
        # latency: the slow quantile's surplus is not worth a meeting.
        needed = concurrency.target(limiter.rate(), limiter.latencies.quantile(0.5), wanted)
        self._gate.resize(wanted)
        running = self._writer.fetchers
        while running < wanted:
            if running and writer_behind(
                self._queue.qsize(), running, self.workers, self._queue.maxsize
            ):
                # The writer is behind: another fetcher would only compete with it for the
                # CPU (and the GIL). Fetch-bound runs (real latency) keep the queue short.
                return
            with self._lock:
                reader = self._next_reader(needed - running)
            if reader is None:
                return
            self._start(reader)
            running = self._writer.fetchers

    def _next_reader(self, readers: int) -> Reader | None:
        """A reader for a free fetcher, ``readers`` of them wanted (called with the lock
        held). A split cuts as many slices as the readers wanted need, at once."""
        plan = self._plan
        unread = plan.unstarted()
        if unread is not None:
            return plan.begin_up(unread)
        lone = plan.pair_candidate()
        if lone is not None:
            return plan.begin_down(lone, resume=lone.down in self._left)
        candidate = plan.split_candidate(self.max_slices, readers) if readers > 0 else None
        if candidate is None:
            return None
        victim, middles = candidate
        # Highest first: each cut ends the victim lower, the new slice taking the rest.
        if not [m for m in middles if split(self._run, plan, victim, m) is not None]:
            return None
        unread = plan.unstarted()
        return None if unread is None else plan.begin_up(unread)

    def _start(self, reader: Reader) -> None:
        client = self._free.pop() if self._free else self._new_client()
        self._writer.fetchers += 1
        thread = threading.Thread(
            target=self._fetch, args=(reader, client), name="backfill-fetcher", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()

    def _new_client(self) -> ZendeskClient:
        worker = self._main_client.worker()
        self._made.append(worker)
        return worker

    def _fetch(self, reader: Reader, client: ZendeskClient) -> None:
        """A fetcher thread: walk ``reader`` page by page into the queue, until what its
        slice's readers fetched covers it."""
        try:
            stream = self.stream
            with self._lock:
                start, end, down = reader.query_start, reader.query_end, reader.down
                left = self._left.pop(reader, None)
            if left is not None:  # a follower: the query its reader left, on this client
                checked, pages = left
                checked.use(client)
            else:
                params = stream.query(start, end, self.account, descending=down)
                checked = WindowCheck(client, start, end, down, stream.api)
                pages = iter_pages(checked, params, stream.api)
            field = stream.time_field
            taken = 0  # pages this fetcher took
            while True:
                with self._lock:  # the slices that would finish last (or unknown: inf) first
                    target = reader.slice
                    client.priority = target.pages_left()
                    # Under HANDOVER_PAGES (estimated) between the two readers: the upward
                    # one reads it, rather than both asking for the page where they meet.
                    # (After a page of its own: a follower resumed reads at least one.)
                    if reader.down and taken and target.pages_left() < HANDOVER_PAGES:
                        reader.hand_over()  # (a slice fetched has 0 pages left)
                        if not target.fetched:
                            self._left[reader] = (checked, pages)
                    finished = target.fetched or reader.handed_at is not None
                if finished:  # the other reader met this one: nothing left to ask for
                    self._finish(reader, client)
                    return
                with self._gate.slot(self._cancel.is_set, POLL) as held:
                    page = next(pages, None) if held else None
                if self._cancel.is_set():
                    self._free.append(client)
                    return
                if page is None:  # pragma: no cover - a query ends with an exhausted page
                    self._finish(reader, client)
                    return
                taken += 1
                rows, rejects = stream.split(page.records, self.account.name, utc_now())
                # To the second, as the pages were checked: within a second the order is
                # not promised, so a proof never says more than whole seconds. Truncating
                # keeps the order, so only the two extremes are truncated, not every row's.
                times = [r[field] for r in rows]
                newest = _second(max(times, default=None))
                oldest = _second(min(times, default=None))
                with self._lock:
                    proof, last = self._plan.took_page(reader, newest, oldest, page.has_more)
                    target = reader.slice
                if last:  # free before the writer hears of it, so the next reader can use it
                    self._free.append(client)
                self._put(Page(target, rows, rejects, len(page.records), proof, last))
                if last:
                    return
        except BaseException as exc:  # handed to the writer, which stops the run with it
            self._free.append(client)
            self._put(Failed(reader.slice, exc))

    def _finish(self, reader: Reader, client: ZendeskClient) -> None:
        """``reader`` stops without a page: the writer hears it, with all it proved."""
        self._free.append(client)
        with self._lock:
            target, proof = reader.slice, self._plan.final_proof(reader)
            if target.fetched and target.down is not None:  # no follower will resume it
                self._left.pop(target.down, None)
        self._put(Page(target, [], [], 0, proof, True, request=False))

    def _put(self, item: Page | Failed) -> None:
        while not self._cancel.is_set():
            try:
                self._queue.put(item, timeout=POLL)
                return
            except queue.Full:
                continue


def _second(moment: datetime | None) -> datetime | None:
    """``moment`` to the whole second (None stays None)."""
    return None if moment is None else moment.replace(microsecond=0)


def run_backfill(run: Run, *, workers: int | None = None) -> None:
    """Read ``run.window`` in parallel slices. The requests of the clients it makes for
    its fetchers (which it closes) are added to ``run.summary``; ``run.client``'s are not."""
    Backfill(run, workers=workers).run()
