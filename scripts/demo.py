"""`make demo`: the whole job against the simulated Zendesk, into a local SQLite file.

Runs the real CLI as a user would: migrate, check, a first sync of the whole
history, new and late records appearing upstream, an incremental sync, status,
and an example SQL query. Everything lands in ./demo/ (deleted at the start). Every command
it shows is the one it runs, so each can be pasted from the checkout; it ends with what to
try next.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo"
# The simulator's default OAuth client; the secret reaches the job by environment only.
CLIENT_ID = "sim-client"
CLIENT_SECRET = "sim-client-secret"
RECORDS = 5000
ACCESS_RECORDS = 5_000  # the access log: what agents viewed, over Zendesk's 90 days (50 pages:
# as many as the audit log's, enough to show; 20,000 made the demo twice as long)


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


@contextmanager
def simulator() -> Iterator[str]:
    command = [
        sys.executable, "-m", "zendesk_sim", "--records", str(RECORDS), "--days", "30",
        "--seed", "7", "--access-records", str(ACCESS_RECORDS),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"demo: the simulator did not start (it said {line!r})")
        yield line.removeprefix("listening on ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def program() -> list[str]:
    """The command as a user types it from the checkout: the venv's script when there is
    one (``make install`` makes it), else this Python's ``-m etl``."""
    script = Path(sys.executable).parent / "zendesk-audit-etl"
    if script.is_file():
        return [os.path.relpath(script, ROOT)]
    return [os.path.relpath(sys.executable, ROOT), "-m", "etl"]


def command_line(*args: str) -> list[str]:
    return [*program(), "--config", os.path.relpath(DEMO / "config.toml", ROOT), *args]


def cli(*args: str) -> None:
    """Print the command, then run exactly that (from the checkout, as printed)."""
    command = command_line(*args)
    print(f"$ {shlex.join(command)}", flush=True)
    env = {**os.environ, "ZENDESK_CLIENT_SECRET": CLIENT_SECRET}
    result = subprocess.run(command, env=env, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"demo: the command failed with exit code {result.returncode}")


def next_steps() -> str:
    """What to try once the demo is over (the simulator has stopped: these need none)."""
    status = shlex.join(command_line("status"))
    database = shlex.quote(os.path.relpath(DEMO / "audit.db", ROOT))
    return "\n".join(
        [
            "Try next, from this directory:",
            f"  $ {status}",
            f'  $ sqlite3 {database} "SELECT created_at, actor_name, action, source_label '
            'FROM zendesk_audit_logs ORDER BY created_at DESC LIMIT 5"',
            f"  $ {shlex.join(command_line('export', '--consumer', 'try', '--format', 'ocsf'))}"
            " | head -2",
            "  more queries: docs/QUERIES.md; your own account: config.example.toml, then "
            f"{shlex.join([*program(), 'init', 'config.toml'])}",
        ]
    )


def post(url: str, payload: Any) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


def new_records(base_url: str, now: datetime) -> list[dict[str, Any]]:
    """25 fresh changes, and 5 whose created_at is already behind the watermark (late)."""
    records = []
    for i in range(30):
        late = i >= 25
        created = now - timedelta(minutes=9 if late else 6, seconds=i)
        record_id = 9_000_000_000_000 + i
        records.append(
            {
                "id": record_id,
                "action": "update",
                "action_label": "Updated",
                "actor_id": 4242,
                "actor_name": "Demo Admin",
                "change_description": f"Demo change {i}{' (appeared late)' if late else ''}",
                "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ip_address": "203.0.113.7",
                "source_id": 77,
                "source_label": "Demo trigger",
                "source_type": "rule",
                "url": f"{base_url}/api/v2/audit_logs/{record_id}.json",
            }
        )
    return records


EXAMPLE_SQL = """
SELECT action, source_type, COUNT(*) AS changes
FROM zendesk_audit_logs
WHERE account = 'demo'
GROUP BY action, source_type
ORDER BY changes DESC
LIMIT 8
"""

WHO_VIEWED_SQL = """
SELECT "timestamp", user_id, ip_address, method
FROM zendesk_access_logs
WHERE account = 'demo' AND path = '/api/v2/tickets/7.json'
ORDER BY "timestamp"
"""


def main() -> None:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    banner(f"Starting a simulated Zendesk with {RECORDS:,} audit records over 30 days")
    with simulator() as url:
        print(f"simulator at {url}")
        (DEMO / "config.toml").write_text(
            f'[zendesk]\nbase_url = "{url}"\nname = "demo"\nclient_id = "{CLIENT_ID}"\n'
            f"# client_secret comes from $ZENDESK_CLIENT_SECRET\n"
            f"# The simulator has the whole rate limit to itself; a real account shares it.\n"
            f"requests_per_minute = 1500\n\n"
            f'[database]\nurl = "sqlite:///{DEMO / "audit.db"}"\n\n'
            f"# The access log too (docs/ACCESS_LOGS.md): who viewed what.\n"
            f'[sync]\nstreams = ["audit_logs", "access_logs"]\n'
        )
        (DEMO / "config.toml").chmod(0o600)
        print(f"config written to {DEMO / 'config.toml'}")

        banner("Create the schema")
        cli("migrate")
        # check exits non-zero where sync would refuse to run: a schema not yet created
        banner("Check the configuration, the database and the credentials")
        cli("check")
        banner("First sync: the whole history, checkpointed page by page")
        cli("sync")
        banner("Meanwhile upstream: 25 new records, and 5 older ones that only appear now")
        post(f"{url}/_sim/records", new_records(url, datetime.now(UTC)))
        banner("Incremental sync: reads only the recent window (plus the overlap)")
        cli("sync")
        banner("Nothing new: one request")
        cli("sync")
        banner("Status")
        cli("status")

    banner("Example SQL: what changed most")
    print(EXAMPLE_SQL.strip())
    with sqlite3.connect(DEMO / "audit.db") as db:
        rows = db.execute(EXAMPLE_SQL).fetchall()
        late = db.execute(
            "SELECT COUNT(*) FROM zendesk_audit_logs WHERE change_description LIKE '%late%'"
        ).fetchone()[0]
        total = db.execute("SELECT COUNT(*) FROM zendesk_audit_logs").fetchone()[0]
    print(f"{'action':<12}{'source_type':<18}changes")
    for action, source_type, changes in rows:
        print(f"{action:<12}{source_type:<18}{changes}")
    print(
        f"\n{total:,} records stored ({RECORDS + 30:,} upstream); late records stored: {late} of 5"
    )
    if total != RECORDS + 30 or late != 5:
        raise SystemExit("demo: the table does not match the simulated account")
    banner("Example SQL: who viewed ticket 7 (the access log)")
    print(WHO_VIEWED_SQL.strip())
    with sqlite3.connect(DEMO / "audit.db") as db:
        viewers = db.execute(WHO_VIEWED_SQL).fetchall()
        accesses = db.execute("SELECT COUNT(*) FROM zendesk_access_logs").fetchone()[0]
    for stamp, user_id, ip_address, method in viewers:
        print(f"{stamp:<28}{user_id:<16}{ip_address:<16}{method}")
    print(f"\n{accesses:,} access-log records stored (the last 90 days)")
    if accesses < ACCESS_RECORDS * 0.99:
        raise SystemExit("demo: the access log was not copied")
    print("Demo complete: the table holds every record exactly once.\n")
    print(next_steps())


if __name__ == "__main__":
    main()
