"""The fault matrix ("never lose a record"): every way Zendesk or the network misbehaves.

One table of cases, each run on SQLite, PostgreSQL and MariaDB. A case is the
faults the simulated Zendesk injects (mostly mid-run, after some pages are
committed) and what must happen: the run completes with the table exactly what
Zendesk holds, or it stops with a typed error and its exit code, one line, with
every page committed before the failure still stored and the run row saying
why; then a healthy run brings the table to exactly what Zendesk holds.

Mangled records alter only the response, not the simulator's truth. The right
expectation is therefore: the run never stops; a record whose stray field was
wrong, missing or extra is stored as it was served (a wrongly typed column as
NULL, the whole record in ``raw``); a record without a usable id or created_at
goes to the rejects table with its raw text, the reason and the run id. A later
run whose window re-reads that record (here: a wide overlap) stores its good
version, so the table ends up exact and the rejects stay as evidence.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import sqlalchemy as sa
from parts.clock import FakeClock
from parts.simulators import Simulators
from support import (
    assert_table_matches,
    audit_record,
    fresh_store,
    parse_zendesk_time,
    recent,
    sim_account,
    stored_rows,
    with_sync,
)

from etl.common.errors import (
    AuthError,
    EtlError,
    ExitCode,
    PaginationError,
    RequestRejectedError,
    RetryBudgetExhausted,
)
from etl.common.secret import Secret
from etl.common.settings import AccountSettings, Credentials
from etl.records.audit import INTEGER_FIELDS, TEXT_FIELDS, Reject, parse_record
from etl.storage.engine import open_engine
from etl.storage.store import Store
from etl.sync.account import sync_account
from etl.sync.run import RunSummary
from etl.zendesk import ratelimit
from etl.zendesk.client import ZendeskClient
from etl.zendesk.ratelimit import RateLimiter
from zendesk_sim import Fault, SimulatedZendesk
from zendesk_sim.edge.faults import apply_to_records

# Its faults are 429s, Retry-After and the waits they bring (fake time): the simulator's
# headers say Zendesk's 700 a minute, as in production.
pytestmark = pytest.mark.paced
RECORDS = 360
PAGE = 40  # 9 pages
SEED = 3  # a burst of one second straddles pages 3 and 4, where most failures strike
JITTER = 0.5  # backoff of the n-th failure: 0.75 * 2**(n-1) seconds
CLIENT_CREDENTIALS = Credentials(client_id="sim-client", client_secret=Secret("sim-client-secret"))

# mangle -> (reject reason, the record_id the reject keeps); absent: stored as served
REJECTING = {
    "bad_created_at": "no usable created_at",
    "no_id": "no id",
    "string_id": "id is not an integer",
}


@dataclass(frozen=True)
class Case:
    faults: tuple[Fault, ...]
    stops: type[EtlError] | None = None  # None: the run completes
    exit_code: ExitCode = ExitCode.OK
    committed: int = 0  # pages of records stored before it stopped
    says: str = ""  # part of the one-line message
    waits: tuple[float, ...] | None = None  # the retry sleeps, exactly (None: not checked)
    rate_limited: int = 0
    retry_budget: float = 60.0
    longest_wait: float | None = None  # no wait, paced or retried, beyond this (None: any)
    timeout: float = 5.0
    credentials: Credentials | None = None
    # The parallel backfill's other outcome where its readers ask what the sequential
    # read never does (a downward query): stopping so is allowed, completing too.
    backfill_may_stop: type[EtlError] | None = None


def completes(*faults: Fault, **expect: Any) -> Case:
    return Case(faults=faults, **expect)


def stops(error: type[EtlError], *faults: Fault, **expect: Any) -> Case:
    return Case(faults=faults, stops=error, exit_code=error.exit_code, **expect)


def mangled(how: str, *, count: int = 1) -> Case:
    return Case(faults=(Fault("mangle", mangle=how, count=count, skip=3),))


CASES = [
    # -- rate limits and server errors: retried, the run completes --------------------------
    pytest.param(
        completes(
            Fault("status", status=429, retry_after=7, times=3, skip=2),
            waits=(7, 7, 7),
            rate_limited=3,
        ),
        id="429-burst-retry-after",
    ),
    pytest.param(
        completes(Fault("status", status=429, skip=2), waits=(10,), rate_limited=1),
        id="429-no-retry-after",
    ),
    pytest.param(
        completes(Fault("status", status=500, times=2, skip=2), waits=(0.75, 1.5)), id="500"
    ),
    pytest.param(completes(Fault("status", status=502, skip=2), waits=(0.75,)), id="502"),
    pytest.param(
        completes(Fault("status", status=503, times=2, skip=2), waits=(0.75, 1.5)), id="503"
    ),
    pytest.param(
        completes(Fault("status", status=503, retry_after=4, times=2, skip=2), waits=(4, 4)),
        id="503-retry-after",
    ),
    pytest.param(completes(Fault("status", status=504, skip=2), waits=(0.75,)), id="504"),
    # -- broken transport and garbage bodies: retried ----------------------------------------
    pytest.param(completes(Fault("reset", skip=2), waits=(0.75,)), id="reset-mid-body"),
    pytest.param(completes(Fault("truncate", skip=2), waits=(0.75,)), id="truncated-json"),
    pytest.param(completes(Fault("html", status=200, skip=2), waits=(0.75,)), id="html-200"),
    pytest.param(completes(Fault("html", status=502, skip=2), waits=(0.75,)), id="html-502"),
    pytest.param(
        # A read timeout no busy machine's ordinary response comes near, and a delay well past it.
        completes(Fault("slow", delay=6, skip=2), waits=(0.75,), timeout=2.5),
        id="slower-than-read-timeout",
    ),
    pytest.param(
        completes(
            Fault("status", status=503, path="/oauth/tokens"),
            waits=(0.75,),
            credentials=CLIENT_CREDENTIALS,
        ),
        id="oauth-token-endpoint-503",
    ),
    pytest.param(
        completes(
            Fault("status", status=429, retry_after=2, skip=1),
            Fault("reset", skip=1),
            Fault("truncate"),
            Fault("html", status=502, skip=1),
            Fault("shuffle"),
            waits=(2, 0.75, 1.5, 0.75, 1.5),
            rate_limited=1,
        ),
        id="storm-of-everything",
    ),
    # -- failures that outlast the retry budget: exit 4, stored pages kept -------------------
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("status", status=503, times=-1, skip=3),
            committed=3,
            says="gave up after 3 attempts",
            waits=(0.75, 1.5),
            retry_budget=5,
        ),
        id="outage-outlasts-budget",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("reset", times=-1, skip=3),
            committed=3,
            says="cut short",
            retry_budget=5,
        ),
        id="resets-outlast-budget",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("status", status=503, retry_after=600, times=-1, skip=3),
            committed=3,
            says="Retry-After 600 s",
            waits=(),
            retry_budget=5,
        ),
        id="maintenance-retry-after-beyond-budget",
    ),
    # -- answers retrying cannot fix ------------------------------------------------------------
    pytest.param(
        stops(AuthError, Fault("status", status=401, skip=3), committed=3, says="401"),
        id="401-mid-run",
    ),
    pytest.param(
        stops(AuthError, Fault("status", status=403, skip=3), committed=3, says="Enterprise"),
        id="403-mid-run",
    ),
    pytest.param(
        stops(RequestRejectedError, Fault("status", status=400, skip=3), committed=3, says="400"),
        id="400-mid-run",
    ),
    # -- cursor chains that do not chain: the page is stored, then exit 4 ---------------------
    pytest.param(
        stops(PaginationError, Fault("repeat_cursor", skip=3), committed=4, says="already seen"),
        id="cursor-repeats",
    ),
    # A page that says has_more with no way on is corrupt: retried, never taken as the last.
    pytest.param(
        completes(Fault("foreign_next", skip=3), waits=(0.75,)),
        id="next-link-to-another-host-once",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("foreign_next", skip=3, times=-1),
            committed=3,
            says="another host",
            retry_budget=5,
        ),
        id="next-link-to-another-host",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("no_cursor", skip=3, times=-1),
            committed=3,
            says="no after_cursor",
            retry_budget=5,
        ),
        id="has-more-without-cursor",
    ),
    pytest.param(
        stops(
            PaginationError,
            Fault("empty_page", times=-1, skip=3),
            committed=3,
            says="empty pages in a row",
        ),
        id="endless-empty-pages",
    ),
    pytest.param(completes(Fault("empty_page", skip=3)), id="empty-page-with-has-more"),
    # The page before's records in place of a page (its own cursor on past the records it
    # stands for): refused, by its order or, in a burst second, as records already read.
    pytest.param(
        completes(Fault("repeat_page", skip=3), waits=(0.75,)), id="a-page-repeated-in-its-place"
    ),
    # A full page that says it is the last is confirmed by its cursor before the query is
    # taken as read: before, the rest of the window was lost in a run that said success.
    pytest.param(completes(Fault("false_end", skip=3)), id="has-more-false-on-a-full-page"),
    pytest.param(
        completes(Fault("false_end", times=-1, skip=3)), id="has-more-false-on-every-full-page"
    ),
    # Without a cursor to confirm it, such a page proves nothing past it: believed, it lost
    # the rest of the window (a backfill's slice, a run's window to its end) for good.
    pytest.param(
        completes(Fault("cursorless_end", skip=3), waits=(0.75,)),
        id="a-full-last-page-without-a-cursor-once",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("cursorless_end", times=-1, skip=3),
            committed=3,
            says="full page says it is the last",
            retry_budget=5,
        ),
        id="a-full-last-page-without-a-cursor",
    ),
    # -- answers that break a promise of the query: never proof, retried, exit 4 if it lasts --
    pytest.param(completes(Fault("shuffle", skip=2), waits=(0.75,)), id="a-page-out-of-order"),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("shuffle", times=-1, skip=3),
            committed=3,
            says="out of order",
            retry_budget=5,
        ),
        id="every-page-out-of-order",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("descending", times=-1, skip=3),
            committed=3,
            says="out of order",
            retry_budget=5,
        ),
        id="sort-ignored-newest-first",
    ),
    pytest.param(
        # Only a backfill's downward readers ask newest first: answered oldest first, a
        # page must prove nothing until it shows its order (a page all of one second
        # proved the slice's far side read, and 1,100 of 3,000 records were lost:
        # tests/test_backfill_sort.py). The sequential read never asks so: it completes.
        completes(Fault("ascending", times=-1), backfill_may_stop=RetryBudgetExhausted),
        id="sort-ignored-oldest-first",
    ),
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("out_of_window", times=-1, skip=3),
            committed=3,
            says="outside the requested window",
            retry_budget=5,
        ),
        id="record-dated-2099",
    ),
    pytest.param(completes(Fault("out_of_window", skip=2), waits=(0.75,)), id="a-2099-once"),
    *[
        pytest.param(
            stops(
                RetryBudgetExhausted,
                Fault("next_link_query", field=change, times=-1, skip=3),
                committed=3,
                says="links.next would change the query",
                retry_budget=5,
            ),
            id=f"next-link-changes-{change}",
        )
        for change in ("created_at", "sort", "filter")
    ],
    pytest.param(
        stops(
            RetryBudgetExhausted,
            Fault("nonce_cursor_loop", times=-1, skip=3),
            committed=4,
            says="out of order",
            retry_budget=5,
        ),
        id="nonce-cursors-over-a-repeating-page",
    ),
    # -- rate-limit headers beyond what Zendesk documents: bounded, and within the budget ----
    # A used-up count with a reset of an hour: waits a minute at most, never past the
    # budget (a wait is part of the request's retry budget), and the run completes.
    pytest.param(
        completes(Fault("long_reset", skip=3), retry_budget=20, longest_wait=20),
        id="ratelimit-reset-3600",
    ),
    pytest.param(completes(Fault("tiny_limit", times=-1), waits=()), id="x-rate-limit-1"),
    # -- records in odd shapes ----------------------------------------------------------------
    pytest.param(completes(Fault("duplicate", count=5, times=2, skip=3)), id="duplicated-in-page"),
    pytest.param(mangled("missing_field"), id="mangle-missing-field"),
    pytest.param(mangled("null_field"), id="mangle-null-field"),
    pytest.param(mangled("extra_field"), id="mangle-extra-field"),
    pytest.param(mangled("wrong_type"), id="mangle-wrong-type"),
    pytest.param(mangled("bad_created_at"), id="mangle-bad-created-at"),
    pytest.param(mangled("no_id"), id="mangle-no-id"),
    pytest.param(mangled("string_id"), id="mangle-string-id"),
    pytest.param(mangled("no_id", count=PAGE), id="mangle-whole-page-without-ids"),
]


# -- fixtures and helpers -------------------------------------------------------------------
@pytest.fixture
def sim(make_sim: Simulators) -> SimulatedZendesk:
    """360 records over three hours ending 30 minutes ago, with same-second bursts."""
    s = make_sim(count=RECORDS, days=3 / 24, seed=SEED)
    records = s.visible_records()
    # the premise: one second's records straddle the page boundary where faults strike
    assert records[3 * PAGE - 1]["created_at"] == records[3 * PAGE]["created_at"]
    return s


def _disposed_after(url: str) -> Iterator[Store]:
    store = fresh_store(url)
    try:
        yield store
    finally:
        # Its sessions end with the test: on a server, a session left open would keep the
        # database from being kept for the next test until the pool ended it, after a wait.
        store.engine.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A store on ``db_url`` at the current schema, its engine disposed after the test."""
    yield from _disposed_after(db_url)


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    """The same on SQLite."""
    yield from _disposed_after(sqlite_url)


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int | None]]:
    """Every (host, port) this process sends an HTTP request to, whatever sends it."""
    sent: list[tuple[str, int | None]] = []
    original = requests.adapters.HTTPAdapter.send

    def send(
        self: requests.adapters.HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        parts = urlsplit(request.url or "")
        sent.append((parts.hostname or "", parts.port))
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return sent


# Retry waits are recorded in sleeps, the limiter's pacing in paced.
Clock = FakeClock


def run(account: AccountSettings, store: Store, clock: Clock) -> RunSummary:
    limiter = RateLimiter(account.zendesk.requests_per_minute, clock=clock.clock, sleep=clock.pace)
    with ZendeskClient(
        account.zendesk,
        limiter=limiter,
        sleep=clock.sleep,
        clock=clock.clock,
        jitter=lambda: JITTER,
    ) as client:
        return sync_account(account, client, store)


def rejects_table(db_url: str) -> list[dict[str, Any]]:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            table = sa.Table("zendesk_audit_rejects", sa.MetaData(), autoload_with=conn)
            return [dict(r._mapping) for r in conn.execute(sa.select(table))]
    finally:
        engine.dispose()


def column_value(name: str, value: object) -> object:
    """What a column holds for a field's value: the value, or NULL when of the wrong type."""
    if name in INTEGER_FIELDS:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return value if isinstance(value, str) else None


def assert_stored_as_served(db_url: str, served: list[dict[str, Any]]) -> None:
    """Exactly the served records, each with raw as served and columns derived from it."""
    rows = {row["id"]: row for row in stored_rows(db_url)}
    assert sorted(rows) == sorted(record["id"] for record in served)
    for record in served:
        row = rows[record["id"]]
        assert row["raw"] == record
        for name in (*TEXT_FIELDS, *INTEGER_FIELDS):
            assert row[name] == column_value(name, record.get(name)), (record["id"], name)


def retry_waits(clock: Clock, account: AccountSettings) -> list[float]:
    interval = 60.0 / account.zendesk.requests_per_minute
    # No hidden waits: the budget's spacing, or after a 429 / 503 the slowed-down one; after
    # a retry's sleep the schedule makes up at most LATE of a spacing.
    fastest = interval * (1 - ratelimit.LATE)
    slowest = interval / ratelimit.MIN_FACTOR
    assert all(fastest - 1e-9 <= p <= slowest + 1e-9 for p in clock.paced)
    return clock.sleeps


# -- the matrix -------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fault_matrix(
    db_url: str,
    store: Store,
    sim: SimulatedZendesk,
    hosts: list[tuple[str, int | None]],
    case: Case,
) -> None:
    account = sim_account(
        sim.url,
        page_size=PAGE,
        retry_budget=case.retry_budget,
        timeout=case.timeout,
        credentials=case.credentials,
        workers=1,  # pages in order, so "skip=3" means "after three committed pages"
    )
    truth = sim.visible_records()
    sim.inject(*case.faults)
    clock = Clock()

    if case.stops is None:
        summary = run(account, store, clock)
        assert summary.status == "success"
        assert summary.rate_limited == case.rate_limited
        check_completed(db_url, store, account, case, summary, truth)
    else:
        with pytest.raises(case.stops) as raised:
            run(account, store, clock)
        check_stopped(db_url, store, case, raised.value, truth)
        # faults cleared, the next run resumes and completes with the table exact
        sim.clear_faults()
        again = run(account, store, Clock())
        assert again.status == "success"
        assert (again.inserted, again.updated) == (RECORDS - case.committed * PAGE, 0)
        assert_table_matches(db_url, truth)

    if case.waits is not None:
        assert retry_waits(clock, account) == list(case.waits)
    if case.longest_wait is not None:
        assert max([*clock.paced, *clock.sleeps], default=0.0) <= case.longest_wait
    # credentials, cursors and links never went anywhere but the account's own host
    own = urlsplit(sim.url)
    assert set(hosts) == {(own.hostname, own.port)}
    assert not sim.errors


