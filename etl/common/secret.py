"""A string that refuses to show itself.

Secrets are wrapped as soon as they are read, so that a stray ``repr``, f-string
or log call prints ``'***'`` instead of the value; only ``reveal()`` gives it out,
and only ``etl.zendesk.auth`` calls it.
"""

from __future__ import annotations


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)
