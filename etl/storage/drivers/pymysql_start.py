"""What PyMySQL costs a run's start, spared where it buys nothing (issue 27).

- cryptography: PyMySQL imports it as it is imported (``pymysql._auth``), 33 M
  instructions of a MariaDB run with nothing new, although its one use,
  ``sha2_rsa_encrypt``, runs only for MySQL's ``sha256_password`` and
  ``caching_sha2_password`` logins without TLS (the password sent encrypted with the
  server's RSA key); MariaDB's usual logins never call it. ``import_pymysql`` imports
  PyMySQL with cryptography hidden and puts back a ``sha2_rsa_encrypt`` that imports it at
  its first call, then is PyMySQL's own.
- the CA store: with no ``ssl_*`` option PyMySQL prefers TLS (uses it when the server
  offers it) and makes each connection's context up front with
  ``ssl.create_default_context()``, which reads every CA certificate of the system: about
  25 ms of CPU a connection, two a run, for a server that may offer no TLS at all.
  ``quick_preferred_tls`` has PyMySQL make that same context when a TLS handshake needs
  it. A URL with an ``ssl_*`` option is left to PyMySQL.
"""

from __future__ import annotations

import functools
import socket
import ssl
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

Encrypt = Callable[[bytes, bytes, bytes], bytes]


def import_pymysql() -> None:
    """Import PyMySQL (SQLAlchemy's pymysql dialect then finds it imported)."""
    if "pymysql" in sys.modules or "cryptography" in sys.modules:
        import pymysql  # noqa: F401  (imported already, or cryptography is paid for)

        return
    sys.modules["cryptography"] = None  # type: ignore[assignment]  # ImportError for it
    try:
        from pymysql import _auth
    finally:
        if sys.modules.get("cryptography", ...) is None:
            del sys.modules["cryptography"]
    encrypt = getattr(_auth, "sha2_rsa_encrypt", None)
    # A PyMySQL laid out otherwise is left as it is: correct, only slower to import.
    if getattr(_auth, "_have_cryptography", True) is False and callable(encrypt):
        _auth.sha2_rsa_encrypt = _encrypt_importing_cryptography(_auth, encrypt)


def _encrypt_importing_cryptography(auth: ModuleType, encrypt: Encrypt) -> Encrypt:
    def sha2_rsa_encrypt(password: bytes, salt: bytes, public_key: bytes) -> bytes:
        try:
            from cryptography.hazmat.backends import default_backend
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import padding
        except ImportError:  # PyMySQL's own message: the package is required
            return encrypt(password, salt, public_key)
        # The names PyMySQL's function reads as its module's globals, as its import sets them.
        vars(auth).update(
            default_backend=default_backend,
            hashes=hashes,
            serialization=serialization,
            padding=padding,
            _have_cryptography=True,
            sha2_rsa_encrypt=encrypt,
        )
        return encrypt(password, salt, public_key)

    return sha2_rsa_encrypt


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
