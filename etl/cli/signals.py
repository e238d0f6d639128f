"""Stopping on SIGTERM/SIGINT: at the next safe point, or at once on a second signal.

Every command runs under ``signals_set``; sync and resync pass the ``Event`` their run
polls, so the first signal stops them gently, other commands leave at once.

One stop request can arrive twice: ``timeout``(1) signals its child and then its whole
process group, the child included (``kill(pid)``, then ``kill(0)``), and a supervisor or
shell may do the same. So the first repeat of the same signal within ``ECHO_S`` of the
first is taken as its echo and ignored (logged under ``--verbose``); a different signal,
a repeat after ``ECHO_S``, or any further one is a second signal and leaves at once. A
person who presses Ctrl-C twice quickly therefore needs a third press (or a second
after a moment); Python's handlers get no sender pid, so time is the one tell.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
import time
from contextlib import suppress
from types import FrameType
from typing import Any, NoReturn

from etl.cli.output import PROG
from etl.common.errors import ExitCode

# The command line's lines keep the logger name they always had: operators filter on it.
log = logging.getLogger("etl.cli.main")

STOP_GRACE_S = 30.0  # after a first signal, the longest a run may take to stop cleanly
ECHO_S = 2.0  # the same signal again this soon after the first is its echo (see above)
ECHO = b"\xff"  # written to the watcher's pipe for an echo (a signal's byte is its number)


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
        self._first: tuple[int, float] | None = None  # the first signal and when it came
        self._echoed = False  # its one echo was ignored already
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
        # only a command that loaded the bounded waits (a database's) has a cancel to clear:
        # importing them here would load SQLAlchemy for commands with no database
        dbwait = sys.modules.get("etl.storage.locking.waits")
        if dbwait is not None:
            dbwait.reset()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._is_echo(signum):
            return
        self._signals += 1
        if self._first is None:
            self._first = (signum, time.monotonic())
        if self._signals > 1:
            leave_now(f"stopped by a second {signal.Signals(signum).name}: exiting at once")
        if self.stop is None:  # nothing to finish: the first signal leaves
            leave_now(f"stopped by {signal.Signals(signum).name}")
        os.write(self._write, bytes([signum]))

    def _is_echo(self, signum: int) -> bool:
        """The first repeat of the first signal, within ``ECHO_S``: the same request."""
        if self._first is None or self._echoed or self.stop is None:
            return False
        first, when = self._first
        if signum != first or time.monotonic() - when >= ECHO_S:
            return False
        self._echoed = True
        os.write(self._write, ECHO)  # the watcher logs it: no logging in a handler
        return True

    def _watch(self) -> None:
        signum = os.read(self._read, 1)[0]
        if not signum:  # the run ended without a signal
            return
        name = signal.Signals(signum).name
        log.warning("%s received: finishing the current %s, then stopping", name, self.unit)
        # a statement stuck on another session's lock is cancelled
        from etl.storage.locking import waits as dbwait

        dbwait.interrupt()
        assert self.stop is not None
        self.stop.set()
        deadline = time.monotonic() + STOP_GRACE_S
        while _select_readable(self._read, max(0.0, deadline - time.monotonic())):
            if os.read(self._read, 1) != ECHO:  # the run ended in time
                return
            log.debug("%s again within %g s: taken as the same request", name, ECHO_S)
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
