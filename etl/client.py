"""The HTTP client: one logical GET against one Zendesk account, with retries.

``classify_response`` is the single place that decides what a response means:

    2xx + JSON object            -> the body
    2xx + anything else          -> RetriableError (empty, HTML, truncated, not an object)
    429, 503 + Retry-After       -> RateLimitedError (Retry-After seconds, 10 s if absent/garbage)
    408, other 5xx, odd statuses -> RetriableError
    401                          -> AuthError (names the auth method and what to check)
    403                          -> AuthError (Enterprise plan, admin user, OAuth scope)
    3xx                          -> RequestRejectedError (redirects are never followed)
    400, 404, other 4xx          -> RequestRejectedError (Zendesk's error/description snippet)

Transport failures (connection refused or reset, timeouts, a body cut short) are
RetriableError; a TLS certificate that does not verify is not.

The retry policy (tenacity) retries RetriableError only. Before each retry it
sleeps Retry-After for a RateLimitedError (and pauses the shared RateLimiter so
every thread waits), otherwise an exponential backoff with equal jitter:
``b/2 + b/2 * jitter()`` where ``b = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**(n-1))``
for the n-th failed attempt. It gives up, raising RetryBudgetExhausted, when the
next attempt would start more than ``settings.retry_budget`` seconds after the
first one began (measured with the injected clock).

Credentials only ever go to ``base_url``'s own scheme, host and port: absolute
URLs elsewhere are refused, redirects are not followed, TLS is always verified,
and plain http is accepted for loopback hosts only (the simulator, local proxies).
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
import requests
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from etl.auth import ZendeskAuth, build_auth
from etl.config import is_loopback
from etl.errors import (
    AuthError,
    ConfigError,
    PaginationError,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
    RetryBudgetExhausted,
    UpstreamError,
)
from etl.ratelimit import RateLimiter, parse_retry_after
from etl.redact import error_summary, json_object, redact_url, snippet
from etl.servertime import ServerClock
from etl.settings import ZendeskSettings

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 1.0  # seconds
BACKOFF_MAX = 60.0
FORBIDDEN_HINT = (
    "audit logs need the Enterprise plan and an admin user; "
    "with OAuth, the auditlogs:read (or read) scope"
)
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    http.client.HTTPException,  # IncompleteRead and friends, should one slip through
    ConnectionError,
    TimeoutError,
)


def _version() -> str:
    try:
        from etl import __version__

        return str(__version__)
    except ImportError:
        pass
    try:
        from importlib.metadata import version

        return version("zendesk-audit-etl")
    except Exception:  # any failure here only means "unknown version"
        return "dev"


USER_AGENT = f"zendesk-audit-etl/{_version()}"


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent (every attempt, not token fetches)
    rate_limited: int = 0  # 429 answers
    retries: int = 0  # attempts that were retried
    waited: float = 0.0  # seconds spent in the rate limiter and in retry sleeps


# -- URLs -------------------------------------------------------------------------------
def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) with the default port filled in; ValueError if unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) URL: {redact_url(url)}")
    port = parts.port if parts.port is not None else (443 if scheme == "https" else 80)
    return scheme, host, port


def same_origin(url: str, base_url: str) -> bool:
    try:
        return origin(url) == origin(base_url)
    except ValueError:
        return False


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; ConfigError if credentials may not go there."""
    try:
        parts = urlsplit(base_url)
        scheme, host, _ = origin(base_url)
    except ValueError:
        raise ConfigError(
            f"base_url {redact_url(base_url)!r} is not an https:// URL "
            "(e.g. https://SUBDOMAIN.zendesk.com)"
        ) from None
    if parts.username is not None or parts.password is not None:
        raise ConfigError("base_url must not contain a user name or password")
    if parts.query or parts.fragment:
        raise ConfigError(f"base_url {redact_url(base_url)!r} must not have a query or fragment")
    if scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"base_url {redact_url(base_url)!r} uses plain http; use https "
            "(http is only accepted for loopback hosts)"
        )
    return base_url.rstrip("/")


