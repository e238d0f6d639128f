"""The cyclic garbage collector during a command's start-up: off, then the start-up frozen.

A command starts by importing SQLAlchemy, requests and a driver: many objects made, next
to none thrown away, and the collector's passes over them cost about a tenth of a run with
nothing new.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


class _Collector:
    resume_at_work = False  # the cyclic garbage collector was on when main() began
    froze = False  # work_begins froze what the start-up made


@contextmanager
def off_while_starting() -> Iterator[None]:
    """The collector stays off until ``work_begins`` (or the end); then it is as it was."""
    _Collector.resume_at_work = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _Collector.froze:  # for a caller in the same process (the tests)
            gc.unfreeze()
            _Collector.froze = False
        if _Collector.resume_at_work:
            gc.enable()


def work_begins() -> None:
    """Collect garbage again, but never walk what the start-up made: it lives as long as
    the process (modules, classes), and the first pass over it cost 25 ms of a run."""
    if _Collector.resume_at_work:
        gc.freeze()
        _Collector.froze = True
        gc.enable()
