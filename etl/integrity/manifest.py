"""Signed export manifests: for each ``export`` run into a file, what it wrote (consumer,
account, store sequence range, byte range and the SHA-256 of those bytes), appended to
``<file>.manifest`` as a signed note (the checkpoints' form, etl.integrity.note), so a
SIEM hand-off can be shown complete and unaltered.

    zendesk-audit-etl export manifest v1
    consumer <name>
    account <account>
    file <the file's name>
    seq <first>-<last>                  store sequence numbers (stored_seq) exported
    bytes <start>-<end>                 the byte range written, end excluded
    sha256 <hex of those bytes>
    time <YYYY-MM-DDTHH:MM:SSZ>

    — zendesk-audit-etl <base64(key id || Ed25519 signature of the body)>

Unsigned (no body-signature line) when no key is configured. The bytes are read back from
the file after the export committed them.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import datetime
from pathlib import Path

from etl.common.clock import format_time
from etl.common.errors import ConfigError
from etl.integrity.keys import SigningKey

HEADER = "zendesk-audit-etl export manifest v1"
_READ = 1 << 20


def byte_range_digest(path: Path, start: int, end: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        data.seek(start)
        left = end - start
        while left > 0:
            chunk = data.read(min(_READ, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def manifest(
    consumer: str,
    account: str,
    path: Path,
    seqs: tuple[int, int],
    written: int,
    at: datetime,
    key: SigningKey | None,
) -> str:
    """The manifest of the last ``written`` bytes of ``path`` (the export's), signed
    with ``key`` if given."""
    end = path.stat().st_size
    start = end - written
    body = (
        f"{HEADER}\nconsumer {consumer}\naccount {account}\nfile {path.name}\n"
        f"seq {seqs[0]}-{seqs[1]}\nbytes {start}-{end}\n"
        f"sha256 {byte_range_digest(path, start, end)}\ntime {format_time(at)}\n"
    )
    if key is None:
        return body
    stamp = base64.b64encode(bytes.fromhex(key.public.id) + key.sign(body.encode())).decode()
    return f"{body}\n\u2014 zendesk-audit-etl {stamp}\n"


def append(path: Path, text: str) -> Path:
    """Append ``text`` (and a blank line) to ``<path>.manifest``, synced to disk."""
    target = path.with_name(path.name + ".manifest")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise ConfigError(f"cannot append to export manifest {target}: {exc.strerror}") from None
    return target
