"""Prometheus text-file metrics, for node_exporter's textfile collector.

Written after every ``sync`` (atomically: a reader never sees half a file), one
series per configured account, every series from the first run on, so an alert
such as ``time() - zendesk_audit_etl_last_success_timestamp_seconds > 3600`` also
fires for a job that never succeeded (its timestamp is 0).

Values are exact: counts as integers, times to the millisecond. (The Prometheus
client library writes ``1.79641e+09``-style floats and costs ~60-130 ms to import,
a third of a quiet run, so the format, which is small, is written here; the tests
check it with that library's parser.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from etl.cli.report import lag
from etl.common.settings import AUDIT_LOGS
from etl.export.backlogs import ConsumerStatus
from etl.integrity.status import LedgerStatus
from etl.storage.store import AccountStatus
from etl.storage.streams import StreamStatus
from etl.sync.run import RunSummary

PREFIX = "zendesk_audit_etl"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # an account without data or start time

# name -> help text; all gauges
HELP = {
    "last_success_timestamp_seconds": "Last successful sync's end (Unix time; 0: never).",
    "lag_seconds": "How far the stored data is behind now (no data yet: since the start time).",
    "rows": "Audit records stored.",
    "rejects": "Records that could not be stored (see zendesk_audit_rejects).",
    "last_run_success": "1 if the last sync succeeded, else 0.",
    "last_run_requests": "API requests made by the last sync.",
    "last_run_rate_limited": "429 answers received by the last sync.",
    "last_run_rows_written": "Rows inserted or updated by the last sync.",
    "last_run_duration_seconds": "Duration of the last sync.",
}


@dataclass(frozen=True)
class LastRun:
    """What the metrics file says of the last sync."""

    success: bool
    requests: int
    rate_limited: int
    rows_written: int
    duration: float


def render(
    statuses: Sequence[AccountStatus],
    summaries: Mapping[str, RunSummary],
    now: datetime,
    starts: Mapping[str, datetime | None] | None = None,
) -> str:
    """Every series for every account in ``statuses``.

    The last run is this invocation's summary, else the last recorded run, else a
    failed run of nothing; ``starts`` gives each account's configured start time,
    which an account without data is behind by.
    """
    samples: dict[str, list[str]] = {name: [] for name in HELP}
    for status in statuses:
        label = f'{{account="{_escape(status.account)}"}}'
        since = status.watermark or (starts or {}).get(status.account) or EPOCH
        run = _last_run(status, summaries.get(status.account))
        success_at = status.last_success_at.timestamp() if status.last_success_at else 0
        values: dict[str, int | float] = {
            "last_success_timestamp_seconds": success_at,
            "lag_seconds": max((now - since).total_seconds(), 0.0),
            "rows": status.rows,
            "rejects": status.rejects,
            "last_run_success": int(run.success),
            "last_run_requests": run.requests,
            "last_run_rate_limited": run.rate_limited,
            "last_run_rows_written": run.rows_written,
            "last_run_duration_seconds": run.duration,
        }
        for name, value in values.items():
            samples[name].append(f"{PREFIX}_{name}{label} {_number(value)}")
    lines: list[str] = []
    for name, help_text in HELP.items():
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        lines += samples[name]
    return "\n".join(lines) + "\n"


def _last_run(status: AccountStatus, summary: RunSummary | None) -> LastRun:
    if summary is not None:
        return LastRun(
            summary.status == "success", summary.requests, summary.rate_limited,
            summary.inserted + summary.updated, summary.duration,
        )  # fmt: skip
    run = status.last_run
    if run is None:  # failed before anything was recorded
        return LastRun(False, 0, 0, 0, 0.0)
    duration = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
    return LastRun(
        run.status == "success", run.requests, run.rate_limited,
        run.rows_inserted + run.rows_updated, duration,
    )  # fmt: skip


def _number(value: int | float) -> str:
    """Integers as integers; other values fixed-point to the millisecond (never ``1e+09``)."""
    if isinstance(value, int) or value.is_integer():
        return str(int(value))
    return f"{value:.3f}".rstrip("0").rstrip(".")


LEDGER_HELP = {
    "ledger_entries": "Entries in the account's ledger (etl.storage.ledger).",
    "last_verify_findings": "Findings of the last verify (-1: never verified).",
    "last_clean_verify_timestamp_seconds": "End of the last verify without findings "
    "(Unix time; 0: never).",
}


def render_ledger(statuses: Sequence[LedgerStatus]) -> str:
    """The ledger's series, one per account: entries and the last verify's outcome."""
    values: dict[str, dict[str, int | float]] = {
        "ledger_entries": {s.account: s.entries for s in statuses},
        "last_verify_findings": {
            s.account: -1 if s.findings is None else s.findings for s in statuses
        },
        "last_clean_verify_timestamp_seconds": {
            s.account: round(((s.clean_at or EPOCH) - EPOCH).total_seconds(), 3) for s in statuses
        },
    }
    lines = []
    for name, help_text in LEDGER_HELP.items():
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        for account, value in values[name].items():
            lines.append(f'{PREFIX}_{name}{{account="{_escape(account)}"}} {_number(value)}')
    return "\n".join(lines) + "\n"


# name -> help text; gauges labelled by account and stream, beside the audit log's series
STREAM_HELP = {
    "stream_last_success_timestamp_seconds": "A stream's last success (Unix time; 0: never).",
    "stream_lag_seconds": "How far a stream's stored data is behind now (-1: never synced).",
    "stream_rows": "A stream's records stored.",
    "stream_rejects": "A stream's records that could not be stored.",
}


def render_streams(statuses: Sequence[StreamStatus], now: datetime) -> str:
    """The series of the streams besides the audit log, labelled by account and stream."""
    lines: list[str] = []
    for name, help_text in STREAM_HELP.items():
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        for status in statuses:
            behind = lag(status, now)
            success = status.last_success_at
            value = {
                "stream_last_success_timestamp_seconds": success.timestamp() if success else 0,
                "stream_lag_seconds": behind.total_seconds() if behind is not None else -1,
                "stream_rows": status.rows,
                "stream_rejects": status.rejects,
            }[name]
            label = f'{{account="{_escape(status.account)}",stream="{status.stream}"}}'
            lines.append(f"{PREFIX}_{name}{label} {_number(value)}")
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


# ``export``'s consumers, in their own file (``export_metrics_path``): name -> help text.
EXPORT_HELP = {
    "export_backlog_rows": "Rows stored but not yet exported, per consumer, account (stream).",
    "export_position": "The consumer's position in the account's store sequence (per stream).",
    "export_last_timestamp_seconds": "When the consumer's position last moved (Unix time).",
}


def export_metrics_path(metrics_file: Path) -> Path:
    """``x.prom`` -> ``x_export.prom``: beside the sync's file, for the same collector."""
    return metrics_file.with_name(f"{metrics_file.stem}_export{metrics_file.suffix or '.prom'}")


def render_export(statuses: Sequence[ConsumerStatus], now: datetime) -> str:
    lines: list[str] = []
    for name, help_text in EXPORT_HELP.items():
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        for status in statuses:
            # the audit log's series as before streams; another stream's with its name
            stream = "" if status.stream == AUDIT_LOGS else f',stream="{status.stream}"'
            label = (
                f'{{consumer="{_escape(status.consumer)}",account="{_escape(status.account)}"'
                f"{stream}}}"
            )
            value: int | float = {
                "export_backlog_rows": status.backlog,
                "export_position": status.position,
                "export_last_timestamp_seconds": status.updated_at.timestamp(),
            }[name]
            lines.append(f"{PREFIX}_{name}{label} {_number(value)}")
    return "\n".join(lines) + "\n"
