"""Read the TOML configuration into validated ``Settings``.

Every problem in a file is collected and reported at once, each naming its key,
so a user fixes the file in one pass. Secrets may be written inline, read from a
file (``api_token_file``: systemd credentials), or from the environment
(``ZENDESK_API_TOKEN``, or ``api_token_env = "VAR"`` to name another variable);
they are wrapped in ``Secret`` the moment they are read.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tomllib
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, date, datetime, time, timedelta
from ipaddress import ip_address
from pathlib import Path
from string import Template
from typing import Any, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import String

from etl.errors import ConfigError
from etl.schema import sync_state
from etl.secret import Secret
from etl.settings import (
    FILTER_KEYS,
    AccountSettings,
    Credentials,
    DatabaseSettings,
    Settings,
    SyncSettings,
    ZendeskSettings,
)
from etl.urls import base_url_problem

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_CONFIG_PATH = "config.toml"
CONFIG_ENV_VAR = "ETL_CONFIG"
SECRET_KEYS = ("api_token", "password", "oauth_token", "client_secret")
MIN_LAG = timedelta(seconds=61)
# Zendesk's highest plan allows 2,500/min; more is only for proxies, simulators and benchmarks.
MAX_RPM = 100_000  # Zendesk refuses created_at bounds less than ~60 s old

ZENDESK_KEYS = {
    "name", "subdomain", "base_url", "email", "client_id", "oauth_scope",
    "requests_per_minute", "timeout", "retry_budget", "page_size",
    *SECRET_KEYS,
    *(f"{k}_file" for k in SECRET_KEYS),
    *(f"{k}_env" for k in SECRET_KEYS),
}  # fmt: skip
SYNC_KEYS = {"start_time", "lag", "overlap", "filters", "workers", "parallel_after"}
MAX_WORKERS = 256  # [sync] workers: an upper bound on requests in flight ("auto": the default)
# url_file / url_env: the URL (and its password) kept out of the config file
DATABASE_KEYS = {"url", "url_file", "url_env", "auto_migrate"}
MONITORING_KEYS = {"metrics_file"}
TOP_KEYS = {"zendesk", "sync", "database", "accounts", "monitoring"}

INTEGER_FILTERS = ("actor_id", "source_id")
KNOWN_ACTIONS = frozenset({"create", "destroy", "exported", "login", "update"})
# The account column's length, from the schema itself (every table's account is the same).
_ACCOUNT_TYPE = sync_state.c.account.type
MAX_NAME_LENGTH: int = (
    _ACCOUNT_TYPE.length if isinstance(_ACCOUNT_TYPE, String) and _ACCOUNT_TYPE.length else 255
)

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")
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
    _warn_if_exposed(path, data)
    return settings


def parse(
    data: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    source: str,
    require_credentials: bool | Collection[str] = True,
) -> Settings:
    """Validate an already-decoded TOML document."""
    problems = _Problems(source)

    def credential_problems(zendesk: Mapping[str, Any]) -> _Problems:
        """Where an account's credential problems go: ignored when they are not needed."""
        if isinstance(require_credentials, bool):
            return problems if require_credentials else _Problems(source)
        name = zendesk.get("name") or zendesk.get("subdomain")
        return problems if name in require_credentials else _Problems(source)

    problems.unknown_keys(data, TOP_KEYS, "")
    database = _database(_table(data, "database", problems), problems, environ)
    monitoring = _table(data, "monitoring", problems)
    problems.unknown_keys(monitoring, MONITORING_KEYS, "monitoring")
    metrics_file = _typed(monitoring, "metrics_file", str, problems, "monitoring", "") or None
    # [sync] is read once, its problems named "sync.KEY"; an account's own [accounts.sync]
    # overrides are read with their own path, so each problem is reported once, where it is.
    base_sync = _sync_values(_table(data, "sync", problems), problems, "sync")
    accounts: list[AccountSettings] = []
    if "accounts" in data:
        if "zendesk" in data:
            problems.add("zendesk", "use either [zendesk] or [[accounts]], not both")
        entries = data["accounts"]
        if not isinstance(entries, list) or not entries:
            problems.add("accounts", "must be one or more [[accounts]] tables")
            entries = []
        for i, entry in enumerate(entries):
            where = f"accounts[{i}]"
            if not isinstance(entry, dict):
                problems.add(where, "must be a table")
                continue
            zendesk = {k: v for k, v in entry.items() if k != "sync"}
            own = _table(entry, "sync", problems, where)
            sync = {**base_sync, **_sync_values(own, problems, f"{where}.sync")}
            account = _account(
                zendesk, sync, problems, credential_problems(zendesk), where, environ, False
            )
            if account:
                accounts.append(account)
    else:
        zendesk = _table(data, "zendesk", problems)
        if not zendesk:
            problems.add(
                "zendesk", "missing: set at least subdomain (or name and base_url) and credentials"
            )
        else:
            account = _account(
                zendesk, base_sync, problems, credential_problems(zendesk), "zendesk", environ, True
            )
            if account:
                accounts.append(account)
    names = [a.name for a in accounts]
    for name in {n for n in names if names.count(n) > 1}:
        problems.add("accounts", f"account name {name!r} appears twice; give each a unique name")
    problems.raise_if_any()
    return Settings(
        accounts=tuple(accounts), database=database, source=source, metrics_file=metrics_file
    )


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def unknown_keys(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                self.add(_join(where, key), "unknown key (see config.example.toml)")

    def raise_if_any(self) -> None:
        if self.items:
            count = "1 problem" if len(self.items) == 1 else f"{len(self.items)} problems"
            raise ConfigError(f"{self.source}: {count}: " + "; ".join(self.items))


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _table(
    data: Mapping[str, Any], key: str, problems: _Problems, where: str = ""
) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        problems.add(_join(where, key), "must be a table")
        return {}
    return value


def _database(
    table: Mapping[str, Any], problems: _Problems, environ: Mapping[str, str]
) -> DatabaseSettings:
    problems.unknown_keys(table, DATABASE_KEYS, "database")
    default = DatabaseSettings()
    # inline, from a file or from the environment, read like the Zendesk secrets
    given = _secret(table, "url", problems, "database", environ, use_default_env=False)
    url = given.reveal() if given else default.url
    if "://" not in url:
        # never echo the value: a mistyped URL may still carry a password
        key = next((k for k in ("url", "url_file", "url_env") if k in table), "url")
        problems.add(f"database.{key}", "not a database URL (e.g. sqlite:///audit.db)")
    auto = _typed(table, "auto_migrate", bool, problems, "database", default.auto_migrate)
    return DatabaseSettings(url=url, auto_migrate=auto)


def _account(
    zendesk: Mapping[str, Any],
    sync: Mapping[str, Any],  # validated values (``_sync_values``), [sync] and the account's
    problems: _Problems,
    credential_problems: _Problems,
    where: str,
    environ: Mapping[str, str],
    use_default_env: bool,
) -> AccountSettings | None:
    problems.unknown_keys(zendesk, ZENDESK_KEYS, where)
    before = len(problems.items)
    base_url, subdomain = _base_url(zendesk, problems, where)
    credentials = _credentials(zendesk, credential_problems, where, environ, use_default_env)
    defaults = ZendeskSettings(base_url="", credentials=Credentials())
    settings = ZendeskSettings(
        base_url=base_url,
        credentials=credentials,
        requests_per_minute=_bounded_int(
            zendesk,
            "requests_per_minute",
            1,
            MAX_RPM,
            defaults.requests_per_minute,
            problems,
            where,
        ),
        timeout=_checked(
            parse_duration, zendesk, "timeout", timedelta(seconds=defaults.timeout), problems, where
        ).total_seconds(),
        retry_budget=_checked(
            parse_duration,
            zendesk,
            "retry_budget",
            timedelta(seconds=defaults.retry_budget),
            problems,
            where,
        ).total_seconds(),
        page_size=_bounded_int(zendesk, "page_size", 1, 100, defaults.page_size, problems, where),
    )
    if settings.timeout <= 0:
        problems.add(_join(where, "timeout"), "must be more than 0 seconds")
    name = _name(zendesk, subdomain, problems, where)
    if len(problems.items) > before:
        return None
    return AccountSettings(name=name, zendesk=settings, sync=SyncSettings(**sync))


def _name(zendesk: Mapping[str, Any], subdomain: str, problems: _Problems, where: str) -> str:
    """The account's name: the key of all its rows, so never guessed from base_url (a proxy's
    address changes; the history must not be stored again under another name)."""
    name = _typed(zendesk, "name", str, problems, where, "") or subdomain
    if not name:
        if "name" in zendesk or zendesk.get("base_url"):
            problems.add(_join(where, "name"), "missing: with base_url, set name (or subdomain)")
        return ""
    if len(name) > MAX_NAME_LENGTH:
        problems.add(
            _join(where, "name" if "name" in zendesk else "subdomain"),
            f"longer than the database column's {MAX_NAME_LENGTH} characters",
        )
    return name


def _base_url(zendesk: Mapping[str, Any], problems: _Problems, where: str) -> tuple[str, str]:
    """The API origin and the subdomain, if given."""
    subdomain = _typed(zendesk, "subdomain", str, problems, where, "")
    base_url = _typed(zendesk, "base_url", str, problems, where, "").rstrip("/")
    if base_url:
        problem = base_url_problem(base_url)
        if problem is not None:
            problems.add(_join(where, "base_url"), problem)
            return "", subdomain
        return base_url, subdomain
    if not subdomain:
        problems.add(_join(where, "subdomain"), "missing (or set name and base_url)")
        return "", ""
    if not _SUBDOMAIN.match(subdomain):
        problems.add(
            _join(where, "subdomain"),
            f"{subdomain!r} is not a subdomain; give only the part before .zendesk.com",
        )
    return f"https://{subdomain}.zendesk.com", subdomain


def _credentials(
    zendesk: Mapping[str, Any],
    problems: _Problems,
    where: str,
    environ: Mapping[str, str],
    use_default_env: bool,
) -> Credentials:
    secrets = {
        key: _secret(zendesk, key, problems, where, environ, use_default_env) for key in SECRET_KEYS
    }
    email = _typed(zendesk, "email", str, problems, where, "") or None
    client_id = _typed(zendesk, "client_id", str, problems, where, "") or None
    scope = _typed(zendesk, "oauth_scope", str, problems, where, "auditlogs:read")
    creds = Credentials(email=email, client_id=client_id, oauth_scope=scope, **secrets)
    methods = []
    if client_id or creds.client_secret:
        methods.append("client_id + client_secret")
        if not (client_id and creds.client_secret):
            problems.add(_join(where, "client_id"), "OAuth needs both client_id and client_secret")
    if creds.oauth_token:
        methods.append("oauth_token")
    if creds.api_token:
        methods.append("api_token")
    if creds.password:
        methods.append("password")
    if (creds.api_token or creds.password) and not email:
        problems.add(_join(where, "email"), "api_token and password authentication need email")
    if not methods:
        problems.add(
            where,
            "no credentials: set client_id + client_secret (OAuth), oauth_token, "
            "or email + api_token (or their _file / environment forms)",
        )
    elif len(methods) > 1:
        problems.add(where, f"several credentials given ({', '.join(methods)}); keep exactly one")
    return creds


def _secret(
    zendesk: Mapping[str, Any],
    key: str,
    problems: _Problems,
    where: str,
    environ: Mapping[str, str],
    use_default_env: bool,
) -> Secret | None:
    """A secret from the inline key, ``KEY_file``, ``KEY_env``, or ``ZENDESK_KEY``."""
    given = [k for k in (key, f"{key}_file", f"{key}_env") if k in zendesk]
    if len(given) > 1:
        problems.add(_join(where, key), f"give only one of {', '.join(given)}")
        return None
    value: str | None = None
    if key in zendesk:
        value = _typed(zendesk, key, str, problems, where, "")
    elif f"{key}_file" in zendesk:
        # ${CREDENTIALS_DIRECTORY} and the like expand, for systemd's LoadCredential=.
        path = Template(_typed(zendesk, f"{key}_file", str, problems, where, "")).safe_substitute(
            environ
        )
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            problems.add(_join(where, f"{key}_file"), f"cannot read {path}: {reason}")
            return None
        if not value:
            problems.add(_join(where, f"{key}_file"), f"{path} is empty")
    elif f"{key}_env" in zendesk:
        var = _typed(zendesk, f"{key}_env", str, problems, where, "")
        value = environ.get(var)
        if not value:
            problems.add(_join(where, f"{key}_env"), f"environment variable {var} is not set")
    elif use_default_env:
        value = environ.get(f"ZENDESK_{key.upper()}")
    return Secret(value) if value else None


def _sync_values(sync: Mapping[str, Any], problems: _Problems, where: str) -> dict[str, Any]:
    """The valid ``SyncSettings`` fields among the keys given in one sync table at ``where``."""
    problems.unknown_keys(sync, SYNC_KEYS, where)
    values: dict[str, Any] = {}
    durations = ("lag", "overlap", "parallel_after")
    for key in durations:
        if key in sync:
            values[key] = _checked(parse_duration, sync, key, timedelta(), problems, where)
    if "lag" in sync and values["lag"] < MIN_LAG:
        problems.add(
            _join(where, "lag"),
            f"must be at least {int(MIN_LAG.total_seconds())} s: Zendesk refuses newer bounds "
            "and records appear minutes late",
        )
    # "auto": the default bound; the job sizes its requests in flight below it
    if "workers" in sync and sync["workers"] != "auto":
        values["workers"] = _bounded_int(sync, "workers", 1, MAX_WORKERS, 1, problems, where)
    if "start_time" in sync:
        values["start_time"] = _checked(parse_time, sync, "start_time", None, problems, where)
    if "filters" in sync:
        table = _table(sync, "filters", problems, where)
        values["filters"] = _filters(table, problems, _join(where, "filters"))
    return values


def parse_time(value: object) -> datetime:
    """A TOML datetime/date or ISO 8601 string as an aware UTC datetime."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                datetime.fromisoformat(text)
                if "T" in text or " " in text
                else (date.fromisoformat(text))
            )
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date or time; use e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{value.isoformat()} has no UTC offset; add Z (UTC) or +HH:MM")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    raise ValueError(f"must be a date or time, not {type(value).__name__}")


def parse_duration(value: object) -> timedelta:
    """Seconds as a number, or text like "90s", "5m", "1h30m", "2d"."""
    if isinstance(value, bool):
        raise ValueError('must be a duration such as 300, "5m" or "1h"')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        if value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return parse_duration(float(value))
    raise ValueError(f'{value!r} is not a duration; use seconds or e.g. "90s", "5m", "1h"')


def _filters(
    table: Mapping[str, Any], problems: _Problems, where: str
) -> dict[str, tuple[str, ...]]:
    """Filters in canonical form (integers and addresses normalised, values sorted), so the
    same set always reads the same: it is part of the watermark's scope (``etl.scope``)."""
    filters: dict[str, tuple[str, ...]] = {}
    for key, value in table.items():
        path = _join(where, key)
        if key not in FILTER_KEYS:
            problems.add(path, f"unknown filter; known: {', '.join(FILTER_KEYS)}")
            continue
        values = value if isinstance(value, list) else [value]
        if not values or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in values
        ):
            problems.add(path, "must be a string, an integer, or a list of them")
            continue
        try:
            filters[key] = tuple(sorted({_filter_value(key, v) for v in values}))
        except ValueError as exc:
            problems.add(path, str(exc))
            continue
        for unknown in set(filters[key]) - KNOWN_ACTIONS if key == "action" else ():
            # Zendesk documents these; others have been seen, so this is not an error.
            log.warning(
                "%s: %r is not one of Zendesk's documented actions (%s)",
                path, unknown, ", ".join(sorted(KNOWN_ACTIONS)),
            )  # fmt: skip
    if "source_id" in filters and "source_type" not in filters:
        problems.add(_join(where, "source_id"), "Zendesk requires source_type with source_id")
    return filters


