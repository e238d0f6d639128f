"""Fenced writes: a writer whose lock went to another run is refused inside its own
transaction, never after a check that came too early.

The run locks (``etl.storage.locking.lock``) are session locks and file locks: they say who
should write, but a holder can lose its lock (its session killed, its file deleted)
between checking it and committing, and go on to commit over the next holder's work.
So whoever takes a lock also takes an epoch, in the database, from the owner's row of
``zendesk_audit_owners`` (``take_fence``: one more than the last holder's); and every
write transaction it runs updates that row only where the epoch is still its own
(``Fence.check``), in the same transaction as its writes. A takeover moves the epoch
first, so:

- if the old holder's transaction checked before the takeover, it holds the owner's row
  (PostgreSQL and InnoDB row locks; SQLite's one writer) until it commits, and the new
  holder's epoch waits for that commit: it is ordered before the takeover;
- otherwise its check finds another epoch, and the whole transaction is rolled back with
  ``LockLostError`` (exit 6): refused, and never retried.

Owners are an account's runs (``SYNC``) and an export consumer's (``EXPORT``), named
apart, so an account called ``export:siem`` is not the consumer ``siem``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.errors import LockLostError
from etl.storage.engine import database_errors, for_writing
from etl.storage.schema.coltypes import MYSQL_DIALECTS, dialect_insert
from etl.storage.schema.state import owners

SYNC = "sync"
EXPORT = "export"
_WHAT = {SYNC: "the run lock of account", EXPORT: "the export lock of consumer"}

_KIND: sa.BindParameter[str] = sa.bindparam("o_kind")
_NAME: sa.BindParameter[str] = sa.bindparam("o_name")
_EPOCH: sa.BindParameter[int] = sa.bindparam("o_epoch")
# The row is written, not only matched: every database then counts it (MySQL's affected
# rows), and Galera's certification sees the write.
_CHECK = (
    sa.update(owners)
    .where(owners.c.kind == _KIND, owners.c.name == _NAME, owners.c.epoch == _EPOCH)
    .values(commits=owners.c.commits + 1)
)
_CURRENT = sa.select(owners.c.epoch).where(owners.c.kind == _KIND, owners.c.name == _NAME)


@dataclass(frozen=True)
class Fence:
    """The epoch a lock holder took; ``check`` it inside each of its write transactions."""

    kind: str
    name: str
    epoch: int

    def check(self, conn: Connection) -> None:
        """In ``conn``'s transaction: ``LockLostError`` unless the epoch is still ours.
        Until that transaction ends, no other run can take the owner's epoch."""
        params = {"o_kind": self.kind, "o_name": self.name, "o_epoch": self.epoch}
        if conn.execute(_CHECK, params).rowcount == 1:
            return
        raise LockLostError(
            f"lost {_WHAT[self.kind]} {self.name} (another run took it over: epoch "
            f"{self.epoch} is no longer the current one); this transaction was rolled back, "
            "so no other run is written over; the next run resumes from the last commit"
        )


@functools.cache
def _take(dialect: str) -> sa.Executable:
    """Insert the owner's row at epoch 1, or add one to its epoch; built once a dialect.
    PostgreSQL's and SQLite's return the epoch (one round trip), MySQL's is read after it."""
    insert = dialect_insert(dialect, owners).values(
        kind=_KIND, name=_NAME, epoch=1, commits=0, taken_at=sa.bindparam("o_now")
    )
    if dialect in MYSQL_DIALECTS:
        statement: sa.Executable = insert.on_duplicate_key_update(
            epoch=owners.c.epoch + 1, taken_at=insert.inserted.taken_at
        )
    else:
        statement = insert.on_conflict_do_update(
            index_elements=[owners.c.kind, owners.c.name],
            set_={"epoch": owners.c.epoch + 1, "taken_at": insert.excluded.taken_at},
        ).returning(owners.c.epoch)
    return statement


def take_fence(engine: Engine, kind: str, name: str, now: datetime) -> Fence:
    """Take the next epoch of owner (``kind``, ``name``), committed at once; call it
    holding the owner's lock. It waits (up to the lock timeout) for a transaction of the
    previous holder that passed its check to commit."""
    if kind not in _WHAT:
        raise ValueError(f"unknown owner kind {kind!r}")
    params = {"o_kind": kind, "o_name": name, "o_now": now}
    doing = f"taking the write epoch of {_WHAT[kind]} {name}"
    dialect = engine.dialect.name
    with database_errors(engine, doing), for_writing(engine).begin() as conn:
        if dialect in MYSQL_DIALECTS:
            conn.execute(_take(dialect), params)
            epoch = conn.execute(_CURRENT, params).scalar_one()
        else:
            epoch = conn.execute(_take(dialect), params).scalar_one()
    return Fence(kind, name, int(epoch))
