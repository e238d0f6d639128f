"""Rows stored as a sync stores them, and exports of them: the audit log's and the access
log's records at fixed times (``T0``), one page each written, an export run in process and
its new lines read back; the file's size and the wait of the export kill tests."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from access_support import access_record
from support import audit_record

from etl.common.clock import utc_now
from etl.export.job import ExportOptions, export_accounts
from etl.records.access import parse_access_record
from etl.records.audit import parse_record
from etl.storage.schema.logs import access_logs
from etl.storage.store import Store
from etl.storage.streams import StreamStore
from parts.databases import make_database, selected_kinds

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
KINDS = [k for k in ("sqlite", "postgresql", "mysql") if k in selected_kinds()]


def store_records(store: Store, records: Sequence[dict[str, Any]], account: str = "acme") -> None:
    """Write ``records`` as one sync page would."""
    run_id = store.start_run(account, T0, T0, None)
    rows = [parse_record(r, account, utc_now()) for r in records]
    store.write_page(account, run_id, [r for r in rows if isinstance(r, dict)], [], None)


def export(
    store: Store, out: Path, consumer: str = "siem", *, accounts: Sequence[str] = ("acme",),
    **options: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    """Run an export into ``out``; the lines it added, decoded."""
    before = out.stat().st_size if out.exists() else 0
    run_export(store, out, consumer, accounts=accounts, **options)
    with out.open("rb") as handle:
        handle.seek(before)
        return without_seq([json.loads(line) for line in handle.read().splitlines()])


def without_seq(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``lines`` without their ``stored_seq``, which must increase within each account."""
    sequences: dict[str, list[int]] = {}
    for line in lines:
        if "stored_seq" in line:  # raw lines (OCSF: metadata.sequence)
            sequences.setdefault(line["account"], []).append(line.pop("stored_seq"))
    for sequence in sequences.values():
        assert sequence == sorted(set(sequence)) and all(isinstance(n, int) for n in sequence)
    return lines


def run_export(
    store: Store, out: Path, consumer: str = "siem", *, accounts: Sequence[str] = ("acme",),
    **options: Any,
) -> None:  # fmt: skip
    export_accounts(store.engine, accounts, ExportOptions(consumer, out, **options), now=utc_now)


def record(record_id: int, minutes: int = 0, **fields: Any) -> dict[str, Any]:
    return audit_record(record_id, T0 + timedelta(minutes=minutes), **fields)


def store_access(store: Store, records: Sequence[dict[str, Any]], account: str = "acme") -> None:
    """Write access ``records`` as one sync page of the stream would."""
    run_id = store.start_run(account, T0, T0, None, stream="access_logs")
    rows = [parse_access_record(r, account, utc_now()) for r in records]
    StreamStore(store, "access_logs", access_logs).write_page(
        account, run_id, [r for r in rows if isinstance(r, dict)], [], None
    )


def access(n: int, minutes: int = 0, **fields: Any) -> dict[str, Any]:
    return access_record(f"01J{n:010d}", T0 + timedelta(minutes=minutes), **fields)


@pytest.fixture(params=KINDS)
def kill_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from make_database(str(request.param), tmp_path)


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_for(condition: object, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until ``condition()`` holds or the process ends; a generous deadline."""
    assert callable(condition)
    while not condition() and proc.poll() is None:
        assert time.monotonic() < deadline, "export made no progress"
        time.sleep(0.001)
