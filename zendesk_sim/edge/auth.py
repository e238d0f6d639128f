"""Credentials the simulated account accepts, and OAuth client-credentials tokens.

Four methods, as on a real account: Basic ``{email}/token:{api_token}``, Basic
``{email}:{password}``, Bearer static tokens, and Bearer tokens issued by
``POST /oauth/tokens`` (which expire after ``token_ttl``). Setting a field of
``SimAuth`` to None switches that method off.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from zendesk_sim.wire.responses import (
    INVALID_TOKEN,
    MISSING_SCOPE,
    NOT_ADMIN,
    UNAUTHENTICATED,
    Response,
    json_response,
)

AUDIT_SCOPES = frozenset({"auditlogs:read", "read"})
"""Either scope grants read access to audit logs."""


@dataclass(frozen=True)
class SimAuth:
    email: str | None = "admin@example.com"
    api_token: str | None = "sim-api-token"
    password: str | None = "sim-password"
    oauth_tokens: tuple[str, ...] | None = ("sim-oauth-token",)
    client_id: str | None = "sim-client"
    client_secret: str | None = "sim-client-secret"
    token_ttl: float = 3600.0
    scopes: tuple[str, ...] = ("auditlogs:read", "read")
    """Scopes the OAuth client may obtain; static tokens carry all of them."""
    admin: bool = True
    """False: the credentials are valid but belong to a non-admin (403)."""


def _basic_credentials(header: str) -> tuple[str, str] | None:
    try:
        decoded = base64.b64decode(header.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError):
        return None
    user, sep, secret = decoded.partition(":")
    return (user, secret) if sep else None


class Authenticator:
    """Checks ``Authorization`` headers and issues OAuth tokens; thread-safe."""

    def __init__(self, auth: SimAuth, clock: Callable[[], float] = time.monotonic) -> None:
        self.auth = auth
        self._clock = clock
        self._issued: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def check(self, header: str | None) -> Response | None:
        """None if the request may read audit logs, else the 401/403 to send."""
        scheme, _, value = (header or "").partition(" ")
        scopes: frozenset[str] | None = None
        if scheme.lower() == "bearer":
            scopes = self._bearer_scopes(value.strip())
            if scopes is None:
                return json_response(401, INVALID_TOKEN)
        elif scheme.lower() != "basic" or not self._basic_ok(value.strip()):
            response = json_response(401, UNAUTHENTICATED)
            response.headers.append(("WWW-Authenticate", 'Basic realm="Web Password"'))
            return response
        if scopes is not None and not scopes & AUDIT_SCOPES:
            return json_response(403, MISSING_SCOPE)
        if not self.auth.admin:
            return json_response(403, NOT_ADMIN)
        return None

    def _basic_ok(self, value: str) -> bool:
        auth, creds = self.auth, _basic_credentials(value)
        if creds is None or auth.email is None:
            return False
        user, secret = creds
        if auth.api_token is not None and user.lower() == f"{auth.email}/token".lower():
            return secrets.compare_digest(secret, auth.api_token)
        if auth.password is not None and user.lower() == auth.email.lower():
            return secrets.compare_digest(secret, auth.password)
        return False

    def _bearer_scopes(self, token: str) -> frozenset[str] | None:
        if self.auth.oauth_tokens is not None and token in self.auth.oauth_tokens:
            return frozenset(self.auth.scopes)
        with self._lock:
            issued = self._issued.get(token)
        if issued is None or issued[0] <= self._clock():
            return None
        return issued[1]

    def issue(self, form: Mapping[str, str], basic_header: str | None) -> Response:
        """``POST /oauth/tokens`` with the client-credentials grant.

        The client may authenticate in the body (``client_id``/``client_secret``) or
        with HTTP Basic, as RFC 6749 allows.
        """
        if form.get("grant_type") != "client_credentials":
            return json_response(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The authorization grant type is not supported.",
                },
            )
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, value = (basic_header or "").partition(" ")
        if client_id is None and scheme.lower() == "basic":
            client_id, client_secret = _basic_credentials(value.strip()) or (None, None)
        auth = self.auth
        if (
            auth.client_id is None
            or auth.client_secret is None
            or client_id != auth.client_id
            or not secrets.compare_digest(client_secret or "", auth.client_secret)
        ):
            return json_response(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed due to unknown client, "
                    "no client authentication included, or unsupported authentication method.",
                },
            )
        requested = form.get("scope", "").split() or list(auth.scopes)
        if any(scope not in auth.scopes for scope in requested):
            return json_response(
                400,
                {
                    "error": "invalid_scope",
                    "error_description": "The requested scope is invalid, unknown, or malformed.",
                },
            )
        token = "sim-issued-" + secrets.token_urlsafe(24)
        with self._lock:
            now = self._clock()
            self._issued = {t: v for t, v in self._issued.items() if v[0] > now}
            self._issued[token] = (now + auth.token_ttl, frozenset(requested))
        return json_response(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                # Integral TTLs go out as integers, like the real server; tiny ones stay exact.
                "expires_in": int(auth.token_ttl)
                if auth.token_ttl.is_integer()
                else auth.token_ttl,
                "scope": " ".join(requested),
            },
        )
