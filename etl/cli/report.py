"""Text and JSON renderings for `status` and `resync`: pure functions, no I/O. A status's
freshness and holdings are rendered here for every log (``Freshness``), the audit log's
and the other streams' (``etl.cli.streams_info``).

Text that holds what others wrote (errors quoting a server, scopes) passes
``etl.cli.terminal.printable``; JSON needs nothing: ``json.dumps`` escapes every non-ASCII
and control character.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from etl.cli.terminal import printable
from etl.common.clock import iso
from etl.storage.store import AccountStatus, RunInfo, SliceRow
from etl.storage.streams import StreamStatus
from etl.sync.run import RunSummary


def human_duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    if not days:
        parts.append(f"{minutes}m")
    if not (days or hours):
        parts.append(f"{secs}s")
    return sign + " ".join(parts)


# What ``status`` says of every log it shows, the audit log's and another stream's alike.
Freshness = AccountStatus | StreamStatus


def lag(status: Freshness, now: datetime) -> timedelta | None:
    return now - status.watermark if status.watermark else None


def is_stale(status: Freshness, now: datetime, max_lag: timedelta) -> bool:
    """Never synced, or its watermark older than ``max_lag`` (``status --max-lag``)."""
    behind = lag(status, now)
    return behind is None or behind > max_lag


def stale_accounts(
    statuses: Sequence[AccountStatus], now: datetime, max_lag: timedelta
) -> list[str]:
    """Accounts never synced, or whose watermark is older than ``max_lag``."""
    return [status.account for status in statuses if is_stale(status, now, max_lag)]


def freshness_json(status: Freshness, now: datetime) -> dict[str, Any]:
    """The fields of ``status --json`` that every log has, in their order."""
    behind = lag(status, now)
    return {
        "watermark": iso(status.watermark),
        "lag_seconds": int(behind.total_seconds()) if behind is not None else None,
        "rows": status.rows,
        "rejects": status.rejects,
        "last_success_at": iso(status.last_success_at),
        "last_failure_at": iso(status.last_failure_at),
        "last_failure_error": status.last_failure_error,
    }


def watermark_line(status: Freshness, now: datetime) -> str:
    behind = lag(status, now)
    freshness = (
        f"{iso(status.watermark)} ({human_duration(behind)} behind now)"
        if behind is not None
        else "never synced"
    )
    return f"  watermark     {freshness}"


def holdings_lines(status: Freshness) -> list[str]:
    """A status block's rows, rejects and last runs' lines, the same for every log."""
    failure = (
        f"{iso(status.last_failure_at)}: {printable(status.last_failure_error or '')}"
        if status.last_failure_at
        else "none"
    )
    return [
        f"  rows          {status.rows:,}",
        f"  rejects       {status.rejects:,}",
        f"  last success  {iso(status.last_success_at) or 'never'}",
        f"  last failure  {failure}",
    ]


def _run_json(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "window_start": iso(run.window_start),
        "window_end": iso(run.window_end),
        "pages": run.pages,
        "requests": run.requests,
        "rate_limited": run.rate_limited,
        "rows_inserted": run.rows_inserted,
        "rows_updated": run.rows_updated,
        "rows_rejected": run.rows_rejected,
        "error": run.error,
    }


def backfill_progress(slices: Sequence[SliceRow]) -> dict[str, Any] | None:
    """An unfinished parallel backfill: its slices and how much of its span is read."""
    if not slices:
        return None
    span = sum((s.end - s.start).total_seconds() for s in slices)
    read = sum(
        (s.end - s.start).total_seconds()
        if s.done
        else ((s.position - s.start).total_seconds() if s.position else 0.0)
        for s in slices
    )
    return {
        "slices": len(slices),
        "slices_done": sum(1 for s in slices if s.done),
        "start": iso(min(s.start for s in slices)),
        "end": iso(max(s.end for s in slices)),
        "share_read": round(read / span, 4) if span > 0 else 1.0,
    }


def backfill_line(slices: Sequence[SliceRow]) -> str:
    """An unfinished backfill for ``status``: its share is of time, which is all the plan
    knows (Zendesk gives no count), and records are seldom spread evenly over years."""
    backfill = backfill_progress(slices)
    if backfill is None:
        return ""
    return (
        f"unfinished: {backfill['share_read']:.1%} of its time span "
        f"{backfill['start']} .. {backfill['end']} read (a share of time, not of its records), "
        f"{backfill['slices_done']} of {backfill['slices']} slices done "
        "(the next sync resumes it)"
    )


def status_json(
    statuses: Sequence[AccountStatus],
    runs: Mapping[str, Sequence[RunInfo]],
    now: datetime,
    backfills: Mapping[str, Sequence[SliceRow]] | None = None,
) -> list[dict[str, Any]]:
    result = []
    for status in statuses:
        result.append(
            {
                "account": status.account,
                **freshness_json(status, now),
                "scope": json.loads(status.scope) if status.scope else None,
                "backfill": backfill_progress((backfills or {}).get(status.account, ())),
                "recent_runs": [_run_json(r) for r in runs.get(status.account, ())],
            }
        )
    return result


def scope_text(scope: str | None) -> str:
    """The host, filters and start_time the watermark belongs to (``etl.sync.scope``), for
    people."""
    if scope is None:
        return "not recorded (the next sync adopts the configuration's)"
    try:
        described = json.loads(scope)
        filters = described["filters"]
        parts = [f"{key}={','.join(values)}" for key, values in filters.items()]
        start = described["start_time"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return scope
    text = " ".join(parts) if parts else "every record (no filters)"
    text = f"{text}, from {start}" if start else text
    host = described.get("host")
    return f"{text}, read from {host}" if isinstance(host, str) else text


def status_text(
    statuses: Sequence[AccountStatus],
    runs: Mapping[str, Sequence[RunInfo]],
    now: datetime,
    backfills: Mapping[str, Sequence[SliceRow]] | None = None,
) -> str:
    if not statuses:
        return "no accounts configured"
    blocks = []
    for status in statuses:
        lines = [
            f"account {printable(status.account)}",
            watermark_line(status, now),
            f"  scope         {printable(scope_text(status.scope))}",
            *holdings_lines(status),
        ]
        backfill = backfill_line((backfills or {}).get(status.account, ()))
        if backfill:
            lines.append(f"  backfill      {backfill}")
        recent = runs.get(status.account, ())
        if recent:
            lines.append("  recent runs")
            lines.extend(f"    {_run_line(run)}" for run in recent)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _run_line(run: RunInfo) -> str:
    took = (
        f"{(run.finished_at - run.started_at).total_seconds():.1f}s"
        if run.finished_at
        else "unfinished"
    )
    text = (
        f"{iso(run.started_at)} {run.kind:<6} {run.status:<11} pages={run.pages} "
        f"inserted={run.rows_inserted} "
        f"updated={run.rows_updated} rejected={run.rows_rejected} {took}"
    )
    return f"{text}  {printable(run.error)}" if run.error else text


def resync_verdict(summary: RunSummary) -> str:
    """What a resync found: zero new or changed records means the history matched."""
    window = summary.window
    span = f"{iso(window.start)} .. {iso(window.end)}" if window else "the window"
    changed = summary.inserted + summary.updated
    if changed == 0:
        return (
            f"account {summary.account}: {summary.records:,} records in {span} re-read; "
            "stored history matched Zendesk"
        )
    return (
        f"account {summary.account}: {summary.records:,} records in {span} re-read; "
        f"{summary.inserted:,} were missing and {summary.updated:,} differed, now stored"
    )
