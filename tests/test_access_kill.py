"""SIGKILL the real CLI while it copies the access log, then check the table is exact.

As tests/test_kill.py for the audit log: kills land in start-up, page reads and page
commits; new access records appear upstream between kills; a last run without a kill
must leave every record stored once, as sent.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from access_support import access_record, assert_access_matches, count_access_rows
from parts.cli import run_cli
from support import SIM_OAUTH_TOKEN, recent, wait_until

from etl.storage.engine import open_engine
from zendesk_sim import AccessSource, SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent


# The database starts migrated (from the template): kills during the migrations are
# test_kill's subject, whose first runs start on an empty database.
def test_sigkill_mid_access_log_loses_and_duplicates_nothing(
    migrated_url: str, tmp_path: Path
) -> None:
    db_url = migrated_url
    rng = random.Random(26)
    end = recent(30)
    # Enough that the kills (seed 26: after 4,600 more rows in all) land mid-read.
    source = AccessSource(8_000, start=end - timedelta(days=14), end=end, seed=26)
    audit = generate_records(300, start=end - timedelta(days=1), end=end, seed=26)
    with SimulatedZendesk(audit, access_records=source, latency=0.01) as sim:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 100000\n'
            f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
            '[sync]\nstreams = ["audit_logs", "access_logs"]\n'
        )
        config.chmod(0o600)
        command = [sys.executable, "-m", "etl", "--config", str(config), "--quiet", "sync"]
        env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        engine = open_engine(db_url)
        killed = 0
        for i in range(5):
            before = count_access_rows(engine)
            proc = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            if i == 0:  # anywhere: start-up, the audit log, a first page
                time.sleep(rng.uniform(0.0, 1.0))
            else:  # mid-read, after some pages are committed, however slow the machine
                more = rng.randint(5, 20) * 100
                wait_until(
                    lambda: proc.poll() is not None or count_access_rows(engine) >= before + more,  # noqa: B023
                    f"{more} more access rows committed",
                )
            proc.send_signal(signal.SIGKILL)
            killed += proc.wait(timeout=60) == -signal.SIGKILL
            # upstream moves on: records newer than what was read, in the stream's future
            sim.add_access_records(
                access_record(f"01KILL{i:02d}{j:03d}", recent(8), user_id=str(j)) for j in range(30)
            )
        engine.dispose()
        # The run after the kills, in this process (what it does is the subject, not how it
        # starts), answered at once: the pace mattered only for where the kills landed.
        sim.latency = 0.0
        final = run_cli(*command[command.index("--config") :])
        assert final.returncode == 0, final.stderr
        assert killed >= 3  # most runs really were killed mid-way
        assert_access_matches(db_url, sim.access_records())
        assert not sim.errors
