"""The OAuth client-credentials grant: one token request, its answer judged.

``fetch_token`` posts the grant to ``/oauth/tokens`` with the caller's session and
timeout, reads at most ``TOKEN_BODY_LIMIT`` of the answer, and either returns the token
(a ``Secret`` from the start) with its lifetime or raises the typed error the client's
retry policy understands: retriable (a transport failure, 5xx, 408, 429) or fatal (a
refusal, a redirect, a token that cannot be sent). Caching and renewal are the auth's
(``etl.zendesk.auth.ClientCredentialsAuth``); nothing here logs or keeps a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.auth import AuthBase

from etl.common.errors import (
    AuthError,
    ConfigError,
    CorruptResponseError,
    RateLimitedError,
    RequestRejectedError,
    RetriableError,
)
from etl.common.jsonbody import decode_json
from etl.common.redact import error_summary, redact_url
from etl.common.secret import Secret, clean
from etl.zendesk.exchange import transport_failure
from etl.zendesk.ratelimit import parse_retry_after

TOKEN_BODY_LIMIT = 64 * 1024  # bytes: a token answer is a few hundred; more is not one


@dataclass(frozen=True)
class Grant:
    """What one token request sends, and what a refusal tells the user to check."""

    token_url: str
    client_id: str
    client_secret: Secret
    scope: str
    check: str


class _NoAuth(AuthBase):
    """Sends nothing; stops a session's own ``auth`` or ~/.netrc from being applied."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def fetch_token(
    session: requests.Session, grant: Grant, timeout: float
) -> tuple[Secret, float | None]:
    """A new token and its lifetime in seconds (None: none given)."""
    payload = {
        "grant_type": "client_credentials",
        "client_id": grant.client_id,
        "client_secret": grant.client_secret.reveal(),
        "scope": grant.scope,
    }
    where = f"POST {redact_url(grant.token_url)}"
    try:
        response = session.post(
            grant.token_url,
            json=payload,
            auth=_NoAuth(),
            timeout=(timeout, timeout),
            allow_redirects=False,
            headers={"Accept": "application/json"},
            stream=True,  # the body is read here, no more than TOKEN_BODY_LIMIT of it
        )
        with response:
            raw = response.raw.read(TOKEN_BODY_LIMIT + 1, decode_content=True)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise RetriableError(
            f"{where}: could not obtain an OAuth token: {transport_failure(exc)}"
        ) from None
    except ValueError as exc:  # requests reads a redirect's Location even when not following
        raise RequestRejectedError(
            f"{where}: an answer that cannot be read ({type(exc).__name__}: a redirect to "
            "an unparsable location?); redirects are not followed: check base_url "
            "(https://SUBDOMAIN.zendesk.com)"
        ) from None
    if len(raw) > TOKEN_BODY_LIMIT:
        raise CorruptResponseError(
            f"{where}: the token answer is larger than {TOKEN_BODY_LIMIT // 1024} KiB"
        )
    return _parse_token_response(response, raw, where, grant.check)


def _parse_token_response(
    response: requests.Response, raw: bytes, where: str, check: str
) -> tuple[Secret, float | None]:
    status = response.status_code
    body = _json_object(raw)
    if status == 429 or (status == 503 and "Retry-After" in response.headers):
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimitedError(f"{where}: {status} while obtaining an OAuth token", retry_after)
    if status >= 500 or status == 408:
        raise RetriableError(f"{where}: {status} while obtaining an OAuth token")
    if 300 <= status < 400:  # not followed: the client secret goes to base_url only
        target = _redirect_target(response.headers.get("Location", ""))
        raise RequestRejectedError(
            f"{where}: {status}, a redirect to {target}; redirects are not followed: "
            "check base_url (https://SUBDOMAIN.zendesk.com)"
        )
    if status == 404:  # no such account (a subdomain's typo), or base_url is not Zendesk's
        raise RequestRejectedError(
            f"{where}: 404 while obtaining an OAuth token: no such Zendesk account "
            "or path: check subdomain/base_url"
        )
    if not 200 <= status < 300:
        said = error_summary(body) if body is not None else ""
        said = f"; Zendesk said: {said}" if said else ""  # last: its length varies
        raise AuthError(
            f"{where}: {status}: Zendesk refused the OAuth client credentials "
            f"grant: check {check}{said}"
        )
    token = body.get("access_token") if body is not None else None
    if isinstance(token, str):
        try:  # a secret from outside like any other: stripped, or refused
            token = clean(token)
        except ValueError as exc:
            raise ConfigError(
                f"{where}: the OAuth token answered {exc}: it cannot be sent; "
                "check that base_url is Zendesk's (https://SUBDOMAIN.zendesk.com)"
            ) from None
    if not isinstance(token, str) or not token:
        raise RetriableError(f"{where}: {status} answer without an access_token")
    expires_in = body.get("expires_in") if body is not None else None
    expiry = (
        float(expires_in)
        if isinstance(expires_in, int | float)
        and not isinstance(expires_in, bool)
        and expires_in > 0
        else None
    )
    return Secret(token), expiry


def _redirect_target(location: str) -> str:
    """Where a redirect points, for a message: its host (never a bad header's text)."""
    try:
        host = urlsplit(location).hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "an unparsable location"
    return host or ("the same host" if location else "nowhere")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object (decoded as every answer is), else None."""
    try:
        body = decode_json(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
