"""The ``export`` command: stored records to a SIEM feed, and the consumers' backlogs
(shown by ``status``, written beside the metrics file by ``sync`` and ``export``)."""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from etl.cli.arguments import utc_time
from etl.cli.gc_freeze import work_begins
from etl.cli.shared import load_settings, migrate_hint
from etl.cli.signals import signals_set
from etl.common.errors import ExitCode
from etl.common.settings import Settings

if TYPE_CHECKING:
    from datetime import datetime

    from etl.export.job import ExportSummary
    from etl.integrity.keys import SigningKey
    from etl.storage.store import Store

# The summary line logs as etl.cli.main, like the sync's: operators filter on that name.
log = logging.getLogger("etl.cli.main")


def cmd_export(args: argparse.Namespace) -> int:
    from etl.common.clock import utc_now
    from etl.export.job import ExportOptions, export_accounts
    from etl.export.streams import parse_streams
    from etl.storage.store import open_store
    from etl.sync.job import select_accounts

    settings = load_settings(args, require_credentials=False)
    names = [a.name for a in select_accounts(settings, args.account)]
    options = ExportOptions(
        consumer=args.consumer,
        output=Path(args.output) if args.output else None,
        fmt=args.format,
        since=args.since,
        reset_options=args.reset_options,
        streams=parse_streams(args.streams) if args.streams is not None else None,
    )
    stop = threading.Event()

    signing = _signing_key(settings) if options.output else None

    def report(summary: ExportSummary) -> None:
        log.info("%s", summary.line(), extra=summary.fields())
        if options.output is not None and summary.bytes:
            _append_manifest(options.output, summary, signing, utc_now())

    with (
        signals_set(stop, unit="chunk"),
        open_store(settings, migrate_hint=migrate_hint(args)) as store,
    ):
        work_begins()
        try:
            export_accounts(store.engine, names, options, stop=stop, report=report, now=utc_now)
        finally:
            if settings.metrics_file:
                write_export_metrics(store, settings)
    return int(ExitCode.OK)


def _signing_key(settings: Settings) -> SigningKey | None:
    import os

    from etl.common.errors import ConfigError
    from etl.integrity.keys import load_signing_key

    ledger = settings.ledger
    try:
        return load_signing_key(ledger.signing_key_file, ledger.signing_key_env, os.environ)
    except ConfigError as exc:  # an export user without the key: the manifest unsigned
        log.warning("export manifest unsigned: %s", exc)
        return None


def _append_manifest(
    output: Path, summary: ExportSummary, key: SigningKey | None, at: datetime
) -> None:
    """The run's signed manifest, appended beside the file (etl.integrity.manifest)."""
    from etl.export.streams import stream_key
    from etl.integrity import manifest

    seqs = (summary.position_before + 1, summary.position_after)
    # a stream other than the audit log: its key (NAME/STREAM), so its numbers are told apart
    consumer = stream_key(summary.consumer, summary.stream)
    text = manifest.manifest(consumer, summary.account, output, seqs, summary.bytes, at, key)
    manifest.append(output, text)


def write_export_metrics(store: Store, settings: Settings) -> None:
    """The consumers' backlogs, in a file beside ``metrics_file`` (``*_export.prom``):
    refreshed by ``sync`` (new rows) and ``export`` (rows written out)."""
    from etl.cli import metrics
    from etl.common.clock import utc_now
    from etl.export.backlogs import read_statuses

    assert settings.metrics_file
    names = [a.name for a in settings.accounts]
    path = metrics.export_metrics_path(Path(settings.metrics_file))
    try:
        statuses = read_statuses(store.engine, names)
        metrics.write_atomically(path, metrics.render_export(statuses, utc_now()))
    except OSError as exc:  # a side channel: warn, the export's result stands
        log.warning("could not write metrics file %s: %s", path, exc.strerror)


def export_arguments(parser: argparse.ArgumentParser) -> None:
    """``export``'s options (the account option is main's)."""
    parser.add_argument(
        "--consumer", required=True, metavar="NAME",
        help="whose position to read and advance (each consumer has its own)",
    )  # fmt: skip
    parser.add_argument(
        "--output", metavar="FILE",
        help="append to FILE, exactly once across crashes (default: standard output, "
        "at least once)",
    )  # fmt: skip
    parser.add_argument(
        "--format", choices=("raw", "ocsf"),
        help="raw: each record as Zendesk sent it, plus account; ocsf: OCSF 1.3.0 events "
        "(default: the consumer's saved format; raw for a new consumer)",
    )  # fmt: skip
    parser.add_argument(
        "--since", type=utc_time, metavar="TIME",
        help="a consumer's first export starts at records created at or after TIME "
        "(default: the consumer's saved --since; everything stored for a new consumer)",
    )  # fmt: skip
    parser.add_argument(
        "--streams", metavar="LIST",
        help="the streams to export, separated by commas: audit_logs, access_logs, each with "
        "its own position (default: the consumer's saved streams; audit_logs for a new "
        "consumer); adding one needs nothing, dropping one needs --reset-options",
    )  # fmt: skip
    parser.add_argument(
        "--reset-options", action="store_true",
        help="a consumer keeps the --format and --since it started with, and a run asking "
        "for others is refused (exit 2); with this, it exports with this run's from its "
        "position on (and forgets the positions of the streams --streams leaves out)",
    )  # fmt: skip
