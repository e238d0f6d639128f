"""One HTTP exchange within a deadline: connect, headers and the whole body, or an error.

requests' ``timeout`` bounds each socket operation, not the answer: a body trickled a byte
a second never times out, and a thread blocked in a read (or a DNS lookup) cannot see a
stop request. So the exchange runs in a helper thread that reads the body in chunks,
stopping at the deadline or beyond ``MAX_BODY_BYTES``, while the caller waits for it at
most ``POLL`` seconds at a time, watching the deadline and the stop event. A caller that
gives up leaves the helper to notice (after its current read, which the socket timeout
bounds) and close its connection; nothing it reads after that is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from etl.errors import CorruptResponseError, InterruptedRun, RetriableError

# A page of 100 audit records is about 100 KB; 64 MiB is far beyond any real answer and
# still bounds what one request may hold in memory (the body is refused while read).
MAX_BODY_BYTES = 64 * 1024 * 1024
CHUNK = 256 * 1024
POLL = 0.25  # seconds: how often a waiting caller looks at the stop event and deadline


@dataclass
class _Outcome:
    response: requests.Response | None = None
    body: bytes = b""
    error: BaseException | None = None


class _Cancelled(Exception):
    """The caller gave up on this exchange."""


def exchange(
    send: Callable[[float], requests.Response],
    *,
    timeout: float,
    where: str,
    stop: threading.Event | None = None,
    limit: int = MAX_BODY_BYTES,
) -> tuple[requests.Response, bytes]:
    """The answer and its whole body, all within ``timeout`` seconds.

    ``send(socket_timeout)`` sends the request with ``stream=True`` and returns once the
    headers are in. Raises RetriableError when the deadline passes, CorruptResponseError
    for a body over ``limit`` bytes, InterruptedRun as soon as ``stop`` is set, and
    whatever ``send`` raises.
    """
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

    threading.Thread(target=run, name="etl-http", daemon=True).start()
    while not done.wait(max(0.0, min(POLL, deadline - time.monotonic()))):
        if stop is not None and stop.is_set():
            cancel.set()
            raise InterruptedRun(f"{where}: stopped by a signal while waiting for the answer")
        if time.monotonic() >= deadline:
            cancel.set()
            raise RetriableError(f"{where}: timed out (no whole answer within {timeout:g} s)")
    if outcome.error is not None:
        raise outcome.error
    assert outcome.response is not None
    return outcome.response, outcome.body


def _read_body(
    response: requests.Response,
    deadline: float,
    cancel: threading.Event,
    limit: int,
    where: str,
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
