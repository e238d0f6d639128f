"""``sync`` and ``resync``: each selected account under its lock, with signals, progress
and metrics; every failure one line, the exit code the worst of the accounts'."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from contextlib import suppress
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from etl.cli.commands.export import write_export_metrics
from etl.cli.commands.verify import checkpointer
from etl.cli.gc_freeze import work_begins
from etl.cli.output import fail
from etl.cli.shared import load_settings, migrate_hint
from etl.cli.signals import signals_set
from etl.common.errors import EtlError, InterruptedRun
from etl.common.settings import AUDIT_LOGS, Settings

if TYPE_CHECKING:
    from etl.cli.progress import ProgressBar
    from etl.common.settings import AccountSettings
    from etl.integrity.checkpoint import Checkpointer
    from etl.storage.store import Store
    from etl.sync.job import AccountRun
    from etl.sync.run import PageHook, RunHooks, RunSummary
    from etl.zendesk.client import ZendeskClient

# The summary line keeps the logger name it always had: operators filter on it.
log = logging.getLogger("etl.cli.main")

NOTICE_EVERY = timedelta(days=1)  # how often an auth notice is said per account


def cmd_sync(args: argparse.Namespace) -> int:
    from etl.sync.job import sync_each

    code, _ = _run_job(args, sync_each, counts_stored=True)
    return code


def cmd_resync(args: argparse.Namespace) -> int:
    from etl.cli import report
    from etl.sync.account import resync_account

    def resync_each(
        account: AccountSettings, client: ZendeskClient, store: Store, hooks: RunHooks
    ) -> RunSummary:
        if args.stream == AUDIT_LOGS:
            return resync_account(account, client, store, args.since, args.until, hooks=hooks)
        from etl.storage.streams import StreamStore
        from etl.sync.streams import STREAMS, resync_stream

        stream = STREAMS[args.stream]
        state = StreamStore(store, stream.name, stream.table)
        quiet = replace(hooks, on_page=None)  # the progress bar follows the audit log's pages
        return resync_stream(stream, account, client, state, args.since, args.until, hooks=quiet)

    code, summaries = _run_job(args, resync_each, counts_stored=False)
    for summary in summaries.values():
        if summary.status == "success":
            print(report.resync_verdict(summary))
    return code


def _run_job(
    args: argparse.Namespace, run: AccountRun, *, counts_stored: bool
) -> tuple[int, dict[str, RunSummary]]:
    """Run each selected account under its lock, with signals, progress and metrics;
    ``counts_stored``: the records already stored are part of the work (a sync's, not a
    resync's, which reads them again)."""
    from etl.storage.store import open_store
    from etl.sync.job import run_accounts, select_accounts
    from etl.sync.run import RunHooks

    # With --account, only those accounts' secrets need to be readable.
    settings = load_settings(args, require_credentials=args.account or True)
    accounts = select_accounts(settings, args.account)
    run = run if args.quiet else _with_notices(run)
    stop = threading.Event()
    summaries: dict[str, RunSummary] = {}
    bar = _progress_bar(args)

    def stoppable_sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise InterruptedRun("stopped by a signal while waiting for the rate limit or a retry")

    def log_summary(summary: RunSummary) -> None:
        if bar:
            bar.finish(complete=summary.status == "success")
        # The account's summary (its metrics' last run, a resync's verdict) is the audit
        # log's, or the only stream's: not the access log's that ran after it.
        if summary.stream == AUDIT_LOGS or summary.account not in summaries:
            summaries[summary.account] = summary
        # A failure's message follows once, on the error line; the JSON fields keep it.
        log.info("%s", replace(summary, error=None).line(), extra=summary.fields())

    opened: list[Store] = []
    progress = _progress_hook(bar, opened, counts_stored=counts_stored) if bar else None

    with signals_set(stop), open_store(settings, migrate_hint=migrate_hint(args)) as store:
        opened.append(store)
        # The ledger's checkpoints: one after each account's run, one every few minutes
        # of a long one (etl.integrity.checkpoint); a bad key stops the job before it reads.
        checkpoints = checkpointer(store, settings)
        hooks = RunHooks(
            stop=stop, report=log_summary, on_page=_checkpointing(progress, checkpoints)
        )
        run = _with_checkpoint(run, checkpoints)
        work_begins()  # everything a run needs is imported by now
        if stop.is_set():  # a signal while connecting or migrating: the run never began
            raise InterruptedRun("stopped by a signal before the run began")
        result = run_accounts(
            store, accounts, run, wait=args.wait, hooks=hooks, sleep=stoppable_sleep
        )
        if settings.metrics_file:
            _write_metrics(store, settings, summaries)
            write_export_metrics(store, settings)
    for outcome in result.outcomes:
        if outcome.error:
            fail(f"account {outcome.account}: {outcome.error}", outcome.exit_code)
    if len(result.outcomes) > 1 and result.failed:
        fail(f"{len(result.failed)} of {len(result.outcomes)} accounts failed: "
             f"{', '.join(result.failed)}", result.exit_code)  # fmt: skip
    return int(result.exit_code), summaries


def _with_checkpoint(run: AccountRun, checkpoints: Checkpointer) -> AccountRun:
    """``run``, then a checkpoint of what it committed, also when it failed after
    committing some (not when a signal stops it: the next run makes it)."""

    def checkpointed(
        account: AccountSettings, client: ZendeskClient, store: Store, hooks: RunHooks
    ) -> RunSummary:
        try:
            summary = run(account, client, store, hooks)
        except InterruptedRun:
            raise
        except EtlError:
            with suppress(EtlError):  # the run's own error is the one to report
                checkpoints.make(account.name)
            raise
        checkpoints.make(account.name)
        return summary

    return checkpointed


def _checkpointing(progress: PageHook | None, checkpoints: Checkpointer) -> PageHook:
    """The page hook, and a checkpoint when one is due (a long backfill's commits)."""

    def on_page(summary: RunSummary, position: datetime | None) -> None:
        if progress is not None:
            progress(summary, position)
        checkpoints.due(summary.account)

    return on_page


def _with_notices(run: AccountRun) -> AccountRun:
    """``run``, first saying the account's auth notice (API token or password deprecation)
    if it was not said in the last ``NOTICE_EVERY``: a run every 5 minutes says it once
    a day. Not used under ``--quiet``, which says nothing and records nothing."""

    def noticed(
        account: AccountSettings, client: ZendeskClient, store: Store, hooks: RunHooks
    ) -> RunSummary:
        notice = client.auth.notice
        if notice is not None and store.claim_notice(account.name, notice.key, NOTICE_EVERY):
            log.warning("account %s: %s", account.name, notice.text)
        return run(account, client, store, hooks)

    return noticed


def _progress_hook(bar: ProgressBar, opened: list[Store], *, counts_stored: bool) -> PageHook:
    """What feeds the bar after each page: the ``created_at`` span read and left, from
    where this run's first page ended (the data's start, not the window's), or a
    parallel backfill's own estimate of the pages left; and the records stored before
    the run, asked once."""
    from etl.cli.progress import Reading, seconds

    data_starts: dict[str, datetime | None] = {}
    stored: dict[str, int] = {}

    def progress(summary: RunSummary, position: datetime | None) -> None:
        if not (summary.window and opened):
            return
        store, account, end = opened[0], summary.account, summary.window.end
        start = data_starts.setdefault(account, position)

        def reading() -> Reading:
            if account not in stored:
                rows = store.account_status(account)[0].rows if counts_stored else 0
                stored[account] = max(rows - summary.inserted, 0)
            if not summary.parallel:
                read, unread = seconds(start, position), seconds(position, end)
                return Reading(summary.records, read, unread, stored[account])
            # A parallel backfill: pages left at each slice's density (etl.sync.plan);
            # "?" until each slice left to read has one.
            per_page = summary.records / summary.pages if summary.pages else 0.0
            left = None if summary.pages_left is None else summary.pages_left * per_page
            return Reading(summary.records, 0.0, 0.0, stored[account], left, by_density=False)

        bar.update(account, reading, position, summary.pages)

    return progress


def _progress_bar(args: argparse.Namespace) -> ProgressBar | None:
    if args.quiet or not sys.stderr.isatty():  # cheap: the bar's module only when drawn
        return None
    from etl.cli.progress import ProgressBar

    return ProgressBar(sys.stderr)


def _write_metrics(store: Store, settings: Settings, summaries: dict[str, RunSummary]) -> None:
    from etl.cli import metrics, streams_info
    from etl.common.clock import utc_now
    from etl.integrity.status import ledger_statuses
    from etl.sync.window import HISTORY_START

    assert settings.metrics_file
    statuses = [s for a in settings.accounts for s in store.account_status(a.name)]
    starts = {a.name: a.sync.start_time or HISTORY_START for a in settings.accounts}
    try:
        text = metrics.render(statuses, summaries, utc_now(), starts)
        with_streams = [a for a in settings.accounts if a.sync.streams != (AUDIT_LOGS,)]
        if with_streams:
            others = streams_info.stream_statuses(store, with_streams)
            text += metrics.render_streams(others, utc_now())
        text += metrics.render_ledger(ledger_statuses(store.engine, list(starts)))
        metrics.write_atomically(Path(settings.metrics_file), text)
    except OSError as exc:  # metrics are a side channel: warn, but the sync result stands
        log.warning("could not write metrics file %s: %s", settings.metrics_file, exc.strerror)
