"""Fenced writes: a writer paused between its lock check and its commit, while another
run takes its lock over, is refused at its commit (or, if it had checked its epoch
already, keeps the takeover waiting until it has committed): two runs never both commit
to one account or one export consumer. Threads, real databases, real lock losses (the
lock's session killed; for SQLite, its lock file deleted)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.locks import lose_lock
from sqlalchemy.engine import Connection, Engine, make_url
from support import EVENT_TIMEOUT, audit_record, fresh_store, recent

from etl.common.clock import utc_now
from etl.common.errors import DatabaseError, LockLostError
from etl.export.job import ExportOptions, export_accounts
from etl.export.read import Reader
from etl.records.audit import parse_record
from etl.storage.engine import open_engine
from etl.storage.locking.guard import HeldLock
from etl.storage.store import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def impatient(db_url: str) -> Engine:
    """An engine of the same database whose lock waits end after a second: the taker that
    finds a transaction in its way gives up instead of waiting for it."""
    kind = make_url(db_url).get_backend_name()
    if kind == "sqlite":
        return open_engine(f"{db_url}?timeout=1")
    if kind == "postgresql":
        return open_engine(f"{db_url}?options=-c%20lock_timeout%3D1000")
    return open_engine(f"{db_url}?init_command=SET%20SESSION%20innodb_lock_wait_timeout%3D1")


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM zendesk_audit_logs")).scalar_one())


class Pause:
    """Holds one chosen thread at a point until ``resume``; the test waits for ``reached``."""

    def __init__(self, *, armed: bool = True) -> None:
        self.armed = armed  # a pause not armed yet lets its thread pass
        self.thread: threading.Thread | None = None
        self.reached = threading.Event()
        self._resume = threading.Event()
        self._done = False

    def here(self) -> None:
        if threading.current_thread() is self.thread and self.armed and not self._done:
            self._done = True
            self.reached.set()
            assert self._resume.wait(EVENT_TIMEOUT), "never resumed"

    def resume(self) -> None:
        self._resume.set()


class Outcome:
    """What a thread ended with."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.value: Any = None
        self.finished = threading.Event()


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, Outcome]:
    outcome = Outcome()

    def run() -> None:
        try:
            outcome.value = work()
        except BaseException as exc:  # the test looks at it
            outcome.error = exc
        finally:
            outcome.finished.set()

    return threading.Thread(target=run, daemon=True), outcome


def _take_over(store: Store) -> int:
    """Another run takes the account's lock and looks at what is committed."""
    with store.lock("acme"):
        return count_rows(store.engine)


@pytest.fixture
def stores(db_url: str) -> Iterator[tuple[Store, Store]]:
    first = fresh_store(db_url)
    second = Store(impatient(db_url))
    yield first, second
    first.engine.dispose()
    second.engine.dispose()


def _paused_writer(first: Store, pause: Pause) -> tuple[threading.Thread, Outcome, int]:
    run_id = first.start_run("acme", recent(60), recent(1), None)
    row = parse_record(audit_record(1, recent(5)), "acme", recent(0))
    assert isinstance(row, dict)

    def write() -> None:
        with first.lock("acme"):
            pause.armed = True  # the lock and its epoch are taken: now the write
            first.write_page("acme", run_id, [row], [], None)

    thread, outcome = in_thread(write)
    pause.thread = thread
    return thread, outcome, run_id


def _race(first: Store, second: Store, pause: Pause) -> tuple[Outcome, Outcome]:
    """The first store's write pauses; its lock is lost; the second takes over (or gives
    up); then the first goes on."""
    thread, writer, _ = _paused_writer(first, pause)
    thread.start()
    assert pause.reached.wait(EVENT_TIMEOUT), writer.error
    lose_lock(first.engine, "acme")
    taker_thread, taker = in_thread(lambda: _take_over(second))
    taker_thread.start()
    taker_thread.join(EVENT_TIMEOUT)
    assert taker.finished.is_set()
    pause.resume()
    thread.join(EVENT_TIMEOUT)
    assert writer.finished.is_set()
    return writer, taker


