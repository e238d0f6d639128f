"""Files named by a config or found in a folder another may write to, read so that none
makes the job wait or fill its memory: only a regular file (a symlink followed), opened
without waiting (a FIFO with no writer is refused at once, not waited on), and at most a
bound of its bytes (``/dev/zero``, a huge file). Pure OS calls, for every layer above."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of ``path``, opened without waiting; ``OSError`` (``EINVAL``,
    "not a regular file") for anything but a regular file. The caller closes it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


def read_bounded(path: str | Path, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: ``OSError`` (``EFBIG``) for a
    longer one, as ``open_regular`` for what is no regular file."""
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > limit:
            raise OSError(errno.EFBIG, f"more than {limit} bytes")
        data = b""
        while len(data) <= limit:
            more = os.read(fd, limit + 1 - len(data))
            if not more:
                return data
            data += more
    finally:
        os.close(fd)
    raise OSError(errno.EFBIG, f"more than {limit} bytes")  # it grew since its fstat
