"""The store's reads: the audit log's state and backfill plan, the run history and the
accounts' status, each in a read transaction of its own.

``StoreReader`` needs neither the writer's connections, nor the run lock, nor a clock;
``Store`` (``etl.storage.store``) adds the writes, checked against the run lock.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime

from sqlalchemy.engine import Connection, Engine

from etl.common.settings import AUDIT_LOGS
from etl.storage.history import AccountStatus, RunInfo, account_names, account_status, newest, runs
from etl.storage.locking.guard import guarded_transaction
from etl.storage.schema.coltypes import MYSQL_DIALECTS
from etl.storage.schema.logs import audit_logs
from etl.storage.statements import SliceRow, scope, scope_and_watermark, slices, watermark


class StoreReader:
    def __init__(self, engine: Engine) -> None:
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql", *MYSQL_DIALECTS):
            raise ValueError(f"unsupported dialect {dialect!r}")  # open_engine refuses it first
        self.engine = engine
        # A read of one statement needs no transaction: on PostgreSQL (psycopg's autocommit
        # is the client's own setting) that spares its BEGIN and COMMIT, two round trips.
        # PyMySQL's would cost three statements to set and reset: MariaDB keeps its reads'.
        self._one_read = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if dialect == "postgresql"
            else engine
        )

    def watermark(self, account: str, stream: str = AUDIT_LOGS) -> datetime | None:
        with self._read_one("reading the watermark") as conn:
            return watermark(conn, account, stream)

    def scope(self, account: str, stream: str = AUDIT_LOGS) -> tuple[bool, str | None]:
        """Whether the account has a state row for ``stream``, and the scope recorded in it
        (etl.sync.scope)."""
        with self._read_one("reading the sync scope") as conn:
            return scope(conn, account, stream)

    def scope_and_watermark(self, account: str) -> tuple[bool, str | None, datetime | None]:
        """``scope`` and ``watermark`` in one read: what a sync reads as it begins."""
        with self._read_one("reading the sync scope") as conn:
            return scope_and_watermark(conn, account)

    def newest_created_at(self, account: str) -> datetime | None:
        """The newest ``created_at`` stored for the account (None when it has no row)."""
        with self._read_one("reading the newest record") as conn:
            return newest(conn, audit_logs, "created_at", account)

    def slices(self, account: str, stream: str = AUDIT_LOGS) -> list[SliceRow]:
        """The account's backfill plan of ``stream`` (empty when none), by start."""
        with self._read_one("reading the backfill plan") as conn:
            return slices(conn, account, stream)

    def recent_runs(
        self, account: str, limit: int = 5, *, stream: str = "audit_logs"
    ) -> list[RunInfo]:
        """The account's newest runs of ``stream``, newest first."""
        with self._read_one("reading the run history") as conn:
            return runs(conn, account, limit=limit, stream=stream)

    def account_status(self, account: str | None = None) -> list[AccountStatus]:
        """One entry per account (or just ``account``), sorted by name.

        Accounts are those with a watermark or a run; asking for an unknown account
        gives an entry with nothing in it.
        """
        with self._reading("reading the status") as conn:
            names = account_names(conn) if account is None else [account]
            return [account_status(conn, name) for name in names]

    def reading(self, doing: str) -> AbstractContextManager[Connection]:
        """A read transaction whose database failures become ``DatabaseError``."""
        return self._reading(doing)

    def _reading(self, doing: str) -> AbstractContextManager[Connection]:
        return guarded_transaction(self.engine, self.engine, doing)

    def _read_one(self, doing: str) -> AbstractContextManager[Connection]:
        """For a read of one statement: in autocommit where that costs nothing."""
        return guarded_transaction(self._one_read, self.engine, doing)
