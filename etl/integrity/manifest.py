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

An export killed after committing a chunk and before appending its manifest leaves
committed bytes no manifest covers (the file sink keeps them: they are the position's). The
next manifest of the same consumer and account then starts where the file's last manifest
ended, bytes and seq alike, so the ranges still meet end to start (``verify-export``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from datetime import datetime
from pathlib import Path

from etl.common import files
from etl.common.clock import format_time
from etl.common.errors import ConfigError
from etl.integrity.keys import SigningKey

HEADER = "zendesk-audit-etl export manifest v1"
_READ = 1 << 20
# The end of the manifest file read for its last manifest: more than any manifest's text.
_TAIL = 16 * 1024
_LAST = re.compile(
    re.escape(HEADER) + r"\nconsumer (?P<consumer>.+)\naccount (?P<account>.+)\nfile .+\n"
    r"seq [0-9]+-(?P<seq>[0-9]+)\nbytes [0-9]+-(?P<end>[0-9]+)\n"
)

log = logging.getLogger(__name__)


def range_digest(fd: int, start: int, end: int) -> str | None:
    """The SHA-256 of bytes ``start`` to ``end`` of the open file, read 1 MiB at a time;
    None when it ends first."""
    digest = hashlib.sha256()
    at = start
    while at < end:
        chunk = os.pread(fd, min(_READ, end - at), at)
        if not chunk:
            return None
        digest.update(chunk)
        at += len(chunk)
    return digest.hexdigest()


def byte_range_digest(path: Path, start: int, end: int) -> str:
    """``range_digest`` of ``path``, up to its end where it ends first."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return range_digest(fd, start, min(end, os.fstat(fd).st_size)) or ""
    finally:
        os.close(fd)


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
    with ``key`` if given; from the end of the file's last manifest where a killed run of
    the same consumer and account left committed bytes after it."""
    end = path.stat().st_size
    start, first = end - written, seqs[0]
    last = _last_manifest(manifest_path(path))
    if last is not None and last[:2] == (consumer, account):
        last_seq, last_end = last[2:]
        if last_end < start and last_seq < first:
            # Bytes no run vouched for when it wrote them: said in the job's log, which the
            # file's writer cannot edit (docs/INTEGRITY.md, "What is not covered").
            log.warning(
                "export manifest of consumer %s, account %s: also covers bytes %d-%d, seq "
                "%d-%d, which no manifest in %s covered (a run killed before its manifest, "
                "or a manifest removed from the file): signed as the file holds them now",
                consumer, account, last_end, start, last_seq + 1, first - 1,
                manifest_path(path).name,
            )  # fmt: skip
            start, first = last_end, last_seq + 1
    body = (
        f"{HEADER}\nconsumer {consumer}\naccount {account}\nfile {path.name}\n"
        f"seq {first}-{seqs[1]}\nbytes {start}-{end}\n"
        f"sha256 {byte_range_digest(path, start, end)}\ntime {format_time(at)}\n"
    )
    if key is None:
        return body
    stamp = base64.b64encode(bytes.fromhex(key.public.id) + key.sign(body.encode())).decode()
    return f"{body}\n\u2014 zendesk-audit-etl {stamp}\n"


def manifest_path(path: Path) -> Path:
    """Where ``path``'s manifests are appended."""
    return path.with_name(path.name + ".manifest")


def _last_manifest(target: Path) -> tuple[str, str, int, int] | None:
    """The last manifest's consumer, account, last seq and byte end, from the file's tail
    (a regular file only; none if there is no manifest yet or its tail does not parse)."""
    try:
        fd = files.open_regular(target)
    except OSError:
        return None
    try:
        tail = os.pread(fd, _TAIL, max(0, os.fstat(fd).st_size - _TAIL))
    finally:
        os.close(fd)
    text = tail.decode("utf-8", "replace")
    last = _LAST.match(text, max(0, text.rfind(HEADER)))  # the last one, or none at all
    if last is None:
        return None
    return last["consumer"], last["account"], int(last["seq"]), int(last["end"])


def append(path: Path, text: str) -> Path:
    """Append ``text`` (and a blank line) to ``<path>.manifest``, synced to disk."""
    target = manifest_path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
    except OSError as exc:
        raise ConfigError(f"cannot append to export manifest {target}: {exc.strerror}") from None
    return target
