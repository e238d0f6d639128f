"""The command line: the only place that prints, and that turns errors into exit codes.

Every expected failure is an ``EtlError`` and becomes one line on stderr plus its
documented exit code (``etl.errors.ExitCode``); tracebacks appear only with
``--verbose`` and only for unexpected errors.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from etl import __version__, config, logsetup
from etl.errors import ConfigError, EtlError, ExitCode, InterruptedRun, StaleDataError
from etl.settings import FILTER_KEYS, Settings

if TYPE_CHECKING:
    from etl.client import ZendeskClient
    from etl.job import AccountRun
    from etl.progress import ProgressBar
    from etl.settings import AccountSettings
    from etl.store import Store
    from etl.sync import RunHooks, RunSummary

PROG = "zendesk-audit-etl"
log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: cron mails and journald stay readable.
        self.exit(ExitCode.CONFIG, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Copy a Zendesk account's audit log into your SQL database.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"config file (default: ${config.CONFIG_ENV_VAR} or ./{config.DEFAULT_CONFIG_PATH})",
    )
    volume = parser.add_mutually_exclusive_group()
    volume.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    volume.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log line format"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    sync = commands.add_parser("sync", help="read what is new and store it (run from cron)")
    _account_option(sync)
    _wait_option(sync)
    sync.set_defaults(handler=cmd_sync)

    resync = commands.add_parser(
        "resync", help="re-read a past window to repair or verify it (watermark unchanged)"
    )
    _account_option(resync)
    resync.add_argument(
        "--since", type=_time, required=True, metavar="TIME", help="start of the window (UTC)"
    )
    resync.add_argument(
        "--until", type=_time, metavar="TIME", help="end of the window (default: now minus lag)"
    )
    _wait_option(resync)
    resync.set_defaults(handler=cmd_resync)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.set_defaults(handler=cmd_migrate)

    status = commands.add_parser("status", help="how fresh the stored data is, per account")
    _account_option(status)
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument(
        "--max-lag",
        type=_duration,
        metavar="DURATION",
        help="exit 7 if any account's data is older than this (e.g. 30m, 1h)",
    )
    status.set_defaults(handler=cmd_status)

    check = commands.add_parser(
        "check", help="validate the config, reach the database and make one API request"
    )
    _account_option(check)
    check.set_defaults(handler=cmd_check)

    lister = commands.add_parser(
        "list", help="read audit records straight from the API (no database)"
    )
    _account_option(lister)
    lister.add_argument("--since", type=_time, metavar="TIME", help="created at or after TIME")
    lister.add_argument("--until", type=_time, metavar="TIME", help="created at or before TIME")
    lister.add_argument(
        "--filter",
        action="append",
        default=[],
        type=_filter,
        metavar="KEY=VALUE",
        help=f"repeatable; KEY is one of {', '.join(FILTER_KEYS)}",
    )
    lister.add_argument(
        "--sort", choices=("asc", "desc"), default="desc", help="by created_at (default: desc)"
    )
    lister.add_argument(
        "--limit", type=_positive_int, default=100, metavar="N", help="at most N (default 100)"
    )
    lister.add_argument(
        "--format",
        choices=("json", "table"),
        help="JSON lines, or a table (default: table on a terminal, else JSON lines)",
    )
    lister.set_defaults(handler=cmd_list)
    return parser


def _wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="if another run holds the lock, wait up to this long (default: exit at once)",
    )


def _account_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="NAME",
        help="only this account (repeatable; default: all configured)",
    )


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_time = _argument_type(config.parse_time)
_duration = _argument_type(config.parse_duration)


@_argument_type
def _seconds(text: str) -> float:
    return config.parse_duration(text).total_seconds()


@_argument_type
def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a positive whole number")
    return int(text)


@_argument_type
def _filter(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in FILTER_KEYS or not value:
        raise ValueError(f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)}")
    return key, value


def run() -> NoReturn:
    """The ``zendesk-audit-etl`` command (and ``python -m etl``): ``main()``, then exit."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """Flush what is buffered and leave without Python's shutdown, which tears down every
    imported module (SQLAlchemy, requests, a driver): about 0.1 s, a fifth of a run with
    nothing new. What needs closing (connections, locks, files) is closed by then."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a pipe closed early (| head): nothing to add
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    with _collector_off_while_starting():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logsetup.configure(verbose=args.verbose, quiet=args.quiet, fmt=args.log_format)
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        with _signals_set(None):  # sync and resync stop more gently: see _run_job
            return handler(args)
    except EtlError as exc:
        _fail(str(exc))
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # whoever read the output stopped (| head): not a failure here
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: say so in one line; the traceback is for --verbose
        log.debug("unexpected error", exc_info=True)
        _fail(f"internal error ({type(exc).__name__}): {exc}; rerun with --verbose for details")
        return int(ExitCode.INTERNAL)


