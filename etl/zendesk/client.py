"""The HTTP client: one logical GET against one Zendesk account, with retries.

What an answer means is decided by ``etl.zendesk.responses.classify_response``; where credentials
may go by ``etl.common.urls``; each attempt's deadline, size cap and stop by
``etl.zendesk.exchange``.
Transport failures (connection refused or reset, timeouts, a body cut short) are
RetriableError; a TLS certificate that does not verify is not.

The retry policy is ``etl.zendesk.retry``'s, within ``settings.retry_budget`` (no attempt runs
past its end, and the waits for the rate limiter count against it too); a RateLimitedError
also pauses the shared RateLimiter, so every thread waits out its Retry-After.

Every answer, whatever its status, passes through ``ZendeskClient._on_response``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlencode, urlsplit

import requests
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from tenacity import RetryCallState

from etl.common.errors import ConfigError, CorruptResponseError, RateLimitedError, UnsafeLinkError
from etl.common.redact import RedactedUrl, redact_url
from etl.common.settings import ZendeskSettings
from etl.common.urls import Origin, check_base_url, check_request_url, link_is_ours, origin
from etl.common.version import VERSION
from etl.zendesk.auth import build_auth
from etl.zendesk.exchange import Courier, exchange
from etl.zendesk.ratelimit import RateLimiter
from etl.zendesk.responses import classify_response
from etl.zendesk.retry import failure
from etl.zendesk.retry import retrying as retry_policy
from etl.zendesk.server_clock import ServerClock

log = logging.getLogger(__name__)


USER_AGENT = f"zendesk-audit-etl/{VERSION}"


@dataclass
class ClientStats:
    """What a client's requests cost: requests, 429s, retries and the time waited."""

    requests: int = 0  # HTTP requests sent (every attempt, not token fetches)
    rate_limited: int = 0  # 429 answers
    retries: int = 0  # attempts that were retried
    waited: float = 0.0  # seconds spent in the rate limiter and in retry sleeps
    corrupt: int = 0  # 2xx answers refused as corrupt (not UTF-8 JSON of the right shape)


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
        stop: threading.Event | None = None,
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
        self._environments: dict[Origin, dict[str, Any]] = {}
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
        self._stop = stop  # set (SIGTERM): a request waiting on the network stops at once
        self._courier = Courier()
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
        # Among this account's requests waiting for the budget, higher goes first
        # (``RateLimiter.acquire``); a backfill's fetcher sets its slice's pages left.
        self.priority = 0.0

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
        (one OAuth token), its sleep and clock (a stop interrupts every wait; tests fake
        time for all) and its stop event.
        """
        other = ZendeskClient(
            self._settings, limiter=self.limiter, sleep=self._sleep, clock=self._clock,
            jitter=self._jitter, server_clock=self.server_clock, stop=self._stop,
        )  # fmt: skip
        other.auth = self.auth
        return other

    def close(self) -> None:
        self._courier.close()
        if self._owns_session:
            self._session.close()

    def resolve(self, url: str) -> str:
        """``url`` as an absolute URL on ``base_url``; UnsafeLinkError for another origin."""
        if urlsplit(url).scheme:
            if not link_is_ours(url, self.base_url):  # raises itself for a tricky URL
                raise UnsafeLinkError(
                    f"refusing to send credentials to {redact_url(url)}: "
                    f"not on {redact_url(self.base_url)}"
                )
            return url
        return self.base_url + (url if url.startswith("/") else "/" + url)

    def get_json(
        self,
        url: str,
        params: Sequence[tuple[str, str]] | None = None,
        check: Callable[[dict[str, Any]], object] | None = None,
    ) -> dict[str, Any]:
        """One logical GET: the JSON object of the answer, after as many retries as the
        retry budget allows. ``check(body)`` may raise CorruptResponseError for a body of
        the wrong shape, which is retried like any corrupt answer. Raises the errors of
        ``classify_response``, UnsafeLinkError, or RetryBudgetExhausted."""
        target = self.resolve(url)
        # Prepared once for all attempts (each adds the current credentials to a copy):
        # URL encoding is the largest cost of a request. No cookies: the API uses none.
        request = self._get.copy()
        # Encoded here as requests would (UTF-8, ``doseq``): given as text, requests takes
        # it as it is, without its two runtime protocol checks of a parameter list.
        request.prepare_url(target, urlencode(list(params), doseq=True) if params else None)
        # What urllib3 will really connect to, not what the URL seems to say.
        check_request_url(request.url or "", self.base_url)
        shown = RedactedUrl(request.url or target)
        started = self._clock()
        budget = self._settings.retry_budget
        retrying = retry_policy(
            budget=budget,
            started=started,
            clock=self._clock,
            jitter=self._jitter,
            sleep=self._retry_sleep,
            before_sleep=self._before_retry,
        )

        def attempt() -> dict[str, Any]:
            remaining = budget - (self._clock() - started)
            timeout = max(min(self._settings.timeout, remaining), 1.0)
            body = self._attempt(request, shown, timeout, deadline=started + budget)
            if check is not None:
                try:
                    check(body)
                except CorruptResponseError:
                    self._count(corrupt=1)
                    raise
            return body

        result: dict[str, Any] = retrying(attempt)
        return result

    # -- internals --------------------------------------------------------------------
    def _attempt(
        self,
        request: requests.PreparedRequest,
        shown: RedactedUrl,
        timeout: float,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        # A wait for the budget is part of the request's retry budget (``deadline``).
        self._count(waited=self.limiter.acquire(self.priority, deadline))
        self._count(requests=1)
        log.debug("GET %s", shown)
        prepared = request.copy()
        prepared.hooks = default_hooks()  # the copy shares the lists auth appends to
        prepared.prepare_hooks(self._session.hooks)

        def send(socket_timeout: float) -> requests.Response:
            prepared.prepare_auth(self.auth)  # may fetch an OAuth token: within the deadline
            # What ``session.get`` does, with the environment's settings (proxies, NO_PROXY,
            # REQUESTS_CA_BUNDLE) looked up once per origin rather than on every request.
            return self._session.send(
                prepared,
                timeout=(socket_timeout, socket_timeout),
                allow_redirects=False,
                **{**self._environment(prepared.url or ""), "stream": True},
            )

        try:
            response, body = exchange(
                send, courier=self._courier, timeout=timeout, shown=shown, stop=self._stop
            )
        except RateLimitedError as err:  # from an OAuth token fetch
            self.limiter.pause(err.retry_after)
            raise
        except CorruptResponseError:  # too large
            self._count(corrupt=1)
            raise
        self._on_response(response, shown)
        try:
            return classify_response(response, body, auth=self.auth)
        except RateLimitedError as err:
            if response.status_code == 429:
                self._count(rate_limited=1)
            self.limiter.pause(err.retry_after)
            raise
        except CorruptResponseError:
            self._count(corrupt=1)
            raise

    def _on_response(self, response: requests.Response, shown: RedactedUrl) -> None:
        """Every HTTP answer of every attempt, whatever its status, passes here once."""
        log.debug("GET %s: %s", shown, response.status_code)
        self.limiter.observe(response.headers)
        self.server_clock.observe(response.headers)

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

    def _before_retry(self, state: RetryCallState) -> None:
        failed = failure(state)
        self._count(retries=1)
        log.warning(
            "%s; retry %d in %.1f s",
            failed,
            state.attempt_number,
            state.upcoming_sleep,
            extra={
                "event": "retry",
                "attempt": state.attempt_number,
                "wait": round(state.upcoming_sleep, 3),
                "rate_limited": isinstance(failed, RateLimitedError),
            },
        )

    def _retry_sleep(self, seconds: float) -> None:
        self._count(waited=seconds)
        self._sleep(seconds)

    def _count(
        self,
        *,
        requests: int = 0,
        rate_limited: int = 0,
        retries: int = 0,
        waited: float = 0.0,
        corrupt: int = 0,
    ) -> None:
        with self._stats_lock:
            self.stats.corrupt += corrupt
            self.stats.requests += requests
            self.stats.rate_limited += rate_limited
            self.stats.retries += retries
            self.stats.waited += waited
