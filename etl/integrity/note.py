"""A checkpoint's text: a C2SP signed note (https://c2sp.org/signed-note) whose body is a
C2SP tlog checkpoint with two extension lines:

    <origin>\\n                       where the log comes from (the account's Zendesk host)
    <size>\\n                         ledger entries covered (the last one's number)
    <head>\\n                         that entry's hash, base64
    account <account>\\n
    time <YYYY-MM-DDTHH:MM:SSZ>\\n
    \\n
    — zendesk-audit-etl <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\\n

The signature is over the body, its last newline included. An unsigned checkpoint (no
key configured) is the body alone. Pure: no I/O.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime

from etl.common.clock import format_time

_DASH = "\u2014"
# A size as ``make`` writes it: ASCII digits, no leading zero, within a signed 64-bit
# integer (``str.isdigit`` takes other scripts' digits and ``²``, which ``int`` refuses).
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
# The time line as ``make`` writes it (``format_time``).
_TIME = re.compile(r"time [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


@dataclass(frozen=True)
class Checkpoint:
    """A ledger checkpoint: the ledger's size and head, for an origin and account."""

    origin: str
    size: int
    head: bytes
    account: str
    time: str  # as written
    key_id: str | None = None  # hex, of the first signature
    signature: bytes | None = None
    text: str = ""  # the whole note, as stored

    @property
    def body(self) -> bytes:
        return body_text(self.origin, self.size, self.head, self.account, self.time).encode()


def body_text(origin: str, size: int, head: bytes, account: str, time: str) -> str:
    return f"{origin}\n{size}\n{base64.b64encode(head).decode()}\naccount {account}\ntime {time}\n"


def make(
    origin: str,
    size: int,
    head: bytes,
    account: str,
    at: datetime,
    signed: tuple[str, bytes] | None = None,
) -> Checkpoint:
    """A checkpoint; ``signed``: (key id, signature over its body), or None."""
    time = format_time(at)
    text = body_text(origin, size, head, account, time)
    key_id = signature = None
    if signed is not None:
        key_id, signature = signed
        stamp = base64.b64encode(bytes.fromhex(key_id) + signature).decode()
        text += f"\n{_DASH} zendesk-audit-etl {stamp}\n"
    return Checkpoint(origin, size, head, account, time, key_id, signature, text)


def parse(text: str) -> Checkpoint | None:
    """A checkpoint from its text; None when it is not one (the caller names the source)."""
    body, signed, signatures = text.partition("\n\n")
    if not signed:  # unsigned: the body alone, its last newline included
        body = body.removesuffix("\n")
    lines = body.split("\n")
    if len(lines) != 5 or not _SIZE.fullmatch(lines[1]):
        return None
    if not lines[3].startswith("account ") or not _TIME.fullmatch(lines[4]):
        return None
    try:  # ValueError: not ASCII (binascii.Error, a ValueError too: not base64)
        head = base64.b64decode(lines[2], validate=True)
    except ValueError:
        return None
    if len(head) != 32:
        return None
    key_id = signature = None
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) == 3 and parts[0] == _DASH and parts[1] == "zendesk-audit-etl":
            try:
                stamp = base64.b64decode(parts[2], validate=True)
            except ValueError:
                return None
            if len(stamp) != 68:
                return None
            key_id, signature = stamp[:4].hex(), stamp[4:]
            break
    account, time = lines[3][len("account ") :], lines[4][len("time ") :]
    return Checkpoint(lines[0], int(lines[1]), head, account, time, key_id, signature, text)
