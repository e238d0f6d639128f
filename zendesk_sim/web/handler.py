"""The simulator's HTTP/1.1 server: a ``ThreadingHTTPServer`` with daemon threads.

``Handler`` only moves bytes: it parses a request, asks the ``Responder`` (a
``SimulatedZendesk``) for the ``Response`` and writes it, performing the socket-level
faults (``reset``, ``truncate``) itself; ``/_sim/*`` goes to ``control``.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
import sys
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from zendesk_sim.edge.faults import Fault
from zendesk_sim.web import control
from zendesk_sim.web.app import Request
from zendesk_sim.wire.responses import Response


class Responder(control.Controlled, Protocol):
    """What the server answers with; ``simulator.SimulatedZendesk`` is one (no import back)."""

    def respond(self, request: Request) -> tuple[Response, Fault | None]: ...


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # Keep-alive handler threads may idle for long; never join them on close.
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (killed by a test, timed out) is normal here, not news.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    # The default backlog of 5 drops SYNs when many client threads connect at once,
    # and the kernel retries them only after a second.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Responder) -> None:
        self.sim = sim
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close kept-alive connections, so a stopped simulator really stops answering."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
    server: Server
    timeout = 120  # reclaim threads of idle kept-alive connections
    # Headers and body go out in two writes; with Nagle on, delayed ACKs add ~40 ms a page.
    disable_nagle_algorithm = True

    def version_string(self) -> str:
        return "cloudflare"  # what Zendesk's edge says in Server:

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the simulator keeps its own request log (``sim.requests``)."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = Request(
            method=self.command,
            path=url.path,
            pairs=parse_query(url.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base=f"http://{host}",
        )
        sim = self.server.sim
        try:
            if request.path.startswith("/_sim/"):
                self._write(control.handle(sim, request), None)
                return
            response, fault = sim.respond(request)
            self._write(response, fault)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            # The client gave up (e.g. its read timeout during a 'slow' fault).
            self.close_connection = True

    def _write(self, response: Response, fault: Fault | None) -> None:
        body = response.body
        kind = fault.kind if fault is not None else None
        if kind == "truncate":
            body = body[: len(body) // 2]
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body if kind == "reset" else body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if kind == "reset":
            self._end_headers_and_write(body[: len(body) // 2])
            self._abort()
            return
        self._end_headers_and_write(body)

    def _end_headers_and_write(self, body: bytes) -> None:
        """``end_headers()`` then ``wfile.write(body)``, as one write: one system call.

        The headers are caught in a buffer (``end_headers`` writes them to ``wfile``).
        """
        wfile, self.wfile = self.wfile, io.BytesIO()
        try:
            self.end_headers()
            head = self.wfile.getvalue()
        finally:
            self.wfile = wfile
        self.wfile.write(head + body)

    def _abort(self) -> None:
        """Close with SO_LINGER 0: the kernel sends RST, the client sees a reset."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(self.connection.detach())


def parse_query(query: str) -> list[tuple[str, str]]:
    """``parse_qsl(query, keep_blank_values=True)``, parsing each distinct field only once.

    parse_qsl treats the ``&``-separated fields one by one, and a client paging
    through a query repeats all of them but the cursor.
    """
    return [pair for field in query.split("&") for pair in _parse_field(field)]


@lru_cache(maxsize=1024)
def _parse_field(field: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_qsl(field, keep_blank_values=True))
