"""``canonical_json``: one text per JSON value, the project's definition of "the same record".

The store decides whether a record changed by comparing canonical texts (SQLite and
MySQL/MariaDB in Python; PostgreSQL compares ``raw::text``, which follows the same rules),
and anything that hashes a record (a ledger, a checksum) must hash this text, encoded as
UTF-8, so that every database and every run agree on what a record is.

The rules:

- object keys sorted by code point (Python's ``sorted`` on ``str``), duplicate keys
  impossible (a decoded object keeps the last one); arrays keep their order;
- no whitespace at all: ``,`` and ``:`` as separators;
- strings as ``json.dumps(s, ensure_ascii=False)`` writes them: ``"`` and ``\\`` and the
  control characters escaped (``\\n``, ``\\u0001``), everything else as itself;
- ``true``, ``false``, ``null``: only JSON's booleans are booleans, so ``1`` and ``true``
  differ (Python's ``1 == True`` does not decide anything here);
- an integer (``int``) as its decimal digits, exactly, whatever its size;
- any other number (a ``float``: the JSON literal had a fraction or an exponent) in plain
  decimal notation with exactly the digits of its shortest round-trip form, as
  PostgreSQL's ``jsonb`` writes the same literal: ``1.0`` stays ``1.0`` (so ``1`` and ``1.0``
  differ), ``1.50`` is ``1.5``, ``1e-07`` is ``0.0000001``, ``1e+16`` is
  ``10000000000000000`` (PostgreSQL keeps no exponent either), ``-0.0`` is ``0.0``;
  NaN and the infinities are refused (``ValueError``): JSON has none;
- nothing but ``dict`` (with ``str`` keys), ``list``, ``str``, ``int``, ``float``, ``bool``
  and ``None``: anything else is a ``TypeError``.

Iterative, so a value nested any depth is written without recursion (a record nested
thousands deep is still turned into a reject's text).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

# A record of plain values, as Zendesk's are: the json module writes it (in C) exactly as
# the rules above say, since no value in it is a number with a fraction or a container.
_FLAT = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode
_STRING = json.JSONEncoder(ensure_ascii=False).encode
_ASCII_STRING = json.JSONEncoder(ensure_ascii=True).encode
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})


class _Literal(str):
    """Text to write as it is (punctuation, a key already encoded), not a value."""

    __slots__ = ()


_COMMA, _COLON = _Literal(","), _Literal(":")
_CLOSE_OBJECT, _CLOSE_ARRAY = _Literal("}"), _Literal("]")


def canonical_json(value: Any, *, ensure_ascii: bool = False, allow_nan: bool = False) -> str:
    """``value`` as canonical JSON text (the rules are in this module's docstring).

    ``ensure_ascii`` and ``allow_nan`` (NaN, Infinity as the json module writes them) are
    for a reject's text, which must be storable whatever the record holds; a text made
    with them is not canonical."""
    if type(value) is dict and not ensure_ascii and _is_flat(value):
        return _FLAT(value)
    string = _ASCII_STRING if ensure_ascii else _STRING
    parts: list[str] = []
    todo: list[Any] = [value]  # popped from the end: children are pushed in reverse
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind is _Literal:
            parts.append(item)
        elif kind is dict:
            parts.append("{")
            todo.append(_CLOSE_OBJECT)
            keys = sorted(item)  # TypeError for mixed key types; checked below for str
            for i, key in enumerate(reversed(keys)):
                if type(key) is not str:
                    raise TypeError(f"object key {key!r} is not a string")
                todo.append(item[key])
                todo.append(_COLON)
                todo.append(_Literal(string(key)))
                if i < len(keys) - 1:
                    todo.append(_COMMA)
        elif kind is list:
            parts.append("[")
            todo.append(_CLOSE_ARRAY)
            for i, element in enumerate(reversed(item)):
                todo.append(element)
                if i < len(item) - 1:
                    todo.append(_COMMA)
        elif kind is str:
            parts.append(string(item))
        elif kind is float and allow_nan and not math.isfinite(item):
            parts.append(json.dumps(item))
        else:
            parts.append(_scalar(item))
    return "".join(parts)


def _is_flat(value: dict[Any, Any]) -> bool:
    return _PLAIN_TYPES.issuperset(map(type, value.values())) and all(
        type(key) is str for key in value
    )


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return float_text(value)
    if value is None:
        return "null"
    raise TypeError(f"a {kind.__name__} is not a JSON value")


def float_text(value: float) -> str:
    """A non-integer JSON number as the canonical text writes it (see the module's rules)."""
    if not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON numbers")
    text = format(Decimal(repr(value)), "f")  # the shortest round-trip digits, no exponent
    return text[1:] if value == 0 and text.startswith("-") else text
