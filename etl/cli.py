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
import re
import signal
import sys
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from etl import __version__, config, logsetup
from etl.errors import ConfigError, EtlError, ExitCode, InterruptedRun, StaleDataError
from etl.settings import FILTER_KEYS, Settings

if TYPE_CHECKING:
    from etl.client import ZendeskClient
    from etl.consumers import ExportStatuses
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


# name -> (what it does, an example): each subcommand's --help shows both.
ABOUT = {
    "sync": (
        "Read everything new since the watermark and upsert it; run it from cron or a timer.",
        f"{PROG} --config /etc/zendesk-audit-etl/config.toml --quiet sync",
    ),
    "resync": (
        "Re-read a past window and upsert it, without moving the watermark; the last line "
        "says how many records were missing or different.",
        f"{PROG} resync --since 2026-01-01 --until 2026-02-01",
    ),
    "migrate": (
        "Create or upgrade the database schema.",
        f"{PROG} migrate",
    ),
    "status": (
        "Per account: watermark and how far it is behind now, rows, rejects, last success "
        "and failure, recent runs.",
        f"{PROG} status --max-lag 1h   # exit 7 when any account's data is older",
    ),
    "check": (
        "Validate the config, reach the database and make one authenticated API request; "
        "exits non-zero when sync would refuse to run.",
        f"{PROG} --config ./config.toml check",
    ),
    "list": (
        "Read audit records straight from the API, without the database.",
        f"{PROG} list --since 2026-11-01 --filter action=destroy --format table",
    ),
    "init": (
        "Write a commented config file to start from (the example shipped with the package).",
        f"{PROG} init /etc/zendesk-audit-etl/config.toml",
    ),
    "export": (
        "Write the records stored since a consumer's last export as JSON lines, in the "
        "order they were stored: raw, or OCSF events. Into a file exactly once, even "
        "across crashes; to standard output at least once.",
        f"{PROG} export --consumer siem --output /var/log/zendesk-audit/audit.jsonl",
    ),
}


