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


@lru_cache(maxsize=8192)
def format_ts(ts: int) -> str:
    """Epoch seconds -> ``2023-01-01T05:01:05Z``; cached because bursts share seconds."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_ts(text: str) -> int:
    """``2023-01-01T05:01:05Z`` -> epoch seconds; ValueError for anything else."""
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