class _Collector:
    resume_at_work = False  # the cyclic garbage collector was on when main() began
    froze = False  # _work_begins froze what the start-up made


@contextmanager
def _collector_off_while_starting() -> Iterator[None]:
    """A command starts by importing SQLAlchemy, requests and a driver: many objects made,
    next to none thrown away, and the garbage collector's passes over them cost about a
    tenth of a run with nothing new. It stays off until ``_work_begins`` (or the end)."""
    _Collector.resume_at_work = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _Collector.froze:  # for a caller in the same process (the tests)
            gc.unfreeze()
            _Collector.froze = False
        if _Collector.resume_at_work:
            gc.enable()


def _work_begins() -> None:
    """Collect garbage again, but never walk what the start-up made: it lives as long as
    the process (modules, classes), and the first pass over it cost 25 ms of a run."""
    if _Collector.resume_at_work:
        gc.freeze()
        _Collector.froze = True
        gc.enable()


def _fail(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _settings(
    args: argparse.Namespace, *, require_credentials: bool | Collection[str] = True
) -> Settings:
    path = config.resolve_path(args.config)
    return config.load(path, require_credentials=require_credentials)


def _migrate_hint(args: argparse.Namespace) -> str:
    path = config.resolve_path(args.config)
    return f"run: {PROG} --config {path} migrate"


def cmd_sync(args: argparse.Namespace) -> int:
    from etl.job import sync_each

    code, _ = _run_job(args, sync_each)
    return code


def cmd_resync(args: argparse.Namespace) -> int:
    from etl import report
    from etl.sync import resync_account

    def resync_each(
        account: AccountSettings, client: ZendeskClient, store: Store, hooks: RunHooks
    ) -> RunSummary:
        return resync_account(account, client, store, args.since, args.until, hooks=hooks)

    code, summaries = _run_job(args, resync_each)
    for summary in summaries.values():
        if summary.status == "success":
            print(report.resync_verdict(summary))
    return code


def _run_job(args: argparse.Namespace, run: AccountRun) -> tuple[int, dict[str, RunSummary]]:
    """Run each selected account under its lock, with signals, progress and metrics."""
    from etl.job import open_store, run_accounts, select_accounts
    from etl.sync import RunHooks

    # With --account, only those accounts' secrets need to be readable.
    settings = _settings(args, require_credentials=args.account or True)
    accounts = select_accounts(settings, args.account)
    stop = threading.Event()
    summaries: dict[str, RunSummary] = {}
    bar = _progress_bar(args)

    def stoppable_sleep(seconds: float) -> None:
        if stop.wait(seconds):
            raise InterruptedRun("stopped by a signal while waiting to retry")

    def log_summary(summary: RunSummary) -> None:
        if bar:
            bar.finish()
        summaries[summary.account] = summary
        log.info("%s", summary.line(), extra=summary.fields())

    def progress(summary: RunSummary, position: datetime | None) -> None:
        if bar and summary.window:
            window = summary.window
            bar.update(summary.account, window.start, window.end, position, summary.records,
                       summary.pages)  # fmt: skip

    hooks = RunHooks(stop=stop, report=log_summary, on_page=progress if bar else None)
    with _signals_set(stop), open_store(settings, migrate_hint=_migrate_hint(args)) as store:
        _work_begins()  # everything a run needs is imported by now
        if stop.is_set():  # a signal while connecting or migrating: the run never began
            raise InterruptedRun("stopped by a signal before the run began")
        result = run_accounts(
            store, accounts, run, wait=args.wait, hooks=hooks, sleep=stoppable_sleep
        )
        if settings.metrics_file:
            _write_metrics(store, settings, summaries)
    for outcome in result.outcomes:
        if outcome.error:
            _fail(f"account {outcome.account}: {outcome.error}")
    if len(result.outcomes) > 1 and result.failed:
        _fail(f"{len(result.failed)} of {len(result.outcomes)} accounts failed: "
              f"{', '.join(result.failed)}")  # fmt: skip
    return int(result.exit_code), summaries


def _progress_bar(args: argparse.Namespace) -> ProgressBar | None:
    if args.quiet or not sys.stderr.isatty():
        return None
    from etl.progress import ProgressBar

    return ProgressBar(sys.stderr)


def _write_metrics(store: Store, settings: Settings, summaries: dict[str, RunSummary]) -> None:
    from etl import metrics
    from etl.store import utc_now

    assert settings.metrics_file
    statuses = [s for a in settings.accounts for s in store.account_status(a.name)]
    try:
        metrics.write_atomically(
            Path(settings.metrics_file), metrics.render(statuses, summaries, utc_now())
        )
    except OSError as exc:  # metrics are a side channel: warn, but the sync result stands
        log.warning("could not write metrics file %s: %s", settings.metrics_file, exc.strerror)


class _signals_set:
    """SIGTERM/SIGINT: the first one stops the run at the next safe point (a committed
    page, or at once from any wait of ours); a second one, or a stop that takes longer
    than ``STOP_GRACE_S``, leaves at once with exit 130 and one line.

    The handler only writes a byte to a pipe (and, the second time, to stderr before
    ``os._exit``): Python runs it between two bytecodes of the main thread, which may be
    inside SQLAlchemy, a driver, logging or a held lock. Raising there turned a second
    SIGTERM into a database error and tracebacks; setting an ``Event`` there can deadlock.
    A watcher thread does the rest. Leaving at once is safe: every page commits with its
    checkpoint, so what is lost is at most the open transaction, as with SIGKILL.
    """

    def __init__(self, stop: threading.Event | None) -> None:
        self.stop = stop  # None: nothing to finish, the first signal leaves at once
        self.previous: dict[int, Any] = {}
        self._signals = 0
        self._read, self._write = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="signal-watcher", daemon=True)

    def __enter__(self) -> None:
        self._watcher.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        os.write(self._write, b"\0")  # ends the watcher
        self._watcher.join()
        os.close(self._read)
        os.close(self._write)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1 or self.stop is None:
            _leave_now(f"stopped by a second {signal.Signals(signum).name}: exiting at once")
        os.write(self._write, bytes([signum]))

    def _watch(self) -> None:
        signum = os.read(self._read, 1)[0]
        if not signum:  # the run ended without a signal
            return
        name = signal.Signals(signum).name
        log.warning("%s received: finishing the current page, then stopping", name)
        assert self.stop is not None
        self.stop.set()
        if _select_readable(self._read, STOP_GRACE_S):  # the run ended in time
            return
        _leave_now(f"stopped by {name}, but the run did not stop within {STOP_GRACE_S:.0f} s")