def _global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """The options every command takes, before or after its name.

    After it, they default to SUPPRESS, so a value given before the name stands."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default(None),
        help=f"config file (default: ${config.CONFIG_ENV_VAR} or ./{config.DEFAULT_CONFIG_PATH})",
    )
    volume = parser.add_mutually_exclusive_group()
    volume.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="log debug detail"
    )
    volume.add_argument(
        "-q", "--quiet", action="store_true", default=default(False),
        help="log warnings and errors only",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", choices=("text", "json"), default=default("text"),
        help="log line format",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Copy a Zendesk account's audit log into your SQL database.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _global_options(parser, lambda value: value)
    after = _Parser(add_help=False)
    _global_options(after, lambda value: argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        description, example = ABOUT[name]
        return commands.add_parser(
            name, help=summary, description=description, epilog=f"example:\n  {example}",
            parents=[after], formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip

    sync = command("sync", "read what is new and store it (run from cron)")
    _account_option(sync)
    _wait_option(sync)
    sync.set_defaults(handler=cmd_sync)

    resync = command("resync", "re-read a past window to repair or verify it (watermark unchanged)")
    _account_option(resync)
    resync.add_argument(
        "--since", type=_time, required=True, metavar="TIME", help="start of the window (UTC)"
    )
    resync.add_argument(
        "--until", type=_time, metavar="TIME", help="end of the window (default: now minus lag)"
    )
    _wait_option(resync)
    resync.set_defaults(handler=cmd_resync)

    migrate = command("migrate", "create or upgrade the database schema")
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")
    migrate.set_defaults(handler=cmd_migrate)

    status = command("status", "how fresh the stored data is, per account")
    _account_option(status)
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument(
        "--max-lag",
        type=_duration,
        metavar="DURATION",
        help="exit 7 if any account's data is older than this (e.g. 30m, 1h); data always "
        "trails now by the configured lag, so a useful value is larger than it",
    )
    status.set_defaults(handler=cmd_status)

    check = command("check", "validate the config, reach the database and make one API request")
    _account_option(check)
    check.set_defaults(handler=cmd_check)

    lister = command("list", "read audit records straight from the API (no database)")
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

    init = command("init", "write a commented config file to start from")
    init.add_argument(
        "path", nargs="?", metavar="PATH",
        help=f"where to write it (default: --config, ${config.CONFIG_ENV_VAR} or "
        f"./{config.DEFAULT_CONFIG_PATH}); an existing file is never overwritten",
    )  # fmt: skip
    init.set_defaults(handler=cmd_init)
    _export_parser(command)
    return parser


def _export_parser(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    exporter = command(
        "export", "write the records stored since a consumer's last export, as JSON lines"
    )
    _account_option(exporter)
    exporter.add_argument(
        "--consumer",
        required=True,
        metavar="NAME",
        help="whose position to read and advance (each consumer has its own)",
    )
    exporter.add_argument(
        "--output",
        metavar="FILE",
        help="append to FILE, exactly once across crashes (default: standard output, "
        "at least once)",
    )
    exporter.add_argument(
        "--format",
        choices=("raw", "ocsf"),
        default="raw",
        help="raw: each record as Zendesk sent it, plus account; ocsf: OCSF 1.3.0 events",
    )
    exporter.add_argument(
        "--since",
        type=_time,
        metavar="TIME",
        help="a consumer's first export starts at records created at or after TIME "
        "(default: everything stored)",
    )
    exporter.set_defaults(handler=cmd_export)


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
    if args.quiet:
        for log_handler in logging.getLogger().handlers:
            log_handler.addFilter(_no_deprecation_notices)
    _Output.json = args.log_format == "json"
    try:
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except EtlError as exc:
        _fail(str(exc), exc.exit_code)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", ExitCode.INTERRUPTED)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # whoever read the output stopped (| head): not a failure here
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: say so in one line; the traceback is for --verbose
        log.debug("unexpected error", exc_info=True)
        _fail(
            f"internal error ({type(exc).__name__}): {exc}; rerun with --verbose for details",
            ExitCode.INTERNAL,
        )
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


def _no_deprecation_notices(record: logging.LogRecord) -> bool:
    """Under --quiet (cron, timers), the API token and password notices stay out of every
    run's mail; ``check`` and an interactive run still say them, and once they stop
    working it is an authentication error (exit 3)."""
    if record.name != "etl.auth" or record.levelno >= logging.ERROR:
        return True
    from etl import auth  # imported already: the record came from it

    return record.msg not in (auth.API_TOKEN_WARNING, auth.PASSWORD_WARNING)


class _Output:
    json = False  # --log-format json: the error line is a JSON object too


# A URL's query string (Zendesk's filters: the window, already in the summary line) makes a
# failure line hundreds of characters long; the path says which request failed.
_QUERY = re.compile(r"(https?://[^\s?]+)\?\S*?(?=:?\s|:?$)")


def _fail(message: str, code: ExitCode | None = None) -> None:
    """The one error line of a failure: short, and JSON under ``--log-format json``."""
    message = _QUERY.sub(r"\1?...", message)
    if _Output.json:
        fields: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "error", "event": "failed", "message": message,
        }  # fmt: skip
        if code is not None:
            fields["exit_code"] = int(code)
        print(json.dumps(fields), file=sys.stderr)
    else:
        print(f"{PROG}: error: {message}", file=sys.stderr)


def _settings(
    args: argparse.Namespace, *, require_credentials: bool | Collection[str] = True
) -> Settings:
    path = config.resolve_path(args.config)
    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            f"{path}: config file not found; write a commented one with: {PROG} init {path} "
            "(or pass --config PATH)"
        )
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
            bar.finish(complete=summary.status == "success")
        summaries[summary.account] = summary
        # A failure's message follows once, on the error line; the JSON fields keep it.
        log.info("%s", replace(summary, error=None).line(), extra=summary.fields())

    opened: list[Store] = []
    data_starts: dict[str, datetime | None] = {}  # where this run's first page ended

    def progress(summary: RunSummary, position: datetime | None) -> None:
        if not (bar and summary.window and opened):
            return
        end = summary.window.end
        start = data_starts.setdefault(summary.account, position)

        def share() -> float:
            from etl.progress import slices_share, span_share

            # A parallel backfill's slices, as committed, say what is read of its plan.
            plan = opened[0].slices(summary.account)
            if plan:
                return slices_share(plan)
            return span_share(start, end, position) if start else 0.0

        bar.update(summary.account, share, position, summary.records, summary.pages)

    hooks = RunHooks(stop=stop, report=log_summary, on_page=progress if bar else None)
    with _signals_set(stop), open_store(settings, migrate_hint=_migrate_hint(args)) as store:
        opened.append(store)
        _work_begins()  # everything a run needs is imported by now
        result = run_accounts(
            store, accounts, run, wait=args.wait, hooks=hooks, sleep=stoppable_sleep
        )
        if settings.metrics_file:
            _write_metrics(store, settings, summaries)
            _write_export_metrics(store, settings)
    for outcome in result.outcomes:
        if outcome.error:
            _fail(f"account {outcome.account}: {outcome.error}", outcome.exit_code)
    if len(result.outcomes) > 1 and result.failed:
        _fail(f"{len(result.failed)} of {len(result.outcomes)} accounts failed: "
              f"{', '.join(result.failed)}", result.exit_code)  # fmt: skip
    return int(result.exit_code), summaries


def _progress_bar(args: argparse.Namespace) -> ProgressBar | None:
    if args.quiet or not sys.stderr.isatty():
        return None
    from etl.progress import ProgressBar

    return ProgressBar(sys.stderr)


def _write_metrics(store: Store, settings: Settings, summaries: dict[str, RunSummary]) -> None:
    from etl import metrics
    from etl.store import utc_now
    from etl.sync import HISTORY_START

    assert settings.metrics_file
    statuses = [s for a in settings.accounts for s in store.account_status(a.name)]
    starts = {a.name: a.sync.start_time or HISTORY_START for a in settings.accounts}
    try:
        text = metrics.render(statuses, summaries, utc_now(), starts)
        metrics.write_atomically(Path(settings.metrics_file), text)
    except OSError as exc:  # metrics are a side channel: warn, but the sync result stands
        log.warning("could not write metrics file %s: %s", settings.metrics_file, exc.strerror)


class _signals_set:
    """SIGTERM/SIGINT: first one finishes the current page and stops; a second one aborts."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        from etl import dbwait

        dbwait.reset()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        from etl import dbwait  # a statement stuck on another session's lock is cancelled

        if self.stop.is_set():
            if dbwait.interrupt(at_once=True):
                return  # raising inside the driver would break it; the cancel ends the run
            raise InterruptedRun(f"stopped by {signal.Signals(signum).name}")
        dbwait.interrupt()
        log.warning(
            "%s received: finishing the current page, then stopping",
            signal.Signals(signum).name,
        )
        self.stop.set()


