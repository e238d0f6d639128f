"""The watermark and what is committed (issue 23), on every database: a backfill's commit
order pinned by the test, not by how fast each database writes.

``CommitThenFail`` lets the writer's first transaction begin only once every fetcher has
ended (every page is fetched and queued), commits it, and fails the next one: the one
moment where a watermark computed from what was merely fetched, rather than committed,
is left behind in the database for ``status``, the lag metric and ``reconcile``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import (
    assert_table_matches,
    audit_record,
    fake_time_client,
    fresh_store,
    parse_zendesk_time,
    recent,
    sim_account,
    stored_rows,
    wait_until,
)

from etl.common.errors import DatabaseError
from etl.common.settings import AccountSettings
from etl.storage.store import BatchTransaction, Store, WriteResult
from etl.sync import writer
from etl.sync.account import sync_account
from etl.sync.run import RunHooks, RunSummary
from zendesk_sim import SimulatedZendesk, generate_records

BURST = 250  # records in one second: it straddles pages of 100


def _fetching(earlier: set[threading.Thread]) -> bool:
    """Is a backfill fetcher (etl.sync.backfill names its threads) still running, other
    than ``earlier`` ones (daemons an earlier test's run may have left behind)?"""
    return any(
        t.name == "backfill-fetcher" and t.is_alive() and t not in earlier
        for t in threading.enumerate()
    )


class CommitThenFail(Store):
    """The first transaction begins once no fetcher runs, and commits; every later one
    fails on its first write, as a database that went away would."""

    def __init__(self, db_url: str) -> None:
        super().__init__(fresh_store(db_url).engine)
        self.transactions = 0
        self._earlier = set(threading.enumerate())

    @contextmanager
    def transaction(self) -> Iterator[BatchTransaction]:
        self.transactions += 1
        if self.transactions == 1:  # the writer holds its first page, not yet written
            wait_until(lambda: not _fetching(self._earlier), "every fetcher to end")
        with super().transaction() as transaction:
            if self.transactions > 1:

                def fail(*args: Any, **kwargs: Any) -> WriteResult:
                    raise DatabaseError("injected: the database went away")

                transaction.write_batch = fail  # type: ignore[method-assign]
            yield transaction


def _sync(account: AccountSettings, store: Store) -> RunSummary:
    with fake_time_client(account) as client:
        return sync_account(account, client, store, hooks=RunHooks())


def _unstored_below(db_url: str, records: list[dict[str, Any]], watermark: datetime) -> list[int]:
    stored = {row["id"] for row in stored_rows(db_url)}
    return [
        r["id"]
        for r in records
        if parse_zendesk_time(r["created_at"]) < watermark and r["id"] not in stored
    ]


def test_a_commit_then_a_failed_transaction_leaves_a_watermark_of_committed_pages_only(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first page commits alone, ending inside a burst second, while every other page
    is fetched and queued; the next transaction fails. The watermark left must be that
    page's own second: neither the plan's end (the slice fetched, not committed) nor a
    second past it (the rest of the second is on the next page). test_backfill's failed
    transaction caught these on MariaDB only, by timing: its failure strikes whichever
    transaction first takes a second batch, and whether a committed watermark then stood
    past queued pages depended on how fast the database wrote while the fetchers ran."""
    monkeypatch.setattr(writer, "BATCH_ROWS", 100)  # a page a batch ...
    monkeypatch.setattr(writer, "TRANSACTION_ROWS", 100)  # ... and a batch a transaction
    end = recent(30)
    second = end - timedelta(days=2)
    records = list(generate_records(60, start=end - timedelta(days=9), end=second, seed=23))
    records += [audit_record(8_800_000_000_000 + i, second) for i in range(BURST)]
    records += list(generate_records(100, start=second + timedelta(hours=1), end=end, seed=24))
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url, workers=2)  # a queue of 8 pages holds all 5
        store = CommitThenFail(db_url)
        with pytest.raises(DatabaseError, match="injected"):
            _sync(account, store)
        assert len(stored_rows(db_url)) == 100  # the first page, ending inside the burst
        watermark = store.watermark("acme")
        assert watermark is not None
        unstored = _unstored_below(db_url, sim.visible_records(), watermark)
        assert not unstored, f"watermark {watermark} passes {len(unstored)} unstored records"
        assert watermark == second  # and no lower: the page's own second is proven before it
        summary = _sync(account, fresh_store(db_url))
        assert summary.status == "success"
        assert_table_matches(db_url, sim.visible_records())


T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def test_the_stores_statement_never_moves_a_committed_watermark_back(db_url: str) -> None:
    """The writer offers a watermark only past the one before (``Plan.watermark``), but no
    run can show that rule failing: the store keeps the highest of a transaction's
    batches and its statement never lowers the stored one, so ``status``, the lag metric
    and ``reconcile`` read the same either way. This is that guard, on every database, by
    the backfill's own path (``transaction`` and ``write_batch``)."""
    store = fresh_store(db_url)
    run_id = store.start_run("acme", T0 - timedelta(days=1), T0 + timedelta(days=1), None)

    def commit(*watermarks: datetime) -> datetime | None:
        with store.transaction() as transaction:
            for watermark in watermarks:
                transaction.write_batch("acme", run_id, [], [], watermark=watermark)
        return store.watermark("acme")

    assert commit(T0, T0 - timedelta(hours=1)) == T0  # a later batch, lower: the highest
    assert commit(T0 - timedelta(days=1)) == T0  # a later transaction, lower: kept
    assert commit(T0 - timedelta(microseconds=1), T0) == T0  # equal: nothing moves
    assert commit(T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=1)  # forwards: moves
