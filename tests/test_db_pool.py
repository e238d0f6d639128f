"""The server databases the tests keep for the next test (``parts/db_pool.py``,
``parts/mysql_pool.py``): a kept one must be a clean slate, and one whose shape a test
changed must be dropped."""

from __future__ import annotations

from collections.abc import Generator

import pytest
import sqlalchemy as sa
from parts.databases import _admin, _pool, kind_of, migrate_from_template, server_database
from sqlalchemy.engine import make_url

VERSION = "zendesk_audit_alembic_version"
ADD_RUN = (
    "INSERT INTO zendesk_audit_sync_runs (account, started_at, status) "
    "VALUES ('acme', CURRENT_TIMESTAMP, 'success')"
)
LAST_RUN = "SELECT MAX(id) FROM zendesk_audit_sync_runs"


def _migrated(kind: str) -> tuple[Generator[str, None, None], str, sa.Engine]:
    """A test's database as the fixture makes it (its generator: ``close`` ends the
    test), migrated from the template, and an engine on it."""
    made = server_database(kind)
    url = next(made)
    assert migrate_from_template(url)
    return made, url, sa.create_engine(url, poolclass=sa.pool.NullPool)


def _exists(kind: str, name: str) -> bool:
    ask = {
        "postgresql": "SELECT 1 FROM pg_database WHERE datname = :n",
        "mysql": "SELECT 1 FROM information_schema.schemata WHERE schema_name = :n",
    }[kind]
    with _admin(kind).connect() as conn:
        return conn.execute(sa.text(ask), {"n": name}).first() is not None


@pytest.mark.databases("postgresql", "mysql")
def test_a_kept_database_comes_back_with_no_rows_and_counters_restarted(db_url: str) -> None:
    kind = kind_of(db_url)
    first, url, engine = _migrated(kind)
    with engine.begin() as conn:
        version = conn.execute(sa.text(f"SELECT * FROM {VERSION}")).all()
        conn.execute(sa.text(f"INSERT INTO {VERSION} VALUES ('left_by_a_test')"))
        conn.execute(sa.text(ADD_RUN))
        conn.execute(sa.text(ADD_RUN))
        assert conn.execute(sa.text(LAST_RUN)).scalar_one() == 2
    engine.dispose()
    first.close()  # the test is over: kept, not dropped
    pool = _pool(kind)
    assert pool is not None and make_url(url).database in pool.migrated

    second, _, engine = _migrated(kind)  # the kept one, moved into place
    with engine.begin() as conn:
        assert conn.execute(sa.text(f"SELECT * FROM {VERSION}")).all() == version
        assert conn.execute(sa.text(LAST_RUN)).scalar() is None
        conn.execute(sa.text(ADD_RUN))
        assert conn.execute(sa.text(LAST_RUN)).scalar_one() == 1
    engine.dispose()
    second.close()


@pytest.mark.databases("postgresql", "mysql")
def test_a_database_whose_shape_a_test_changed_is_dropped(db_url: str) -> None:
    kind = kind_of(db_url)
    made, url, engine = _migrated(kind)
    with engine.begin() as conn:
        # An index only: nothing else would stop its rows being cleared and put back.
        conn.execute(sa.text("CREATE INDEX left_by_a_test ON zendesk_audit_sync_runs (status)"))
    engine.dispose()
    made.close()
    name = str(make_url(url).database)
    pool = _pool(kind)
    assert pool is not None and name not in pool.migrated + pool.empty
    assert not _exists(kind, name)