def _filter_value(key: str, value: str | int) -> str:
    """One filter value as sent, or ``ValueError`` saying why Zendesk could not match it."""
    text = str(value).strip()
    if key in INTEGER_FILTERS:
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError(f"{value!r} is not an integer")
        return str(int(text))
    if key == "ip_address":
        try:
            return str(ip_address(text))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    if not text:
        raise ValueError("must not be empty")
    return text


def _typed(
    table: Mapping[str, Any],
    key: str,
    kind: type[T],
    problems: _Problems,
    where: str,
    default: T,
) -> T:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        problems.add(
            _join(where, key),
            f"must be {_KIND_NAMES.get(kind, kind.__name__)}, not {type(value).__name__}",
        )
        return default
    return value


_KIND_NAMES: dict[type, str] = {str: "a string", bool: "true or false", int: "an integer"}


def _bounded_int(
    table: Mapping[str, Any],
    key: str,
    low: int,
    high: int,
    default: int,
    problems: _Problems,
    where: str,
) -> int:
    value = _typed(table, key, int, problems, where, default)
    if not low <= value <= high:
        problems.add(_join(where, key), f"must be between {low} and {high}, not {value}")
        return default
    return value


def _checked(
    parser: Callable[[object], T],
    table: Mapping[str, Any],
    key: str,
    default: T,
    problems: _Problems,
    where: str,
) -> T:
    if key not in table:
        return default
    try:
        return parser(table[key])
    except ValueError as exc:
        problems.add(_join(where, key), str(exc))
        return default


def _database_url_has_password(table: object) -> bool:
    url = table.get("url") if isinstance(table, dict) else None
    if not isinstance(url, str) or "://" not in url:
        return False
    try:
        return bool(urlsplit(url).password)
    except ValueError:  # a malformed URL is reported elsewhere
        return False


def _warn_if_exposed(path: Path, data: Mapping[str, Any]) -> None:
    """Inline secrets in a file that others can read deserve a warning."""
    tables = [data.get("zendesk", {}), *list(data.get("accounts", []))]
    inline = any(isinstance(t, dict) and any(k in t for k in SECRET_KEYS) for t in tables)
    if not inline and not _database_url_has_password(data.get("database")):
        return
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s holds secrets and can be read by other users; run: chmod 600 %s", path, path
        )
