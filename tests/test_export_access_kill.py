"""Kill the real ``export --streams audit_logs,access_logs`` anywhere: the file still holds
every record of each stream once, in its storage order (test_export_kill's pattern)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa
from parts.cli import run_cli
from parts.configs import write_config
from parts.exports import access, record, size, store_access, store_records, wait_for
from support import fresh_store

ROOT = Path(__file__).resolve().parent.parent
ROWS_PER_ROUND = 6_000  # of the audit log: a chunk of 5,000 and a bit
# Of the access log, which comes last and whose kill is aimed at its first line (its first
# chunk's write): a chunk a run, with the killed runs' rows. 6,000 took a third longer to
# store, and each round stores them.
ACCESS_PER_ROUND = 2_500
# Storing the rows is most of this test's time. Each round aims its kill at a phase not hit
# yet (while a run starts, mid-way through each stream), so a few rounds cover all three
# (asserted below) however fast the machine; once all three are covered and three kills
# landed after writing (both asserted), no more rounds: the rest killed anywhere, more of
# the same, and took half the time on MariaDB. A cap, not a count: a drawn size can outrun
# what a round has to write (the run ends before the kill), and a kill meant for a stream
# can land mid-line, so six rounds once gave two kills after writing (MariaDB, CI).
ROUNDS = 10
ORDER = ("starting", "audit_logs", "access_logs")  # each round aims at the first not hit yet
PHASES = set(ORDER)


class Appended:
    """What the run has appended to the file since ``start``, read on from where the last
    look ended: a poll every millisecond must not reread megabytes."""

    def __init__(self, path: Path, start: int) -> None:
        self.path, self.offset, self.tail = path, start, b""

    def read(self) -> bytes:
        if not self.path.exists():
            return b""
        with self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
        self.offset += len(chunk)
        self.tail = self.tail[-64:] + chunk  # a marker split across two reads is still seen
        return self.tail


def phase(out: Path, before: int) -> str:
    """Where a kill landed: while the run started (the file as it found it), or in the
    stream it was writing (the streams go one after the other: its last whole line says)."""
    data = out.read_bytes() if out.exists() else b""
    if len(data) == before:
        return "starting"
    if len(data) < before:
        return "cutting back"  # what the last kill left, and nothing written yet
    lines = data[before:].splitlines()
    if not data.endswith(b"\n"):
        lines = lines[:-1]  # killed mid-line: the next run cuts it back
    if not lines:
        return "mid-line"
    return str(json.loads(lines[-1]).get("stream", "audit_logs"))


def test_sigkill_anywhere_exports_each_stream_exactly_once(
    kill_db_url: str, tmp_path: Path
) -> None:
    rng = random.Random(23)
    jitter = random.Random(24)  # drawn while a run starts, as often as its start takes: the
    # rounds' other draws (rows, where to kill) stay the same however fast the machine
    store = fresh_store(kill_db_url)
    config = write_config(tmp_path, kill_db_url)  # Zendesk unreachable: export needs none
    out = tmp_path / "feed.jsonl"
    command = [sys.executable, "-m", "etl", "--config", str(config), "export",
               "--consumer", "siem", "--output", str(out),
               "--streams", "audit_logs,access_logs"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONFIG"))}
    killed_after_writing = 0
    phases: set[str] = set()  # where each kill landed
    next_id = 1
    for _ in range(ROUNDS):
        minutes = [rng.randint(-600, 600) for _ in range(ROWS_PER_ROUND)]
        store_records(store, [record(next_id + j, minutes=m) for j, m in enumerate(minutes)])
        store_access(
            store,
            [access(next_id + j, minutes=m) for j, m in enumerate(minutes[:ACCESS_PER_ROUND])],
        )
        next_id += ROWS_PER_ROUND
        before = size(out)
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        target = next((p for p in ORDER if p not in phases), None)
        if target == "access_logs":  # the stream that comes last and goes fastest: once
            # its first line is in the file, not at a drawn size that the run may outpace
            seen = Appended(out, before)
            wait_for(lambda seen=seen: b'"access_logs"' in seen.read(), proc, deadline)
        elif target == "starting" or (target is None and rng.random() < 0.15):
            # while it starts: the first time within its first tens of ms, wherever the
            # machine (its imports take longer), later anywhere before or at its writes
            odds = 0.002 if "starting" in phases else 0.02
            wait_for(lambda odds=odds: jitter.random() < odds, proc, deadline)
        else:  # once the file has grown by some bytes: either stream's
            grown = before + rng.randint(1, 3_000_000 if target else 4_000_000)
            wait_for(lambda grown=grown: size(out) >= grown, proc, deadline)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        if proc.returncode == -signal.SIGKILL:
            phases.add(phase(out, before))
        if proc.returncode == -signal.SIGKILL and size(out) > before:
            killed_after_writing += 1
        if phases >= PHASES and killed_after_writing >= 3:
            break
    rounds = (next_id - 1) // ROWS_PER_ROUND  # the rounds run
    final = run_cli(*command[command.index("--config") :])
    assert final.returncode == 0, final.stderr

    with store.engine.connect() as conn:
        expected = {
            stream: list(conn.execute(sa.text(
                f"SELECT id FROM {table} WHERE account = 'acme' ORDER BY stored_seq"
            )).scalars())
            for stream, table in (("audit_logs", "zendesk_audit_logs"),
                                  ("access_logs", "zendesk_access_logs"))
        }  # fmt: skip
    exported: dict[str, list[object]] = {"audit_logs": [], "access_logs": []}
    for line in out.read_bytes().splitlines():
        event = json.loads(line)
        exported[event.get("stream", "audit_logs")].append(event["id"])
    per_round = {"audit_logs": ROWS_PER_ROUND, "access_logs": ACCESS_PER_ROUND}
    for stream, ids in expected.items():
        assert len(ids) == rounds * per_round[stream], stream
        assert exported[stream] == ids, stream  # every record once, in storage order
    assert killed_after_writing >= 3
    assert phases >= PHASES, phases
