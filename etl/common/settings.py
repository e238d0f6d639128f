"""The validated configuration, as frozen value objects.

``etl.config.loader`` builds these from TOML, the environment and secret files; every
other module receives them ready-made and never reads the environment itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from etl.common.secret import Secret

# Filters the API accepts on /api/v2/audit_logs, in the order they are sent.
FILTER_KEYS: tuple[str, ...] = ("source_type", "source_id", "actor_id", "ip_address", "action")


@dataclass(frozen=True)
class Credentials:
    """Exactly one way to authenticate; ``etl.zendesk.auth.build_auth`` makes it requests auth."""

    email: str | None = None
    api_token: Secret | None = None
    password: Secret | None = None
    oauth_token: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    oauth_scope: str = "auditlogs:read"


@dataclass(frozen=True)
class ZendeskSettings:
    """Where an account's API is, how to sign in, and its request budget."""

    base_url: (
        str  # "https://acme.zendesk.com", no trailing slash, no path beyond an optional prefix
    )
    credentials: Credentials
    requests_per_minute: int = 400
    timeout: float = 30.0  # seconds, per attempt: connect, headers and the whole body
    retry_budget: float = 300.0  # seconds of retrying one request before giving up
    page_size: int = 100


AUDIT_LOGS = "audit_logs"
STREAM_NAMES = (AUDIT_LOGS, "access_logs")


@dataclass(frozen=True)
class SyncSettings:
    """How an account is read: the window's bounds, the overlap, the backfill's split."""

    start_time: datetime | None = None  # aware UTC; None = the whole history
    lag: timedelta = timedelta(minutes=5)
    overlap: timedelta = timedelta(minutes=10)
    # A window longer than ``parallel_after`` (a first run, a long outage, a resync) is
    # read in time slices by threads sharing the rate budget, as many as the budget and
    # the measured latency need (etl.zendesk.concurrency), at most ``workers``; 1 = sequential.
    workers: int = 64
    parallel_after: timedelta = timedelta(days=1)
    # filter name (see FILTER_KEYS) -> values; several values match any of them
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The logs copied, in this order: the audit log's, and the access log's when turned on
    # (etl.sync.streams, docs/ACCESS_LOGS.md).
    streams: tuple[str, ...] = ("audit_logs",)
    # A sync still reading after this long stops at its next commit, recorded as
    # interrupted, and exits 0; the next run resumes (docs/RELIABILITY.md). None: no limit.
    max_run_time: timedelta | None = timedelta(minutes=50)


@dataclass(frozen=True)
class AccountSettings:
    """One configured account: its name, its API and how it is synced."""

    name: str  # the `account` column: the subdomain unless configured otherwise
    zendesk: ZendeskSettings
    sync: SyncSettings


@dataclass(frozen=True)
class DatabaseSettings:
    """The database's URL and whether a run may upgrade its schema."""

    url: str = "sqlite:///zendesk_audit_logs.db"
    auto_migrate: bool = False


@dataclass(frozen=True)
class LedgerSettings:
    """``[ledger]``: where the checkpoints' signing key comes from (read only when a
    checkpoint is signed: ``etl.integrity.keys``) and where checkpoint copies go."""

    signing_key_file: str | None = None  # a PEM file of mode 600, or a systemd credential
    signing_key_env: str | None = None  # the name of a variable holding the PEM
    checkpoint_dir: str | None = None  # other storage: an NFS share, a WORM bucket's mount
    checkpoint_every: timedelta = timedelta(minutes=5)  # during a long backfill

    @property
    def has_key(self) -> bool:
        return bool(self.signing_key_file or self.signing_key_env)


@dataclass(frozen=True)
class Settings:
    """The whole config, checked: the accounts, the database, the metrics file, the ledger."""

    accounts: tuple[AccountSettings, ...]
    database: DatabaseSettings
    source: str = "<defaults>"  # the config file's path, for messages
    metrics_file: str | None = None  # Prometheus text file written after each sync
    ledger: LedgerSettings = field(default_factory=LedgerSettings)
