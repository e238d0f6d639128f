"""``reconcile`` where a DBA left a stored row's ``raw`` as no record: not JSON, not
UTF-8, a BLOB, a number (SQLite keeps any of them), or JSON that is no object (every
database). Each such row is a differing id of its day, the other rows compared as usual;
never a crash."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from parts.cli import run_cli
from parts.configs import write_config
from parts.simulators import Simulators, history
from support import execute

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs

SINCE = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d")
# JSON that no record is, which every database's JSON column takes
ANY_DATABASE: list[Any] = [[1, 2], "a text", None, 5]
# what only SQLite keeps in ``raw`` (PostgreSQL's jsonb and MariaDB's CHECK refuse it)
SQLITE_ONLY = ["'not json'", "X'7b7d'", "CAST(X'FF' AS TEXT)", "'{\"id\": 1e400}'", "5.5"]


def synced(tmp_path: Path, db_url: str, make_sim: Simulators) -> tuple[Path, object]:
    sim = make_sim(history(200, days=2, seed=3))
    path = write_config(tmp_path, db_url, sim.url, database={"auto_migrate": True})
    result = run_cli("--config", str(path), "sync")
    assert result.returncode == 0, result.stderr
    return path, sim


def reconcile(path: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("--config", str(path), "reconcile", "--since", SINCE, "--json")
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def ids(report: dict[str, Any], kind: str) -> set[int]:
    return {i for a in report["accounts"] for day in a["days"] for i in day[kind]}


def _first_ids(db_url: str, count: int) -> list[int]:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        query = sa.select(audit_logs.c.id).order_by(audit_logs.c.id).limit(count)
        found = list(conn.execute(query).scalars())
    engine.dispose()
    return found


def test_a_raw_that_is_no_record_is_a_differing_id(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, _ = synced(tmp_path, migrated_url, make_sim)
    edited = _first_ids(migrated_url, len(ANY_DATABASE))
    execute(
        migrated_url,
        *(
            sa.update(audit_logs).where(audit_logs.c.id == record_id).values(raw=value)
            for record_id, value in zip(edited, ANY_DATABASE, strict=True)
        ),
    )
    code, report = reconcile(path)
    assert code == ExitCode.FINDINGS
    assert (ids(report, "missing"), ids(report, "extra"), ids(report, "differ")) == (
        set(),
        set(),
        set(edited),
    )


@pytest.mark.databases("sqlite")
def test_a_raw_sqlite_keeps_as_no_json_is_a_differing_id(
    tmp_path: Path, migrated_url: str, make_sim: Simulators
) -> None:
    path, _ = synced(tmp_path, migrated_url, make_sim)
    edited = _first_ids(migrated_url, len(SQLITE_ONLY))
    execute(
        migrated_url,
        *(
            sa.text(f"UPDATE zendesk_audit_logs SET raw = {value} WHERE id = {record_id}")
            for record_id, value in zip(edited, SQLITE_ONLY, strict=True)
        ),
    )
    code, report = reconcile(path)
    assert code == ExitCode.FINDINGS
    assert (ids(report, "missing"), ids(report, "extra"), ids(report, "differ")) == (
        set(),
        set(),
        set(edited),
    )