def test_a_writer_paused_after_its_lock_check_is_refused_at_its_commit(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paused just after ``HeldLock.check``, before its commit: on PostgreSQL and MariaDB
    the new run takes the epoch and the paused write is rolled back; on SQLite the paused
    transaction holds the database's one write lock, so the new run cannot take the epoch
    (it gives up) and the paused write, still the epoch's, commits. Never both."""
    first, second = stores
    pause = Pause()
    check = HeldLock.check

    def check_then_pause(self: HeldLock) -> None:
        check(self)
        pause.here()

    monkeypatch.setattr(HeldLock, "check", check_then_pause)
    writer, taker = _race(first, second, pause)
    committed = count_rows(first.engine)
    if first.engine.dialect.name == "sqlite":
        assert isinstance(taker.error, DatabaseError), taker.error
        assert writer.error is None and committed == 1
    else:
        assert taker.error is None and taker.value == 0  # it took over before the commit
        assert isinstance(writer.error, LockLostError), writer.error
        assert "another run took it over" in str(writer.error)
        assert committed == 0  # refused at its commit, not after it


def test_a_takeover_waits_for_a_commit_that_passed_its_epoch_check(
    stores: tuple[Store, Store],
) -> None:
    """Paused between its epoch check and the COMMIT itself: the new run cannot take the
    epoch until that commit ends (it gives up after its lock wait); the write commits."""
    first, second = stores
    pause = Pause(armed=False)

    def at_commit(conn: Connection) -> None:
        pause.here()

    sa.event.listen(first.engine, "commit", at_commit)
    writer, taker = _race(first, second, pause)
    assert isinstance(taker.error, DatabaseError), taker.error  # never took over
    assert writer.error is None and count_rows(first.engine) == 1


def _records(ids: range) -> list[dict[str, Any]]:
    return [audit_record(i, T0 + timedelta(seconds=i)) for i in ids]


def _store(store: Store, records: list[dict[str, Any]]) -> None:
    run_id = store.start_run("acme", T0, T0, None)
    rows = [parse_record(r, "acme", utc_now()) for r in records]
    store.write_page("acme", run_id, [r for r in rows if isinstance(r, dict)], [], None)


def test_an_export_whose_lock_was_taken_over_never_writes_its_file_again(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first export pauses before its second chunk; its consumer lock's session is
    killed; a second export takes over, writes everything (new rows too) and commits.
    The first is then refused before it writes: the file holds every record once, and
    the database describes it exactly."""
    store = fresh_store(db_url)
    _store(store, _records(range(1, 13)))
    out = tmp_path / "feed.jsonl"
    pause = Pause()
    lines = Reader.lines
    calls: list[int] = []

    def lines_then_pause(self: Reader, rows: Any) -> bytes:
        if threading.current_thread() is pause.thread:
            calls.append(len(rows))
            if len(calls) == 2:
                pause.here()
        return lines(self, rows)

    monkeypatch.setattr(Reader, "lines", lines_then_pause)

    def export() -> None:
        export_accounts(
            store.engine, ["acme"], ExportOptions("siem", out, chunk_rows=4), now=utc_now
        )

    thread, first = in_thread(export)
    pause.thread = thread
    thread.start()
    assert pause.reached.wait(EVENT_TIMEOUT), first.error
    lose_lock(store.engine, "export:siem")
    _store(store, _records(range(13, 20)))
    export()  # the second export, to the same file, start to end
    pause.resume()
    thread.join(EVENT_TIMEOUT)
    assert isinstance(first.error, LockLostError), first.error
    assert "export lock of consumer siem" in str(first.error)
    ids = [json.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert ids == list(range(1, 20))
    with store.engine.connect() as conn:
        position, length, head = conn.execute(
            sa.text(
                "SELECT c.position, c.file_length, (SELECT max(stored_seq) FROM "
                "zendesk_audit_logs) FROM zendesk_audit_export_consumers c"
            )
        ).one()
    assert (position, length) == (head, out.stat().st_size)
    store.engine.dispose()
