"""Every error the library raises on purpose, and the exit code the CLI gives it.

Only the CLI prints and exits; everything else raises one of these. Messages are
one line, say what to fix, and never contain a secret, a full URL with query
string, or a raw response body (see ``etl.common.redact``).

    EtlError                      exit 1 (unexpected; a bug if it reaches the user;
                                          from verify: findings, ExitCode.FINDINGS)
    ├── ConfigError               exit 2  bad config file, key, value or CLI argument
    ├── AuthError                 exit 3  401/403, OAuth token refused
    │   └── ForbiddenError                403: not allowed (plan, add-on, role, scope)
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
    ├── InterruptedRun            exit 130 SIGINT/SIGTERM; the current page was rolled back
    └── OutOfTime                 exit 0  [sync] max_run_time reached at a commit: the run
                                          ends there (status interrupted), the next resumes
"""

from __future__ import annotations

import os
import traceback
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


class ForbiddenError(AuthError):
    """A 403: the credentials are good, but not for this (plan, add-on, role, scope)."""


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


class OutOfTime(EtlError):
    """A sync reached ``[sync] max_run_time``: raised after a commit, and caught by the run,
    which ends there as interrupted without failing the job (exit 0)."""

    exit_code = ExitCode.OK


def unexpected(exc: BaseException) -> str:
    """An unforeseen exception in a few words: its type and where it was raised, never its
    arguments (requests' and http.client's hold the header they refused, credentials and
    all; a driver's may hold a row)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}"


def unexpected_traceback(exc: BaseException) -> str:
    """The frames of ``exc`` and of the exceptions it came from, each ending in its type
    alone (as ``unexpected``): for ``--verbose``, which must not show a secret either."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(current).__name__}\n")
        current = current.__cause__ or current.__context__
    return "\nwhich led to:\n".join(reversed(parts))  # the first cause first, as Python does
