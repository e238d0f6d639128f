"""The one clock and the one way a time is written.

Everything that decides by time takes a ``now`` callable defaulting to ``utc_now``, so tests
inject theirs; every time the tool prints, logs or sends is ``format_time``'s
``YYYY-MM-DDTHH:MM:SSZ`` (Zendesk's own form), and ``iso`` is that or ``None`` (JSON ``null``).
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC; naive datetimes are refused."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: use an aware UTC datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso(value: datetime | None) -> str | None:
    """``format_time``, or ``None`` for no time (``null`` in JSON; text says ``none``)."""
    return format_time(value) if value else None
