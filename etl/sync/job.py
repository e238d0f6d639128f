"""Wire the parts together for a whole job: database, then each account in turn.

Accounts run one after another, each under its own lock and with its own client
and rate budget; one account's failure is recorded and the next still runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from etl.common.errors import ConfigError, EtlError, ExitCode, InterruptedRun
from etl.common.settings import AUDIT_LOGS, AccountSettings, Settings
from etl.storage.store import Store
from etl.storage.streams import StreamStore
from etl.sync.account import sync_account
from etl.sync.logs import STREAMS
from etl.sync.run import RunHooks, RunSummary
from etl.sync.streams import sync_stream
from etl.zendesk.client import ZendeskClient

log = logging.getLogger(__name__)

# When several accounts fail differently, the exit code is the most severe one.
SEVERITY = (
    ExitCode.OK,
    ExitCode.LOCKED,
    ExitCode.UPSTREAM,
    ExitCode.AUTH,
    ExitCode.CONFIG,
    ExitCode.DATABASE,
    ExitCode.INTERNAL,
    ExitCode.INTERRUPTED,
)


@dataclass
class Outcome:
    """How one account's run ended: its summary, or the error that stopped it."""

    account: str
    summary: RunSummary | None = None
    error: EtlError | None = None

    @property
    def exit_code(self) -> ExitCode:
        return self.error.exit_code if self.error else ExitCode.OK


@dataclass
class JobResult:
    """Every account's outcome, and the job's exit code from them."""

    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return max((o.exit_code for o in self.outcomes), key=SEVERITY.index, default=ExitCode.OK)

    @property
    def failed(self) -> list[str]:
        return [o.account for o in self.outcomes if o.error]


def select_accounts(settings: Settings, names: Sequence[str]) -> list[AccountSettings]:
    if not names:
        return list(settings.accounts)
    known = {a.name: a for a in settings.accounts}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"unknown account {', '.join(unknown)}; configured: {', '.join(known)}")
    return [known[n] for n in names]


# One account's work under its lock: sync_account, or a resync of a fixed window.
AccountRun = Callable[[AccountSettings, ZendeskClient, Store, RunHooks], RunSummary]


def sync_each(
    account: AccountSettings, client: ZendeskClient, store: Store, hooks: RunHooks
) -> RunSummary:
    """The account's streams in turn, with one client: one rate budget for all of them.
    The summary is the audit log's (each stream's is reported through ``hooks``)."""
    summary: RunSummary | None = None
    if AUDIT_LOGS in account.sync.streams:
        summary = sync_account(account, client, store, hooks=hooks)
    for name in account.sync.streams:
        if name == AUDIT_LOGS:
            continue
        if hooks.stopping():  # a signal during the audit log: the job stops after it
            break
        stream = STREAMS[name]
        state = StreamStore(store, stream.name, stream.table)
        # The progress bar follows the audit log's created_at: not another stream's pages.
        quiet = replace(hooks, on_page=None)
        other = sync_stream(stream, account, client, state, hooks=quiet)
        summary = summary or other
    if summary is None:  # the config refuses an empty list: only a signal leaves it None
        raise InterruptedRun("stopped by a signal before the run began")
    return summary


def run_accounts(
    store: Store,
    accounts: Sequence[AccountSettings],
    run: AccountRun = sync_each,
    *,
    wait: float = 0.0,
    hooks: RunHooks = RunHooks(),
    sleep: Callable[[float], None] | None = None,
) -> JobResult:
    """Each account in turn, under its lock; a failure is recorded and the next one runs."""
    result = JobResult()
    for account in accounts:
        outcome = Outcome(account.name)
        result.outcomes.append(outcome)
        started, entered = hooks.clock(), False
        try:
            lock = store.lock(account.name, wait=wait, sleep=sleep or time.sleep)
            with lock, _client(account, sleep, hooks) as client:
                entered = True
                outcome.summary = run(account, client, store, hooks)
        except InterruptedRun as exc:
            outcome.error = exc
            break
        except EtlError as exc:  # recorded; the CLI reports it
            outcome.error = exc
            if not entered and exc.exit_code != ExitCode.LOCKED:
                _report_unstarted(account, exc, hooks.clock() - started, hooks)
        if hooks.stop is not None and hooks.stop.is_set():
            break
    return result


def _report_unstarted(
    account: AccountSettings, exc: EtlError, duration: float, hooks: RunHooks
) -> None:
    """A run that failed before it began (its write epoch could not be taken: the database
    locked or gone) still ends with its summary line, as every run does. Another run
    holding the lock is not a failure (runs overlap): no summary, as before."""
    summary = RunSummary(account=account.name, status="failed", error=str(exc))
    summary.duration = duration
    hooks.report(summary)


def _client(
    account: AccountSettings, sleep: Callable[[float], None] | None, hooks: RunHooks
) -> ZendeskClient:
    return ZendeskClient(account.zendesk, sleep=sleep or time.sleep, stop=hooks.stop)
