"""Checkpoint files in ``[ledger] checkpoint_dir``: one small file per checkpoint, never
written over another's, published whole wherever the file system allows it, and read back
for ``verify``.

A file is written whole under the folder's temporary name (``.checkpoint.partial``, one
write at a time), then published under its own name by a hard link, or, where the file
system has none (some NFS and bucket mounts), by a rename: either way it appears whole or
not at all, so a kill leaves no cut file under a checkpoint's name. Where neither exists
(a bucket mount that only writes new files), or the temporary name is taken, the file is
written directly; a kill while it is written then leaves a cut copy, which ``verify``
takes for what it is (a strict prefix of a checkpoint the database holds, not a
checkpoint) and the next run replaces, or writes whole beside it where it cannot go.

Temporary files do not pile up: there is one name, reused. A write finding it taken
removes the file there when it is done with (its checkpoint published) or abandoned (an
hour old: a write takes milliseconds), and otherwise writes directly: so on storage that
keeps every file written (WORM, append-only), one temporary file stays, ever, not one per
checkpoint or per killed run. ``verify`` never reads it.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from etl.common import files
from etl.common.errors import ConfigError
from etl.integrity import note
from etl.integrity.note import Checkpoint

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
SUFFIX = ".checkpoint"
# The one temporary name of an account's folder, taken by one write at a time (O_EXCL).
TEMPORARY = ".checkpoint.partial"
# A temporary file this old (seconds, by its own mtime) is no running writer's.
STALE_PARTIAL = 3600.0
# Names a checkpoint may take: its own, then ``<name>.2.checkpoint`` ... beside a cut copy
# that cannot be removed, or another checkpoint of the same size and second.
_NAMES = 9
# More than any checkpoint's text (a few hundred bytes): a larger file is read no further.
MAX_BYTES = 64 * 1024
# What ``_content`` gives a file no checkpoint can be: a text never starts with NUL.
_NOT_OURS = b"\x00"


def account_directory(directory: Path, account: str) -> Path:
    """The account's folder in the checkpoint directory (its name made safe for a path)."""
    return directory / _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", account)


def file_path(folder: Path, made: Checkpoint) -> Path:
    """``<size, 12 digits>-<time>.checkpoint``: listed by size, then time."""
    stamp = made.time.replace("-", "").replace(":", "")
    return folder / f"{made.size:012d}-{stamp}{SUFFIX}"


def _names(path: Path) -> Iterator[Path]:
    yield path
    stem = path.name.removesuffix(SUFFIX)
    for n in range(2, _NAMES + 1):
        yield path.with_name(f"{stem}.{n}{SUFFIX}")


def read_bounded(path: Path) -> bytes:
    """A checkpoint file's bytes: only a regular file's, at most ``MAX_BYTES`` of them, so
    no file put in the directory makes a read wait forever (a FIFO) or fill the memory
    (``/dev/zero``, a huge file). ``OSError`` for anything else, saying what it is."""
    return files.read_bounded(path, MAX_BYTES)


def _content(path: Path) -> bytes | None:
    """The file's bytes; None when there is none; ``_NOT_OURS`` for one no checkpoint can
    be (``read_bounded`` refuses it): neither a checkpoint's whole text nor a cut one."""
    try:
        return read_bounded(path)
    except FileNotFoundError:
        return None
    except OSError:
        return _NOT_OURS


def has_whole(folder: Path, made: Checkpoint) -> bool:
    """Whether the folder holds ``made``'s whole text under one of its names."""
    text = made.text.encode()
    for path in _names(file_path(folder, made)):
        found = _content(path)
        if found is None:
            return False  # names are taken in order: none further
        if found == text:
            return True
    return False


def write_file(folder: Path, made: Checkpoint) -> None:
    """``made`` as a new file in ``folder``, synced to disk (nothing if there already)."""
    path = file_path(folder, made)
    try:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:  # a file by that name: not "written already" below
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)) from None
        target = _free_name(path, made.text.encode())
        if target is not None:
            _publish(folder, target, made.text)
    except FileExistsError:
        return  # the same checkpoint, published meanwhile by another run
    except OSError as exc:
        raise ConfigError(
            f"ledger checkpoint_dir {folder}: cannot write {path.name}: {exc.strerror}; "
            "the checkpoint is in the database, verify will say it is missing from the directory"
        ) from None


