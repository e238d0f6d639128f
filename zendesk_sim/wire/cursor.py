"""Opaque pagination cursors: a position (created_at, id) and the sort direction.

Cursors are standard base64, and every one starts with ``+/+/`` and ends with
``=``: a client that forgets to URL-encode ``page[after]`` fails on its first
cursor instead of on one page in fifty. A CRC makes garbled cursors detectable,
and a salt lets the simulator issue two different strings for one position.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass

Key = tuple[int, int]
"""A record's sort position: (created_at epoch seconds, id); an access record's
(timestamp epoch seconds, rank)."""

_MAGIC = b"\xfb\xff\xbf"  # encodes to "+/+/"
_BODY = struct.Struct(">?qqH")  # descending, created_at, id, salt


@dataclass(frozen=True)
class Cursor:
    key: Key
    descending: bool
    salt: int = 0


def encode(cursor: Cursor) -> str:
    created, record_id = cursor.key
    body = _MAGIC + _BODY.pack(cursor.descending, created, record_id, cursor.salt & 0xFFFF)
    return base64.b64encode(body + struct.pack(">I", zlib.crc32(body))).decode("ascii")


def decode(text: str) -> Cursor:
    """The cursor ``text`` stands for; ValueError if it is not one of ours, intact."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("cursor is not base64") from exc
    body, crc = raw[:-4], raw[-4:]
    if (
        len(body) != len(_MAGIC) + _BODY.size
        or not body.startswith(_MAGIC)
        or struct.pack(">I", zlib.crc32(body)) != crc
    ):
        raise ValueError("cursor is garbled")
    descending, created, record_id, salt = _BODY.unpack(body[len(_MAGIC) :])
    return Cursor(key=(created, record_id), descending=descending, salt=salt)
