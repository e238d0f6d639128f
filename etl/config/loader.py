"""Read the TOML configuration into validated ``Settings``.

Every problem in a file is collected and reported at once, each naming its key in full
(``accounts[1].sync.lag``), so a user fixes the file in one pass. This module reads the
document and the accounts; the readers it builds on have their own modules:
``etl.config.section`` (a table, its path and its typed readers), ``etl.config.values``
(times, durations, filter values), ``etl.config.sync`` (``[sync]``) and
``etl.config.secrets`` (credentials, the database URL, the readable-file warning).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from etl.common.errors import ConfigError
from etl.common.fields import ACCOUNT_LENGTH
from etl.common.settings import (
    AccountSettings,
    Credentials,
    Settings,
    SyncSettings,
    ZendeskSettings,
)
from etl.common.urls import base_url_problem
from etl.config.ledger import ledger_settings
from etl.config.secrets import (
    CREDENTIAL_KEYS,
    DATABASE_KEYS,
    SECRET_KEYS,
    credentials,
    database,
    warn_if_exposed,
)
from etl.config.section import Problems, Section
from etl.config.sync import MAX_WORKERS, MIN_LAG, SYNC_KEYS, sync_values
from etl.config.values import parse_duration, parse_time

__all__ = [
    "CONFIG_ENV_VAR",
    "DATABASE_KEYS",
    "DEFAULT_CONFIG_PATH",
    "MAX_NAME_LENGTH",
    "MAX_RPM",
    "MAX_WORKERS",
    "MIN_LAG",
    "SECRET_KEYS",
    "SYNC_KEYS",
    "ZENDESK_KEYS",
    "load",
    "parse",
    "parse_duration",
    "parse_time",
    "resolve_path",
]

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV_VAR = "ETL_CONFIG"
# Zendesk's highest plan allows 2,500/min; more is only for proxies, simulators and benchmarks.
MAX_RPM = 100_000

ZENDESK_KEYS = {
    "name", "subdomain", "base_url",
    "requests_per_minute", "timeout", "retry_budget", "page_size",
    *CREDENTIAL_KEYS,
}  # fmt: skip
MONITORING_KEYS = {"metrics_file"}
TOP_KEYS = {"zendesk", "sync", "database", "accounts", "monitoring", "ledger"}

MAX_NAME_LENGTH = ACCOUNT_LENGTH  # every table's account column

_API_PATH = "/api/v2"
_SUBDOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def resolve_path(cli_path: str | None, environ: Mapping[str, str] = os.environ) -> Path:
    """``--config``, else ``$ETL_CONFIG``, else ``./config.toml``."""
    return Path(cli_path or environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_PATH)


def load(
    path: Path,
    environ: Mapping[str, str] = os.environ,
    *,
    require_credentials: bool | Collection[str] = True,
) -> Settings:
    """Read and validate the file; raise ``ConfigError`` listing every problem.

    Commands that only touch the database (``status``, ``migrate``) pass
    ``require_credentials=False``, so they run where the secrets are not readable; a
    collection of account names checks only those accounts' credentials (``sync --account``
    under a per-account systemd unit sees only its own secret).
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; copy config.example.toml to {path} "
            f"or pass --config PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    settings = parse(
        data, environ=environ, source=str(path), require_credentials=require_credentials
    )
    warn_if_exposed(path, data)
    return settings


def parse(
    data: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    source: str,
    require_credentials: bool | Collection[str] = True,
) -> Settings:
    """Validate an already-decoded TOML document."""
    problems = Problems(source)
    top = Section(data, "", problems)
    top.unknown_keys(TOP_KEYS)
    database_settings = database(top.table("database"), environ)
    monitoring = top.table("monitoring")
    monitoring.unknown_keys(MONITORING_KEYS)
    metrics_file = monitoring.text("metrics_file") or None
    ledger = ledger_settings(top.table("ledger"), environ)
    # [sync] is read once; each account's own overrides at their own path (etl.config.sync).
    base_sync = sync_values(top.table("sync"))
    reader = _Accounts(environ, require_credentials, base_sync)
    accounts: list[AccountSettings] = []
    if "accounts" in top:
        if "zendesk" in top:
            top.problem("zendesk", "use either [zendesk] or [[accounts]], not both")
        entries = top.get("accounts")
        if not isinstance(entries, list) or not entries:
            top.problem("accounts", "must be one or more [[accounts]] tables")
            entries = []
        for i, entry in enumerate(entries):
            where = f"accounts[{i}]"
            if not isinstance(entry, dict):
                top.problem(where, "must be a table")
                continue
            account = reader.entry(Section(entry, where, problems))
            if account:
                accounts.append(account)
    else:
        zendesk = top.table("zendesk")
        if not zendesk.data:
            top.problem(
                "zendesk", "missing: set at least subdomain (or name and base_url) and credentials"
            )
        else:
            account = reader.account(zendesk, base_sync, use_default_env=True)
            if account:
                accounts.append(account)
    names = [a.name for a in accounts]
    for name in {n for n in names if names.count(n) > 1}:
        top.problem("accounts", f"account name {name!r} appears twice; give each a unique name")
    problems.raise_if_any()
    return Settings(
        accounts=tuple(accounts),
        database=database_settings,
        source=source,
        metrics_file=metrics_file,
        ledger=ledger,
    )


