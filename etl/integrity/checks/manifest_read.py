"""An export file and its manifests read for ``verify-export`` (etl.integrity.checks.manifests),
bounded and streamed: the manifest file a line at a time (a line longer than any manifest
writes is read no further), the export's bytes a range at a time in 1 MiB reads, so a
10 GB export never fills the memory. Only regular files are read, opened without waiting
(a FIFO), so no path makes the check hang (``/dev/zero``, a pipe: refused, exit 2).

The manifest file is what ``etl.integrity.manifest`` appends: each manifest's body (its
header and seven lines), a blank line, its signature line when signed, a blank line.
"""

from __future__ import annotations

import base64
import errno
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from etl.common import files
from etl.common.errors import ConfigError
from etl.integrity.keys import KEY_NAME
from etl.integrity.manifest import HEADER

_READ = 1 << 20
# Longer than any line a manifest holds (names are bounded by the schema): read no further.
MAX_LINE = 4096
_N = r"(0|[1-9][0-9]{0,18})"  # a number as written: ASCII digits, no leading zero
# The body's lines after the header, in order: (name, the pattern of its value).
FIELDS = (
    ("consumer", r"[^\s].*"),
    ("account", r"[^\s].*"),
    ("file", r"[^\s].*"),
    ("seq", rf"{_N}-{_N}"),
    ("bytes", rf"{_N}-{_N}"),
    ("sha256", r"[0-9a-f]{64}"),
    ("time", r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"),
)
_PATTERNS = [re.compile(rf"{name} ({value})") for name, value in FIELDS]
_DASH = "\u2014"


@dataclass(frozen=True)
class Manifest:
    """One signed manifest as read from the manifest file."""

    number: int  # 1-based, in the manifest file's order
    line: int  # where it starts in the manifest file
    consumer: str
    account: str
    file: str
    seq: tuple[int, int]
    start: int
    end: int  # excluded
    sha256: str
    time: str
    body: bytes  # what the signature is over, its last newline included
    stamps: tuple[tuple[str, bytes], ...]  # (key id, signature) of each of our signature lines
    bad_stamp: bool  # a signature line of ours that is no stamp (not base64, not 68 bytes)


@dataclass(frozen=True)
class Malformed:
    """A manifest that could not be read, and where it is."""

    number: int
    line: int
    detail: str


def open_regular(path: Path, what: str) -> int:
    """A read-only descriptor of ``path``, a regular file (a symlink followed), opened
    without waiting; ``ConfigError`` (exit 2) naming it for anything else."""
    try:
        return files.open_regular(path)
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise ConfigError(f"{what} {path}: not a regular file") from None
        raise ConfigError(f"{what} {path}: cannot read it: {exc.strerror}") from None


def _lines(fd: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, the line without its newline), None for a line too long to be ours."""
    with os.fdopen(os.dup(fd), "rb") as data:
        number = 0
        while True:
            line = data.readline(MAX_LINE + 1)
            if not line:
                return
            number += 1
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                while line and not line.endswith(b"\n"):  # skip the rest, a piece at a time
                    line = data.readline(_READ)
                yield number, None
                continue
            yield number, line.removesuffix(b"\n")


class _Peek:
    def __init__(self, lines: Iterator[tuple[int, bytes | None]]) -> None:
        self._lines = lines
        self._next: tuple[int, bytes | None] | None = None

    def peek(self) -> tuple[int, bytes | None] | None:
        if self._next is None:
            self._next = next(self._lines, None)
        return self._next

    def take(self) -> tuple[int, bytes | None] | None:
        found = self.peek()
        self._next = None
        return found


def manifests(fd: int) -> Iterator[Manifest | Malformed]:
    """Each manifest of the manifest file in order; a stretch of lines that is none (or a
    manifest cut or edited out of its form) as one ``Malformed``."""
    lines = _Peek(_lines(fd))
    header = HEADER.encode()
    number = 0
    while (first := lines.take()) is not None:
        start, text = first
        if text == b"":
            continue
        number += 1
        if text != header:
            yield Malformed(number, start, _skip(lines, header, f"line {start}: not a manifest"))
            continue
        found = _manifest(lines, number, start)
        if isinstance(found, str):
            yield Malformed(number, start, _skip(lines, header, found))
        else:
            yield found


def _skip(lines: _Peek, header: bytes, detail: str) -> str:
    """Up to the next header line: the detail, with the lines skipped."""
    last = None
    while (ahead := lines.peek()) is not None and ahead[1] != header:
        last = ahead[0]
        lines.take()
    return detail if last is None else f"{detail} (through line {last})"


def _manifest(lines: _Peek, number: int, start: int) -> Manifest | str:
    """The manifest whose header was line ``start``, or what is wrong with it."""
    values: list[re.Match[str]] = []
    body = [HEADER]
    for (name, _), pattern in zip(FIELDS, _PATTERNS, strict=True):
        got = lines.peek()
        if got is None:
            return f"line {start}: a manifest cut short before its {name} line"
        if got[1] is None:
            return f"line {got[0]}: longer than any manifest's line"
        try:
            text = got[1].decode("utf-8")
        except UnicodeDecodeError:
            return f"line {got[0]}: not UTF-8"
        match = pattern.fullmatch(text)
        if match is None:
            return f"line {got[0]}: not a {name} line as a manifest writes it"
        lines.take()
        values.append(match)
        body.append(text)
    stamps, bad = _signatures(lines)
    seq = (int(values[3][2]), int(values[3][3]))
    first, end = int(values[4][2]), int(values[4][3])
    if seq[0] > seq[1] or first > end:
        return f"line {start}: a range that runs backwards"
    return Manifest(
        number, start, values[0][1], values[1][1], values[2][1], seq, first, end,
        values[5][1], values[6][1], ("\n".join(body) + "\n").encode(), stamps, bad,
    )  # fmt: skip


def _signatures(lines: _Peek) -> tuple[tuple[tuple[str, bytes], ...], bool]:
    """The signature lines after the body's blank line (none: unsigned), up to the next
    blank line or header. Other signers' lines (a signed note may have them) are passed."""
    got = lines.peek()
    if got is None or got[1] != b"":
        return (), False
    lines.take()
    stamps: list[tuple[str, bytes]] = []
    bad = False
    while (got := lines.peek()) is not None and got[1] is not None:
        parts = got[1].decode("utf-8", "replace").split(" ")
        if parts[0] != _DASH:
            break
        lines.take()
        if len(parts) != 3 or parts[1] != KEY_NAME:
            continue
        try:
            stamp = base64.b64decode(parts[2], validate=True)
        except ValueError:
            stamp = b""
        if len(stamp) != 68:
            bad = True
            continue
        stamps.append((stamp[:4].hex(), stamp[4:]))
    return tuple(stamps), bad
