"""A PostgreSQL engine's first connection (issue 27): one round trip for what SQLAlchemy's
dialect asks as it starts, and the dialect set up as SQLAlchemy's own would be
(etl/storage/drivers/psycopg_first.py)."""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import run_cli
from parts.configs import write_config
from sqlalchemy import event
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Engine

from etl.storage.drivers.psycopg_first import QuickFirstConnect, version_tuple
from etl.storage.engine import open_engine, parse_url
from zendesk_sim import SimulatedZendesk

# What the dialect derives from the first connection's answers.
SETTINGS = (
    "server_version_info", "default_schema_name", "default_isolation_level",
    "_backslash_escapes", "supports_smallserial", "_supports_drop_index_concurrently",
    "supports_identity_columns", "_supports_jsonb_subscripting",
    "supports_virtual_generated_columns", "insert_returning", "insert_executemany_returning",
    "max_identifier_length", "driver", "name", "supports_statement_cache",
)  # fmt: skip


@pytest.mark.databases("postgresql")
def test_a_postgresql_engines_first_connection_asks_in_one_round_trip(db_url: str) -> None:
    """SQLAlchemy's own: BEGIN, four statements and ROLLBACK. An upgrade that renames a
    method ``QuickFirstConnect`` overrides, or asks something more, fails here."""
    fd, path = tempfile.mkstemp()

    def traced(dbapi: Any, record: Any) -> None:
        dbapi.pgconn.trace(fd)

    event.listen(Engine, "connect", traced)  # before the engine's own first-connect listener
    try:
        engine = open_engine(db_url)
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        engine.dispose()
        trace = Path(path).read_text()
    finally:
        event.remove(Engine, "connect", traced)
        os.close(fd)
        os.unlink(path)
    assert type(engine.dialect) is QuickFirstConnect
    waits = re.findall(r"\tF\t\d+\t(?:Query|Sync)\b.*", trace)
    first = waits[: next(i for i, w in enumerate(waits) if "SET lock_timeout" in w)]
    assert len(first) == 1 and "current_setting('server_version_num')" in first[0], waits


@pytest.mark.databases("postgresql")
def test_the_quick_dialect_is_set_up_as_sqlalchemys_own(db_url: str) -> None:
    ours = open_engine(db_url)
    theirs = sa.create_engine(parse_url(db_url), use_native_hstore=False)
    try:
        for engine in (ours, theirs):
            with warnings.catch_warnings():  # e.g. no statement cache for a dialect class
                warnings.simplefilter("error", sa.exc.SAWarning)
                with engine.connect() as conn:
                    conn.execute(sa.select(sa.literal(1))).scalar_one()
        assert type(theirs.dialect) is not QuickFirstConnect
        assert {name: getattr(ours.dialect, name) for name in SETTINGS} == {
            name: getattr(theirs.dialect, name) for name in SETTINGS
        }
    finally:
        ours.dispose()
        theirs.dispose()


class _Answer:
    def __init__(self, text: str) -> None:
        self.text = text

    def exec_driver_sql(self, statement: str) -> _Answer:
        assert statement == "select pg_catalog.version()"
        return self

    def scalar(self) -> str:
        return self.text


@pytest.mark.parametrize(
    ("version", "number"),
    [
        ("PostgreSQL 9.6.24 on x86_64-pc-linux-gnu, compiled by gcc", 90624),
        ("PostgreSQL 10.23 on x86_64-pc-linux-gnu", 100023),
        ("PostgreSQL 15.20 (Debian 15.20-0+deb12u1) on x86_64-pc-linux-gnu", 150020),
        ("PostgreSQL 18.1 on aarch64-unknown-linux-gnu", 180001),
    ],
)
def test_server_version_num_reads_as_sqlalchemy_reads_version(version: str, number: int) -> None:
    dialect = PGDialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy
    theirs = dialect._get_server_version_info(_Answer(version))  # type: ignore[no-untyped-call]
    assert version_tuple(number) == theirs


@pytest.mark.databases("postgresql")
def test_check_names_the_driver_psycopg(
    tmp_path: Path, db_url: str, shared_sim: SimulatedZendesk
) -> None:
    """The engine's URL names the registered dialect (etl_psycopg); ``check`` shows the
    driver a user named, psycopg."""
    config = write_config(tmp_path, db_url, shared_sim.url, database={"auto_migrate": True})
    done = run_cli("--config", str(config), "check")
    assert done.returncode == 0, done.stderr
    assert "database: reachable (postgresql+psycopg://" in done.stdout
    assert "etl_psycopg" not in done.stdout
