"""Where credentials may go: the one URL policy, used by config, client and pagination.

Credentials only ever go to ``base_url``'s own origin (scheme, host, port; the default
port filled in). A URL is judged by what the HTTP library will really connect to: it is
prepared as requests prepares it and parsed by urllib3 (``parse_url``), and that must
agree with what ``urllib.parse.urlsplit`` reads. Some URLs read differently in the two:
``http://127.0.0.1:1\\@127.0.0.1:2/`` is host ``127.0.0.1:2`` to urlsplit but port 1 to
urllib3, which would connect there with the credentials. So a link is refused outright
(``UnsafeLinkError``) when it has user info, a backslash, whitespace or a control
character, a host beyond ASCII (IDNA would map it to another name), dot segments in its
path, or anything the two parsers read differently. A clean link to another origin (a
proxy's links naming the real Zendesk host) is only "not ours": pagination then goes on
with the cursor, never with the link.

Plain http is accepted for loopback hosts only (the simulator, a local proxy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from etl.common.errors import ConfigError, UnsafeLinkError
from etl.common.redact import redact_url

DEFAULT_PORTS = {"http": 80, "https": 443}
# Whitespace, control characters and backslashes: parsers disagree about all of them.
_AMBIGUOUS = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class Origin:
    """A URL's scheme, host and port: what decides where credentials may go."""

    scheme: str
    host: str
    port: int


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (bracketed or not): where plain http is allowed."""
    if host.lower() == "localhost":
        return True
    try:
        return ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def origin(url: str) -> Origin:
    """``url``'s origin as urlsplit reads it, default port filled in; ValueError if unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host:
        raise ValueError(f"not an http(s) URL: {redact_url(url)}")
    port = parts.port if parts.port is not None else DEFAULT_PORTS[scheme]
    return Origin(scheme, host, port)


def connect_origin(prepared_url: str) -> Origin:
    """The origin urllib3 connects to for a URL requests has prepared; ValueError if none."""
    from urllib3.exceptions import LocationParseError
    from urllib3.util import parse_url

    try:
        parts = parse_url(prepared_url)
    except LocationParseError:
        raise ValueError("unparsable URL") from None
    scheme = (parts.scheme or "").lower()
    host = (parts.host or "").lower().strip("[]")  # urlsplit gives IPv6 without brackets
    if scheme not in DEFAULT_PORTS or not host or parts.auth:
        raise ValueError("not an http(s) URL without user info")
    return Origin(scheme, host, parts.port or DEFAULT_PORTS[scheme])


def same_origin(url: str, base_url: str) -> bool:
    """True if ``url`` is safely on ``base_url``'s origin (False for anything else)."""
    try:
        return _check_parsers_agree(url) == origin(base_url)
    except (UnsafeLinkError, ValueError):
        return False


def base_url_problem(base_url: str) -> str | None:
    """Why ``base_url`` cannot receive credentials, or None."""
    try:
        parts = urlsplit(base_url)
        scheme = origin(base_url).scheme
    except ValueError:
        return f"not an http(s) URL: {redact_url(base_url)!r} (e.g. https://SUBDOMAIN.zendesk.com)"
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "must not carry credentials (a user name or password)"
    if parts.query or parts.fragment:
        return f"must not carry a query or a fragment: {redact_url(base_url)!r}"
    try:
        _check_parsers_agree(base_url)
    except UnsafeLinkError as err:
        return f"{redact_url(base_url)!r} is ambiguous: {str(err).partition(': ')[2]}"
    if scheme == "http" and not is_loopback(parts.hostname or ""):
        return "plain http:// is refused except for loopback addresses; use https://"
    return None


def zendesk_host(base_url: str) -> str:
    """The Zendesk host an account's records come from: its checkpoints' first line and a
    part of its watermark's scope (``etl.sync.scope``). The port is left out, so a tunnel or
    a proxy on another port of the same host is the same account."""
    return (urlsplit(base_url).hostname or "").lower()


def check_base_url(base_url: str) -> str:
    """``base_url`` without a trailing slash; ConfigError if credentials may not go there."""
    problem = base_url_problem(base_url)
    if problem is not None:
        raise ConfigError(f"base_url {problem}")
    return base_url.rstrip("/")


def link_is_ours(url: str, base_url: str) -> bool:
    """True: ``url`` is on ``base_url`` (origin and path prefix). False: a clean URL
    elsewhere. UnsafeLinkError: a URL that must never be requested (see the module doc)."""
    link = _check_parsers_agree(url)
    base = origin(base_url)
    if link != base:
        return False
    prefix = urlsplit(base_url).path.rstrip("/")
    path = urlsplit(url).path
    return not prefix or path == prefix or path.startswith(prefix + "/")


def check_request_url(prepared_url: str, base_url: str) -> None:
    """The last check before sending: UnsafeLinkError unless the URL requests will
    really request connects to ``base_url``'s origin."""
    try:
        ours = connect_origin(_scheme_and_authority(prepared_url)) == origin(base_url)
    except ValueError:
        ours = False
    if not ours:
        raise UnsafeLinkError(
            f"refusing to send credentials to {redact_url(prepared_url)}: "
            f"not on {redact_url(base_url)}"
        )


def _scheme_and_authority(url: str) -> str:
    """``scheme://authority`` of ``url`` as urllib3 delimits it (up to ``\\ / ? #``):
    parsing it alone gives the origin of the whole URL, at a fraction of the cost."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = next((i for i, c in enumerate(rest) if c in "\\/?#"), len(rest))
    return f"{scheme}://{rest[:end]}"


def _check_parsers_agree(url: str) -> Origin:
    """``url``'s origin once both parsers agree on it; UnsafeLinkError otherwise."""

    def refuse(why: str) -> UnsafeLinkError:
        return UnsafeLinkError(f"refusing the link {redact_url(url)}: {why}; no credentials sent")

    if _AMBIGUOUS.search(url):
        raise refuse("it holds a backslash, whitespace or a control character")
    try:
        parts = urlsplit(url)
        seen = origin(url)
    except ValueError:
        raise refuse("not an http(s) URL") from None
    if "@" in parts.netloc:
        raise refuse("it carries user info")
    if not parts.netloc.isascii():
        raise refuse("its host is not ASCII (IDNA would map it to another name)")
    segments = parts.path.split("/")
    if any(s in (".", "..") or s.lower() in ("%2e", "%2e%2e", ".%2e", "%2e.") for s in segments):
        raise refuse("its path has dot segments")
    try:
        # requests takes host and port from urllib3's parse_url of the URL as given (the
        # host is ASCII here, so no IDNA step); the authority alone reads the same.
        connects = connect_origin(_scheme_and_authority(url))
    except ValueError:
        raise refuse("the HTTP library cannot parse it") from None
    if connects != seen:
        raise refuse("the HTTP library would connect elsewhere than it reads")
    return seen
