"""A JSON body, decoded strictly: UTF-8 (RFC 8259) whatever charset the headers claim.

Bytes that are not UTF-8, or not JSON, are a ValueError, never text with U+FFFD in it.
Every answer the job reads (``etl.zendesk.responses``, the OAuth token's in
``etl.zendesk.oauth_token``) is decoded here, and so is a stored record's text when the
store compares it.

Depth is not a reason to refuse a body: valid JSON nested deeper than orjson (1,024) or the
json module (the recursion limit) go is decoded by ``decode_iteratively``, so that the
records it holds are judged one by one (``etl.records.audit`` rejects the deep ones).
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring  # type: ignore[attr-defined]  # public, not in typeshed
from typing import Any

import orjson

_BOM = b"\xef\xbb\xbf"  # RFC 8259 lets a parser ignore it
# Every digit as "0" and any other byte as a space: an integer of 20 digits or more, which
# orjson would make a float, shows as a run of twenty "0"s.
_DIGITS_AS_ZEROS = bytes(ord("0") if chr(b) in "0123456789" else ord(" ") for b in range(256))
_LONG_INTEGER = b"0" * 20


def decode_json(content: bytes | str) -> Any:
    """``content`` as UTF-8 JSON; ValueError (UnicodeDecodeError included) if it is not.

    orjson decodes three times as fast as the json module, to the same values, and refuses
    bytes that are not UTF-8; but it makes an integer past 64 bits a float. A body that may
    hold one (twenty digits in a row, even within a string), and what orjson refuses (NaN,
    a lone surrogate escape, nesting past 1,024), goes to the json module after a strict
    UTF-8 decode, and what is too deep for that to ``decode_iteratively``.
    """
    if isinstance(content, str):
        content = content.encode("utf-8", "surrogatepass")
    if content.startswith(_BOM):
        content = content[len(_BOM) :]
    if _LONG_INTEGER not in content.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    text = content.decode("utf-8")
    try:
        return json.loads(text)
    except RecursionError:
        return decode_iteratively(text)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")  # json.scanner's
_CONSTANTS = (
    ("null", None),
    ("true", True),
    ("false", False),
    ("NaN", float("nan")),
    ("Infinity", float("inf")),
    ("-Infinity", float("-inf")),
)


def decode_iteratively(text: str) -> Any:
    """``json.loads(text)``'s value, built with a stack of open containers instead of
    recursion: any depth, in memory proportional to the text. Slower than the json
    module; only for what that cannot decode for depth. ValueError if not JSON."""
    stack: list[tuple[Any, str | None]] = []  # open containers, each with its pending key
    pos = _skip(text, 0)
    while True:
        char = text[pos : pos + 1]
        value: Any
        if char == "{" or char == "[":
            pos = _skip(text, pos + 1)
            if text.startswith("}" if char == "{" else "]", pos):
                value, pos = ({} if char == "{" else []), pos + 1
            else:
                if char == "{":
                    first_key, pos = _key(text, pos)
                    stack.append(({}, first_key))
                else:
                    stack.append(([], None))
                continue
        elif char == '"':
            value, pos = scanstring(text, pos + 1, True)
        else:
            value, pos = _scalar(text, pos)
        # Put the value in its container, then close every container that ends here.
        while True:
            pos = _skip(text, pos)
            if not stack:
                if pos != len(text):
                    raise ValueError(f"extra data at character {pos}")
                return value
            container, key = stack[-1]
            if key is None:
                container.append(value)
            else:
                container[key] = value
            char = text[pos : pos + 1]
            if char == ",":
                pos = _skip(text, pos + 1)
                if key is not None:
                    next_key, pos = _key(text, pos)
                    stack[-1] = (container, next_key)
                break  # the next value of the same container
            if char != ("}" if key is not None else "]"):
                raise ValueError(f"expected ',' or the container's end at character {pos}")
            stack.pop()
            value, pos = container, pos + 1


def _skip(text: str, pos: int) -> int:
    match = _WHITESPACE.match(text, pos)
    return match.end() if match else pos


def _key(text: str, pos: int) -> tuple[str, int]:
    if not text.startswith('"', pos):
        raise ValueError(f"expected an object key at character {pos}")
    key, pos = scanstring(text, pos + 1, True)
    pos = _skip(text, pos)
    if not text.startswith(":", pos):
        raise ValueError(f"expected ':' at character {pos}")
    return key, _skip(text, pos + 1)


def _scalar(text: str, pos: int) -> tuple[Any, int]:
    for word, value in _CONSTANTS:
        if text.startswith(word, pos):
            return value, pos + len(word)
    match = _NUMBER.match(text, pos)
    if match is None:
        raise ValueError(f"expected a JSON value at character {pos}")
    integer, fraction, exponent = match.groups()
    if fraction or exponent:
        return float(integer + (fraction or "") + (exponent or "")), match.end()
    return int(integer), match.end()