def cmd_migrate(args: argparse.Namespace) -> int:
    from etl import migrate
    from etl.db import check_connection, open_engine

    settings = _settings(args, require_credentials=False)
    if args.revision != "head" and args.revision not in migrate.known_revisions():
        known = ", ".join(sorted(migrate.known_revisions()))
        raise ConfigError(f"unknown schema revision {args.revision!r}; known: {known} or head")
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
        exports = _export_statuses(store, names)
    now = utc_now()
    if args.json:
        accounts = report.status_json(statuses, runs, now, backfills)
        for entry in accounts:
            entry["export_consumers"] = exports.json(entry["account"])
        print(json.dumps(accounts, indent=2))
    else:
        print(report.status_text(statuses, runs, now, backfills))
        if exports.statuses:
            print(exports.text())
    if args.max_lag is not None:
        stale = report.stale_accounts(statuses, now, args.max_lag)
        if stale:
            raise StaleDataError(
                f"data older than {report.human_duration(args.max_lag)} for: {', '.join(stale)}"
                + _below_lag(settings, stale, args.max_lag)
            )
    return int(ExitCode.OK)


def _export_statuses(store: Store, names: list[str]) -> ExportStatuses:
    from etl import consumers
    from etl.db import database_errors

    with database_errors(store.engine, "reading export consumers"), store.engine.connect() as conn:
        return consumers.ExportStatuses(consumers.statuses(conn, names))


