"""Checkpoints of an account's ledger: made (signed when a key is configured), kept in the
database and written as one small file each into the checkpoint directory; and read back
from both for ``verify``.

Order: the database row commits first, then the file is written. So a file without its
row can only mean the row was deleted (``verify`` says so), and a row without its file
that the directory lost or never got it (a failed write is an error of the run). A run
killed between the two leaves the latest row without its file: the next run writes it
(when it is this job's: its head on the stored chain, signed by the job's key if any),
so the kill is no lasting finding. How a file is written: ``etl.integrity.checkpoint_files``.
A checkpoint is made only when the ledger grew or the key changed since the last one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.common.clock import utc_now
from etl.integrity import note
from etl.integrity.checkpoint_files import (
    account_directory,
    directory_checkpoints,
    has_whole,
    unreadable,
    write_file,
)
from etl.integrity.keys import SigningKey
from etl.integrity.note import Checkpoint
from etl.storage.engine import database_errors, for_writing
from etl.storage.schema.integrity import checkpoints, ledger, ledger_head

log = logging.getLogger(__name__)

__all__ = ["CheckpointTarget", "Checkpointer", "directory_checkpoints", "make_checkpoint"]


@dataclass(frozen=True)
class CheckpointTarget:
    """Where and how an account's checkpoints are made."""

    origin: str  # the checkpoint's first line: the account's Zendesk host
    key: SigningKey | None
    directory: Path | None


def make_checkpoint(
    engine: Engine,
    account: str,
    target: CheckpointTarget,
    now: Callable[[], datetime] = utc_now,
) -> Checkpoint | None:
    """A new checkpoint of ``account``'s ledger, or None when it has no entry or nothing
    changed since the last one."""
    key_id = target.key.public.id if target.key else None
    with database_errors(engine, "making a ledger checkpoint"), for_writing(engine).begin() as conn:
        head = conn.execute(
            sa.select(ledger_head.c.entries, ledger_head.c.head).where(
                ledger_head.c.account == account
            )
        ).first()
        if head is None or head[0] == 0:
            return None
        last = conn.execute(
            sa.select(checkpoints.c.size, checkpoints.c.key_id, checkpoints.c.note)
            .where(checkpoints.c.account == account)
            .order_by(checkpoints.c.id.desc())
            .limit(1)
        ).first()
        if last is not None and target.directory is not None:
            _complete(conn, account, target, last[2])
        if last is not None and last[0] == head[0] and last[1] == key_id:
            return None
        at = now()
        size, digest = int(head[0]), bytes.fromhex(head[1])
        unsigned = note.make(target.origin, size, digest, account, at)
        signed = None
        if target.key is not None:
            signed = (target.key.public.id, target.key.sign(unsigned.body))
        made = note.make(target.origin, size, digest, account, at, signed)
        conn.execute(
            sa.insert(checkpoints).values(
                account=account,
                size=size,
                head=digest.hex(),
                made_at=at,
                key_id=key_id,
                note=made.text,
            )
        )
    if target.directory is not None:
        write_file(account_directory(target.directory, account), made)
    log.info(
        "account %s: ledger checkpoint at entry %d (%s)",
        account,
        size,
        f"signed by key {key_id}" if key_id else "unsigned",
    )
    return made


def _complete(conn: Connection, account: str, target: CheckpointTarget, text: str) -> None:
    """Write the latest checkpoint's file if the directory lacks it (a run killed after
    the row's commit): only one of this job's, so the directory gets nothing forged."""
    assert target.directory is not None
    made = note.parse(text)
    if made is None or made.account != account or made.size <= 0:
        return
    folder = account_directory(target.directory, account)
    if has_whole(folder, made):  # whole: a cut copy (killed while written in place) is not
        return
    key = target.key
    if made.key_id != (key.public.id if key else None):
        return  # made with another key, or none: not this job's to copy
    if key is not None and not (made.signature and key.public.verifies(made.signature, made.body)):
        return
    stored = conn.execute(
        sa.select(ledger.c.entry_hash).where(
            ledger.c.account == account, ledger.c.entry == made.size
        )
    ).scalar()
    if stored is not None and bytes(stored) == made.head:
        log.info("account %s: the checkpoint at entry %d written again", account, made.size)
        write_file(folder, made)


def stored_checkpoints(conn: Connection, account: str) -> list[Checkpoint]:
    """The account's checkpoints as the database keeps them, oldest first (a row whose
    note does not parse comes back as a checkpoint of size -1, for verify to name)."""
    rows = conn.execute(
        sa.select(checkpoints.c.note)
        .where(checkpoints.c.account == account)
        .order_by(checkpoints.c.id)
    ).scalars()
    return [note.parse(text) or unreadable(text, account, "the database") for text in rows]


class Checkpointer:
    """The checkpoints of a job's runs: one at the end of each account's run, and one
    every ``every`` while a long one commits (``due``)."""

    def __init__(
        self,
        engine: Engine,
        targets: dict[str, CheckpointTarget],
        every: float,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._targets = targets
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}

    def make(self, account: str) -> Checkpoint | None:
        self._last[account] = self._clock()
        return make_checkpoint(self._engine, account, self._targets[account])

    def due(self, account: str) -> None:
        """Make one if the account's last is ``every`` old (the first commit starts the clock)."""
        started = self._last.setdefault(account, self._clock())
        if self._clock() - started >= self._every:
            self.make(account)
