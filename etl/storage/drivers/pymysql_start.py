"""What PyMySQL costs a run's start, spared where it buys nothing (issue 27).

With no ``ssl_*`` option PyMySQL prefers TLS (uses it when the server offers it) and makes
each connection's context up front with ``ssl.create_default_context()``, which reads every
CA certificate of the system: about 25 ms of CPU a connection, two a run, for a server that
may offer no TLS at all. ``quick_preferred_tls`` has PyMySQL make that same context when a
TLS handshake needs it. A URL with an ``ssl_*`` option is left to PyMySQL.

It overrides PyMySQL's private ``Connection._create_ssl_ctx`` as no public option does this:
PyMySQL prefers TLS only with no ``ssl``/``ssl_*`` argument, making the context in
``__init__``, while ``ssl=`` (a non-empty dict or an ``ssl.SSLContext``) or any ``ssl_*``
requires TLS (a server without it refused) and makes the context up front just the same.
tests/test_startup.py fails by name if an upgrade renames, re-signs or stops calling it.

(PyMySQL also imports cryptography, for MySQL's RSA password logins alone: some 2% of a
MariaDB run with nothing new, left as it is; hiding it needs a patched module.)
"""

from __future__ import annotations

import functools
import socket
import ssl
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


def quick_preferred_tls(engine: Engine) -> None:
    """``engine``'s PyMySQL connections make their preferred-TLS context (no ``ssl_*``
    option) when the server offers TLS, not before (see above)."""
    connection = quick_tls_connection()

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        return connection(*cargs, **cparams)


@functools.cache
def quick_tls_connection() -> type:
    """PyMySQL's ``Connection``, its preferred-TLS context made at its first use."""
    from pymysql.connections import Connection

    class QuickTlsConnection(Connection):  # type: ignore[misc]  # PyMySQL has no hints
        def _create_ssl_ctx(self, sslp: Any) -> Any:
            if isinstance(sslp, dict) and not sslp:  # PREFERRED: no ssl_* option given
                return ContextWhenUsed(functools.partial(super()._create_ssl_ctx, sslp))
            return super()._create_ssl_ctx(sslp)

    return QuickTlsConnection


class ContextWhenUsed:
    """Stands for an ``ssl.SSLContext`` made by ``make`` when first used (PyMySQL calls
    ``wrap_socket`` only if the server offers TLS)."""

    def __init__(self, make: Callable[[], ssl.SSLContext]) -> None:
        self._make = make

    @functools.cached_property
    def context(self) -> ssl.SSLContext:
        return self._make()

    def wrap_socket(self, sock: socket.socket, **kwargs: Any) -> ssl.SSLSocket:
        return self.context.wrap_socket(sock, **kwargs)

    def __getattr__(self, name: str) -> Any:  # anything else PyMySQL may come to read
        return getattr(self.context, name)
