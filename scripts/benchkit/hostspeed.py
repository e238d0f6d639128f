"""The host's speed, as the CPU seconds of one fixed piece of work: printed beside every
benchmark's figures so that two sessions' figures can be told apart by host, not only by
code (the same code's verify took 9.8 s of CPU on one 2-core AMD host and 16.5 s on
another). The work uses the standard library alone (SHA-256, JSON, SQLite, a Python loop,
what the job's CPU goes to), so a change of this project's code never changes it; it runs
in a fresh process, three times, and the median is kept."""

from __future__ import annotations

import statistics
import subprocess
import sys

# About a second of CPU on the 2-core hosts of 2026-12: SHA-256 of 32 MiB, 100,000 JSON
# round trips of an audit-shaped record, 100,000 SQLite inserts into an indexed table in
# memory, and 2,000,000 turns of a Python loop. Prints its CPU seconds.
_WORK = r"""
import hashlib, json, sqlite3, time
started = time.process_time()
hashlib.sha256(bytes(range(256)) * 131072).digest()
text = json.dumps({"id": 6100000162954, "action_label": "Updated", "actor_id": 42,
    "source_type": "user", "source_id": 7, "created_at": "2026-10-07T01:13:06Z",
    "changes": {"name": ["a", "b"], "tags": [1, 2, 3]}, "ip_address": "203.0.113.9"})
for _ in range(100000):
    json.dumps(json.loads(text))
db = sqlite3.connect(":memory:")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, seq INTEGER, raw TEXT)")
db.execute("CREATE INDEX t_seq ON t (seq)")
db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, -i, text) for i in range(100000)))
db.commit()
total = 0
for i in range(2000000):
    total += i & 7
print(time.process_time() - started)
"""


def reference_cpu(runs: int = 3) -> float:
    """The median CPU seconds of the fixed work over ``runs`` fresh processes."""
    times = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", _WORK], capture_output=True, text=True, check=True
        )
        times.append(float(done.stdout))
    return statistics.median(times)


def describe(seconds: float) -> str:
    """The line a benchmark prints: comparable across sessions, unlike its wall times."""
    return (
        f"host reference work: {seconds:.2f} s of CPU (median of 3; "
        "more means a slower host: compare figures of two sessions by it)"
    )


if __name__ == "__main__":
    print(describe(reference_cpu()))