STOP_GRACE_S = 30.0  # after a first signal, the longest a run may take to stop cleanly


def _select_readable(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def _leave_now(message: str) -> NoReturn:
    """One line on stderr and exit 130, from a signal handler or any thread: the open
    transaction is rolled back by the database, the run lock freed with the process."""
    with suppress(OSError):
        os.write(2, f"{PROG}: error: {message}\n".encode())
    os._exit(ExitCode.INTERRUPTED)


def cmd_migrate(args: argparse.Namespace) -> int:
    from etl import migrate
    from etl.db import check_connection, open_engine

    settings = _settings(args, require_credentials=False)
    engine = open_engine(settings.database.url)
    try:
        check_connection(engine)
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, args.revision)
        after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    # The upgrade itself is logged by etl.migrate; stdout gets the resulting state.
    print(f"database schema at revision {after}" + (" (unchanged)" if before == after else ""))
    return int(ExitCode.OK)


def cmd_status(args: argparse.Namespace) -> int:
    from etl import report
    from etl.job import open_store, select_accounts
    from etl.store import utc_now

    settings = _settings(args, require_credentials=False)
    names = [a.name for a in select_accounts(settings, args.account)]
    with open_store(settings, migrate_hint=_migrate_hint(args), read_only=True) as store:
        statuses = [s for name in names for s in store.account_status(name)]
        runs = {name: store.recent_runs(name, limit=5) for name in names}
        backfills = {name: store.slices(name) for name in names}
    now = utc_now()
    if args.json:
        print(json.dumps(report.status_json(statuses, runs, now, backfills), indent=2))
    else:
        print(report.status_text(statuses, runs, now, backfills))
    if args.max_lag is not None:
        stale = report.stale_accounts(statuses, now, args.max_lag)
        if stale:
            raise StaleDataError(
                f"data older than {report.human_duration(args.max_lag)} for: {', '.join(stale)}"
            )
    return int(ExitCode.OK)


def cmd_check(args: argparse.Namespace) -> int:
    from etl.check import check_account, check_database
    from etl.job import select_accounts

    settings = _settings(args, require_credentials=args.account or True)
    print(check_database(settings, migrate_hint=_migrate_hint(args)))
    for account in select_accounts(settings, args.account):
        print(check_account(account))
    return int(ExitCode.OK)


def cmd_list(args: argparse.Namespace) -> int:
    from etl import report
    from etl.check import list_records
    from etl.job import select_accounts

    settings = _settings(args, require_credentials=args.account or True)
    accounts = select_accounts(settings, args.account)
    if len(accounts) > 1:
        raise ConfigError("list reads one account; pick it with --account NAME")
    filters: dict[str, list[str]] = {}
    for key, value in args.filter:
        filters.setdefault(key, []).append(value)
    records = list_records(
        accounts[0],
        since=args.since,
        until=args.until,
        filters=filters,
        descending=args.sort == "desc",
        limit=args.limit,
    )
    out: TextIO = sys.stdout
    fmt = args.format or ("table" if out.isatty() else "json")
    if fmt == "table":
        out.write(report.records_table(records))
    else:
        for record in records:
            out.write(json.dumps(record, sort_keys=True) + "\n")
    return int(ExitCode.OK)
