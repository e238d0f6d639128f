"""A pooled connection's upkeep, in as few round trips as keep it safe.

- ``ping_when_idle``: a connection left unused for ``PING_AFTER_IDLE_S`` (between
  accounts, during a rate-limit wait; a server restart or its idle timeout may have
  closed it) is pinged before use and replaced if dead. SQLAlchemy's ``pool_pre_ping``
  pings every checkout: 14 of the ~88 round trips of a PostgreSQL run with nothing new,
  whose transactions follow each other within milliseconds.
- ``reset_open_transactions`` (PyMySQL): a connection goes back to the pool rolled back
  only if a transaction may be open there. SQLAlchemy resets every connection returned
  after a commit, and PyMySQL sends that ROLLBACK to the server (psycopg knows it is idle):
  13 round trips of a MariaDB run with nothing new.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import PoolResetState

PING_AFTER_IDLE_S = 1.0
# MySQL's server status bit: a transaction is open (SERVER_STATUS_IN_TRANS).
_IN_TRANSACTION = 1
_RETURNED = "etl_returned_at"  # connection record info: when it went back to the pool
_FAILED = "etl_failed"  # ... and whether a statement failed on it since its last reset


def ping_when_idle(engine: Engine) -> None:
    """Ping a connection idle for ``PING_AFTER_IDLE_S`` or more when it is checked out;
    a failed ping makes the pool connect anew (``DisconnectionError``), as pre-ping does."""

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _taken(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # whatever the driver raises: this connection is not usable
            raise DisconnectionError(f"the pooled connection is gone: {exc}") from exc


def reset_open_transactions(engine: Engine) -> None:
    """For an engine made with ``pool_reset_on_return=None`` on PyMySQL: roll a returned
    connection back unless SQLAlchemy just did, or the server's last answer says no
    transaction is open and no statement failed since (an error packet carries no status)."""

    @event.listens_for(engine, "handle_error")
    def _failed(context: Any) -> None:
        connection = context.connection
        if connection is not None and not connection.closed and not connection.invalidated:
            connection.info[_FAILED] = True  # the pooled connection's own info

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: PoolResetState) -> None:
        if state.transaction_was_reset or state.terminate_only:
            return
        failed = record.info.pop(_FAILED, False) if record is not None else True
        if failed or getattr(dbapi_connection, "server_status", _IN_TRANSACTION) & _IN_TRANSACTION:
            dbapi_connection.rollback()
