"""SQLAlchemy's psycopg dialect, its first connection's questions asked in one statement.

As an engine first connects, SQLAlchemy's PostgreSQL dialect asks the server's version,
the default schema, the default isolation level and ``standard_conforming_strings``: four
statements in a transaction of their own, six round trips of every run's first connection
(a fresh server process, so each of them slow). ``QuickFirstConnect`` asks the same four
in one statement, in autocommit (no ``BEGIN``, and nothing for SQLAlchemy's ``ROLLBACK``
to send), and answers SQLAlchemy's own questions with what it read: every setting the
dialect derives from them is what it would have been.

It overrides the methods ``initialize`` calls for those answers, as a third-party dialect
does (``_set_backslash_escapes`` is SQLAlchemy's documented hook; the version and schema
ones are private). ``etl.storage.engine`` registers it by name, ``postgresql+etl_psycopg``,
so that this module and SQLAlchemy's PostgreSQL package are imported for PostgreSQL only.
tests/test_startup.py fails if an upgrade stops calling one of them (a first connection
asks more again) or if the dialect's settings differ from SQLAlchemy's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.engine.interfaces import IsolationLevel

# What SQLAlchemy reads with select pg_catalog.version(), select current_schema(), show
# transaction isolation level and show standard_conforming_strings, in that order.
_ASK = (
    "SELECT current_setting('server_version_num'), current_schema(), "
    "current_setting('transaction_isolation'), current_setting('standard_conforming_strings')"
)


@dataclass(frozen=True)
class FirstAnswers:
    """The first connection's answers, as SQLAlchemy's dialect would have read them."""

    version: tuple[int, ...]
    schema: str  # None where the search path names no schema, as SQLAlchemy reads it
    isolation: IsolationLevel
    standard_strings: str


def first_answers(dbapi_connection: Any) -> FirstAnswers:
    """Ask a fresh psycopg connection the four questions in one autocommit statement."""
    was = dbapi_connection.autocommit
    dbapi_connection.autocommit = True  # a fresh connection is idle: no BEGIN to leave
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(_ASK)
            number, schema, isolation, standard = cursor.fetchone()
    finally:
        dbapi_connection.autocommit = was
    level = cast(IsolationLevel, isolation.upper())
    return FirstAnswers(version_tuple(int(number)), schema, level, standard)


def version_tuple(number: int) -> tuple[int, ...]:
    """``server_version_num`` as SQLAlchemy reads ``version()``: 150020 is (15, 20) since
    PostgreSQL 10, 90624 is (9, 6, 24) before it."""
    major, rest = divmod(number, 10_000)
    if major >= 10:
        return (major, rest)
    return (major, rest // 100, rest % 100)


class QuickFirstConnect(PGDialect_psycopg):
    """``postgresql+psycopg`` whose first connection costs one round trip, not six."""

    # SQLAlchemy caches a dialect's compiled statements only if its own class says so.
    supports_statement_cache = True
    _first: FirstAnswers | None = None

    def initialize(self, connection: Any) -> None:
        self._first = first_answers(connection.connection.dbapi_connection)
        super().initialize(connection)  # type: ignore[no-untyped-call]  # untyped in SA

    def _answers(self) -> FirstAnswers:
        if self._first is None:  # only initialize asks; never before it
            raise RuntimeError("the first connection's answers are not read yet")
        return self._first

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return self._answers().version

    def _get_default_schema_name(self, connection: Any) -> str:
        return self._answers().schema

    def get_default_isolation_level(self, dbapi_conn: Any) -> IsolationLevel:
        return self._answers().isolation

    def _set_backslash_escapes(self, connection: Any) -> None:
        self._backslash_escapes = self._answers().standard_strings == "off"


dialect = QuickFirstConnect
