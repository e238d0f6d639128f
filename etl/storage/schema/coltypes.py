"""The column types every table uses and the one timestamp encoder, apart from the tables.

``UTCDateTime`` takes and gives aware UTC datetimes on every dialect (PostgreSQL
``timestamptz``; MySQL naive UTC; SQLite ISO 8601 text, ``sqlite_time``), and ``db_time`` /
``sqlite_time`` are what the straight-to-driver upserts send, so both paths store the same.
"""

from __future__ import annotations

import functools
import importlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

# SQLAlchemy names the dialect "mariadb" for mariadb:// URLs, "mysql" otherwise.
MYSQL_DIALECTS = ("mysql", "mariadb")


def db_time(value: datetime, dialect: str, fsp: int = 6) -> datetime:
    """A timestamp as the database's driver is given it, the one encoder: UTC, aware on
    PostgreSQL and naive elsewhere, whole seconds when ``fsp`` is 0; a naive one refused.
    ``UTCDateTime`` and the upserts' straight-to-driver paths both call it."""
    if value.tzinfo is not UTC:  # parse_record's are UTC already
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: give it a timezone")
        value = value.astimezone(UTC)
    if fsp == 0 and value.microsecond:
        value = value.replace(microsecond=0)
    return value if dialect == "postgresql" else value.replace(tzinfo=None)


def sqlite_time(value: datetime, fsp: int = 6) -> str:
    """A timestamp as SQLite stores it: ISO 8601 UTC text as the tool prints times,
    ``2026-10-07T01:13:06Z``, with six fraction digits where ``fsp`` is 6
    (``2026-10-07T01:13:06.250000Z``).

    SQLite compares the text, so plain SQL finds what PostgreSQL finds: fixed width within
    a column (text order is time order), and ``'2026-10-07T01:13:06Z' >= '2026-10-07'``
    holds as it should. SQLite's own date functions read the form as it is.
    """
    moment = db_time(value, "sqlite", fsp)
    return moment.isoformat("T", "seconds" if fsp == 0 else "microseconds") + "Z"


def _from_sqlite(value: str) -> datetime:
    # What releases before revision 0010 stored ("2026-10-07 01:13:06.000000", naive)
    # is read too: a database is read before it is migrated (``status`` on an old schema).
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is UTC:  # the "Z" of sqlite_time
        return moment
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@functools.cache
def _sqlite_text_type() -> TypeEngine[Any]:
    """SQLite's DATETIME with SQLAlchemy's own text conversion switched off: the text is
    ``sqlite_time``'s, made and read by ``UTCDateTime``. Built on first use, so that
    SQLAlchemy's SQLite dialect is imported by the runs that use it alone."""
    from sqlalchemy.dialects import sqlite

    class _ISOText(sqlite.DATETIME):
        def bind_processor(self, dialect: Dialect) -> None:
            return None

        def result_processor(self, dialect: Dialect, coltype: object) -> None:
            return None

    return _ISOText()  # type: ignore[no-untyped-call]  # SQLAlchemy's SQLite types are untyped


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime; naive datetimes are refused rather than guessed at.

    ``fsp`` is the fractional-second precision kept: 6 (microseconds) or 0, which
    truncates on every dialect so that all three store the same value.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def __init__(self, fsp: int = 6) -> None:
        super().__init__()
        if fsp not in (0, 6):
            raise ValueError("fsp must be 0 or 6")
        self.fsp = fsp

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True, precision=self.fsp))
        if dialect.name in MYSQL_DIALECTS:
            from sqlalchemy.dialects import mysql

            return dialect.type_descriptor(mysql.DATETIME(fsp=self.fsp))
        if dialect.name == "sqlite":
            return _sqlite_text_type()
        return dialect.type_descriptor(sa.DateTime(timezone=False))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return sqlite_time(value, self.fsp)
        return db_time(value, dialect.name, self.fsp)

    def process_result_value(
        self, value: datetime | str | None, dialect: Dialect
    ) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return _from_sqlite(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# The dialect-specific types below are TypeDecorators rather than ``with_variant``, so that
# a dialect's module is imported only by the runs that use it: loading PostgreSQL's and
# MySQL's cost a SQLite run about 35 ms of its start-up.


class _JSON(TypeDecorator[Any]):
    """JSON, stored as JSONB on PostgreSQL."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.JSONB()
        return sa.JSON()


class _LongText(TypeDecorator[str]):
    """Unbounded text: LONGTEXT on MySQL, whose TEXT stops at 64 KiB."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in MYSQL_DIALECTS:
            from sqlalchemy.dialects import mysql

            return mysql.LONGTEXT()
        return sa.Text()


class Digest(TypeDecorator[bytes]):
    """A SHA-256 digest: 32 bytes; VARBINARY(32) on MySQL (kept in the row, not a BLOB page)."""

    impl = sa.LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in MYSQL_DIALECTS:
            from sqlalchemy.dialects import mysql

            return mysql.VARBINARY(32)
        return sa.LargeBinary()


def json_type() -> TypeEngine[Any]:
    """JSON, stored as JSONB on PostgreSQL."""
    return _JSON()


def long_text() -> TypeEngine[str]:
    """Unbounded text: LONGTEXT on MySQL, whose TEXT stops at 64 KiB."""
    return _LongText()


def dialect_insert(dialect: str, table: sa.Table) -> Any:
    """The dialect's own INSERT, with its upsert clause. Its module is imported here, when
    first used, so that a run loads its own dialect alone (each costs 10-25 ms)."""
    name = "mysql" if dialect in MYSQL_DIALECTS else dialect
    return importlib.import_module(f"sqlalchemy.dialects.{name}").insert(table)
