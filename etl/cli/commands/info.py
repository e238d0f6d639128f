"""``migrate``, ``status``, ``check``, ``list`` and ``init``: the commands that set up or
look, and never run a sync."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from etl.cli import shared
from etl.cli.arguments import ACCESS_FILTER_KEYS, filter_pair, positive_int, utc_time
from etl.cli.shared import load_settings, migrate_hint
from etl.common.errors import ConfigError, ExitCode, StaleDataError
from etl.common.settings import AUDIT_LOGS, FILTER_KEYS, STREAM_NAMES, Settings
from etl.config import loader as config


def cmd_migrate(args: argparse.Namespace) -> int:
    from etl.storage import migrate
    from etl.storage.engine import check_connection, open_engine

    settings = load_settings(args, require_credentials=False)
    if args.revision != "head" and args.revision not in migrate.known_revisions():
        known = ", ".join(sorted(migrate.known_revisions()))
        raise ConfigError(f"unknown schema revision {args.revision!r}; known: {known} or head")
    _make_sqlite_directory(settings.database.url)
    engine = open_engine(settings.database.url)
    try:
        check_connection(engine)
        before = migrate.current_revision(engine)
        order = migrate.revisions_in_order()
        if (
            before in order
            and args.revision in order
            and order.index(args.revision) < order.index(str(before))
        ):
            raise ConfigError(
                f"--revision {args.revision} is lower than the database's current revision "
                f"{before}; going back is not supported (restore a backup taken before "
                "the upgrade instead)"
            )
        migrate.upgrade(engine, args.revision)
        after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    # The upgrade itself is logged by etl.storage.migrate; stdout gets the resulting state.
    print(f"database schema at revision {after}" + (" (unchanged)" if before == after else ""))
    return int(ExitCode.OK)


def _make_sqlite_directory(url: str) -> None:
    """``migrate`` makes the database, so the directory of a SQLite file too (owner only,
    as the file): other commands still stop on a missing one, which may be a typo."""
    from etl.storage.engine import parse_url, sqlite_path

    path = sqlite_path(parse_url(url)) if url.startswith("sqlite") else None
    if path is None or path.parent.is_dir():
        return
    try:
        path.parent.mkdir(mode=0o700, parents=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {path.parent} for the SQLite database: {exc.strerror}"
        ) from None
    print(f"created the directory {path.parent}", file=sys.stderr)


def cmd_status(args: argparse.Namespace) -> int:
    from etl.cli import report
    from etl.cli import streams_info as stream_status
    from etl.common.clock import utc_now
    from etl.export import backlogs
    from etl.integrity.status import ledger_statuses
    from etl.storage.store import open_store
    from etl.sync.job import select_accounts

    settings = load_settings(args, require_credentials=False)
    selected = select_accounts(settings, args.account)
    names = [a.name for a in selected]
    with open_store(settings, migrate_hint=migrate_hint(args), read_only=True) as store:
        others = stream_status.stream_statuses(store, selected)
        statuses = [s for name in names for s in store.account_status(name)]
        runs = {name: store.recent_runs(name, limit=5) for name in names}
        backfills = {name: store.slices(name) for name in names}
        exports = backlogs.ExportStatuses(backlogs.read_statuses(store.engine, names))
        ledgers = {s.account: s for s in ledger_statuses(store.engine, names)}
    now = utc_now()
    if args.json:
        accounts = report.status_json(statuses, runs, now, backfills)
        for entry in accounts:
            entry["export_consumers"] = exports.json(entry["account"])
            entry["streams"] = {
                s.stream: stream_status.stream_json(s, now)
                for s in others
                if s.account == entry["account"]
            }
            entry["ledger"] = ledgers[entry["account"]].json()
        print(json.dumps(accounts, indent=2))
    else:
        print(report.status_text(statuses, runs, now, backfills))
        for other in others:
            print("\n" + stream_status.stream_text(other, now))
        if exports.statuses:
            print(exports.text())
        print("\n".join(["ledger", *(s.text() for s in ledgers.values())]))
    if args.max_lag is not None:
        stale = report.stale_accounts(statuses, now, args.max_lag)
        stale += stream_status.stale_streams(others, now, args.max_lag)
        if stale:
            raise StaleDataError(
                f"data older than {report.human_duration(args.max_lag)} for: {', '.join(stale)}"
                + _below_lag(settings, stale, args.max_lag)
            )
    return int(ExitCode.OK)


def _below_lag(settings: Settings, stale: Sequence[str], max_lag: timedelta) -> str:
    """Why ``--max-lag`` shorter than ``lag`` always fails: the watermark trails by ``lag``."""
    from etl.cli import report

    lags = [a.sync.lag for a in settings.accounts if a.name in stale and a.sync.lag >= max_lag]
    if not lags:
        return ""
    lag = report.human_duration(max(lags))
    return (
        f" (--max-lag {report.human_duration(max_lag)} is not longer than the configured "
        f"lag of {lag}, which the data always trails now by: use more than {lag})"
    )


def cmd_check(args: argparse.Namespace) -> int:
    from etl.cli.commands.check import check_account, check_database, interactive_client
    from etl.cli.streams_info import check_streams
    from etl.sync.job import select_accounts

    settings = load_settings(args, require_credentials=args.account or True)
    line, schema_error = check_database(settings, migrate_hint=migrate_hint(args))
    print(line)
    for account in select_accounts(settings, args.account):
        print(check_account(account))
        if len(account.sync.streams) > 1 or AUDIT_LOGS not in account.sync.streams:
            with interactive_client(account) as client:
                for stream_line in check_streams(account, client):
                    print(stream_line)
    if schema_error and not settings.database.auto_migrate:
        raise schema_error  # sync would refuse to run (exit 6), with the migrate command
    return int(ExitCode.OK)


def cmd_list(args: argparse.Namespace) -> int:
    from etl.cli import terminal
    from etl.cli.commands.check import list_records, list_window
    from etl.sync.job import select_accounts

    filters: dict[str, list[str]] = {}
    for key, value in args.filter:
        filters.setdefault(key, []).append(value)
    if args.stream != AUDIT_LOGS:
        return _list_stored(args, filters)
    wrong = sorted(set(filters) - set(FILTER_KEYS))
    if wrong:
        raise ConfigError(f"--filter {wrong[0]} is the access log's: add --stream access_logs")
    settings = load_settings(args, require_credentials=args.account or True)
    accounts = select_accounts(settings, args.account)
    if len(accounts) > 1:
        raise ConfigError("list reads one account; pick it with --account NAME")
    from etl.common.clock import utc_now

    window = list_window(accounts[0], args.since, args.until, utc_now())
    if window.note and not args.quiet:  # --quiet: warnings and errors only
        print(window.note, file=sys.stderr)
    records = list_records(
        accounts[0],
        window,
        filters=filters,
        descending=args.sort == "desc",
        limit=args.limit,
    )
    out: TextIO = sys.stdout
    fmt = args.format or ("table" if out.isatty() else "json")
    if fmt == "table":  # its widths need every row: a table is for a terminal's few
        out.write(terminal.records_table(list(records)))
    else:
        for record in records:
            out.write(json.dumps(record, sort_keys=True) + "\n")
            out.flush()  # a reader (| head -1) gets each record as it comes
    return int(ExitCode.OK)


def _list_stored(args: argparse.Namespace, filters: dict[str, list[str]]) -> int:
    """``list --stream access_logs``: the stored rows (etl.cli.commands.stored)."""
    from etl.cli.commands.stored import access_query, write_access
    from etl.storage.store import open_store
    from etl.sync.job import select_accounts

    settings = load_settings(args, require_credentials=False)
    accounts = select_accounts(settings, args.account)
    if len(accounts) > 1:
        raise ConfigError("list reads one account; pick it with --account NAME")
    query = access_query(
        accounts[0].name,
        since=args.since,
        until=args.until,
        filters=filters,
        descending=args.sort == "desc",
        limit=args.limit,
    )
    with open_store(settings, migrate_hint=migrate_hint(args), read_only=True) as store:
        written = write_access(store.engine, query, args.format)
    account = accounts[0]
    if not written and args.stream not in account.sync.streams and not args.quiet:
        print(f"note: account {account.name} does not copy the access log: add "
              f'"{args.stream}" to [sync] streams, then sync (docs/ACCESS_LOGS.md)',
              file=sys.stderr)  # fmt: skip
    return int(ExitCode.OK)


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
    # the README's first-run order: `check` refuses a database that `migrate` has not set up
    command = f"{shared.command()} --config {path}"
    print(f"wrote {path} (mode 600): set subdomain, credentials and database url, then run: "
          f"{command} migrate && {command} check")  # fmt: skip
    return int(ExitCode.OK)


def _example_config() -> Path:
    """``etl/config.example.toml`` in an installed package, else the checkout's."""
    package = Path(__file__).resolve().parents[2]  # etl/, above cli/commands/
    installed = package / "config.example.toml"
    return installed if installed.is_file() else package.parent / "config.example.toml"


