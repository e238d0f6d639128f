"""The simulated Zendesk's Python API: ``SimulatedZendesk`` and its request log.

``SimulatedZendesk`` owns the pieces (records, auth, rate limit, faults, request log),
answers each API request through ``web.app.App`` (``respond``: latency, the log) and
serves them with ``web.handler.Server`` on loopback.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from zendesk_sim.access.records import AccessLog, AccessSource
from zendesk_sim.audit.generate import RecordSource
from zendesk_sim.audit.query import BoundsPolicy
from zendesk_sim.audit.store import HIGHEST, LOWEST, RecordStore
from zendesk_sim.edge.auth import Authenticator, SimAuth
from zendesk_sim.edge.faults import Fault, FaultQueue
from zendesk_sim.edge.ratelimit import DEFAULT_LIMIT, WINDOW, Mode, RateLimiter
from zendesk_sim.web.app import App, Request
from zendesk_sim.web.handler import Server
from zendesk_sim.wire.responses import Response, add_zendesk_headers, json_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RequestLog:
    """One request as received; Authorization and bodies are never kept."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    time: float  # epoch seconds when the response was ready
    fault: str | None = None  # the fault kind applied, if any


class SimulatedZendesk:
    """A simulated Zendesk account on ``http://127.0.0.1:PORT``; see ``zendesk_sim``."""

    # The limit the headers report when none is enforced (``advertised_limit`` unless
    # given): Zendesk's 700 a minute, as users see; the tests raise it where the job's
    # pacing by the headers is not their subject.
    advertised_limit = DEFAULT_LIMIT

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] | RecordSource | None = None,
        auth: SimAuth = SimAuth(),  # noqa: B008 - frozen dataclass, safe as a default
        rate_limit_per_minute: int | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        rate_limit_mode: Mode = "burst",
        rate_limit_window: float = WINDOW,
        seed: int | None = None,
        min_end_age: float = 60.0,
        inclusive_start: bool = True,
        inclusive_end: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        access_records: Iterable[Mapping[str, Any]] | AccessSource | None = None,
        access_addon: bool = True,
        advertised_limit: int | None = None,
    ) -> None:
        # The access log (GET /api/v2/access_logs); without the add-on every request is a 403.
        if isinstance(access_records, AccessSource):
            self._access = AccessLog(access_records)
        else:
            self._access = AccessLog()
            self._access.add(access_records or ())
        source = records if isinstance(records, RecordSource) else None
        self._store = RecordStore(source)
        if records is not None and source is None:
            self._store.add(records)
        self._faults = FaultQueue()
        self._app = App(
            self._store,
            Authenticator(auth),
            RateLimiter(
                rate_limit_per_minute,
                mode=rate_limit_mode,
                window=rate_limit_window,
                advertised=self.advertised_limit if advertised_limit is None else advertised_limit,
            ),
            self._faults,
            BoundsPolicy(inclusive_start, inclusive_end, min_end_age),
            access_log=self._access,
            access_addon=access_addon,
        )
        self.latency = latency  # seconds each API answer takes, on average...
        self.jitter = jitter  # ... give or take up to this much (uniformly)
        self._random = random.Random(seed)
        self._in_flight = 0
        self.peak_in_flight = 0
        """The most API requests answered at once (a client's concurrency, as seen here)."""
        self._address = (host, port)
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._log: list[RequestLog] = []
        self._log_lock = threading.Lock()
        self.errors: list[str] = []
        """Unexpected exceptions while answering (each became a 500); tests assert it empty."""

    # lifecycle

    def start(self) -> SimulatedZendesk:
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._server = Server(self._address, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="simulated-zendesk",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.drop_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> SimulatedZendesk:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # records and faults

    def add_records(self, records: Iterable[Mapping[str, Any]], visible_after: float = 0.0) -> int:
        """Add records (thread-safe); hidden from queries for ``visible_after`` seconds."""
        return self._store.add(records, visible_after)

    def add_access_records(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Add access-log records (thread-safe); each needs a string id and a timestamp."""
        return self._access.add(records)

    def access_records(self) -> list[dict[str, Any]]:
        """Every access-log record, ascending by (timestamp, its position)."""
        return [record for _, record in self._access.scan(LOWEST, HIGHEST, descending=False)]

    def inject(self, *faults: Fault) -> None:
        self._faults.inject(*faults)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def record_count(self) -> int:
        """Records visible now."""
        return self._store.count()

    def visible_records(self) -> list[dict[str, Any]]:
        """Every visible record, ascending by (created_at, id)."""
        return list(self._store.iter_visible())

    def iter_visible_records(self) -> Iterator[dict[str, Any]]:
        """Same as ``visible_records`` without building the list (large sources)."""
        return self._store.iter_visible()

    # the request log

    @property
    def requests(self) -> list[RequestLog]:
        with self._log_lock:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_lock:
            self._log.clear()
            self.peak_in_flight = self._in_flight

    def _delay(self) -> float:
        """This answer's latency: ``latency`` ± up to ``jitter`` (caller holds the lock)."""
        if self.jitter <= 0:
            return self.latency
        return max(0.0, self.latency + self._random.uniform(-self.jitter, self.jitter))

    def stats(self) -> dict[str, Any]:
        with self._log_lock:
            statuses = Counter(str(entry.status) for entry in self._log)
            total = len(self._log)
            api = [entry.time for entry in self._log if entry.path.startswith("/api/")]
        return {
            "requests": total,
            "by_status": dict(statuses),
            "rate_limited": statuses.get("429", 0),
            "records_visible": self.record_count,
            "faults_pending": self._faults.pending(),
            "peak_in_flight": self.peak_in_flight,
            # seconds from the first API answer to the last: a client's steady state
            "api_span_s": max(api) - min(api) if api else 0.0,
        }

    def respond(self, request: Request) -> tuple[Response, Fault | None]:
        """Answer one API request (called by the handler threads) and log it.

        The rate limit counts the request when it arrives; the latency (the server's
        work and the way back) comes after."""
        started = time.monotonic()
        with self._log_lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            delay = self._delay()
        try:
            response, fault = self._app.respond(request)
        except Exception as exc:  # a simulator bug must not look like a network failure
            log.exception("simulator failed on %s %s", request.method, request.path)
            self.errors.append(f"{request.method} {request.path}: {exc!r}")
            response, fault = json_response(500, {"error": "SimulatorBug"}), None
        add_zendesk_headers(response, time.monotonic() - started + delay)
        if delay > 0:
            time.sleep(max(0.0, started + delay - time.monotonic()))
        with self._log_lock:
            self._in_flight -= 1
            self._log.append(
                RequestLog(
                    method=request.method,
                    path=request.path,
                    query=dict(request.params),
                    status=response.status,
                    time=time.time(),
                    fault=fault.kind if fault is not None else None,
                )
            )
        return response, fault
