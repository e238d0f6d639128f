"""Stopping on SIGTERM/SIGINT: at the next safe point, or at once on a second signal.

Every command runs under ``signals_set``; sync and resync pass the ``Event`` their run
polls, so the first signal stops them gently, other commands leave at once.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
from contextlib import suppress
from types import FrameType
from typing import Any, NoReturn

from etl.cli.output import PROG
from etl.common.errors import ExitCode

# The command line's lines keep the logger name they always had: operators filter on it.
log = logging.getLogger("etl.cli.main")

STOP_GRACE_S = 30.0  # after a first signal, the longest a run may take to stop cleanly


class signals_set:
    """SIGTERM/SIGINT: the first one stops the run at the next safe point (a committed
    page, or at once from any wait of ours); a second one, or a stop that takes longer
    than ``STOP_GRACE_S``, leaves at once with exit 130 and one line.

    The handler only writes a byte to a pipe (and, the second time, to stderr before
    ``os._exit``): Python runs it between two bytecodes of the main thread, which may be
    inside SQLAlchemy, a driver, logging or a held lock. Raising there turned a second
    SIGTERM into a database error and tracebacks; setting an ``Event`` there can deadlock.
    A watcher thread does the rest. Leaving at once is safe: every page commits with its
    checkpoint, so what is lost is at most the open transaction, as with SIGKILL.
    """

    def __init__(self, stop: threading.Event | None, unit: str = "page") -> None:
        self.stop = stop  # None: nothing to finish, the first signal leaves at once
        self.unit = unit  # what the run finishes before it stops: a page, an export's chunk
        self.previous: dict[int, Any] = {}
        self._signals = 0
        self._read, self._write = os.pipe()
        self._watcher = threading.Thread(target=self._watch, name="signal-watcher", daemon=True)

    def __enter__(self) -> None:
        self._watcher.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self._handle)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        os.write(self._write, b"\0")  # ends the watcher
        self._watcher.join()
        os.close(self._read)
        os.close(self._write)
        from etl.storage import waits as dbwait

        dbwait.reset()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            leave_now(f"stopped by a second {signal.Signals(signum).name}: exiting at once")
        if self.stop is None:  # nothing to finish: the first signal leaves
            leave_now(f"stopped by {signal.Signals(signum).name}")
        os.write(self._write, bytes([signum]))

    def _watch(self) -> None:
        signum = os.read(self._read, 1)[0]
        if not signum:  # the run ended without a signal
            return
        name = signal.Signals(signum).name
        log.warning("%s received: finishing the current %s, then stopping", name, self.unit)
        from etl.storage import (
            waits as dbwait,  # a statement stuck on another session's lock is cancelled
        )

        dbwait.interrupt()
        assert self.stop is not None
        self.stop.set()
        if _select_readable(self._read, STOP_GRACE_S):  # the run ended in time
            return
        leave_now(f"stopped by {name}, but the run did not stop within {STOP_GRACE_S:.0f} s")


def _select_readable(fd: int, timeout: float) -> bool:
    readable, _, _ = select.select([fd], [], [], timeout)
    return bool(readable)


def leave_now(message: str) -> NoReturn:
    """One line on stderr and exit 130, from a signal handler or any thread: the open
    transaction is rolled back by the database, the run lock freed with the process."""
    if _leaving.acquire(blocking=False):  # a third signal, or the watcher, says nothing more
        with suppress(OSError):
            os.write(2, f"{PROG}: error: {message}\n".encode())
    os._exit(ExitCode.INTERRUPTED)


# Taken by the first caller of leave_now: signals re-enter the handler while it writes.
_leaving = threading.Lock()
