"""The cyclic garbage collector during a command's start-up: off, then the start-up frozen.

A command starts by importing SQLAlchemy, requests and a driver: many objects made, next
to none thrown away, and the collector's passes over them cost about a tenth of a run with
nothing new.

During the work the youngest generation is collected after ``WORK_GEN0`` net allocations
rather than CPython's 700: a load allocates a page's records (dicts of dicts, none of them
in a cycle) by the hundred thousand, and the passes the default set off cost 3% to 5% of
a first load's CPU (measured in docs/performance/HISTORY.md). Garbage in a cycle is still
collected, once that many containers are left over.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

WORK_GEN0 = 50_000  # net container allocations between passes over the youngest generation


class _Collector:
    resume_at_work = False  # the cyclic garbage collector was on when main() began
    froze = False  # work_begins froze what the start-up made
    threshold: tuple[int, ...] | None = None  # gc's thresholds before work_begins raised them


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
        if _Collector.threshold is not None:
            gc.set_threshold(*_Collector.threshold)
            _Collector.threshold = None
        if _Collector.resume_at_work:
            gc.enable()


def work_begins() -> None:
    """Collect garbage again, but never walk what the start-up made: it lives as long as
    the process (modules, classes), and the first pass over it cost 25 ms of a run; and
    collect the youngest generation less often (``WORK_GEN0``)."""
    if _Collector.resume_at_work:
        gc.freeze()
        _Collector.froze = True
        if _Collector.threshold is None:
            _Collector.threshold = gc.get_threshold()
            gen0, *older = _Collector.threshold
            gc.set_threshold(max(gen0, WORK_GEN0), *older)
        gc.enable()