# -- the one decision ---------------------------------------------------------------------
def classify_response(
    response: requests.Response, *, auth: ZendeskAuth | None = None
) -> dict[str, Any]:
    """The JSON object of a successful answer, or the typed error the answer amounts to."""
    status = response.status_code
    if 200 <= status < 300:
        return _json_body(response)
    where = _where(response)
    status_text = _status_text(response)
    said = _zendesk_says(response)
    if status == 429 or (status == 503 and response.headers.get("Retry-After")):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimitedError(
            f"{where}: {status_text} (Retry-After {retry_after:g} s)", retry_after
        )
    if status == 408 or status >= 500 or status < 200:
        raise RetriableError(f"{where}: {status_text}{said}")
    if 300 <= status < 400:
        location = response.headers.get("Location", "")
        target = urlsplit(location).hostname or ("the same host" if location else "nowhere")
        raise RequestRejectedError(
            f"{where}: {status_text}, a redirect to {target}; redirects are not followed: "
            "check base_url (https://SUBDOMAIN.zendesk.com)"
        )
    if status == 401:
        method = auth.method if auth is not None else "the configured credentials"
        check = auth.check if auth is not None else "the credentials"
        raise AuthError(
            f"{where}: {status_text}{said}: Zendesk refused the credentials "
            f"({method}): check {check}"
        )
    if status == 403:
        raise AuthError(f"{where}: {status_text}{said}: {FORBIDDEN_HINT}")
    if status == 404:
        raise RequestRejectedError(f"{where}: {status_text}{said}: check subdomain/base_url")
    hint = ""
    body = json_object(response)
    if body is not None and body.get("error") == "InvalidPaginationParameter":
        hint = ": Zendesk refused the cursor; the next run restarts from the last checkpoint"
    raise RequestRejectedError(f"{where}: {status_text}{said}{hint}")


def _where(response: requests.Response) -> str:
    request = response.request
    method = (request.method if request is not None else None) or "GET"
    url = (request.url if request is not None else None) or response.url or "<unknown URL>"
    return f"{method} {redact_url(url)}"


def _answered(response: requests.Response) -> str:
    return f"{_where(response)}: {_status_text(response)}"


def _status_text(response: requests.Response) -> str:
    reason = response.reason
    if not reason:
        try:
            reason = HTTPStatus(response.status_code).phrase
        except ValueError:
            reason = ""
    return f"{response.status_code} {reason}".strip()


def _looks_like_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    head = response.content[:200].lstrip().lower()
    return "html" in content_type or head.startswith((b"<!doctype", b"<html", b"<"))


def _zendesk_says(response: requests.Response) -> str:
    """`` (error: description)`` from the body: a snippet, never the raw body."""
    body = json_object(response)
    if body is not None:
        summary = error_summary(body)
    elif response.content and not _looks_like_html(response):
        summary = snippet(response.text, 80)
    else:
        summary = ""
    if summary.lower() in ("", (response.reason or "").lower()):
        return ""
    return f" ({summary})"


# Every digit as "0" and any other byte as a space: an integer of 20 digits or more, which
# orjson would make a float, shows as a run of twenty "0"s.
_DIGITS_AS_ZEROS = bytes(ord("0") if chr(b) in "0123456789" else ord(" ") for b in range(256))
_LONG_INTEGER = b"0" * 20


def decode_json(response: requests.Response) -> Any:
    """The body as JSON; ValueError if it is not JSON.

    orjson decodes a UTF-8 body three times as fast as the json module, and to the same
    values, but for an integer past 64 bits, which it makes a float. A body that may hold
    one (twenty digits in a row, even within a string), and whatever orjson refuses (NaN,
    a lone surrogate escape, a byte order mark, another charset), is decoded by requests
    and the json module, exactly as before.
    """
    content = response.content
    charset = (response.encoding or "utf-8").lower()
    if charset in ("utf-8", "utf8") and _LONG_INTEGER not in content.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return response.json()


