"""A string that refuses to show itself.

Secrets are wrapped as soon as they are read, so that a stray ``repr``, f-string
or log call prints ``'***'`` instead of the value; only ``reveal()`` gives it out,
and only ``etl.zendesk.auth`` and ``etl.zendesk.oauth_token`` call it for a Zendesk
credential.

``clean`` is the door every secret passes before it is wrapped (the config's inline,
file and environment values, the OAuth token answer): surrounding whitespace goes (a
file read into a variable keeps its newline), and a control character left inside is
refused, since it could only break the header it goes into, and the error that breaks
it would carry the header, secret and all.
"""

from __future__ import annotations

import unicodedata


def clean(value: str) -> str:
    """``value`` without surrounding whitespace; ``ValueError`` if a control character
    (C0, DEL, C1) is left inside. The message never holds the value."""
    value = value.strip()
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("holds a control character (a line break or the like) inside")
    return value


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
