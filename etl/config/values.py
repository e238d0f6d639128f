"""Values as the configuration and the command line write them: times, durations, filters.

Pure functions that raise ``ValueError`` with the message a user reads; the configuration
reader (``etl.config.section``) and the CLI's argument types put the key or option before it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from ipaddress import ip_address

INTEGER_FILTERS = ("actor_id", "source_id")
KNOWN_ACTIONS = frozenset({"create", "destroy", "exported", "login", "update"})

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_time(value: object) -> datetime:
    """A TOML datetime/date or ISO 8601 string as an aware UTC datetime."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = (
                datetime.fromisoformat(text)
                if "T" in text or " " in text
                else (date.fromisoformat(text))
            )
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date or time; use e.g. 2024-01-31 or 2024-01-31T12:00:00Z"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(
                f"{value.isoformat()} has no UTC offset; add Z (UTC) or +HH:MM, "
                "e.g. 2024-01-31T12:00:00Z"
            )
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    raise ValueError(f"must be a date or time, not {type(value).__name__}")


def parse_duration(value: object) -> timedelta:
    """Seconds as a number, or text like "90s", "5m", "1h30m", "2d"."""
    if isinstance(value, bool):
        raise ValueError('must be a duration such as 300, "5m" or "1h"')
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("must not be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            d, h, m, s = (int(g or 0) for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        if value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return parse_duration(float(value))
    raise ValueError(f'{value!r} is not a duration; use seconds or e.g. "90s", "5m", "1h"')


def filter_values(key: str, value: object) -> tuple[str, ...]:
    """One filter's values in canonical form (normalised, deduplicated, sorted), so the same
    set always reads the same: it is part of the watermark's scope (``etl.sync.scope``)."""
    values: list[object] = value if isinstance(value, list) else [value]
    given = [v for v in values if isinstance(v, str | int) and not isinstance(v, bool)]
    if not values or len(given) < len(values):
        raise ValueError("must be a string, an integer, or a list of them")
    return tuple(sorted({filter_value(key, v) for v in given}))


def filter_value(key: str, value: str | int) -> str:
    """One filter value as sent, or ``ValueError`` saying why Zendesk could not match it."""
    text = str(value).strip()
    if key in INTEGER_FILTERS:
        if not re.fullmatch(r"-?\d+", text):
            raise ValueError(f"{value!r} is not an integer")
        return str(int(text))
    if key == "ip_address":
        try:
            return str(ip_address(text))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address") from None
    if not text:
        raise ValueError("must not be empty")
    return text