class _Accounts:
    """Reads each account: ``[zendesk]``, or one ``[[accounts]]`` entry with its ``sync``."""

    def __init__(
        self,
        environ: Mapping[str, str],
        require_credentials: bool | Collection[str],
        base_sync: Mapping[str, Any],
    ) -> None:
        self.environ = environ
        self.require_credentials = require_credentials
        self.base_sync = base_sync

    def entry(self, entry: Section) -> AccountSettings | None:
        """One ``[[accounts]]`` table: its Zendesk keys, and ``sync`` over ``[sync]``."""
        sync = {**self.base_sync, **sync_values(entry.table("sync"))}
        return self.account(entry.without("sync"), sync, use_default_env=False)

    def account(
        self, zendesk: Section, sync: Mapping[str, Any], *, use_default_env: bool
    ) -> AccountSettings | None:
        """``sync``: the validated ``SyncSettings`` fields that apply to this account."""
        zendesk.unknown_keys(ZENDESK_KEYS)
        before = len(zendesk.problems)
        base_url, subdomain = _base_url(zendesk)
        creds = credentials(
            self._credential_section(zendesk), self.environ, use_default_env=use_default_env
        )
        settings = _zendesk_settings(zendesk, base_url, creds)
        name = _name(zendesk, subdomain)
        if len(zendesk.problems) > before:
            return None
        return AccountSettings(name=name, zendesk=settings, sync=SyncSettings(**sync))

    def _credential_section(self, zendesk: Section) -> Section:
        """Where an account's credential problems go: ignored when they are not needed."""
        needed = self.require_credentials
        if not isinstance(needed, bool):
            needed = (zendesk.get("name") or zendesk.get("subdomain")) in needed
        return zendesk if needed else zendesk.reporting_to(Problems(zendesk.problems.source))


def _zendesk_settings(zendesk: Section, base_url: str, creds: Credentials) -> ZendeskSettings:
    defaults = ZendeskSettings(base_url="", credentials=Credentials())
    settings = ZendeskSettings(
        base_url=base_url,
        credentials=creds,
        requests_per_minute=zendesk.integer(
            "requests_per_minute", 1, MAX_RPM, defaults.requests_per_minute
        ),
        timeout=zendesk.duration("timeout", timedelta(seconds=defaults.timeout)).total_seconds(),
        retry_budget=zendesk.duration(
            "retry_budget", timedelta(seconds=defaults.retry_budget)
        ).total_seconds(),
        page_size=zendesk.integer("page_size", 1, 100, defaults.page_size),
    )
    if settings.timeout <= 0:
        zendesk.problem("timeout", "must be more than 0 seconds")
    return settings


def _name(zendesk: Section, subdomain: str) -> str:
    """The account's name: the key of all its rows, so never guessed from base_url (a proxy's
    address changes; the history must not be stored again under another name)."""
    name = zendesk.text("name") or subdomain
    if not name:
        if "name" in zendesk or zendesk.get("base_url"):
            zendesk.problem("name", "missing: with base_url, set name (or subdomain)")
        return ""
    if len(name) > MAX_NAME_LENGTH:
        zendesk.problem(
            "name" if "name" in zendesk else "subdomain",
            f"longer than the database column's {MAX_NAME_LENGTH} characters",
        )
    return name


def _base_url(zendesk: Section) -> tuple[str, str]:
    """The API origin and the subdomain, if given."""
    subdomain = zendesk.text("subdomain")
    base_url = zendesk.text("base_url").rstrip("/")
    # The API's own path, copied from Zendesk's docs with the host, would be asked twice
    # (/api/v2/api/v2/audit_logs): the origin is what is meant, so the path is dropped.
    if base_url.lower().endswith(_API_PATH):
        base_url = base_url[: -len(_API_PATH)].rstrip("/")
    if base_url:
        problem = base_url_problem(base_url)
        if problem is not None:
            zendesk.problem("base_url", problem)
            return "", subdomain
        return base_url, subdomain
    if not subdomain:
        zendesk.problem("subdomain", "missing (or set name and base_url)")
        return "", ""
    if not _SUBDOMAIN.match(subdomain):
        zendesk.problem(
            "subdomain", f"{subdomain!r} is not a subdomain; give only the part before .zendesk.com"
        )
    return f"https://{subdomain}.zendesk.com", subdomain
