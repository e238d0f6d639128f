"""``export``'s named consumers in the database: positions, files, options.

A consumer has one row per account it has exported: ``position`` is the last store
sequence number (etl.storage.sequence) it has written out. Its file and that file's length when
the position committed (``file_path``, ``file_length``) are the consumer's, kept equal on
all of its rows: ``export`` cuts the file back to that length when it starts, so bytes
written by a run killed before its commit are never left twice.

The options a consumer was started with (``since``, ``format``) are kept the same way, on
all of its rows, and each row's ``since_upto`` says which of the account's rows ``--since``
applies to (those numbered up to the account's head when the first export began): a run
killed during a first export resumes with them, and a run asking for others is refused
unless it says to reset them (``check_options``).

Each stream a consumer exports has its own rows, keyed ``NAME/STREAM`` for a stream other
than the audit log (etl.export.streams): its own position per account, the file and
options shared by all of them. The streams a consumer exports are those it has rows of
(``Start.streams``): a run that starts a stream makes its rows, even where the account has
nothing of it yet.

What ``status`` and the metrics read of these rows (positions and backlogs) is
``etl.export.backlogs``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.common.clock import format_time
from etl.common.errors import ConfigError
from etl.common.settings import AUDIT_LOGS
from etl.export.streams import STREAMS, family, stream_key
from etl.storage.schema.coltypes import UTCDateTime
from etl.storage.schema.state import export_consumers

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_name(consumer: str) -> str:
    if not NAME.fullmatch(consumer):
        raise ConfigError(
            f"consumer name {consumer!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return consumer


@dataclass(frozen=True)
class Options:
    """What a consumer exports: its format and its ``--since`` (whole seconds, as applied)."""

    fmt: str
    since: datetime | None

    def text(self) -> str:
        since = f"--since {format_time(self.since)}" if self.since else "no --since"
        return f"--format {self.fmt}, {since}"


@dataclass(frozen=True)
class Start:
    """What one query tells an export of one account when it starts."""

    head: int | None  # the account's highest store sequence number (None: no rows)
    position: int | None  # the consumer's, for this account (None: no row yet)
    file_path: str | None  # the consumer's file and its committed length
    file_length: int | None
    saved: Options | None = None  # the consumer's options (None: not saved yet)
    since_upto: int | None = None  # --since applies to this account's rows up to this number
    streams: tuple[str, ...] | None = None  # the consumer's (rows of), None: it has no rows

    def nothing_new(self) -> bool:
        return self.head is None or (self.position is not None and self.head <= self.position)


# One query: a run with nothing new reads nothing else.
def _start_query(table: sa.Table) -> sa.Select[Any]:
    account: sa.BindParameter[str] = sa.bindparam("account")
    consumer: sa.BindParameter[str] = sa.bindparam("consumer")  # the stream's key
    mine = export_consumers.c
    head = sa.select(sa.func.max(table.c.stored_seq)).where(table.c.account == account)
    own = (mine.consumer == consumer, mine.account == account)
    position = sa.select(mine.position).where(*own)
    since_upto = sa.select(mine.since_upto).where(*own)
    # the consumer's file and options, from whichever account and stream it last wrote
    # (kept equal); a row made before its first write has no file yet: it comes last
    last_file = (
        sa.select(mine.file_path, mine.file_length, mine.since, mine.format)
        .where(mine.consumer.in_(sa.bindparam("family", expanding=True)))
        .order_by(mine.file_path.is_(None), mine.updated_at.desc())
        .limit(1)
        .subquery("f")
    )
    one = sa.select(sa.literal(1).label("one")).subquery("x")
    # which streams the consumer has rows of: the streams it exports (Start.streams)
    has = [
        sa.exists().where(mine.consumer == sa.bindparam(f"key_{name}")).label(f"has_{name}")
        for name in STREAMS
    ]
    return sa.select(
        head.scalar_subquery().label("head"),
        position.scalar_subquery().label("position"),
        last_file.c.file_path,
        last_file.c.file_length,
        last_file.c.since,
        last_file.c.format,
        since_upto.scalar_subquery().label("since_upto"),
        *has,
    ).select_from(one.outerjoin(last_file, sa.true()))


_START = {name: _start_query(stream.table) for name, stream in STREAMS.items()}


def read_start(conn: Connection, consumer: str, account: str, stream: str = AUDIT_LOGS) -> Start:
    params: dict[str, Any] = {
        "consumer": stream_key(consumer, stream), "account": account, "family": family(consumer)
    }  # fmt: skip
    params.update((f"key_{name}", stream_key(consumer, name)) for name in STREAMS)
    row = conn.execute(_START[stream], params).one()
    head, position, path, length, since, fmt, since_upto, *has = row
    streams = tuple(name for name, found in zip(STREAMS, has, strict=True) if found)
    return Start(
        None if head is None else int(head),
        None if position is None else int(position),
        path,
        None if length is None else int(length),
        None if fmt is None else Options(fmt, since),
        None if since_upto is None else int(since_upto),
        streams or None,
    )


def check_options(
    consumer: str, saved: Options | None, fmt: str | None, since: datetime | None, reset: bool
) -> Options:
    """The options this run exports with: those given (``None``: as saved; a new consumer's
    default is raw and no ``--since``). Options given that differ from the saved ones are
    refused unless ``reset``: they would make the file something no single export writes.
    With ``reset`` the given ones replace the saved ones, from the consumer's position on."""
    if since is not None:
        since = since.replace(microsecond=0)  # the precision created_at is compared at
    if saved is None or reset:
        return Options(fmt or "raw", since)
    wanted = Options(fmt or saved.fmt, saved.since if since is None else since)
    if wanted != saved:
        raise ConfigError(
            f"consumer {consumer} exports with {saved.text()}, this run asks for "
            f"{wanted.text()}: run it with the same options, or add --reset-options to "
            "export with these from its position on"
        )
    return saved