def check_completed(
    db_url: str,
    store: Store,
    account: AccountSettings,
    case: Case,
    summary: RunSummary,
    truth: list[dict[str, Any]],
) -> None:
    mangles = [f for f in case.faults if f.kind == "mangle"]
    if not mangles:
        assert_table_matches(db_url, truth)
        assert (summary.inserted, summary.rejected) == (RECORDS, 0)
        return
    (mangle,) = mangles

    # Mangled: stored as served, or rejected with its raw text, and the log went on.
    hit = range(mangle.skip * PAGE, mangle.skip * PAGE + mangle.count)
    altered = copy.deepcopy([truth[i] for i in hit])
    apply_to_records(mangle, altered)
    rejected = altered if mangle.mangle in REJECTING else []
    served = [
        altered[i - hit.start] if i in hit else record
        for i, record in enumerate(truth)
        if not (i in hit and rejected)
    ]
    assert_stored_as_served(db_url, served)
    assert served[-1] == truth[-1]  # records after the mangled ones were stored
    assert (summary.inserted, summary.rejected) == (len(served), len(rejected))
    (status,) = store.account_status("acme")
    assert status.rejects == len(rejected)
    assert status.last_run is not None and status.last_run.rows_rejected == len(rejected)
    first_run = status.last_run.id
    rejects = sorted(rejects_table(db_url), key=lambda r: r["id"])
    assert len(rejects) == len(rejected)
    for reject, record in zip(rejects, rejected, strict=True):
        assert reject["account"] == "acme"
        assert reject["run_id"] == first_run
        assert reject["reason"] == REJECTING[mangle.mangle]
        assert json.loads(reject["raw"]) == record
        original = truth[hit.start + rejected.index(record)]["id"]
        expected_id = {"no_id": None, "string_id": "abc"}.get(mangle.mangle, str(original))
        assert reject["record_id"] == expected_id

    # A later run that re-reads those records stores their good versions: the table is exact.
    again = run(with_sync(account, overlap=timedelta(days=1)), store, Clock())
    assert again.status == "success"
    assert (again.inserted, again.updated) == (len(rejected), len(altered) - len(rejected))
    assert_table_matches(db_url, truth)
    (status,) = store.account_status("acme")
    assert status.rejects == len(rejected)  # the evidence of what was rejected stays