def list_arguments(parser: argparse.ArgumentParser) -> None:
    """``list``'s options (the account option is main's)."""
    parser.add_argument(
        "--since", type=utc_time, metavar="TIME",
        help="created at or after TIME (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)",
    )  # fmt: skip
    parser.add_argument(
        "--until", type=utc_time, metavar="TIME",
        help="created at or before TIME (default: now minus the lag; stderr says when; the "
        "access log: no bound)",
    )  # fmt: skip
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        type=filter_pair,
        metavar="KEY=VALUE",
        help=f"repeatable; KEY is one of {', '.join(FILTER_KEYS)}; the access log's: "
        f"{', '.join(ACCESS_FILTER_KEYS)} (path: that path and anything below it)",
    )
    parser.add_argument(
        "--stream", choices=STREAM_NAMES, default=AUDIT_LOGS,
        help="audit_logs (default): from Zendesk's API; access_logs: the rows sync stored, "
        "from the database (what outlives Zendesk's 90 days)",
    )  # fmt: skip
    parser.add_argument(
        "--sort", choices=("asc", "desc"), default="desc", help="by created_at (default: desc)"
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=100,
        metavar="N",
        help="at most N (default 100)",
    )
    parser.add_argument(
        "--format",
        choices=("json", "table"),
        help="JSON lines, or a table (default: table on a terminal, else JSON lines)",
    )
