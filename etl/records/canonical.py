"""One canonical JSON text for a record, the same whichever database kept it.

``canonical_json(value)`` is the UTF-8 bytes of ``value`` written as JSON with:

- object members sorted by key (Unicode code points), ``"key":value`` joined by ``,``,
  no whitespace anywhere (compact separators);
- strings with ``"`` and ``\\`` escaped, ``\\b \\f \\n \\r \\t`` as two-character escapes,
  other characters below U+0020 as ``\\u00xx`` (lowercase hex), every other character as
  itself in UTF-8;
- ``true``, ``false``, ``null``;
- numbers by value, in plain decimal notation: an integer exactly, of any size; a float
  as the shortest decimal that reads back as it (Python's ``repr``), then without an
  exponent or trailing zeros, and as an integer when that decimal is whole
  (``100.0`` -> ``100``, ``1e-05`` -> ``0.00001``, ``-0.0`` -> ``0``).

Why numbers by value: PostgreSQL's JSONB keeps numbers as decimals and may write
``1e16`` back as ``10000000000000000``; sorted keys because JSONB reorders members. Two
texts that mean the same record give the same bytes on SQLite, PostgreSQL and MariaDB.
docs/INTEGRITY.md states it for an auditor re-implementing it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

# orjson writes exactly the form above for these (strings and 64-bit integers), 10x faster.
_PLAIN_TYPES = frozenset({str, int, bool, type(None)})
_string = json.JSONEncoder(ensure_ascii=False).encode


def canonical_json(value: Any) -> bytes:
    """``value`` (what ``json.loads`` gives) as canonical JSON bytes (see the module)."""
    if type(value) is dict and _PLAIN_TYPES.issuperset(map(type, value.values())):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # an integer past 64 bits
            pass
    return "".join(_parts(value)).encode()


def _parts(value: Any) -> list[str]:
    out: list[str] = []
    _write(value, out)
    return out


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None or isinstance(value, bool):
        out.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        out.append(str(int(value)))
    elif isinstance(value, float):
        out.append(_number(value))
    elif isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_string(str(key)))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


def _number(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("NaN and Infinity have no JSON form")
    if value == 0:
        return "0"
    text = format(Decimal(repr(value)).normalize(), "f")
    return text
