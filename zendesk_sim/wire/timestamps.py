"""Zendesk's timestamp format, ``YYYY-MM-DDTHH:MM:SSZ``, to and from epoch seconds.

Everything inside the simulator compares whole UTC seconds as ints: that is the
API's resolution, and ints make ordering and binary search cheap.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime
from functools import lru_cache

_FORMAT = re.compile(r"\A(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z\Z")


# Every record in a response has a created_at: strftime only once a day, tables for the rest.
_MINUTES = tuple(f"{hour:02d}:{minute:02d}:" for hour in range(24) for minute in range(60))
_SECONDS = tuple(f"{second:02d}Z" for second in range(60))


def format_ts(ts: int) -> str:
    """Epoch seconds -> ``2023-01-01T05:01:05Z``."""
    day, second = divmod(ts, 86400)  # UTC has no leap seconds in epoch time
    return _format_day(day) + _MINUTES[second // 60] + _SECONDS[second % 60]


@lru_cache(maxsize=1024)
def _format_day(day: int) -> str:
    return time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))


@lru_cache(maxsize=1024)
def parse_ts(text: str) -> int:
    """``2023-01-01T05:01:05Z`` -> epoch seconds; ValueError for anything else.

    Cached: a client repeats its ``filter[created_at]`` bounds on every page.
    """
    match = _FORMAT.match(text)
    if match is None:
        raise ValueError(f"not a YYYY-MM-DDTHH:MM:SSZ timestamp: {text!r}")
    year, month, day, hour, minute, second = (int(group) for group in match.groups())
    # datetime() validates the calendar (month 13, Feb 30) that the regex lets through.
    datetime(year, month, day, hour, minute, second)
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def to_epoch(moment: datetime) -> float:
    """An aware datetime (naive ones are taken as UTC) -> epoch seconds."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
