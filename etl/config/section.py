"""One table of the configuration, read through typed readers that name each key in full.

A ``Section`` holds a TOML table, its path from the top (``accounts[1].sync``) and where its
problems go, so a reader never carries ``(problems, where)`` around and every message names the
key as the user wrote it (``accounts[1].sync.lag: ...``). A reader that finds a bad value
reports it once and returns the default, so reading goes on and every problem is collected.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, TypeVar

from etl.common.errors import ConfigError
from etl.config.values import parse_duration, parse_time

T = TypeVar("T")

_KIND_NAMES: dict[type, str] = {
    str: "a string",
    bool: "true or false",
    int: "an integer",
}


class Problems:
    """Every problem found in one file, raised together as one ``ConfigError``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def __len__(self) -> int:
        return len(self.items)

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            if len(self.items) == 1:
                raise ConfigError(f"{self.source}: 1 problem: {self.items[0]}")
            # one per line, under the error line: a long file's problems stay readable
            listed = "".join(f"\n  - {item}" for item in self.items)
            raise ConfigError(f"{self.source}: {len(self.items)} problems:{listed}")


class Section:
    """A table at ``path`` (``""`` for the document itself) whose problems go to ``problems``."""

    def __init__(self, table: Mapping[str, Any], path: str, problems: Problems):
        self.data = table
        self.path = path
        self.problems = problems

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def get(self, key: str, default: object = None) -> Any:
        """The raw value, unchecked."""
        return self.data.get(key, default)

    def path_of(self, key: str) -> str:
        """The key's full path; ``""`` names the section itself."""
        if not key:
            return self.path
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.problems.add(self.path_of(key), message)

    def reporting_to(self, problems: Problems) -> Section:
        """The same table, its problems sent elsewhere (e.g. nowhere, when not needed)."""
        return Section(self.data, self.path, problems)

    def without(self, key: str) -> Section:
        """The same table without ``key`` (read as a section of its own)."""
        return Section({k: v for k, v in self.data.items() if k != key}, self.path, self.problems)

    def unknown_keys(self, allowed: Collection[str]) -> None:
        for key in self.data:
            if key not in allowed:
                import difflib  # only for a config with a typo: not on every run's start-up

                close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.7)
                hint = f"did you mean {close[0]}?" if close else "see config.example.toml"
                self.problem(key, f"unknown key; {hint}")

    def table(self, key: str) -> Section:
        """A sub-table (empty if absent, or not a table: that is reported)."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.problem(key, "must be a table")
            value = {}
        return Section(value, self.path_of(key), self.problems)

    def typed(self, key: str, kind: type[T], default: T) -> T:
        if key not in self.data:
            return default
        value = self.data[key]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            name = _KIND_NAMES.get(kind, kind.__name__)
            self.problem(key, f"must be {name}, not {type(value).__name__}")
            return default
        return value

    def text(self, key: str, default: str = "") -> str:
        return self.typed(key, str, default)

    def flag(self, key: str, default: bool) -> bool:
        return self.typed(key, bool, default)

    def integer(self, key: str, lo: int, hi: int, default: int) -> int:
        """An integer in ``[lo, hi]``."""
        value = self.typed(key, int, default)
        if not lo <= value <= hi:
            self.problem(key, f"must be between {lo} and {hi}, not {value}")
            return default
        return value

    def parsed(self, key: str, parser: Callable[[object], T], default: T) -> T:
        """The value as ``parser`` reads it; its ``ValueError`` is the problem reported."""
        if key not in self.data:
            return default
        try:
            return parser(self.data[key])
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def duration(self, key: str, default: timedelta) -> timedelta:
        return self.parsed(key, parse_duration, default)

    def time(self, key: str) -> datetime | None:
        return self.parsed(key, parse_time, None)
