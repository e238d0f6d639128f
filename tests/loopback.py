"""A hand-made HTTP server on loopback that sends exactly the odd thing a test needs.

``LoopbackServer(respond)`` calls ``respond(exchange)`` for every request (GET or POST);
the callable writes what it likes with ``exchange.send(status, headers, body)`` or byte by byte on
``exchange.wfile``. Every request is recorded (path, headers), so a test can assert
that a server received nothing, or no credential.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson


@dataclass
class Seen:
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    client_port: int = 0  # the same port twice: one kept-alive connection


class Exchange:
    def __init__(self, handler: http.server.BaseHTTPRequestHandler, server: LoopbackServer):
        self.handler = handler
        self.path = handler.path
        self.wfile = handler.wfile
        self.closing = server.closing  # set when the test is over: stop trickling

    def send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.handler.send_response(status)
        for name, value in headers.items():
            self.handler.send_header(name, value)
        if not any(name.lower() == "content-length" for name in headers):
            self.handler.send_header("Content-Length", str(len(body)))
        self.handler.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.send(status, {"Content-Type": "application/json"}, orjson.dumps(payload))


Respond = Callable[[Exchange], None]


class LoopbackServer:
    def __init__(self, respond: Respond | None = None) -> None:
        self.respond = respond or (lambda ex: ex.send_json({"audit_logs": [], "meta": {}}))
        self.seen: list[Seen] = []
        self.closing = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.seen.append(
                    Seen(self.path, dict(self.headers.items()), self.client_address[1])
                )
                length = self.headers.get("Content-Length", "0")
                self.rfile.read(int(length) if length.isdigit() else 0)  # a POST's body
                # The client may give up (as it should) while an answer is being sent.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    outer.respond(Exchange(self, outer))

            do_POST = do_GET  # an OAuth token request

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def credentials_seen(self) -> list[str]:
        return [s.headers["Authorization"] for s in self.seen if "Authorization" in s.headers]
