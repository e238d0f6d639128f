"""Prometheus text-file metrics, for node_exporter's textfile collector.

Written after every ``sync`` (atomically: a reader never sees half a file), one
series per account, so an alert can fire on freshness without parsing logs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

from etl.store import AccountStatus
from etl.sync import RunSummary

PREFIX = "zendesk_audit_etl"

# name -> help text; all gauges
HELP = {
    "last_success_timestamp_seconds": "When the last successful sync finished (Unix time).",
    "lag_seconds": "How far the watermark is behind now.",
    "rows": "Audit records stored.",
    "rejects": "Records that could not be stored (see zendesk_audit_rejects).",
    "last_run_success": "1 if the last sync succeeded, else 0.",
    "last_run_requests": "API requests made by the last sync.",
    "last_run_rate_limited": "429 answers received by the last sync.",
    "last_run_rows_written": "Rows inserted or updated by the last sync.",
    "last_run_duration_seconds": "Duration of the last sync.",
}


def render(
    statuses: Sequence[AccountStatus], summaries: Mapping[str, RunSummary], now: datetime
) -> str:
    samples: dict[str, list[str]] = {name: [] for name in HELP}
    for status in statuses:
        label = f'{{account="{_escape(status.account)}"}}'

        def add(name: str, value: float | None, label: str = label) -> None:
            if value is not None:
                samples[name].append(f"{PREFIX}_{name}{label} {value:g}")

        add("rows", status.rows)
        add("rejects", status.rejects)
        if status.watermark:
            add("lag_seconds", (now - status.watermark).total_seconds())
        if status.last_success_at:
            add("last_success_timestamp_seconds", status.last_success_at.timestamp())
        summary = summaries.get(status.account)
        if summary:
            add("last_run_success", 1 if summary.status == "success" else 0)
            add("last_run_requests", summary.requests)
            add("last_run_rate_limited", summary.rate_limited)
            add("last_run_rows_written", summary.inserted + summary.updated)
            add("last_run_duration_seconds", round(summary.duration, 3))
    lines: list[str] = []
    for name, help_text in HELP.items():
        if samples[name]:
            lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
            lines += samples[name]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so the collector never reads a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)  # metrics hold no secrets; the collector runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
