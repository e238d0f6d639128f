"""``verify`` of a large store: records/s and peak memory.

Stores ``--records`` (1,000,000) records through the store's own write path (rows and
their ledger, as a sync would), then runs ``zendesk-audit-etl verify`` on them as a
process of its own: wall time, records verified a second (the target: 200,000) and its
peak RSS, against a verify of a quarter of them (memory is flat when the two peaks are
within 15%). With ``--runs N`` the full store is verified N times: the median time, the
highest peak (the machine is shared: one run says little).

    .venv/bin/python scripts/bench_verify.py [--records N] [--runs N]
        [--databases sqlite postgresql mariadb]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_ledger import database, load

from etl.records.audit import Reject, parse_record
from zendesk_sim import generate_records

TARGET = 200_000  # records/s
ROOT = Path(__file__).resolve().parent.parent


# The verify process reports its own peak (VmHWM, reset by exec): ru_maxrss of a child
# would count the bench's own memory, which the fork copied before the exec.
_LAUNCH = (
    "import sys; from etl.cli.main import main; code = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
    "sys.stderr.write(hwm); sys.exit(code)"
)


def verify(url: str, folder: Path) -> tuple[float, int, int]:
    """Seconds, records verified and the process's peak RSS (KiB) of one ``verify``."""
    config = folder / "config.toml"
    config.write_text(f'[zendesk]\nsubdomain = "bench"\n[database]\nurl = "{url}"\n')
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCH, "--config", str(config), "verify", "--json"],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "ZENDESK_OAUTH_TOKEN": "x"},
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"verify failed ({result.returncode}): {result.stderr or result.stdout}")
    records = sum(a["records_verified"] for a in json.loads(result.stdout)["accounts"])
    peak = int(result.stderr.strip().splitlines()[-1].split()[1])  # "VmHWM:  81234 kB"
    return elapsed, records, peak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="verifies of the full store")
    parser.add_argument("--databases", nargs="+", default=["sqlite"])
    args = parser.parse_args(argv)
    end = datetime.now(UTC) - timedelta(hours=1)
    now = datetime.now(UTC)
    source = generate_records(args.records, start=end - timedelta(days=365), end=end)
    parsed = (parse_record(raw, "bench", now) for raw in source)
    rows = [row for row in parsed if not isinstance(row, Reject)]
    print(f"{'database':<12}{'records':>10}{'seconds':>9}{'records/s':>12}{'peak RSS':>10}  target")
    ok = True
    for kind in args.databases:
        for share in (4, 1):  # a quarter first: its peak is the flat-memory reference
            part = rows[: len(rows) // share]
            with database(kind) as url, tempfile.TemporaryDirectory() as folder:
                load(url, part, 5000)
                runs = [verify(url, Path(folder)) for _ in range(args.runs if share == 1 else 1)]
            seconds = statistics.median(run[0] for run in runs)
            records, peak = runs[0][1], max(run[2] for run in runs)
            rate = records / seconds
            met = rate >= TARGET if share == 1 else True
            ok = ok and met
            verdict = ("met" if met else "MISSED") if share == 1 else ""
            line = f"{kind:<12}{records:>10,}{seconds:>9.1f}{rate:>12,.0f}{peak / 1024:>8.0f} MB"
            print(f"{line}  {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
