"""A bench-only trace of a backfill's request slots (issue 27): not part of the package.

Put this folder on ``PYTHONPATH`` and name an output folder in ``ENVELOPE_TRACE_DIR``; every
Python process started so imports it, and in the job (the only one that imports the modules
below) it wraps, as they are imported, what a lost request slot can be waiting on: the rate
limiter (a caller waiting, a request's start and answer), the gate, the scheduler's rounds
(and why each stopped: fetchers enough, no reader, the writer behind), each fetcher's life
and its puts into the writer's queue, the writer's rounds, the plan's pages and readers,
and each checked answer (its query, its records, ``has_more``: a full last page's
confirmation is the next answer of a query after one that said it was the last). The events
(monotonic time, thread, kind, details) are written as JSON lines when the command exits
(``exit_now``), with the process's start time; ``scripts/envelope_slots.py`` attributes each
lost slot to its cause and counts the confirmations. For example:

    ENVELOPE_TRACE_DIR=/tmp/trace PYTHONPATH=scripts/envelope_trace \\
        .venv/bin/python scripts/bench_envelope.py --only "700/min, 600" --repeats 1
    .venv/bin/python scripts/envelope_slots.py 700 700 /tmp/trace/*.jsonl
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

OUT = os.environ.get("ENVELOPE_TRACE_DIR")
EVENTS: list[tuple[float, int, str, dict[str, Any]]] = []


def ev(kind: str, **details: Any) -> None:
    EVENTS.append((time.monotonic(), threading.get_ident(), kind, details))


def dump() -> None:
    """The events, and when the process started on the same clock, into ``OUT``."""
    if not OUT or not EVENTS:
        return
    with open("/proc/self/stat") as stat:  # field 22: start time in clock ticks since boot
        ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    boot = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    head = {"process_start": ticks / os.sysconf("SC_CLK_TCK") - boot, "exit": time.monotonic()}
    path = os.path.join(OUT, f"trace-{os.getpid()}-{int(time.time())}.jsonl")
    with open(path, "w") as out:
        out.write(json.dumps(head) + "\n")
        out.writelines(json.dumps(list(event)) + "\n" for event in EVENTS)


def wrap(cls: Any, name: str, before: str | None, after: str | None) -> None:
    """``cls.name`` with an event before and after each call."""
    method = getattr(cls, name)

    def traced(*args: Any, **kwargs: Any) -> Any:
        if before:
            ev(before)
        try:
            return method(*args, **kwargs)
        finally:
            if after:
                ev(after)

    setattr(cls, name, traced)


def patch_ratelimit(mod: ModuleType) -> None:
    wrap(mod.RateLimiter, "acquire", "acq_in", "start")
    wrap(mod.RateLimiter, "observe", "answer", None)


def patch_concurrency(mod: ModuleType) -> None:
    wrap(mod.Gate, "_take", "gate_in", "gate_out")


def patch_writer(mod: ModuleType) -> None:
    wrap(mod.Writer, "write_round", "write_in", "write_out")


def patch_backfill(mod: ModuleType) -> None:
    cls = mod.Backfill
    wrap(cls, "_put", "put_in", "put_out")
    schedule, next_reader, start = cls._schedule, cls._next_reader, cls._start
    fetch, run = cls._fetch, cls.run

    def traced_schedule(self: Any) -> None:
        self.trace_why = "full"
        ev("sched_in", running=self._writer.fetchers)
        schedule(self)
        ev("sched_out", running=self._writer.fetchers, gate=self._gate.size, why=self.trace_why)

    def traced_next_reader(self: Any, readers: int) -> Any:
        reader = next_reader(self, readers)
        if reader is None:
            self.trace_why = "no_reader"
        return reader

    def traced_start(self: Any, reader: Any) -> None:
        self.trace_why = "started"  # left so if the writer's queue then stops the round
        start(self, reader)

    def traced_fetch(self: Any, reader: Any, client: Any) -> None:
        ev("fetch_begin", down=reader.down)
        try:
            fetch(self, reader, client)
        finally:
            ev("fetch_end")

    def traced_run(self: Any) -> None:
        ev("backfill_begin", workers=self.workers)
        try:
            run(self)
        finally:
            ev("backfill_end")

    for name, traced in (
        ("_schedule", traced_schedule),
        ("_next_reader", traced_next_reader),
        ("_start", traced_start),
        ("_fetch", traced_fetch),
        ("run", traced_run),
    ):
        setattr(cls, name, traced)


def patch_plan(mod: ModuleType) -> None:
    took, begin_down = mod.Plan.took_page, mod.Plan.begin_down

    def traced_took(self: Any, reader: Any, *args: Any) -> Any:
        proof, last = took(self, reader, *args)
        s = reader.slice
        ev("took", s=id(s) % 100000, down=reader.down, left=round(s.pages_left(), 2), last=last)
        return proof, last

    def traced_begin_down(self: Any, s: Any, resume: bool = False) -> Any:
        ev("begin_down", s=id(s) % 100000, resume=resume, left=round(s.pages_left(), 2))
        return begin_down(self, s, resume)

    mod.Plan.took_page = traced_took
    mod.Plan.begin_down = traced_begin_down


def patch_pagination(mod: ModuleType) -> None:
    """Each checked answer: its records, ``has_more``, and its query (to tell a full last
    page's confirmation: the next answer of the same query)."""
    read_page = mod.read_page

    def traced_read_page(body: Any, base_url: str, where: str, query: Any = None, *a: Any) -> Any:
        step = read_page(body, base_url, where, query, *a)
        ev("page", q=id(query), n=len(step.records), more=step.has_more, cursor=bool(step.cursor))
        return step

    setattr(mod, "read_page", traced_read_page)  # noqa: B010 - a module typed as ModuleType


def patch_main(mod: ModuleType) -> None:
    exit_now = mod.exit_now

    def traced_exit(code: int) -> None:
        dump()
        exit_now(code)

    setattr(mod, "exit_now", traced_exit)  # noqa: B010 - a module typed as ModuleType


PATCHES: dict[str, Callable[[ModuleType], None]] = {
    "etl.zendesk.ratelimit": patch_ratelimit,
    "etl.zendesk.concurrency": patch_concurrency,
    "etl.sync.backfill": patch_backfill,
    "etl.sync.writer": patch_writer,
    "etl.sync.plan": patch_plan,
    "etl.zendesk.pagination": patch_pagination,
    "etl.cli.main": patch_main,
}


def patch_on_exec(loader: Any, patch: Callable[[ModuleType], None]) -> None:
    """``patch`` the module ``loader`` runs, once it has run."""
    exec_module = loader.exec_module

    def exec_and_patch(module: ModuleType) -> None:
        exec_module(module)
        patch(module)

    loader.exec_module = exec_and_patch


class Patcher(importlib.abc.MetaPathFinder):
    """Finds the modules above as usual, and patches each once it has run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in PATCHES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                patch_on_exec(spec.loader, PATCHES[fullname])
                return spec
        return None


if OUT:
    sys.meta_path.insert(0, Patcher())