def _free_name(path: Path, text: bytes) -> Path | None:
    """The first of the checkpoint's names that is free (a cut copy of it, from a kill
    while it was written directly, removed where the directory allows); None when one
    holds it whole already."""
    for name in _names(path):
        found = _content(name)
        if found is None:
            return name
        if found == text:
            return None
        if text.startswith(found) and _remove(name):  # a cut copy of this one
            return name
    raise ConfigError(
        f"ledger checkpoint_dir {path.parent}: cannot write {path.name}: its {_NAMES} names "
        "hold other files; the checkpoint is in the database, verify will say it is missing "
        "from the directory"
    )


def _publish(folder: Path, path: Path, text: str) -> None:
    partial = folder / TEMPORARY
    if not _claimed(folder, partial):  # another write's (or one this directory keeps)
        _synced(path, text, os.O_EXCL)
        _sync_directory(folder)
        return
    try:
        _synced(partial, text, os.O_EXCL)
    except FileExistsError:  # another write took it meanwhile
        _synced(path, text, os.O_EXCL)
        _sync_directory(folder)
        return
    try:
        try:
            os.link(partial, path)
        except FileExistsError:
            raise
        except OSError:  # no hard links here: a rename publishes it whole too
            if path.exists():  # never over another file (rename would replace it)
                raise FileExistsError(errno.EEXIST, path.name) from None
            try:
                os.rename(partial, path)
            except OSError:  # nor renames: written directly; a cut copy is mended
                _synced(path, text, os.O_EXCL)
    finally:
        _remove(partial)
    _sync_directory(folder)


def _sync_directory(folder: Path) -> None:
    """The new name made durable: a file synced to disk can still vanish on power loss
    until its directory entry is. Folders that cannot be opened or synced (some network
    and bucket mounts) are left as they are: the checkpoint is in the database too."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("cannot sync the directory %s", folder, exc_info=True)
    finally:
        os.close(fd)


def _claimed(folder: Path, partial: Path) -> bool:
    """Whether the temporary name is free for this write: free already, or held by an
    earlier write's file that is done with (its checkpoint published whole) or abandoned
    (``STALE_PARTIAL`` old) and could be removed. Another write's file in progress is
    left alone, and so is one this directory refuses to remove."""
    try:
        found = read_bounded(partial)
        age = time.time() - partial.stat().st_mtime
    except FileNotFoundError:
        return True
    except OSError:
        return False
    made = note.parse(found.decode("utf-8", "replace"))
    done = made is not None and has_whole(folder, made)
    return (done or age > STALE_PARTIAL) and _remove(partial)


def _synced(path: Path, text: str, flag: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flag, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


def _remove(path: Path) -> bool:
    try:
        path.unlink(missing_ok=True)
    except OSError:  # a directory that keeps what is written (object lock): it stays
        log.debug("cannot remove %s", path, exc_info=True)
        return False
    return True


def directory_checkpoints(directory: Path, account: str) -> Iterator[tuple[Path, Checkpoint]]:
    """The account's checkpoint files, by name (so by size, then time); hidden files (the
    temporary ones, a desktop's ``._`` files) are not checkpoints."""
    folder = account_directory(directory, account)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        try:  # bytes that are not UTF-8 kept as such: a cut copy may end mid-character
            text = read_bounded(path).decode("utf-8", "surrogateescape")
        except OSError as exc:
            text = f"(unreadable {path.name}: {exc.strerror})"
        yield path, note.parse(text) or unreadable(text, account, f"the file {path}")


def unreadable(text: str, account: str, where: str) -> Checkpoint:
    """What is no checkpoint, as one of size -1 for verify to name; its origin says
    ``where`` it was found."""
    return Checkpoint(where, -1, b"", account, "", text=text)
