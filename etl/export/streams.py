"""What ``export`` reads of each stream: its table, its time column, its OCSF mapping.

Both tables' rows are numbered by the account's one store sequence (etl.storage.sequence),
so each stream's ``stored_seq`` is monotone in commit order and settled up to the head, as
``export`` needs; a consumer keeps one position per stream and account.

A consumer's position rows for the audit log are keyed by its name, as before there were
streams; for another stream by ``NAME/STREAM`` (``stream_key``): no consumer name holds a
``/`` (etl.export.consumers.NAME), so the keys never meet, and the table needs no new column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.common.errors import ConfigError
from etl.common.settings import AUDIT_LOGS, STREAM_NAMES
from etl.records.ocsf import to_ocsf
from etl.records.ocsf_access import access_to_ocsf
from etl.storage.schema.logs import access_logs, audit_logs
from etl.storage.schema.state import export_consumers

ACCESS_LOGS = "access_logs"
DEFAULT_STREAMS = (AUDIT_LOGS,)
SEPARATOR = "/"

Mapper = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ExportStream:
    """A stored log as an export reads it: its table, its time column, its OCSF mapper."""

    name: str
    table: sa.Table
    time_column: str  # what --since compares with
    ocsf: Mapper  # (record, account, raw_text, sequence=) -> event


STREAMS: Mapping[str, ExportStream] = {
    AUDIT_LOGS: ExportStream(AUDIT_LOGS, audit_logs, "created_at", to_ocsf),
    ACCESS_LOGS: ExportStream(ACCESS_LOGS, access_logs, "timestamp", access_to_ocsf),
}
assert tuple(STREAMS) == STREAM_NAMES


def stream_key(consumer: str, stream: str) -> str:
    """The ``consumer`` column of the consumer's position rows for ``stream``."""
    return consumer if stream == AUDIT_LOGS else f"{consumer}{SEPARATOR}{stream}"


def split_key(key: str) -> tuple[str, str]:
    """(consumer, stream) of a position row's ``consumer`` column."""
    consumer, _, stream = key.partition(SEPARATOR)
    return consumer, stream or AUDIT_LOGS


def family(consumer: str) -> list[str]:
    """Every key the consumer's rows may have: one per stream."""
    return [stream_key(consumer, name) for name in STREAMS]


def parse_streams(text: str) -> tuple[str, ...]:
    """``--streams``: names separated by commas, each known and once, in the given order."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in STREAMS]
    if not names or unknown or len(set(names)) != len(names):
        known = ", ".join(STREAMS)
        raise ConfigError(
            f"--streams {text!r}: give one or more of {known}, separated by commas, each once"
        )
    return names


def check_streams(
    consumer: str, saved: tuple[str, ...] | None, given: tuple[str, ...] | None, reset: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The streams this run exports and those it stops exporting (their positions then
    forgotten): ``given``, else the saved ones, else the audit log. Adding a stream needs
    nothing (the others' positions stand); dropping one is refused unless ``reset``."""
    if given is None:
        return (saved or DEFAULT_STREAMS), ()
    dropped = tuple(name for name in (saved or ()) if name not in given)
    if dropped and not reset:
        raise ConfigError(
            f"consumer {consumer} exports {', '.join(saved or ())}, this run asks for "
            f"{', '.join(given)}: add --reset-options to stop exporting "
            f"{', '.join(dropped)} (its positions are forgotten)"
        )
    return tuple(name for name in STREAMS if name in given), dropped


def forget_streams(conn: Connection, consumer: str, streams: tuple[str, ...]) -> None:
    """Delete the consumer's rows of ``streams``, in ``conn``'s transaction."""
    keys = [stream_key(consumer, name) for name in streams]
    if keys:
        conn.execute(sa.delete(export_consumers).where(export_consumers.c.consumer.in_(keys)))
