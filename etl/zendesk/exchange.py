"""One HTTP exchange within a deadline: connect, headers and the whole body, or an error.

requests' ``timeout`` bounds each socket operation, not the answer: a body trickled a byte
a second never times out, and a thread blocked in a read (or a DNS lookup) cannot see a
stop request. So the exchange runs in a helper thread (a client's ``Courier``) that
reads the body in chunks, stopping at the deadline or beyond ``MAX_BODY_BYTES``, while the
caller waits for it at most ``POLL`` seconds at a time, watching deadline and stop event.
A caller that gives up leaves the helper to notice (after its current read, which the
socket timeout bounds) and close its connection; nothing it reads after that is used.
"""

from __future__ import annotations

import http.client
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import requests
import urllib3

from etl.common.errors import (
    CorruptResponseError,
    EtlError,
    InterruptedRun,
    RequestRejectedError,
    RetriableError,
    UpstreamError,
)

# A page of 100 audit records is about 100 KB; 64 MiB is far beyond any real answer and
# still bounds what one request may hold in memory (the body is refused while read).
MAX_BODY_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
POLL = 0.25  # seconds: how often a waiting caller looks at the stop event and deadline


_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    http.client.HTTPException,  # IncompleteRead and friends, should one slip through
    urllib3.exceptions.HTTPError,  # from reading the body: ProtocolError, ReadTimeoutError...
    ConnectionError,
    TimeoutError,
)


class _Where:
    """``GET <URL as shown>``, worked out only when a message needs it."""

    def __init__(self, shown: object) -> None:
        self.shown = shown

    def __str__(self) -> str:
        return f"GET {self.shown}"


@dataclass
class _Outcome:
    """One exchange's result: the response and its body, or the error."""

    response: requests.Response | None = None
    body: bytes = b""
    error: BaseException | None = None


class _Cancelled(Exception):
    """The caller gave up on this exchange."""


class Courier:
    """The helper thread of one client, reused from exchange to exchange (starting a
    thread per request would cost more than the rest of the exchange's own work). When a
    caller gives up on an exchange, that thread is left to finish it and end, and the
    next exchange gets a new one."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] | None = None

    def run(self, job: Callable[[], None]) -> None:
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(
                target=_serve, args=(self._jobs,), name="etl-http", daemon=True
            ).start()
        self._jobs.put(job)

    def abandon(self) -> None:
        """The running job is given up: its thread ends after it; the next gets a new one."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None

    close = abandon


def _serve(jobs: queue.SimpleQueue[Callable[[], None] | None]) -> None:
    while (job := jobs.get()) is not None:
        job()


def exchange(
    send: Callable[[float], requests.Response],
    *,
    courier: Courier,
    timeout: float,
    shown: object,
    stop: threading.Event | None = None,
    limit: int = MAX_BODY_BYTES,
) -> tuple[requests.Response, bytes]:
    """The answer and its whole body, all within ``timeout`` seconds.

    ``send(socket_timeout)`` sends the request with ``stream=True`` and returns once the
    headers are in; ``shown`` is the URL as messages show it (formatted only for one).
    Raises RetriableError when the deadline passes or the transport fails,
    CorruptResponseError for a body over ``limit`` bytes, InterruptedRun as soon as
    ``stop`` is set, UpstreamError for a certificate that does not verify,
    RequestRejectedError for a request that cannot be sent, and the EtlErrors of ``send``.
    """
    where = _Where(shown)
    deadline = time.monotonic() + timeout
    done = threading.Event()
    cancel = threading.Event()
    outcome = _Outcome()

    def run() -> None:
        try:
            outcome.response = send(timeout)
            outcome.body = _read_body(outcome.response, deadline, cancel, limit, where)
        except BaseException as exc:  # handed over to the caller, which re-raises it
            outcome.error = exc
            if outcome.response is not None:
                outcome.response.close()
        finally:
            done.set()

    courier.run(run)
    while not done.wait(max(0.0, min(POLL, deadline - time.monotonic()))):
        if stop is not None and stop.is_set():
            cancel.set()
            courier.abandon()
            raise InterruptedRun(f"{where}: stopped by a signal while waiting for the answer")
        if time.monotonic() >= deadline:
            cancel.set()
            courier.abandon()
            raise RetriableError(f"{where}: timed out (no whole answer within {timeout:g} s)")
    if outcome.error is not None:
        typed = _typed(outcome.error, where, sent=outcome.response is not None)
        if typed is outcome.error:
            raise typed
        raise typed from outcome.error
    assert outcome.response is not None
    return outcome.response, outcome.body


def _read_body(
    response: requests.Response,
    deadline: float,
    cancel: threading.Event,
    limit: int,
    where: object,
) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise CorruptResponseError(f"{where}: {_too_large(limit)} (Content-Length {declared})")
    chunks: list[bytes] = []
    size = 0
    try:
        # read1: whatever one socket read brings, so a trickled body cannot hold this
        # thread past the deadline (read(n) would wait for n bytes).
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            size += len(chunk)
            if size > limit:
                raise CorruptResponseError(f"{where}: {_too_large(limit)}")
            if cancel.is_set():
                raise _Cancelled
            if time.monotonic() > deadline:
                raise RetriableError(f"{where}: timed out while reading the body")
            chunks.append(chunk)
    finally:
        response.close()  # after the whole body: back to the pool; else: closed
    return b"".join(chunks)


def _too_large(limit: int) -> str:
    return f"the answer is larger than {limit // (1024 * 1024)} MiB"


def _typed(exc: BaseException, where: object, *, sent: bool) -> BaseException:
    """What the exchange's failure means, as an EtlError (others are bugs: as they are).
    Messages name the failure's type, never its arguments: requests' InvalidHeader and
    http.client's ValueError carry the header they refused, credentials and all."""
    if isinstance(exc, EtlError):
        return exc
    if not sent and isinstance(exc, ValueError) and not isinstance(exc, requests.RequestException):
        # a header http.client cannot encode (a credential outside Latin-1), or a redirect's
        # Location requests cannot parse (it reads one even when not following it)
        return RequestRejectedError(
            f"{where}: the request could not be sent ({type(exc).__name__}): a credential "
            "with characters a header cannot carry, or a redirect to an unparsable location"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        if "certificate" in str(exc).lower():
            return UpstreamError(
                f"{where}: the TLS certificate does not verify: check base_url, "
                "or point REQUESTS_CA_BUNDLE at your CA bundle"
            )
        return RetriableError(f"{where}: TLS handshake failed")
    if isinstance(exc, _TRANSPORT_ERRORS):
        return RetriableError(f"{where}: {transport_failure(exc)}")
    if isinstance(exc, requests.RequestException):
        return RequestRejectedError(
            f"{where}: the request could not be sent ({type(exc).__name__})"
        )
    return exc


def transport_failure(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout | TimeoutError | urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(
        exc,
        requests.exceptions.ChunkedEncodingError
        | requests.exceptions.ContentDecodingError
        | http.client.HTTPException
        | urllib3.exceptions.HTTPError,
    ):
        return f"the response was cut short ({type(exc).__name__})"
    causes = list(_causes(exc))
    if any(isinstance(c, socket.gaierror | urllib3.exceptions.NameResolutionError) for c in causes):
        return "host name not found (DNS)"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    return f"connection failed ({type(exc).__name__})"


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests and urllib3 keep the socket's error as a
    ``reason``, an argument or a cause, a few levels down."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += list(current.args)
        todo += [e for e in linked if isinstance(e, BaseException)]
