"""What the commands share: the settings they load, and the hint an old schema gets.

The commands themselves: ``etl.commands_run`` (sync, resync: a job under locks and
signals), ``etl.commands_info`` (migrate, status, check, list, init). Each is one function
``cmd_NAME(args) -> int`` that ``etl.cli`` dispatches to; it raises ``EtlError`` for a
failure, which ``etl.cli`` turns into one line and an exit code.
"""

from __future__ import annotations

import argparse
from collections.abc import Collection

from etl import config
from etl.errors import ConfigError
from etl.output import PROG
from etl.settings import Settings


def load_settings(
    args: argparse.Namespace, *, require_credentials: bool | Collection[str] = True
) -> Settings:
    path = config.resolve_path(args.config)
    if not path.exists() and not path.is_symlink():
        raise ConfigError(
            f"{path}: config file not found; write a commented one with: {PROG} init {path} "
            "(or pass --config PATH)"
        )
    return config.load(path, require_credentials=require_credentials)


def migrate_hint(args: argparse.Namespace) -> str:
    path = config.resolve_path(args.config)
    return f"run: {PROG} --config {path} migrate"
