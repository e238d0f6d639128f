"""SQLite: the ledger's ``written_at`` in the ISO 8601 text every other time column holds.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

Revision 0010 rewrote SQLite's times to ``2026-10-07T01:13:06.250000Z``, but the ledger's
writer went on writing ``2026-10-07 01:13:06.250000``. SQLite compares the text, and the
space sorts before the ``T``: ``verify --since TIME`` skipped the entries written earlier on
the day it was given (and reported their rows as inserted). ``written_at`` is not hashed,
so rewriting it changes no chain. PostgreSQL and MariaDB have real time types: nothing
changes there.

Re-runnable: only values still in the old form (a space at the 11th character) are
rewritten. The downgrade keeps the new form, which the older release reads and compares
correctly. Written by hand; it does not import etl.storage.schema so that it keeps
meaning what it meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LEDGER = "zendesk_audit_ledger"


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    column = '"written_at"'
    fraction = f"substr(substr({column}, 21, 6) || '000000', 1, 6)"
    op.execute(
        f"UPDATE \"{LEDGER}\" SET {column} = substr({column}, 1, 10) || 'T' || "
        f"substr({column}, 12, 8) || '.' || {fraction} || 'Z' "
        f"WHERE substr({column}, 11, 1) = ' '"
    )


def downgrade() -> None:
    pass
