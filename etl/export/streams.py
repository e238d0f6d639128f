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

from etl.common.errors import ConfigError
from etl.common.settings import AUDIT_LOGS, STREAM_NAMES
from etl.records.ocsf import to_ocsf
from etl.records.ocsf_access import access_to_ocsf
from etl.storage.schema import access_logs, audit_logs

ACCESS_LOGS = "access_logs"
DEFAULT_STREAMS = (AUDIT_LOGS,)
SEPARATOR = "/"

Mapper = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ExportStream:
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
