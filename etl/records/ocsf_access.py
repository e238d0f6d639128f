"""A Zendesk access-log record as an OCSF 1.3.0 event: API Activity (6003).

An access-log record is one request an agent or admin (or a token acting for one) made to
Zendesk's REST or GraphQL API, with what it asked for and how Zendesk answered: API
Activity's shape (actor, source, HTTP request, API operation, outcome). Web Resources
Activity (6001) describes what was done to a resource, but needs ``web_resources`` named,
which a list request or a GraphQL query does not give; API Activity also keeps both logs in
one class for detections. The activity comes from the HTTP method (GET/HEAD Read, POST
Create, PUT/PATCH Update, DELETE Delete, any other Other); a GraphQL access is a Read,
or Other (``GraphQL mutation``) when its text is a mutation.

Every byte is Zendesk's, so nothing is trusted: a field of the wrong type is left out of
the event (it stays in ``unmapped`` and ``raw_data``), an IP address or host name the
schema would refuse goes to ``unmapped`` as well, and a method outside OCSF 1.3.0's list
(``PATCH`` among them) is kept only in ``api.operation`` and ``unmapped``. docs/OCSF.md
gives the mapping field by field. Pure: no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from etl.records.audit import parse_created_at
from etl.records.ocsf import API_ACTIVITY, OTHER, event_metadata

PRODUCT = {"name": "Zendesk", "vendor_name": "Zendesk", "feature": {"name": "Access Log"}}
# method -> (activity_id, activity_name) in API Activity
_ACTIVITIES = {
    "GET": (2, "Read"),
    "HEAD": (2, "Read"),
    "POST": (1, "Create"),
    "PUT": (3, "Update"),
    "PATCH": (3, "Update"),
    "DELETE": (4, "Delete"),
}
# OCSF 1.3.0's http_request.http_method enum: PATCH is not in it
OCSF_METHODS = frozenset({"OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT"})
# The record's fields that have a place in the event; every other one goes to unmapped.
MAPPED = frozenset(
    {"id", "timestamp", "user_id", "ip_address", "method", "url", "status", "client",
     "referer", "summary"}
)  # fmt: skip
# OCSF's hostname pattern (dictionary type hostname_t)
_HOSTNAME = re.compile(
    r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])"
)
# /api/v2/tickets/7.json, /api/v2/users/12/identities.json -> the last (collection, id) pair
_RESOURCE = re.compile(r"/([a-z_]+)/(\d+)(?=/|\.json$|$)")
_INT32 = 2**31


def access_to_ocsf(
    record: Mapping[str, Any],
    account: str,
    raw_text: str | None = None,
    *,
    sequence: int | None = None,
) -> dict[str, Any]:
    """The OCSF event for the access-log ``record`` (as Zendesk sent it) of ``account``;
    ``raw_text`` becomes ``raw_data``, ``sequence`` (the row's store sequence number)
    ``metadata.sequence``, when given."""
    method = _text(record.get("method"))
    graphql = record.get("graphql")
    url = _text(record.get("url"))
    activity_id, activity_name = _activity(method, graphql if url is None else None)
    event: dict[str, Any] = {
        "class_uid": API_ACTIVITY,
        "class_name": "API Activity",
        "category_uid": 6,
        "category_name": "Application Activity",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": API_ACTIVITY * 100 + activity_id,
        "type_name": f"API Activity: {activity_name}",
        "severity_id": 1,
        "severity": "Informational",
        "time": _epoch_ms(record.get("timestamp")),
        "metadata": _metadata(record, sequence),
        "cloud": {"provider": "Zendesk", "account": {"name": account}},
        "actor": _actor(record),
        "src_endpoint": _source(record),
    }
    event.update(_status(record.get("status")))
    parts = None if url is None else _split(url)  # split once: the costly part
    path = None if parts is None else parts[0]
    request, host = _http_request(method, url, parts, record)
    event["http_request"] = request
    if host:
        event["dst_endpoint"] = {"hostname": host}
    event["api"] = _api(method, url, path, graphql, event.get("status_code"))
    resource = _resource(path)
    if resource:
        event["resources"] = [resource]
    summary = _text(record.get("summary"))
    if summary:
        event["message"] = summary
    unmapped: dict[str, Any] = {"account": account}
    unmapped.update((k, v) for k, v in record.items() if k not in MAPPED)
    # what the event could not hold as sent stays beside it, under its own name
    for name in sorted(MAPPED - {"id", "timestamp"}):
        if name in record and not _placed(name, record[name], event):
            unmapped[name] = record[name]
    event["unmapped"] = unmapped
    if raw_text is not None:
        event["raw_data"] = raw_text
    return event


def _activity(method: str | None, graphql: Any) -> tuple[int, str]:
    if graphql is not None:
        text = graphql if isinstance(graphql, str) else _text(_get(graphql, "query")) or ""
        if text.lstrip().startswith("mutation"):
            return OTHER, "GraphQL mutation"
        return 2, "Read"
    if method is None:
        return OTHER, "Other"
    return _ACTIVITIES.get(method.upper(), (OTHER, method or "Other"))


def _metadata(record: Mapping[str, Any], sequence: int | None) -> dict[str, Any]:
    timestamp = _text(record.get("timestamp"))
    return event_metadata(PRODUCT, ["cloud"], record.get("id"), timestamp, sequence)


def _actor(record: Mapping[str, Any]) -> dict[str, Any]:
    user_id = record.get("user_id")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        user_id = str(user_id)  # an integer elsewhere in Zendesk's API: the same user
    if isinstance(user_id, str) and user_id:
        return {"user": {"uid": user_id}}
    return {"app_name": "Zendesk"}  # an actor is required; the record names none


def _source(record: Mapping[str, Any]) -> dict[str, Any]:
    ip = _ip(record.get("ip_address"))
    return {"ip": ip} if ip else {"name": "unknown"}  # the class requires a source


def _status(value: Any) -> dict[str, Any]:
    """The outcome, from the HTTP status: below 400 Success, else Failure."""
    code = _int(value)
    if code is None or not 100 <= code <= 999:
        return {"status_id": 0, "status": "Unknown"}
    if code < 400:
        return {"status_id": 1, "status": "Success", "status_code": str(code)}
    return {"status_id": 2, "status": "Failure", "status_code": str(code)}


def _http_request(
    method: str | None,
    url: str | None,
    parts: tuple[str, str, str | None] | None,
    record: Mapping[str, Any],
) -> tuple[dict[str, Any], str | None]:
    """``http_request`` and the URL's host (for ``dst_endpoint``), if it names a valid one."""
    request: dict[str, Any] = {}
    if method is not None and method.upper() in OCSF_METHODS:
        request["http_method"] = method.upper()
    host = None
    if url is not None and parts is not None:
        path, query, hostname = parts
        request["url"] = {"url_string": url, "path": path}
        if query:
            request["url"]["query_string"] = query
        if hostname and _HOSTNAME.fullmatch(hostname):
            request["url"]["hostname"] = host = hostname
    for key, field in (("user_agent", "client"), ("referrer", "referer")):
        text = _text(record.get(field))
        if text:
            request[key] = text
    return request, host


def _api(
    method: str | None, url: str | None, path: str | None, graphql: Any, code: str | None
) -> dict[str, Any]:
    if url is None and graphql is not None:
        operation = "graphql"
    else:
        operation = " ".join(p for p in (method, path) if p) or "unknown"
    api: dict[str, Any] = {"operation": operation, "service": {"name": "Zendesk"}}
    if code is not None:
        api["response"] = {"code": int(code)}
    return api


def _resource(path: str | None) -> dict[str, Any] | None:
    found = _RESOURCE.findall(path or "")
    if not found:
        return None
    kind, uid = found[-1]
    return {"uid": uid, "type": kind}


def _split(url: str) -> tuple[str, str, str | None] | None:
    """(path, query, host) of ``url``, absolute or a bare path; None if it does not parse."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # a bad IPv6 host
        return None
    return parts.path, parts.query, hostname


def _placed(name: str, value: Any, event: Mapping[str, Any]) -> bool:
    """Whether ``value`` of field ``name`` made it into ``event`` as sent."""
    if name == "user_id":
        return isinstance(value, str) and bool(value)
    if name == "ip_address":
        return bool(event["src_endpoint"].get("ip") == value)
    if name == "method":
        return bool(event["http_request"].get("http_method") == value)
    if name == "status":
        return _int(value) is not None and event.get("status_code") == str(value)
    if name == "url":
        return "url" in event["http_request"]
    return isinstance(value, str) and bool(value)  # client, referer, summary


def _ip(value: Any) -> str | None:
    text = _text(value)
    if not text or len(text) > 40:
        return None
    return _valid_ip(text)


@functools.lru_cache(maxsize=4096)  # an account's agents come from few addresses
def _valid_ip(text: str) -> str | None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -_INT32 <= value < _INT32:
        return value
    return None


def _get(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, dict) else None


def _epoch_ms(value: Any) -> int:
    """``timestamp`` in ms since the epoch (the store keeps no record without one)."""
    moment = parse_created_at(value)
    return 0 if moment is None else int(moment.timestamp() * 1000)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
