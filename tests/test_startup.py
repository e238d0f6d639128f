"""What a scheduled run with nothing new costs once started (issue 27: one request, well
under a second): one request at the simulator, a few short transactions, no look at the
schema beyond its version. What it imports is in test_cli (a real process)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from parts.cli import run_cli
from parts.configs import write_config
from sqlalchemy import event
from sqlalchemy.engine import Engine

from zendesk_sim import SimulatedZendesk

# The statements of a sync with nothing new today (SQLite's BEGINs included): the version
# read, the write epoch, the state and plan reads, the run's row, the empty page's commit,
# the watermark and the ledger checkpoint. A new statement on every scheduled run should be
# a choice: raise the count here, and say why in the commit.
STATEMENTS = {"sqlite": 30, "postgresql": 24, "mysql": 25}
# Statements that look the schema up (Alembic's, or SQLAlchemy's inspector): a run on a
# current schema reads the version table and nothing else of the catalogue.
CATALOGUE = re.compile(r"PRAGMA \w+\.table_info|pg_catalog|information_schema|DESCRIBE", re.I)


@pytest.fixture
def sim(shared_sim: SimulatedZendesk) -> SimulatedZendesk:
    """The module's simulator (1,500 records over three days): these tests only read."""
    return shared_sim


def test_a_sync_with_nothing_new_asks_once_and_runs_a_few_statements(
    tmp_path: Path, db_url: str, sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": True})
    assert run_cli("--config", str(config), "--quiet", "sync").returncode == 0
    sim.clear_log()
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        done = run_cli("--config", str(config), "--quiet", "sync")
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert done.returncode == 0, done.stderr
    assert len(sim.requests) == 1
    listing = "\n".join(statements)
    assert not [s for s in statements if CATALOGUE.search(s)], listing
    kind = db_url.split(":")[0].split("+")[0]
    assert len(statements) <= STATEMENTS[kind], listing
