"""The command line: entry points, the parser, and errors turned into exit codes.

Every expected failure is an ``EtlError`` and becomes one line on stderr plus its
documented exit code (``etl.common.errors.ExitCode``); tracebacks appear only with
``--verbose`` and only for unexpected errors.

The commands live in ``etl.cli.commands.sync`` (sync, resync) and ``etl.cli.commands.info``
(migrate, status, check, list, init); stopping on signals in ``etl.cli.signals``; the error
line in ``etl.cli.output``. To add a command: write ``cmd_NAME(args) -> int`` in a commands
module (heavy imports inside it, so other commands start no slower), then give it its
``ABOUT`` line and its ``command(...)`` block in ``build_parser``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, NoReturn

from etl.cli import gc_freeze as collector
from etl.cli import logsetup
from etl.cli.about import ABOUT
from etl.cli.arguments import (
    ACCESS_FILTER_KEYS,
    duration,
    filter_pair,
    positive_int,
    seconds,
    utc_time,
)
from etl.cli.commands.export import cmd_export
from etl.cli.commands.info import cmd_check, cmd_init, cmd_list, cmd_migrate, cmd_status
from etl.cli.commands.reconcile import cmd_reconcile, reconcile_arguments
from etl.cli.commands.sync import cmd_resync, cmd_sync
from etl.cli.commands.verify import cmd_keygen, cmd_verify, since_value
from etl.cli.output import PROG, Output, fail
from etl.cli.signals import signals_set
from etl.common.errors import EtlError, ExitCode, unexpected, unexpected_traceback
from etl.common.settings import AUDIT_LOGS, FILTER_KEYS, STREAM_NAMES
from etl.common.version import VERSION
from etl.config import loader as config

__all__ = ["PROG", "build_parser", "exit_now", "main", "run"]

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]  # a command: its exit code, or an EtlError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not argparse's usage dump: cron mails and journald stay readable.
        self.exit(ExitCode.CONFIG, f"{self.prog}: error: {message} (see --help)\n")


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
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    _global_options(parser, lambda value: value)
    after = _Parser(add_help=False)
    _global_options(after, lambda value: argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, summary: str, handler: Handler) -> argparse.ArgumentParser:
        description, example = ABOUT[name]
        sub = commands.add_parser(
            name, help=summary, description=description, epilog=f"example:\n  {example}",
            parents=[after], formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sub.set_defaults(handler=handler)
        return sub

    sync = command("sync", "read what is new and store it (run from cron)", cmd_sync)
    _account_option(sync)
    _wait_option(sync)

    resync = command(
        "resync", "re-read a past window to repair or verify it (watermark unchanged)", cmd_resync
    )
    _account_option(resync)
    resync.add_argument(
        "--since",
        type=utc_time,
        required=True,
        metavar="TIME",
        help="start of the window (UTC)",
    )
    resync.add_argument(
        "--until",
        type=utc_time,
        metavar="TIME",
        help="end of the window (default: now minus lag)",
    )
    resync.add_argument(
        "--stream",
        choices=STREAM_NAMES,
        default=STREAM_NAMES[0],
        help="the log to re-read (default: audit_logs; access_logs: docs/ACCESS_LOGS.md)",
    )
    _wait_option(resync)

    migrate = command("migrate", "create or upgrade the database schema", cmd_migrate)
    migrate.add_argument("--revision", default="head", help="target revision (default: head)")

    status = command("status", "how fresh the stored data is, per account", cmd_status)
    _account_option(status)
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.add_argument(
        "--max-lag",
        type=duration,
        metavar="DURATION",
        help="exit 7 if any account's data is older than this (e.g. 30m, 1h); data always "
        "trails now by the configured lag, so a useful value is larger than it",
    )

    check = command(
        "check", "validate the config, reach the database and make one API request", cmd_check
    )
    _account_option(check)

    lister = command(
        "list",
        "read audit records straight from the API (no database), or the stored access log",
        cmd_list,
    )
    _account_option(lister, "the one account to read (needed when several are configured)")
    lister.add_argument(
        "--since", type=utc_time, metavar="TIME",
        help="created at or after TIME (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ, UTC)",
    )  # fmt: skip
    lister.add_argument(
        "--until", type=utc_time, metavar="TIME",
        help="created at or before TIME (default: now minus the lag; stderr says when; the "
        "access log: no bound)",
    )  # fmt: skip
    lister.add_argument(
        "--filter",
        action="append",
        default=[],
        type=filter_pair,
        metavar="KEY=VALUE",
        help=f"repeatable; KEY is one of {', '.join(FILTER_KEYS)}; the access log's: "
        f"{', '.join(ACCESS_FILTER_KEYS)} (path: that path and anything below it)",
    )
    lister.add_argument(
        "--stream", choices=STREAM_NAMES, default=AUDIT_LOGS,
        help="audit_logs (default): from Zendesk's API; access_logs: the rows sync stored, "
        "from the database (what outlives Zendesk's 90 days)",
    )  # fmt: skip
    lister.add_argument(
        "--sort", choices=("asc", "desc"), default="desc", help="by created_at (default: desc)"
    )
    lister.add_argument(
        "--limit",
        type=positive_int,
        default=100,
        metavar="N",
        help="at most N (default 100)",
    )
    lister.add_argument(
        "--format",
        choices=("json", "table"),
        help="JSON lines, or a table (default: table on a terminal, else JSON lines)",
    )

    init = command("init", "write a commented config file to start from", cmd_init)
    init.add_argument(
        "path", nargs="?", metavar="PATH",
        help=f"where to write it (default: --config, ${config.CONFIG_ENV_VAR} or "
        f"./{config.DEFAULT_CONFIG_PATH}); an existing file is never overwritten",
    )  # fmt: skip

    verify = command("verify", "check the ledger, its checkpoints and the rows", cmd_verify)
    _account_option(verify)
    verify.add_argument(
        "--public-key", action="append", default=[], metavar="FILE",
        help="a public key checkpoints may be signed with (PEM or keygen's verifier key "
        "line; repeatable, for keys rotated out; default: the configured signing key's)",
    )  # fmt: skip
    verify.add_argument(
        "--checkpoints", metavar="DIR",
        help="the checkpoint directory to compare with (default: [ledger] checkpoint_dir)",
    )  # fmt: skip
    verify.add_argument(
        "--since", type=since_value, metavar="ENTRY|TIME",
        help="start at this ledger entry number, or at the first entry written at or after TIME",
    )  # fmt: skip
    verify.add_argument("--json", action="store_true", help="print the report as JSON evidence")

    reconcile = command(
        "reconcile", "compare a period at Zendesk with what is stored, day by day", cmd_reconcile
    )
    _account_option(reconcile)
    reconcile_arguments(reconcile)

    keygen = command("keygen", "write a new checkpoint signing key", cmd_keygen)
    keygen.add_argument("path", metavar="PATH", help="where to write the private key")

    exporter = command(
        "export",
        "write the records stored since a consumer's last export, as JSON lines",
        cmd_export,
    )
    _account_option(exporter)
    exporter.add_argument(
        "--consumer", required=True, metavar="NAME",
        help="whose position to read and advance (each consumer has its own)",
    )  # fmt: skip
    exporter.add_argument(
        "--output", metavar="FILE",
        help="append to FILE, exactly once across crashes (default: standard output, "
        "at least once)",
    )  # fmt: skip
    exporter.add_argument(
        "--format", choices=("raw", "ocsf"),
        help="raw: each record as Zendesk sent it, plus account; ocsf: OCSF 1.3.0 events "
        "(default: the consumer's saved format; raw for a new consumer)",
    )  # fmt: skip
    exporter.add_argument(
        "--since", type=utc_time, metavar="TIME",
        help="a consumer's first export starts at records created at or after TIME "
        "(default: the consumer's saved --since; everything stored for a new consumer)",
    )  # fmt: skip
    exporter.add_argument(
        "--streams", metavar="LIST",
        help="the streams to export, separated by commas: audit_logs, access_logs, each with "
        "its own position (default: the consumer's saved streams; audit_logs for a new "
        "consumer); adding one needs nothing, dropping one needs --reset-options",
    )  # fmt: skip
    exporter.add_argument(
        "--reset-options", action="store_true",
        help="a consumer keeps the --format and --since it started with, and a run asking "
        "for others is refused (exit 2); with this, it exports with this run's from its "
        "position on (and forgets the positions of the streams --streams leaves out)",
    )  # fmt: skip
    return parser


def _wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        type=seconds,
        default=0.0,
        metavar="SECONDS",
        help="if another run holds the lock, wait up to this long (default: exit at once)",
    )


def _account_option(
    parser: argparse.ArgumentParser,
    help: str = "only this account (repeatable; default: all configured)",
) -> None:
    parser.add_argument("--account", action="append", default=[], metavar="NAME", help=help)


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
    with collector.off_while_starting():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logsetup.configure(verbose=args.verbose, quiet=args.quiet, fmt=args.log_format)
    Output.json = args.log_format == "json"
    try:
        handler: Handler = args.handler
        with signals_set(None):  # sync and resync stop more gently: see commands_run
            return handler(args)
    except EtlError as exc:
        fail(str(exc), exc.exit_code)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", ExitCode.INTERRUPTED)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # whoever read the output stopped (| head): not a failure here
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: say so in one line; the traceback is for --verbose
        # neither shows the exception's arguments: they may hold a header, secret and all
        log.debug("unexpected error:\n%s", unexpected_traceback(exc))
        fail(
            f"internal error ({unexpected(exc)}); rerun with --verbose for details",
            ExitCode.INTERNAL,
        )
        return int(ExitCode.INTERNAL)
