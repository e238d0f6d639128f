"""What an option's text becomes: argparse types that turn a ``ValueError`` into argparse's
one-line usage error (exit 2)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from etl.common.settings import FILTER_KEYS
from etl.config import loader as config
from etl.config.values import filter_value


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


utc_time = _argument_type(config.parse_time)
duration = _argument_type(config.parse_duration)


@_argument_type
def seconds(text: str) -> float:
    return config.parse_duration(text).total_seconds()


@_argument_type
def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a positive whole number")
    return int(text)


# ``list --stream access_logs``'s filters (etl.cli.commands.stored), on the stored copy
ACCESS_FILTER_KEYS = ("user_id", "path", "ip_address")


@_argument_type
def filter_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or key not in (*FILTER_KEYS, *ACCESS_FILTER_KEYS) or not value:
        raise ValueError(
            f"{text!r}: expected KEY=VALUE with KEY one of {', '.join(FILTER_KEYS)} "
            f"(the access log: {', '.join(ACCESS_FILTER_KEYS)})"
        )
    try:  # the config's rule: an integer, an IP address, ... (Zendesk matches nothing else)
        return key, filter_value(key, value)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
