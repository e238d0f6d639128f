"""SQLite: store times as ISO 8601 text that plain SQL compares correctly.

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-05

SQLite has no time type and compares the stored text. Releases before this one stored
``2026-10-07 01:13:06.000000``, which ``created_at >= '2026-10-07T01:13:06Z'`` (the form
the tool prints) compares wrongly: the space sorts before the ``T``. From this revision
SQLite holds ``2026-10-07T01:13:06Z`` in the whole-second columns and
``2026-10-07T01:13:06.250000Z`` in the others (``etl.storage.schema.coltypes.sqlite_time``); this
rewrites the values already stored. PostgreSQL and MariaDB have real time types: nothing
changes there.

Re-runnable: only values still in the old form (a space at the 11th character) are
rewritten, so a second run finds nothing to do. Written by hand; it does not import
etl.storage.schema so that it keeps meaning what it meant when it shipped.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The time columns as of this revision; on a live database, any other DATETIME column of
# the project's tables (from revisions merged beside this one) is rewritten too.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "zendesk_audit_logs": ("created_at", "synced_at"),
    "zendesk_audit_sync_state": ("watermark", "updated_at", "notice_at"),
    "zendesk_audit_sync_runs": (
        "started_at",
        "finished_at",
        "window_start",
        "window_end",
        "watermark_before",
        "watermark_after",
    ),
    "zendesk_audit_sync_slices": ("slice_start", "slice_end", "position"),
    "zendesk_audit_rejects": ("rejected_at",),
    "zendesk_audit_export_consumers": ("updated_at",),
}
# The columns kept to the whole second: no fraction in their text.
WHOLE_SECONDS = {("zendesk_audit_logs", "created_at"), ("zendesk_audit_sync_state", "notice_at")}
PREFIX = "zendesk_audit_"


def _columns() -> dict[str, tuple[str, ...]]:
    if op.get_context().as_sql:  # offline SQL for a DBA: nothing to inspect
        return TIME_COLUMNS
    inspector = sa.inspect(op.get_bind())
    found: dict[str, tuple[str, ...]] = {}
    for table in inspector.get_table_names():
        if table.startswith(PREFIX):
            times = [
                column["name"]
                for column in inspector.get_columns(table)
                if isinstance(column["type"], sa.DateTime)
            ]
            if times:
                found[table] = tuple(times)
    return found


def _rewrite(to_iso: bool) -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for table, columns in _columns().items():
        for name in columns:
            column = f'"{name}"'
            # The fraction's six digits, whatever the old text had ("" for none).
            fraction = f"substr(substr({column}, 21, 6) || '000000', 1, 6)"
            if to_iso:
                whole = (table, name) in WHOLE_SECONDS
                tail = "'Z'" if whole else f"'.' || {fraction} || 'Z'"
                new, old_mark = f"substr({column}, 1, 10) || 'T' || substr({column}, 12, 8)", " "
            else:
                tail = f"'.' || {fraction}"
                new, old_mark = f"substr({column}, 1, 10) || ' ' || substr({column}, 12, 8)", "T"
            op.execute(
                f'UPDATE "{table}" SET {column} = {new} || {tail} '
                f"WHERE substr({column}, 11, 1) = '{old_mark}'"
            )


def upgrade() -> None:
    _rewrite(to_iso=True)


def downgrade() -> None:
    _rewrite(to_iso=False)