def check_stopped(
    db_url: str,
    store: Store,
    case: Case,
    error: EtlError,
    truth: list[dict[str, Any]],
) -> None:
    message = str(error)
    assert error.exit_code == case.exit_code
    assert "\n" not in message and "Traceback" not in message
    assert case.says in message

    # everything committed before the failure is still there, and the watermark covers no more
    kept = truth[: case.committed * PAGE]
    assert_table_matches(db_url, kept)
    assert store.watermark("acme") == parse_zendesk_time(kept[-1]["created_at"])

    # the run row says failed, with that message
    (status,) = store.account_status("acme")
    run_row = status.last_run
    assert run_row is not None
    assert (run_row.status, run_row.error) == ("failed", message)
    assert status.last_failure_error == message
    assert run_row.rows_inserted == len(kept)
    assert run_row.pages >= case.committed
    assert run_row.rate_limited == case.rate_limited


# -- records no database can store as sent ------------------------------------------------------
def test_records_a_database_cannot_store_as_sent_never_stop_the_log(
    db_url: str, store: Store, sim: SimulatedZendesk
) -> None:
    """A NUL character (PostgreSQL takes it neither in text nor in JSONB), a lone surrogate
    (JSON's "\\ud800" escape: no UTF-8 at all) and NaN (no JSON column takes it) once made
    a page fail on every run, forever: the log stopped there."""
    moment = parse_zendesk_time(sim.visible_records()[4 * PAGE + 5]["created_at"])
    nul_text = audit_record(6_150_000_000_001, moment, change_description="before\x00after")
    nul_key = {**audit_record(6_150_000_000_002, moment), "odd\x00key": ["x\x00", {"y": 1}]}
    nan = {**audit_record(6_150_000_000_003, moment), "score": float("nan")}
    lone = {
        **audit_record(6_150_000_000_004, moment, actor_name="Zo\ud800"),
        "k\udc00": "\U0001f600",
    }
    sim.add_records([nul_text, nul_key, nan, lone])
    # The second run's fake clock starts again while the simulator's minute runs on in real
    # time: it reads the first run's requests as another app's burst and waits for the
    # window's end, as it should, within its retry budget.
    account = sim_account(sim.url, page_size=PAGE)

    summary = run(account, store, Clock())
    assert summary.status == "success"
    assert (summary.inserted, summary.rejected) == (RECORDS + 3, 1)
    served = [r for r in sim.visible_records() if r["id"] != nan["id"]]
    replaced = {
        nul_text["id"]: {**nul_text, "change_description": "before\ufffdafter"},
        nul_key["id"]: {
            **audit_record(nul_key["id"], moment),
            "odd\ufffdkey": ["x\ufffd", {"y": 1}],
        },
        # the emoji (a valid pair) is kept as it is
        lone["id"]: {
            **audit_record(lone["id"], moment, actor_name="Zo\ufffd"),
            "k\ufffd": "\U0001f600",
        },
    }
    stored = [replaced.get(r["id"], r) for r in served]
    assert_stored_as_served(db_url, stored)
    (reject,) = rejects_table(db_url)
    assert reject["record_id"] == str(nan["id"])
    assert "NaN" in reject["reason"] and '"score": NaN' in reject["raw"]

    # re-reading them changes nothing: the stored form is stable
    again = run(with_sync(account, overlap=timedelta(days=1)), store, Clock())
    assert (again.status, again.inserted, again.updated, again.rejected) == ("success", 0, 0, 1)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("id", "--5", "id is not an integer"),
        ("id", "\u00b2", "id is not an integer"),  # str.isdigit() says yes, int() says no
        ("id", "\u0661\u0662", "id is not an integer"),  # Arabic-Indic digits: not an id
        ("created_at", "0001-01-01T00:00:00+01:00", "no usable created_at"),
        ("created_at", "9999-12-31T23:59:59-01:00", "no usable created_at"),
        ("actor_id", float("inf"), "NaN or Infinity"),
    ],
    ids=["id-double-minus", "id-superscript", "id-other-digits", "year-1", "year-9999", "inf"],
)
def test_records_that_once_crashed_the_run_become_rejects(
    field: str, value: object, reason: str
) -> None:
    """Each of these raised from parse_record: exit 1 on every run, at the same record."""
    raw = {**audit_record(6_150_000_000_009, recent(20)), field: value}
    result = parse_record(raw, "acme", datetime.now(UTC))
    assert isinstance(result, Reject)
    assert reason in result.reason