def _json_body(response: requests.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; the URL is redacted for a message only on failure."""
    if not response.content:
        raise RetriableError(f"{_answered(response)} with an empty body")
    try:
        body = decode_json(response)
    except ValueError:
        if _looks_like_html(response):
            kind = "HTML"
        elif response.content.lstrip()[:1] in (b"{", b"["):
            kind = "truncated or malformed JSON"
        else:
            kind = f"not JSON ({snippet(response.headers.get('Content-Type', 'no type'), 40)})"
        raise RetriableError(f"{_answered(response)} with a body that is {kind}") from None
    if not isinstance(body, dict):
        raise RetriableError(f"{_answered(response)} with JSON that is not an object")
    return body


# -- the client ---------------------------------------------------------------------------
class ZendeskClient:
    def __init__(
        self,
        settings: ZendeskSettings,
        *,
        session: requests.Session | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        server_clock: ServerClock | None = None,
    ) -> None:
        self.server_clock = server_clock or ServerClock()  # Zendesk's time, from every Date
        self.base_url = check_base_url(settings.base_url)
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        # requests verifies only when ``verify`` is True or a CA bundle path: None, "" or 0
        # switch verification off as surely as False does.
        verify = self._session.verify
        if verify is not True and not (isinstance(verify, str) and verify):
            raise ConfigError("TLS certificate verification cannot be switched off")
        self._verify: bool | str = verify
        self._environments: dict[tuple[str, str, int], dict[str, Any]] = {}
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._timeout = (settings.timeout, settings.timeout)
        # The session's default headers (Accept-Encoding: gzip, keep-alive) and ours, merged
        # and checked once into a GET that every request copies, only its URL set anew:
        # requests are prepared here, not by the session (see ``get_json``).
        headers = CaseInsensitiveDict(self._session.headers)
        headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._get = requests.Request("GET", self.base_url, headers=headers).prepare()
        self.auth = build_auth(settings.credentials, self.base_url, self._session, settings.timeout)
        self.limiter = limiter or RateLimiter(
            settings.requests_per_minute, clock=clock, sleep=sleep
        )
        self.stats = ClientStats()
        self._stats_lock = threading.Lock()

    def __enter__(self) -> ZendeskClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def worker(self) -> ZendeskClient:
        """A client for another thread of the same account.

        It has its own HTTP session (requests sessions are not thread-safe) but shares
        this client's rate limiter (one budget, one Retry-After pause for all), its auth
        (one OAuth token), and its sleep and clock (a stop interrupts every wait; tests
        fake time for all).
        """
        other = ZendeskClient(
            self._settings, limiter=self.limiter, sleep=self._sleep, clock=self._clock,
            jitter=self._jitter, server_clock=self.server_clock,
        )  # fmt: skip
        other.auth = self.auth
        return other

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def resolve(self, url: str) -> str:
        """``url`` as an absolute URL on ``base_url``; PaginationError for another host."""
        if urlsplit(url).scheme:
            if not same_origin(url, self.base_url):
                raise PaginationError(
                    f"refusing to send credentials to {redact_url(url)}: "
                    f"not on {redact_url(self.base_url)}"
                )
            return url
        return self.base_url + (url if url.startswith("/") else "/" + url)

    def get_json(self, url: str, params: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        """One logical GET: the JSON object of the answer, after as many retries as the
        retry budget allows. Raises the errors of ``classify_response`` or
        RetryBudgetExhausted."""
        target = self.resolve(url)
        # Prepared once for all attempts (each adds the current credentials to a copy):
        # URL encoding is the largest cost of a request. No cookies: the API uses none.
        request = self._get.copy()
        request.prepare_url(target, list(params) if params else None)
        shown = _RedactedUrl(request.url or target)
        started = self._clock()
        budget = self._settings.retry_budget

        def out_of_budget(state: RetryCallState) -> bool:
            return self._clock() - started + state.upcoming_sleep > budget

        def give_up(state: RetryCallState) -> dict[str, Any]:
            failure = state.outcome.exception() if state.outcome is not None else None
            elapsed = self._clock() - started
            raise RetryBudgetExhausted(
                f"gave up after {state.attempt_number} attempt"
                f"{'' if state.attempt_number == 1 else 's'} in {elapsed:.0f} s "
                f"(retry budget {budget:g} s); last failure: {failure}"
            ) from failure

        def before_sleep(state: RetryCallState) -> None:
            failure = state.outcome.exception() if state.outcome is not None else None
            self._count(retries=1)
            log.warning(
                "%s; retry %d in %.1f s",
                failure,
                state.attempt_number,
                state.upcoming_sleep,
                extra={
                    "event": "retry",
                    "attempt": state.attempt_number,
                    "wait": round(state.upcoming_sleep, 3),
                    "rate_limited": isinstance(failure, RateLimitedError),
                },
            )

        retrying = Retrying(
            sleep=self._retry_sleep,
            stop=out_of_budget,
            wait=self._retry_wait,
            retry=retry_if_exception_type(RetriableError),
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )
        result: dict[str, Any] = retrying(self._attempt, request, shown)
        return result

    # -- internals --------------------------------------------------------------------
    def _attempt(self, request: requests.PreparedRequest, shown: _RedactedUrl) -> dict[str, Any]:
        self._count(waited=self.limiter.acquire())
        self._count(requests=1)
        log.debug("GET %s", shown)
        try:
            prepared = request.copy()
            prepared.hooks = default_hooks()  # the copy shares the lists auth appends to
            prepared.prepare_hooks(self._session.hooks)
            prepared.prepare_auth(self.auth)
            # What ``session.get`` does, with the environment's settings (proxies, NO_PROXY,
            # REQUESTS_CA_BUNDLE) looked up once per origin rather than on every request.
            response = self._session.send(
                prepared,
                timeout=self._timeout,
                allow_redirects=False,
                **self._environment(prepared.url or ""),
            )
        except RateLimitedError as err:  # from an OAuth token fetch
            self.limiter.pause(err.retry_after)
            raise
        except requests.exceptions.SSLError as exc:
            if "certificate" in str(exc).lower():
                raise UpstreamError(
                    f"GET {shown}: the TLS certificate does not verify: check base_url, "
                    "or point REQUESTS_CA_BUNDLE at your CA bundle"
                ) from exc
            raise RetriableError(f"GET {shown}: TLS handshake failed") from exc
        except _TRANSPORT_ERRORS as exc:
            raise RetriableError(f"GET {shown}: {_transport_failure(exc)}") from exc
        except requests.RequestException as exc:
            raise RequestRejectedError(
                f"GET {shown}: the request could not be sent ({type(exc).__name__})"
            ) from exc
        log.debug("GET %s: %s", shown, response.status_code)
        self.limiter.observe(response.headers)
        self.server_clock.observe(response.headers)
        try:
            return classify_response(response, auth=self.auth)
        except RateLimitedError as err:
            if response.status_code == 429:
                self._count(rate_limited=1)
            self.limiter.pause(err.retry_after)
            raise

    def _environment(self, url: str) -> dict[str, Any]:
        """``Session.merge_environment_settings`` for ``url``: proxies, stream, verify
        (``self._verify``, what was checked, whatever the session says later) and cert.

        They depend on the URL only through its origin (NO_PROXY matches hosts), and every
        URL this client requests is on ``base_url``'s origin: computed once per origin.
        """
        key = origin(url)
        settings = self._environments.get(key)
        if settings is None:
            merged = self._session.merge_environment_settings(url, {}, None, self._verify, None)
            settings = self._environments[key] = cast(dict[str, Any], merged)
        return settings

    def _retry_wait(self, state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome is not None else None
        if isinstance(failure, RateLimitedError):
            return failure.retry_after
        base = min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** (state.attempt_number - 1))
        return base / 2 + base / 2 * self._jitter()

    def _retry_sleep(self, seconds: float) -> None:
        self._count(waited=seconds)
        self._sleep(seconds)

    def _count(
        self, *, requests: int = 0, rate_limited: int = 0, retries: int = 0, waited: float = 0.0
    ) -> None:
        with self._stats_lock:
            self.stats.requests += requests
            self.stats.rate_limited += rate_limited
            self.stats.retries += retries
            self.stats.waited += waited


class _RedactedUrl:
    """A URL as shown in logs and errors (``redact_url``), worked out only when shown."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._shown: str | None = None

    def __str__(self) -> str:
        if self._shown is None:
            self._shown = redact_url(self._url)
        return self._shown


def _transport_failure(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout | TimeoutError):
        return "timed out"
    if isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | http.client.HTTPException,
    ):
        return f"the response was cut short ({type(exc).__name__})"
    return f"connection failed ({type(exc).__name__})"
