"""A JSON body, decoded strictly: UTF-8 (RFC 8259) whatever charset the headers claim.

Bytes that are not UTF-8, or not JSON, are a ValueError, never text with U+FFFD in it.
Every answer the job reads (``etl.zendesk.responses``, the OAuth token's in ``etl.zendesk.auth``) is
decoded here.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_BOM = b"\xef\xbb\xbf"  # RFC 8259 lets a parser ignore it
# Every digit as "0" and any other byte as a space: an integer of 20 digits or more, which
# orjson would make a float, shows as a run of twenty "0"s.
_DIGITS_AS_ZEROS = bytes(ord("0") if chr(b) in "0123456789" else ord(" ") for b in range(256))
_LONG_INTEGER = b"0" * 20


def decode_json(content: bytes) -> Any:
    """``content`` as UTF-8 JSON; ValueError (UnicodeDecodeError included) if it is not.

    orjson decodes three times as fast as the json module, to the same values, and refuses
    bytes that are not UTF-8; but it makes an integer past 64 bits a float. A body that may
    hold one (twenty digits in a row, even within a string), and what orjson refuses (NaN,
    a lone surrogate escape), goes to the json module after a strict UTF-8 decode.
    """
    if content.startswith(_BOM):
        content = content[len(_BOM) :]
    if _LONG_INTEGER not in content.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            pass
    return json.loads(content.decode("utf-8"))
