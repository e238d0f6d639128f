"""Every SQL block of docs/QUERIES.md runs on every database it claims to, on synced data."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import FakeTime, fake_time_client, fresh_store, recent, sim_account

from etl.storage.engine import open_engine
from etl.sync.account import sync_account
from zendesk_sim import SimulatedZendesk, generate_records

QUERIES = (Path(__file__).resolve().parent.parent / "docs" / "QUERIES.md").read_text()
BLOCKS = re.findall(r"```sql\n(.*?)```", QUERIES, re.S)


def dialects_of(block: str) -> set[str] | None:
    match = re.match(r"-- only: (.+)\n", block)
    return {d.strip() for d in match.group(1).split(",")} if match else None


def test_the_page_has_queries_and_each_is_valid_somewhere() -> None:
    assert len(BLOCKS) >= 10
    for block in BLOCKS:
        dialects = dialects_of(block)
        assert dialects is None or dialects <= {"sqlite", "postgresql", "mysql"}


def test_every_query_runs_and_finds_rows(db_url: str) -> None:
    end = recent(30)
    records = generate_records(600, start=end - timedelta(days=3), end=end, seed=5)
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        with fake_time_client(account, FakeTime()) as client:
            sync_account(account, client, store)
    login = next(r for r in records if r["action"] == "login" and r["ip_address"])
    params = {
        "account": "acme",
        "actor_id": login["actor_id"],
        "ip_address": login["ip_address"],
        "since": datetime(2000, 1, 1, tzinfo=UTC),
        "until": datetime.now(UTC),
    }
    engine = open_engine(db_url)
    dialect = "mysql" if engine.dialect.name in ("mysql", "mariadb") else engine.dialect.name
    ran = 0
    try:
        with engine.connect() as conn:
            for block in BLOCKS:
                wanted = dialects_of(block)
                if wanted is not None and dialect not in wanted:
                    continue
                statement = sa.text(block.strip().rstrip(";"))
                used = {k: v for k, v in params.items() if f":{k}" in block}
                rows = conn.execute(statement, used).fetchall()
                if "zendesk_audit_rejects" not in block:
                    assert rows, f"no rows from:\n{block}"
                ran += 1
    finally:
        engine.dispose()
    assert ran >= 9


@pytest.mark.parametrize("block", BLOCKS)
def test_every_query_is_scoped_to_one_account(block: str) -> None:
    """Several accounts share the tables: a query without the account mixes them up."""
    assert "account = :account" in block
