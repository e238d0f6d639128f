"""The ``[ledger]`` table: the checkpoints' signing key and their directory.

The key itself is not read here: only the runs that sign read it (``etl.integrity.keys``),
so ``status`` and ``migrate`` never need it. ``${CREDENTIALS_DIRECTORY}`` and the like
expand in paths, for systemd's ``LoadCredential=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from string import Template

from etl.common.settings import LedgerSettings
from etl.config.section import Section

LEDGER_KEYS = {"signing_key_file", "signing_key_env", "checkpoint_dir", "checkpoint_every"}
MIN_CHECKPOINT_EVERY = timedelta(seconds=10)


def ledger_settings(table: Section, environ: Mapping[str, str]) -> LedgerSettings:
    table.unknown_keys(LEDGER_KEYS)
    defaults = LedgerSettings()
    key_file = table.text("signing_key_file") or None
    key_env = table.text("signing_key_env") or None
    if key_file and key_env:
        table.problem("signing_key_file", "give only one of signing_key_file, signing_key_env")
    directory = table.text("checkpoint_dir") or None
    every = table.duration("checkpoint_every", defaults.checkpoint_every)
    if every < MIN_CHECKPOINT_EVERY:
        table.problem("checkpoint_every", "must be at least 10 s")
    return LedgerSettings(
        signing_key_file=Template(key_file).safe_substitute(environ) if key_file else None,
        signing_key_env=key_env,
        checkpoint_dir=Template(directory).safe_substitute(environ) if directory else None,
        checkpoint_every=every,
    )
