"""A backfill's plan as the database keeps it: loaded (or resumed) at the start of a run,
and each split committed before its new readers start (``etl.sync.backfill`` calls these
under its fetchers' lock). See ``etl.sync.backfill`` for when a plan is stored at all.
"""

from __future__ import annotations

import logging
from datetime import datetime

from etl.storage.store import SliceRow
from etl.sync.plan import Plan, Slice
from etl.sync.run import Run

log = logging.getLogger(__name__)


def load_plan(run: Run) -> Plan:
    """A resync's plan lives in memory; a sync's is stored, and resumed if it is there."""
    store, name, window = run.log, run.account.name, run.window
    if not run.advance:
        return Plan.whole(window)
    stored = store.slices(name)
    if not stored:
        (row,) = store.add_slices(name, [(window.start, window.end)])
        return Plan.whole(window, row.id)
    plan = Plan([from_row(r) for r in stored], window.start, max(r.end for r in stored))
    log.info(
        "resuming the backfill of %s: %d of %d slices unfinished, up to %s",
        name, sum(not r.done for r in stored), len(stored), plan.end.isoformat(),
    )  # fmt: skip
    tail = plan.tail(window, run.account)  # the overlap again, and any time passed since
    if tail is not None:
        plan.slices += [from_row(r) for r in store.add_slices(name, [tail])]
    return plan


def split(run: Run, plan: Plan, victim: Slice, middle: datetime) -> Slice | None:
    """End ``victim`` at ``middle``, committed with the new slice for the rest."""
    old_end = victim.end
    rest = plan.cut(victim, middle)
    if rest is None:
        return None
    if victim.id is not None:
        # A short write under the fetchers' lock: the readers must not move meanwhile.
        new = from_row(run.log.split_slice(run.account.name, victim.id, middle, rest))
    else:
        new = Slice(None, *rest)
    plan.add_split(new, victim, middle)
    log.debug(
        "split %s..%s at %s", victim.start.isoformat(), old_end.isoformat(), middle.isoformat()
    )
    return new


def from_row(row: SliceRow) -> Slice:
    return Slice(row.id, row.start, row.end, row.position, row.done)
