"""Every error the library raises on purpose, and the exit code the CLI gives it.

Only the CLI prints and exits; everything else raises one of these. Messages are
one line, say what to fix, and never contain a secret, a full URL with query
string, or a raw response body (see ``etl.common.redact``).

    EtlError                      exit 1 (unexpected; a bug if it reaches the user;
                                          from verify: findings, ExitCode.FINDINGS)
    ├── ConfigError               exit 2  bad config file, key, value or CLI argument
    ├── AuthError                 exit 3  401/403, OAuth token refused
    ├── UpstreamError             exit 4  Zendesk unreachable or answering garbage
    │   ├── RetriableError                (internal: the retry policy may try again)
    │   │   ├── RateLimitedError          429/503 with Retry-After
    │   │   └── CorruptResponseError      2xx body not UTF-8 JSON of the right shape, or too big
    │   ├── RetryBudgetExhausted          retries ran out of their time budget
    │   ├── RequestRejectedError  exit 2  400/404/other 4xx: our request is wrong
    │   └── PaginationError               cursor loop, foreign next link w/o cursor
    │       └── UnsafeLinkError           a link that could send credentials elsewhere
    ├── LockedError               exit 5  another run holds this account's lock
    ├── DatabaseError             exit 6  database unreachable or failing
    │   ├── SchemaError                   schema older (run `migrate`) or newer than the code
    │   └── LockLostError                 the run's lock went with its database session
    ├── StaleDataError            exit 7  `status --max-lag`: data older than allowed
    └── InterruptedRun            exit 130 SIGINT/SIGTERM; the current page was rolled back
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    FINDINGS = 1  # verify: something does not verify (an alias of 1: its own meaning there)
    CONFIG = 2
    AUTH = 3
    UPSTREAM = 4
    LOCKED = 5
    DATABASE = 6
    STALE = 7
    INTERRUPTED = 130


class EtlError(Exception):
    """Base of every expected failure; ``str(err)`` is the one line shown to the user."""

    exit_code: ExitCode = ExitCode.INTERNAL


class ConfigError(EtlError):
    exit_code = ExitCode.CONFIG


class AuthError(EtlError):
    exit_code = ExitCode.AUTH


class UpstreamError(EtlError):
    exit_code = ExitCode.UPSTREAM


class RetriableError(UpstreamError):
    """A response or transport failure worth trying again (5xx, timeout, garbled body)."""


class RateLimitedError(RetriableError):
    """429, or 503 with Retry-After: wait ``retry_after`` seconds before the next request."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CorruptResponseError(RetriableError):
    """A 2xx answer that is not what was asked for: not UTF-8, not JSON, a page of the wrong
    shape, or a body beyond the size cap. Retried, then the run stops (exit 4)."""


class RetryBudgetExhausted(UpstreamError):
    """The retry policy gave up; the message names the last failure."""


class RequestRejectedError(UpstreamError):
    """Zendesk rejected the request itself (400, 404, other 4xx): retrying cannot help.

    Almost always a wrong subdomain, base_url or filter, hence the config exit code.
    """

    exit_code = ExitCode.CONFIG


class PaginationError(UpstreamError):
    """The pages do not chain: a cursor repeats, a next link is missing or foreign."""


class UnsafeLinkError(PaginationError):
    """A URL that parsers read differently, or with user info: never requested."""


class LockedError(EtlError):
    exit_code = ExitCode.LOCKED


class DatabaseError(EtlError):
    exit_code = ExitCode.DATABASE


class SchemaError(DatabaseError):
    """The database schema is not the one this code was written for."""


class LockLostError(DatabaseError):
    """The run lock is no longer this run's (its session ended, its file went): the run
    stops before its next commit, since another run may hold the lock now."""


class StaleDataError(EtlError):
    exit_code = ExitCode.STALE


class InterruptedRun(EtlError):
    exit_code = ExitCode.INTERRUPTED
