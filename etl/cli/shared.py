"""What the commands share: the settings they load, and the hint an old schema gets.

The commands themselves: ``etl.cli.commands.sync`` (sync, resync: a job under locks and
signals), ``etl.cli.commands.info`` (migrate, status, check, list, init). Each is one function
``cmd_NAME(args) -> int`` that ``etl.cli.main`` dispatches to; it raises ``EtlError`` for a
failure, which ``etl.cli.main`` turns into one line and an exit code.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
from collections.abc import Collection
from pathlib import Path

from etl.cli.output import PROG
from etl.common.errors import ConfigError
from etl.common.settings import Settings
from etl.config import loader as config


def command() -> str:
    """The program as the user can type it again in a hint: ``zendesk-audit-etl`` when
    that name on PATH is this program (or it ran as ``python -m etl``), else the path it
    was run by: a venv in /opt is seldom on PATH."""
    argv0 = Path(sys.argv[0] if sys.argv else PROG)
    if argv0.name != PROG:
        return PROG
    found = shutil.which(PROG)
    if found and Path(found).resolve() == argv0.resolve():
        return PROG
    return shlex.quote(str(argv0.absolute()))


def load_settings(
    args: argparse.Namespace, *, require_credentials: bool | Collection[str] = True
) -> Settings:
    path = config.resolve_path(args.config)
    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            f"{path}: config file not found; write a commented one with: {command()} init {path} "
            "(or pass --config PATH)"
        )
    return config.load(path, require_credentials=require_credentials)


def migrate_hint(args: argparse.Namespace) -> str:
    path = config.resolve_path(args.config)
    return f"run: {command()} --config {path} migrate"
