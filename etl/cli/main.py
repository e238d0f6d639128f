"""The command line: entry points, the parser, and errors turned into exit codes.

Every expected failure is an ``EtlError`` and becomes one line on stderr plus its
documented exit code (``etl.common.errors.ExitCode``); tracebacks appear only with
``--verbose`` and only for unexpected errors.

The commands live in ``etl.cli.commands`` (one module per group); stopping on signals in
``etl.cli.signals``; the error line in ``etl.cli.output``. To add a command: write
``cmd_NAME(args) -> int`` in a commands module (heavy imports inside it, so other commands
start no slower), with its options in ``NAME_arguments(parser)`` there when it has many,
then give it its ``ABOUT`` line and its ``command(...)`` line in ``build_parser``.
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
from etl.cli.arguments import duration, seconds, utc_time
from etl.cli.commands.export import cmd_export, export_arguments
from etl.cli.commands.info import (
    cmd_check,
    cmd_init,
    cmd_list,
    cmd_migrate,
    cmd_status,
    list_arguments,
)
from etl.cli.commands.reconcile import cmd_reconcile, reconcile_arguments
from etl.cli.commands.sync import cmd_resync, cmd_sync
from etl.cli.commands.verify import cmd_keygen, cmd_verify, verify_arguments
from etl.cli.commands.verify_export import cmd_verify_export, verify_export_arguments
from etl.cli.output import PROG, Output, fail
from etl.cli.parser import Parser
from etl.cli.signals import signals_set
from etl.common.errors import EtlError, ExitCode, unexpected, unexpected_traceback
from etl.common.settings import STREAM_NAMES
from etl.common.version import VERSION
from etl.config import loader as config

__all__ = ["PROG", "build_parser", "exit_now", "main", "run"]

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]  # a command: its exit code, or an EtlError


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
    parser = Parser(
        prog=PROG,
        description="Copy a Zendesk account's audit log into your SQL database.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {VERSION}")
    _global_options(parser, lambda value: value)
    after = Parser(add_help=False)
    _global_options(after, lambda value: argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = commands.choices

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
    list_arguments(lister)

    init = command("init", "write a commented config file to start from", cmd_init)
    init.add_argument(
        "path", nargs="?", metavar="PATH",
        help=f"where to write it (default: --config, ${config.CONFIG_ENV_VAR} or "
        f"./{config.DEFAULT_CONFIG_PATH}); an existing file is never overwritten",
    )  # fmt: skip

    verify = command("verify", "check the ledger, its checkpoints and the rows", cmd_verify)
    _account_option(
        verify, "only this account (repeatable; default: every account in the database)"
    )
    verify_arguments(verify)

    checked = command(
        "verify-export", "check an export file against its signed manifests (no database)",
        cmd_verify_export,
    )  # fmt: skip
    verify_export_arguments(checked)

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
    export_arguments(exporter)
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
