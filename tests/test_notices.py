"""The API token's deprecation notice is said once a day per account, from cron too.

Every cron run is a new process, so "said already" lives in the account's state row
(revision 0005). Time is injected: the store's clock in the first test, the recorded
moment moved back a day in the second (what a day passing does to it). Both on every
database.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import cli
from parts.configs import quick_config
from support import fresh_store, recent

from etl.cli.commands.sync import NOTICE_EVERY
from etl.storage.engine import open_engine
from etl.storage.schema.state import sync_state
from etl.storage.store import Store
from etl.zendesk.auth import API_TOKEN_NOTICE, API_TOKEN_WARNING, PASSWORD_NOTICE
from zendesk_sim import SimulatedZendesk, generate_records

T0 = datetime(2026, 12, 5, 6, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    with SimulatedZendesk(generate_records(50, start=end - timedelta(days=1), end=end)) as s:
        yield s


def test_a_notice_is_due_once_a_day_per_account_and_per_notice(db_url: str) -> None:
    now = [T0]
    store = Store(fresh_store(db_url).engine, now=lambda: now[0])
    key = API_TOKEN_NOTICE.key
    assert NOTICE_EVERY == DAY
    assert store.claim_notice("acme", key, DAY)  # never said: due (and the row is created)
    now[0] = T0 + timedelta(minutes=5)
    assert not store.claim_notice("acme", key, DAY)  # the next cron run: silent
    assert store.claim_notice("other", key, DAY)  # per account
    now[0] = T0 + DAY - timedelta(seconds=1)
    assert not store.claim_notice("acme", key, DAY)
    now[0] = T0 + DAY
    assert store.claim_notice("acme", key, DAY)  # a day later: said again
    assert store.claim_notice("acme", PASSWORD_NOTICE.key, DAY)  # another notice: said now
    assert store.claim_notice("acme", key, DAY)  # ... and a change back is one too
    assert store.watermark("acme") is None  # the row it made holds no watermark
    store.engine.dispose()


def test_cron_runs_say_it_once_a_day_and_never_under_quiet(
    tmp_path: Path, db_url: str, sim: SimulatedZendesk
) -> None:
    config = quick_config(
        tmp_path, sim.url, db_url, extra='email = "admin@example.com"',
        database_extra="auto_migrate = true",
    )  # fmt: skip
    env = {"ZENDESK_OAUTH_TOKEN": "", "ZENDESK_API_TOKEN": "sim-api-token"}

    def notices(*options: str) -> int:
        done = cli(config, *options, "sync", env=env)
        assert done.returncode == 0, done.stderr
        return done.stderr.count(API_TOKEN_WARNING)

    quiet = cli(config, "--quiet", "sync", env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""  # nothing said, nothing recorded
    assert notices() == 1
    assert notices() == 0  # the next run, minutes later
    assert notices("--log-format", "json") == 0
    engine = open_engine(db_url)
    try:  # a day passes: the recorded moment moves back by one
        with engine.begin() as conn:
            said = conn.execute(sa.select(sync_state.c.notice_at)).scalar_one()
            conn.execute(sa.update(sync_state).values(notice_at=said - DAY))
    finally:
        engine.dispose()
    assert notices("--quiet") == 0
    assert notices() == 1
    assert notices() == 0
