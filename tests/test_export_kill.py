"""Kill the real ``export`` anywhere: the file still holds every record once, in order.

Between kills, new rows are stored (some late: created long before what was exported).
Each run is SIGKILLed at a random moment chosen by an event: once its file has grown by
a random number of bytes (mostly between a chunk's write and its commit), or while it
starts. A last run finishes; the file must then be exactly the table in storage order.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import make_database, selected_kinds
from support import fresh_store
from test_export import record, store_records

ROOT = Path(__file__).resolve().parent.parent
KINDS = [k for k in ("sqlite", "postgresql", "mysql") if k in selected_kinds()]
ROWS_PER_ROUND = 12_000  # a few chunks of 5,000 per run


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


def test_sigkill_anywhere_exports_every_record_exactly_once(
    kill_db_url: str, tmp_path: Path
) -> None:
    rng = random.Random(17)
    store = fresh_store(kill_db_url)
    config = tmp_path / "config.toml"
    config.write_text(
        '[zendesk]\nbase_url = "http://127.0.0.1:9"\nname = "acme"\n'
        f'[database]\nurl = "{kill_db_url}"\n'
    )
    out = tmp_path / "feed.jsonl"
    command = [sys.executable, "-m", "etl", "--config", str(config), "export",
               "--consumer", "siem", "--output", str(out)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONFIG"))}
    killed_after_writing = cut_back = 0
    next_id = 1
    for _ in range(12):
        store_records(
            store,
            [record(next_id + j, minutes=rng.randint(-600, 600)) for j in range(ROWS_PER_ROUND)],
        )
        next_id += ROWS_PER_ROUND
        before = size(out)
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        if rng.random() < 0.8:  # once the file has grown by some bytes
            grown = before + rng.randint(1, 4_000_000)
            wait_for(lambda grown=grown: size(out) >= grown, proc, deadline)
        else:  # while it starts, before it writes anything
            wait_for(lambda: rng.random() < 0.002, proc, deadline)
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=60)
        cut_back += stderr.count(b"cutting")
        if proc.returncode == -signal.SIGKILL and size(out) > before:
            killed_after_writing += 1
    final = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, timeout=120)
    assert final.returncode == 0, final.stderr
    cut_back += final.stderr.count(b"cutting")

    with store.engine.connect() as conn:
        stored = conn.execute(
            sa.text("SELECT id FROM zendesk_audit_logs WHERE account = 'acme' ORDER BY stored_seq")
        ).scalars()
        expected = list(stored)
    exported = [json.loads(line)["id"] for line in out.read_bytes().splitlines()]
    assert len(exported) == len(expected) == 12 * ROWS_PER_ROUND
    assert exported == expected  # every record once, in storage order
    # the kills did land where it matters: after a write, before its commit
    assert killed_after_writing >= 3
    assert cut_back >= 1
