"""The dlt side of ``scripts/bench_dlt.py``: one first load, as its own process.

A dlt user's idiomatic pipeline for this API: the ``rest_api`` source following
``links.next`` over cursor pages of 100 with the job's OAuth token, the records under
``audit_logs`` merged on ``id`` (what the job's upsert does), into SQLite through the
``sqlalchemy`` destination or into PostgreSQL through ``postgres``, each with dlt's
defaults (its load file formats, workers and staging dataset for the merge). At exit it
writes its own peak RSS, as the job's launcher does (``benchkit.support.RSS_FILE_ENV``).

    .venv/bin/python scripts/benchkit/dlt_pipeline.py BASE_URL TOKEN {sqlite,postgresql} \\
        DB_URL PIPELINES_DIR
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

DATASET = "zendesk"  # a schema on PostgreSQL; on SQLite an attached file beside DB_URL's
PIPELINE = "zendesk_audit_bench"
RSS_FILE_ENV = "ETL_BENCH_PEAK_RSS_FILE"  # the same name as benchkit.support's (not imported:
# this process should pay for dlt's imports, not for SQLAlchemy's twice)


def source(base_url: str, token: str) -> Any:
    from dlt.sources.rest_api import rest_api_source

    return rest_api_source(
        {
            "client": {
                "base_url": base_url.rstrip("/") + "/api/v2/",
                "auth": {"type": "bearer", "token": token},
                "paginator": {"type": "json_link", "next_url_path": "links.next"},
            },
            "resources": [
                {
                    "name": "audit_logs",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": "audit_logs",
                        "params": {"page[size]": 100},
                        "data_selector": "audit_logs",
                    },
                }
            ],
        }
    )


def destination(kind: str, db_url: str) -> Any:
    import dlt

    if kind == "sqlite":
        return dlt.destinations.sqlalchemy(credentials=db_url)
    if kind == "postgresql":
        return dlt.destinations.postgres(credentials=db_url)
    raise SystemExit(f"unknown database kind {kind!r}")


def main(argv: list[str]) -> int:
    base_url, token, kind, db_url, pipelines_dir = argv
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")  # no calls but the API's
    # dlt's own merge SQL on SQLAlchemy 2.1; not ours to fix, and it would fill the log
    warnings.filterwarnings("ignore", message="implicitly coercing SELECT")
    import dlt

    pipeline = dlt.pipeline(
        pipeline_name=PIPELINE,
        pipelines_dir=pipelines_dir,
        destination=destination(kind, db_url),
        dataset_name=DATASET,
    )
    info = pipeline.run(source(base_url, token))
    info.raise_on_failed_jobs()
    with open("/proc/self/status") as status:
        hwm = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    rss_file = os.environ.get(RSS_FILE_ENV)
    if rss_file:
        with open(rss_file, "w") as out:
            out.write(hwm)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
