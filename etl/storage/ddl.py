"""Schema changes a migration can run again after a kill at any point: each creates only
what is missing.

MariaDB and MySQL commit every DDL statement on its own: a ``migrate`` killed in the
middle of a revision leaves some of its tables, indexes and columns behind, and the
version row still at the revision before (Alembic writes it after the revision's last
statement). Run again, the revision would stop at the first ``CREATE TABLE`` of
something that already exists. With these in place of ``op.create_table``,
``op.create_index`` and ``op.add_column``, it goes on where the kill stopped it.
PostgreSQL and SQLite roll a killed migration back whole; these change nothing there.

Every revision's ``upgrade`` uses them; offline (``migrate --sql``) they emit the DDL
as it is, since there is no database to look at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def create_table(name: str, *items: Any, **options: Any) -> None:
    """``op.create_table`` unless the table exists (MySQL creates a table atomically)."""
    if _live() and sa.inspect(op.get_bind()).has_table(name):
        return
    op.create_table(name, *items, **options)


def create_index(name: str, table: str, columns: Sequence[str], **options: Any) -> None:
    """``op.create_index`` unless ``table`` has an index of that name."""
    if _live() and name in {ix["name"] for ix in sa.inspect(op.get_bind()).get_indexes(table)}:
        return
    op.create_index(name, table, list(columns), **options)


def add_column(table: str, column: sa.Column[Any]) -> None:
    """``op.add_column`` unless ``table`` has a column of that name."""
    if _live() and column.name in {c["name"] for c in sa.inspect(op.get_bind()).get_columns(table)}:
        return
    op.add_column(table, column)


def _live() -> bool:
    return not op.get_context().as_sql
