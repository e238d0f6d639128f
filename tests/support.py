"""Helpers shared by the tests: settings pointed at a simulator, and table comparison."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import requests
import sqlalchemy as sa
from parts.clock import FakeClock
from parts.databases import migrate_from_template, opened

from etl.common.secret import Secret
from etl.common.settings import (
    AccountSettings,
    Credentials,
    DatabaseSettings,
    Settings,
    SyncSettings,
    ZendeskSettings,
)
from etl.records.audit import INTEGER_FIELDS, TEXT_FIELDS
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.store import Store
from etl.zendesk.auth import ClientCredentialsAuth
from etl.zendesk.client import ZendeskClient

# The simulator's default credentials (zendesk_sim.SimAuth()).
SIM_OAUTH_TOKEN = "sim-oauth-token"
# Seconds per simulated response in tests that need a backfill's slices read at once:
# fetch-bound, as against the real API. Without it one fetcher outpaces the writer, and
# the backfill rightly starts no other.
FETCH_BOUND = 0.03
SIM_EMAIL = "admin@example.com"
SIM_API_TOKEN = "sim-api-token"


def sim_account(
    url: str,
    *,
    name: str = "acme",
    credentials: Credentials | None = None,
    retry_budget: float = 30.0,
    timeout: float = 5.0,
    requests_per_minute: int = 2500,
    page_size: int = 100,
    **sync: Any,
) -> AccountSettings:
    return AccountSettings(
        name=name,
        zendesk=ZendeskSettings(
            base_url=url,
            credentials=credentials or Credentials(oauth_token=Secret(SIM_OAUTH_TOKEN)),
            requests_per_minute=requests_per_minute,
            timeout=timeout,
            retry_budget=retry_budget,
            page_size=page_size,
        ),
        sync=SyncSettings(**sync),
    )


# The shared fake clock, by the name most tests know it.
FakeTime = FakeClock

T = TypeVar("T")
# A slow or busy machine still gets there well within this; a broken one fails clearly.
EVENT_TIMEOUT = 60.0


def wait_until(
    predicate: Callable[[], T | None],
    what: str,
    timeout: float = EVENT_TIMEOUT,
    interval: float = 0.02,
) -> T:
    """Poll ``predicate`` until it returns something true, and return that; fail naming
    ``what`` was awaited after ``timeout`` seconds. Tests wait for the event itself (a row
    committed, a line written, a request seen), never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}, in vain")
        time.sleep(interval)


def settings_for(db_url: str, *accounts: AccountSettings) -> Settings:
    return Settings(accounts=accounts, database=DatabaseSettings(url=db_url))


def fresh_store(db_url: str) -> Store:
    """A store on ``db_url`` at the current schema: copied from a migrated template when
    the database is empty (much faster than migrating), else migrated if it is behind.
    ``ensure_current`` reads the version row first: a database already at the head (the
    second store of most tests) costs no Alembic load, ~0.4 s of CPU each."""
    copied = migrate_from_template(db_url)  # before any engine: a copy wants nobody connected
    engine = opened(db_url, open_engine(db_url))  # disposed when the test is over
    if not copied:
        migrate.ensure_current(engine, auto_migrate=True, migrate_hint="")
    return Store(engine)


def fake_time_client(account: AccountSettings, fake: FakeTime | None = None) -> ZendeskClient:
    """A client whose retry and pacing waits are recorded in ``fake`` instead of slept."""
    fake = fake or FakeTime()
    return ZendeskClient(account.zendesk, sleep=fake.sleep, clock=fake.clock)


def with_sync(account: AccountSettings, **changes: Any) -> AccountSettings:
    return replace(account, sync=replace(account.sync, **changes))


def zendesk_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_zendesk_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def stored_rows(db_url: str, account: str = "acme") -> list[dict[str, Any]]:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            table = sa.Table("zendesk_audit_logs", sa.MetaData(), autoload_with=conn)
            result = conn.execute(sa.select(table).where(table.c.account == account))
            rows = [dict(r._mapping) for r in result]
    finally:
        engine.dispose()
    for row in rows:
        if isinstance(row["raw"], str):  # JSON columns come back decoded on most drivers
            row["raw"] = json.loads(row["raw"])
    return rows


def execute(db_url: str, *statements: Any) -> None:
    """Run ``statements`` in one transaction on ``db_url`` (a test's tampering or set-up)."""
    engine = open_engine(db_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        engine.dispose()


def one_row(db_url: str, column: sa.Column[Any], value: Any) -> dict[str, Any]:
    """The row of ``column``'s table whose ``column`` is ``value``, which must exist."""
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(column.table).where(column == value)).first()
    finally:
        engine.dispose()
    assert row is not None
    return dict(row._mapping)


def count_rows(engine: sa.Engine) -> int:
    """Rows committed in the audit table so far (0 before the schema exists)."""
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT COUNT(*) FROM zendesk_audit_logs")).scalar_one()
            )
    except sa.exc.DBAPIError:  # not migrated yet
        return 0


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def assert_table_matches(
    db_url: str, expected: Iterable[Mapping[str, Any]], account: str = "acme"
) -> None:
    """Every expected record exactly once, every field equal to the API's, nothing else."""
    rows = stored_rows(db_url, account)
    by_id = {row["id"]: row for row in rows}
    assert len(by_id) == len(rows), "duplicate ids stored"
    want = {int(r["id"]): r for r in expected}
    missing = sorted(set(want) - set(by_id))
    extra = sorted(set(by_id) - set(want))
    assert not missing, f"{len(missing)} records missing, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} unexpected records, e.g. {extra[:5]}"
    for record_id, record in want.items():
        row = by_id[record_id]
        assert row["raw"] == dict(record), record_id
        assert _as_utc(row["created_at"]) == parse_zendesk_time(record["created_at"])
        for name in TEXT_FIELDS:
            assert row[name] == record.get(name), (record_id, name)
        for name in INTEGER_FIELDS:
            assert row[name] == record.get(name), (record_id, name)


def recent(minutes: float) -> datetime:
    """A whole-second UTC time ``minutes`` ago."""
    return (datetime.now(UTC) - timedelta(minutes=minutes)).replace(microsecond=0)


def audit_record(record_id: int, created_at: datetime, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": record_id,
        "action": "update",
        "action_label": "Updated",
        "actor_id": 1234,
        "actor_name": "Test Admin",
        "change_description": f"change {record_id}",
        "created_at": zendesk_time(created_at),
        "ip_address": "203.0.113.9",
        "source_id": 77,
        "source_label": "Some trigger",
        "source_type": "rule",
        "url": f"https://acme.zendesk.com/api/v2/audit_logs/{record_id}.json",
    }
    base.update(fields)
    return base


def oauth_client(base_url: str) -> tuple[ClientCredentialsAuth, requests.Session]:
    """Client-credentials auth (the simulator's client) on its own session, for a server
    at ``base_url`` that answers the token request as a test wants."""
    session = requests.Session()
    auth = ClientCredentialsAuth(
        client_id="sim-client",
        client_secret=Secret("sim-client-secret"),
        scope="read",
        base_url=base_url,
        session=session,
        timeout=30.0,
    )
    return auth, session