def cmd_check(args: argparse.Namespace) -> int:
    from etl.check import check_account, check_database
    from etl.job import select_accounts

    settings = _settings(args, require_credentials=args.account or True)
    line, schema_error = check_database(settings, migrate_hint=_migrate_hint(args))
    print(line)
    for account in select_accounts(settings, args.account):
        print(check_account(account))
    if schema_error and not settings.database.auto_migrate:
        raise schema_error  # sync would refuse to run (exit 6), with the migrate command
    return int(ExitCode.OK)


def _below_lag(settings: Settings, stale: Sequence[str], max_lag: timedelta) -> str:
    """Why ``--max-lag`` shorter than ``lag`` always fails: the watermark trails by ``lag``."""
    from etl import report

    lags = [a.sync.lag for a in settings.accounts if a.name in stale and a.sync.lag >= max_lag]
    if not lags:
        return ""
    lag = report.human_duration(max(lags))
    return (
        f" (--max-lag {report.human_duration(max_lag)} is not longer than the configured "
        f"lag of {lag}, which the data always trails now by: use more than {lag})"
    )


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path or config.resolve_path(args.config))
    example = _example_config()
    try:
        with path.open("x", encoding="utf-8") as handle:  # never overwrite a config
            os.chmod(path, 0o600)  # it will hold secrets
            handle.write(example.read_text(encoding="utf-8"))
    except FileExistsError:
        raise ConfigError(f"{path} exists already; not overwriting it") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    print(f"wrote {path} (mode 600): set subdomain, credentials and database url, then run: "
          f"{PROG} --config {path} check")  # fmt: skip
    return int(ExitCode.OK)


def _example_config() -> Path:
    """``etl/config.example.toml`` in an installed package, else the checkout's."""
    package = Path(__file__).resolve().parent
    installed = package / "config.example.toml"
    return installed if installed.is_file() else package.parent / "config.example.toml"


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


def cmd_export(args: argparse.Namespace) -> int:
    from etl.export import ExportOptions, ExportSummary, export_accounts
    from etl.job import open_store, select_accounts
    from etl.store import utc_now

    settings = _settings(args, require_credentials=False)
    names = [a.name for a in select_accounts(settings, args.account)]
    options = ExportOptions(
        consumer=args.consumer,
        output=Path(args.output) if args.output else None,
        fmt=args.format,
        since=args.since,
    )
    stop = threading.Event()

    def report(summary: ExportSummary) -> None:
        log.info("%s", summary.line(), extra=summary.fields())

    with _signals_set(stop), open_store(settings, migrate_hint=_migrate_hint(args)) as store:
        _work_begins()
        try:
            export_accounts(store.engine, names, options, stop=stop, report=report, now=utc_now)
        finally:
            if settings.metrics_file:
                _write_export_metrics(store, settings)
    return int(ExitCode.OK)


def _write_export_metrics(store: Store, settings: Settings) -> None:
    """The consumers' backlogs, in a file beside ``metrics_file`` (``*_export.prom``):
    refreshed by ``sync`` (new rows) and ``export`` (rows written out)."""
    from etl import consumers, metrics
    from etl.db import database_errors
    from etl.store import utc_now

    assert settings.metrics_file
    names = [a.name for a in settings.accounts]
    path = metrics.export_metrics_path(Path(settings.metrics_file))
    try:
        with (
            database_errors(store.engine, "reading export backlogs"),
            store.engine.connect() as conn,
        ):
            statuses = consumers.statuses(conn, names)
        metrics.write_atomically(path, metrics.render_export(statuses, utc_now()))
    except OSError as exc:  # a side channel: warn, the export's result stands
        log.warning("could not write metrics file %s: %s", path, exc.strerror)
