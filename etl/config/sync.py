"""The ``[sync]`` tables: the top-level one, and each account's ``[accounts.sync]`` overrides.

Each table is read once, at its own path, into only the fields it sets; an account's settings
are the top-level values with its own laid over them, so a bad top-level key is reported
once (``sync.lag``) however many accounts inherit it, and an account's own at its full path
(``accounts[1].sync.lag``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from etl.common.settings import FILTER_KEYS, STREAM_NAMES
from etl.config.section import Section
from etl.config.values import KNOWN_ACTIONS, filter_values, parse_duration

log = logging.getLogger(__name__)

SYNC_KEYS = {
    "start_time", "lag", "overlap", "filters", "workers", "parallel_after", "max_run_time",
    "streams",
}  # fmt: skip
MIN_LAG = timedelta(seconds=61)  # Zendesk refuses created_at bounds less than ~60 s old
MAX_WORKERS = 256  # [sync] workers: an upper bound on requests in flight ("auto": the default)


def sync_values(sync: Section) -> dict[str, Any]:
    """The valid ``SyncSettings`` fields among the keys given in one sync table."""
    sync.unknown_keys(SYNC_KEYS)
    values: dict[str, Any] = {}
    for key in ("lag", "overlap", "parallel_after"):
        value = sync.parsed(key, parse_duration, None)
        if value is not None:
            values[key] = value
    # only a lag that reads as a duration is checked: a bad one is already one problem
    if "lag" in values and values["lag"] < MIN_LAG:
        sync.problem(
            "lag",
            f"must be at least {int(MIN_LAG.total_seconds())} s: Zendesk refuses newer bounds "
            "and records appear minutes late",
        )
    if "max_run_time" in sync:  # 0: no limit
        limit = sync.parsed("max_run_time", parse_duration, None)
        if limit is not None:
            values["max_run_time"] = limit or None
    # "auto": the default bound; the job sizes its requests in flight below it
    workers = sync.get("workers", "auto")
    if isinstance(workers, str) and workers != "auto":  # not "must be an integer": "auto" is
        sync.problem("workers", f'must be "auto" or an integer from 1 to {MAX_WORKERS}')
    elif workers != "auto":
        values["workers"] = sync.integer("workers", 1, MAX_WORKERS, 1)
    if "start_time" in sync:
        values["start_time"] = sync.time("start_time")
    if "filters" in sync:
        values["filters"] = filters(sync.table("filters"))
    if "streams" in sync:
        chosen = streams(sync)
        if chosen is not None:
            values["streams"] = chosen
    return values


def streams(sync: Section) -> tuple[str, ...] | None:
    """``streams``: a non-empty list of known stream names, each once; None if invalid.

    Kept in the known order (the audit log first), whatever order the file lists them in.
    """
    given = sync.get("streams")
    known = ", ".join(f'"{name}"' for name in STREAM_NAMES)
    if not isinstance(given, list) or not given or not all(isinstance(v, str) for v in given):
        sync.problem("streams", f"must be a non-empty list of stream names: {known}")
        return None
    unknown = [name for name in given if name not in STREAM_NAMES]
    if unknown:
        sync.problem("streams", f"unknown stream {', '.join(unknown)}; known: {known}")
        return None
    if len(set(given)) != len(given):
        sync.problem("streams", "lists a stream more than once")
        return None
    return tuple(name for name in STREAM_NAMES if name in given)


def filters(table: Section) -> dict[str, tuple[str, ...]]:
    """Filters in canonical form (``etl.config.values.filter_values``)."""
    found: dict[str, tuple[str, ...]] = {}
    for key in table:
        if key not in FILTER_KEYS:
            table.problem(key, f"unknown filter; known: {', '.join(FILTER_KEYS)}")
            continue
        try:
            found[key] = filter_values(key, table.get(key))
        except ValueError as exc:
            table.problem(key, str(exc))
            continue
        for unknown in set(found[key]) - KNOWN_ACTIONS if key == "action" else ():
            # Zendesk documents these; others have been seen, so this is not an error.
            log.warning(
                "%s: %r is not one of Zendesk's documented actions (%s)",
                table.path_of(key), unknown, ", ".join(sorted(KNOWN_ACTIONS)),
            )  # fmt: skip
    if "source_id" in found and "source_type" not in found:
        table.problem("source_id", "Zendesk requires source_type with source_id")
    return found
