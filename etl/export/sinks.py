"""Where ``export`` writes: a file (exactly once) or a stream (at least once).

A ``FileSink`` is appended to and fsynced per chunk; when it opens, it cuts off what a
run killed before its commit left past the committed length, and says which (path,
length) to commit first when the database's do not describe the file (a new file, or one
rotated), so that a run killed after its first write is cut back too.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import BinaryIO, Protocol

from etl.common.errors import ConfigError

log = logging.getLogger(__name__)

FILE_MODE = 0o640  # the log shipper often reads as a group member


class Sink(Protocol):
    name: str
    # True: what is written cannot be taken back (a pipe), so delivery is at least once and
    # the write need not wait for the consumer's transaction; False: exactly once (a file).
    at_least_once: bool

    def prepare(
        self, committed_path: str | None, committed_length: int | None
    ) -> tuple[str, int] | None: ...
    def write(self, data: bytes) -> tuple[str, int] | None: ...
    def close(self) -> None: ...


class StreamSink:
    """Standard output (or any stream): flushed per chunk; at least once."""

    name = "stdout"
    at_least_once = True

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def prepare(
        self, committed_path: str | None, committed_length: int | None
    ) -> tuple[str, int] | None:
        return None

    def write(self, data: bytes) -> tuple[str, int] | None:
        # A reader that goes away mid-write (`| head`) makes the write return short rather
        # than raise: write the rest, which raises BrokenPipeError, so the chunk's position
        # never commits for rows the reader did not take.
        view = memoryview(data)
        while view:
            written = self._stream.write(view)
            if not written:
                raise BrokenPipeError("standard output took nothing")
            view = view[written:]
        self._stream.flush()
        return None

    def close(self) -> None:
        return None


class FileSink:
    """A file appended to, cut back to its committed length before the first write."""

    at_least_once = False

    def __init__(self, path: Path) -> None:
        self.path = os.path.abspath(path)
        self.name = self.path
        self._fd: int | None = None
        self._length = 0

    def prepare(
        self, committed_path: str | None, committed_length: int | None
    ) -> tuple[str, int] | None:
        """Open the file, cut off what a run that did not commit left; the (path, length)
        to commit before writing when the committed ones do not describe the file (a new
        file, or one rotated): a run killed after its first write must find it."""
        if self._fd is not None:
            return None
        try:
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
            size = os.fstat(fd).st_size
            if committed_path == self.path and committed_length is not None:
                if size > committed_length:
                    cut = size - committed_length
                    log.warning("cutting %s back to its committed length: %d bytes of an "
                                "export that did not commit", self.path, cut)  # fmt: skip
                    os.ftruncate(fd, committed_length)
                    os.fsync(fd)
                    size = committed_length
                elif size < committed_length:
                    log.warning("%s is shorter than when last committed (rotated or "
                                "truncated?): appending at its end", self.path)  # fmt: skip
            os.lseek(fd, size, os.SEEK_SET)
            if created:  # the new name must survive a crash of the host too
                _fsync_directory(os.path.dirname(self.path))
        except OSError as exc:
            raise ConfigError(f"cannot write the export file {self.path}: {exc.strerror}") from exc
        self._fd, self._length = fd, size
        if (committed_path, committed_length) == (self.path, size):
            return None
        return self.path, size

    def write(self, data: bytes) -> tuple[str, int] | None:
        assert self._fd is not None, "prepare() first"
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            raise ConfigError(f"cannot write the export file {self.path}: {exc.strerror}") from exc
        self._length += len(data)
        return self.path, self._length

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_directory(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