# -- the same faults against a parallel backfill ------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_fault_matrix_parallel_backfill(
    sqlite_url: str,
    sqlite_store: Store,
    sim: SimulatedZendesk,
    hosts: list[tuple[str, int | None]],
    case: Case,
) -> None:
    """A first run from 2007 is read in parallel slices: the faults strike whichever fetcher
    asks next, so what is stored when it stops is not a prefix; the invariant is that every
    record older than the watermark is stored, once, and the next run completes exactly.

    SQLite only, to keep the matrix fast: one thread writes, whatever the database."""
    db_url = sqlite_url
    account = sim_account(
        sim.url,
        page_size=PAGE,
        retry_budget=case.retry_budget,
        timeout=case.timeout,
        credentials=case.credentials,
        workers=4,
    )
    store = sqlite_store
    truth = sim.visible_records()
    by_id = {record["id"]: record for record in truth}
    sim.inject(*case.faults)
    rejecting = any(f.kind == "mangle" and f.mangle in REJECTING for f in case.faults)
    altering = any(f.kind == "mangle" for f in case.faults)

    error: EtlError | None = None
    try:
        summary = run(account, store, Clock())
    except EtlError as exc:
        error = exc
    if error is None:
        # A bad cursor on a slice's last page (one reaching the point where the slice was
        # split) is never followed, so such a run completes, exactly. Nothing else may.
        assert case.stops in (None, PaginationError)
        assert summary.status == "success"
        if not altering:
            assert_table_matches(db_url, truth)
    else:
        stopped = case.stops or case.backfill_may_stop
        assert stopped is not None and isinstance(error, stopped), error
        message = str(error)
        assert error.exit_code == stopped.exit_code
        says = "gave up after" if "attempts" in case.says else case.says  # counts vary here
        assert "\n" not in message and says in message
        (status,) = store.account_status("acme")
        assert status.last_run is not None
        assert (status.last_run.status, status.last_run.error) == ("failed", message)
        rows = stored_rows(db_url)
        assert len({row["id"] for row in rows}) == len(rows)
        for row in rows:
            assert row["raw"] == by_id[row["id"]]
        watermark = store.watermark("acme")
        if watermark is not None:
            stored = {row["id"] for row in rows}
            below = [r["id"] for r in truth if parse_zendesk_time(r["created_at"]) < watermark]
            assert not set(below) - stored, "records older than the watermark are missing"

    sim.clear_faults()
    overlap = timedelta(days=1) if rejecting or altering else account.sync.overlap
    again = run(with_sync(account, overlap=overlap), store, Clock())
    assert again.status == "success"
    assert_table_matches(db_url, truth)
    own = urlsplit(sim.url)
    assert set(hosts) == {(own.hostname, own.port)}
    assert not sim.errors