_table = export_consumers.c
_SAVE_POSITION = (
    sa.update(export_consumers)
    .where(_table.consumer == sa.bindparam("c"), _table.account == sa.bindparam("a"))
    .values(position=sa.bindparam("p"), updated_at=sa.bindparam("t", type_=UTCDateTime()))
)
_FAMILY = _table.consumer.in_(sa.bindparam("family", expanding=True))
_SAVE_FILE = (
    sa.update(export_consumers)
    .where(_FAMILY)
    .values(file_path=sa.bindparam("f"), file_length=sa.bindparam("n"))
)


_SAVE_OPTIONS = (
    sa.update(export_consumers)
    .where(_FAMILY)
    .values(since=sa.bindparam("s", type_=UTCDateTime(fsp=0)), format=sa.bindparam("fmt"))
)


@dataclass(frozen=True)
class Begin:
    """What a consumer's export of an account saves before it reads: its options and, for
    an account it has not exported yet, the rows ``--since`` applies to."""

    options: Options
    since_upto: int | None  # a new row's; an existing row keeps its own


def save(
    conn: Connection,
    consumer: str,
    account: str,
    position: int,
    now: datetime,
    file: tuple[str, int] | None = None,
    begin: Begin | None = None,
    stream: str = AUDIT_LOGS,
) -> None:
    """In ``conn``'s transaction: the consumer's ``position`` for ``account``'s ``stream``, when it
    writes to a file the file's path and length (``file``), and when it starts the
    options it exports with (``begin``). The caller holds the consumer's lock, so no
    other process writes these rows meanwhile."""
    key = stream_key(consumer, stream)
    saved = conn.execute(_SAVE_POSITION, {"c": key, "a": account, "p": position, "t": now})
    if saved.rowcount == 0:
        conn.execute(
            sa.insert(export_consumers).values(
                consumer=key,
                account=account,
                position=position,
                updated_at=now,
                since_upto=None if begin is None else begin.since_upto,
            )
        )
    if file is not None:
        conn.execute(_SAVE_FILE, {"family": family(consumer), "f": file[0], "n": file[1]})
    if begin is not None:
        options = begin.options
        params = {"family": family(consumer), "s": options.since, "fmt": options.fmt}
        conn.execute(_SAVE_OPTIONS, params)
