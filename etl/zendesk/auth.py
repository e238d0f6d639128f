"""Credentials -> a ``requests`` auth object; OAuth client-credentials tokens cached.

``build_auth`` picks one method, in this order when several are configured:
OAuth client credentials, OAuth access token, API token, email + password.
Every auth object it returns is a ``ZendeskAuth``: besides signing requests it
tells the client what to name in a 401 message (``method``, ``check``), and names
any deprecation ``notice`` for the CLI to say (this module prints nothing).

Secrets stay wrapped in ``Secret`` until the moment a header is built: this module
and ``etl.zendesk.oauth_token`` (which sends the client secret) are the only ones that
reveal a Zendesk credential. Nothing here logs a secret.

The client-credentials token is fetched lazily with the caller's session and
timeout (``etl.zendesk.oauth_token``: the request and its answer), cached, renewed
``RENEW_MARGIN`` before ``expires_in`` runs out, and renewed once more when a request
that carried it comes back 401 (the request is then re-sent once with the new token).
One lock guards the cache, so worker threads sharing one auth fetch one token, not one
each.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.auth import AuthBase

from etl.common.errors import ConfigError
from etl.common.secret import Secret
from etl.common.settings import Credentials
from etl.zendesk.oauth_token import Grant, fetch_token

log = logging.getLogger(__name__)

API_TOKEN_WARNING = (
    "API tokens are deprecated by Zendesk and stop working on 2027-04-30; "
    "switch to OAuth (client_id/client_secret)"
)
PASSWORD_WARNING = (
    "email + password authentication is discouraged by Zendesk and fails on accounts "
    "with 2FA; switch to OAuth (client_id/client_secret)"
)
RENEW_MARGIN = 60.0  # seconds before expiry at which a cached token is renewed


@dataclass(frozen=True)
class Notice:
    """Something the user should hear about a method that works today. This module only
    names it: the CLI decides when to say it (once a day per account, never under
    ``--quiet``), remembered in the database since every cron run is a new process."""

    key: str  # as recorded in zendesk_audit_sync_state.notice (at most 32 characters)
    text: str


API_TOKEN_NOTICE = Notice("api_token", API_TOKEN_WARNING)
PASSWORD_NOTICE = Notice("password", PASSWORD_WARNING)


class ZendeskAuth(AuthBase):
    """A ``requests`` auth that can describe itself without revealing anything."""

    method: str = "credentials"  # e.g. "API token for ops@acme.com"
    check: str = "the credentials"  # what a 401 message tells the user to check
    notice: Notice | None = None  # what the user should hear about this method


class BasicAuth(ZendeskAuth):
    def __init__(
        self, username: str, password: Secret, method: str, check: str, notice: Notice
    ) -> None:
        self._username = username
        self._password = password
        self.method = method
        self.check = check
        self.notice = notice

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = f"{self._username}:{self._password.reveal()}".encode()
        r.headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        return r

    def __repr__(self) -> str:
        return f"BasicAuth({self.method!r})"


class BearerAuth(ZendeskAuth):
    method = "OAuth access token"
    check = "that oauth_token is current, not revoked, and has the auditlogs:read (or read) scope"

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._token.reveal()}"
        return r

    def __repr__(self) -> str:
        return "BearerAuth('***')"


class ClientCredentialsAuth(ZendeskAuth):
    """OAuth client-credentials grant: fetch, cache and renew a bearer token."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: Secret,
        scope: str,
        base_url: str,
        session: requests.Session,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client_id = client_id
        self.token_url = base_url.rstrip("/") + "/oauth/tokens"
        self._session = session
        self._timeout = timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._token: Secret | None = None
        self._renew_at: float | None = None  # clock time; None = no known expiry
        self.fetches = 0  # tokens obtained, for tests and stats
        self.method = f"OAuth client credentials (client_id {client_id})"
        # The usual cause first: when a line is cut, what is cut is the least likely.
        self.check = (
            f"that client_secret is the OAuth client's current secret (the usual cause), and "
            f"that the client {client_id!r} exists, is confidential, may use the "
            f"client_credentials grant, and has the {scope!r} scope"
        )
        self._grant = Grant(self.token_url, client_id, client_secret, scope, self.check)

    def __repr__(self) -> str:
        return f"ClientCredentialsAuth(client_id={self._client_id!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self._current_token()
        r.headers["Authorization"] = f"Bearer {token.reveal()}"
        r.hooks.setdefault("response", []).append(self._make_401_hook(token))
        return r

    def invalidate(self, token: Secret | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given)."""
        with self._lock:
            if token is None or self._token == token:
                self._token = None
                self._renew_at = None

    def _current_token(self) -> Secret:
        with self._lock:
            now = self._clock()
            if self._token is None or (self._renew_at is not None and now >= self._renew_at):
                self._token, expires_in = self._fetch()
                self.fetches += 1
                if expires_in is None:
                    self._renew_at = None
                else:
                    margin = min(RENEW_MARGIN, expires_in / 10)
                    self._renew_at = self._clock() + expires_in - margin
            return self._token

    def _make_401_hook(self, token: Secret) -> Callable[..., requests.Response]:
        def hook(r: requests.Response, **kwargs: Any) -> requests.Response:
            if r.status_code != 401:
                return r
            log.info("Zendesk answered 401 to the OAuth token; fetching a new one once")
            self.invalidate(token)
            r.close()  # its body unread (it may be any size): the connection is not reused
            prepared = r.request.copy()
            new_token = self._current_token()
            prepared.headers["Authorization"] = f"Bearer {new_token.reveal()}"
            prepared.hooks = {"response": []}  # renew once, not again on the retried answer
            connection = r.connection
            retried: requests.Response = connection.send(prepared, **kwargs)
            retried.history.append(r)
            retried.request = prepared
            return retried

        return hook

    def _fetch(self) -> tuple[Secret, float | None]:
        return fetch_token(self._session, self._grant, self._timeout)


def build_auth(
    credentials: Credentials, base_url: str, session: requests.Session, timeout: float
) -> ZendeskAuth:
    """The auth for ``credentials``; ConfigError when no complete method is configured."""
    c = credentials
    if c.client_id or c.client_secret:
        if not (c.client_id and c.client_secret):
            missing = "client_secret" if c.client_id else "client_id"
            raise ConfigError(f"OAuth client credentials need both client_id and {missing}")
        return ClientCredentialsAuth(
            client_id=c.client_id,
            client_secret=c.client_secret,
            scope=c.oauth_scope,
            base_url=base_url,
            session=session,
            timeout=timeout,
        )
    if c.oauth_token:
        return BearerAuth(c.oauth_token)
    if c.api_token:
        if not c.email:
            raise ConfigError("api_token needs the email of the user it belongs to")
        return BasicAuth(
            f"{c.email}/token",
            c.api_token,
            method=f"API token for {c.email}",
            check=f"that the API token is active and belongs to {c.email}, an admin",
            notice=API_TOKEN_NOTICE,
        )
    if c.password:
        if not c.email:
            raise ConfigError("password needs the email of the user it belongs to")
        return BasicAuth(
            c.email,
            c.password,
            method=f"email + password for {c.email}",
            check=f"the password of {c.email}, and that the account allows password "
            "access without 2FA",
            notice=PASSWORD_NOTICE,
        )
    raise ConfigError(
        "no Zendesk credentials: set client_id + client_secret, oauth_token, "
        "email + api_token, or email + password"
    )
