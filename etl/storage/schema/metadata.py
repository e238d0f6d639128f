"""What every table shares: one ``MetaData`` and its naming convention, the options the
migrations give each table on MySQL/MariaDB, Alembic's version table, bounded lengths."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Options the migrations give every table on MySQL/MariaDB: 4-byte UTF-8 and binary (case-
# and accent-sensitive) comparison, as on PostgreSQL and SQLite. Binary collation also
# makes the upsert's "raw changed?" test exact on MariaDB, whose JSON is LONGTEXT.
# tests/test_migrations.py checks the live tables against them. They are not passed to the
# tables, which only query: ``mysql_*`` arguments would load SQLAlchemy's MySQL
# dialect in every run, whatever the database.
MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
}

# Alembic's version table: our own name, so that another application's Alembic
# history in the same database is never mistaken for ours.
VERSION_TABLE = "zendesk_audit_alembic_version"


def column_lengths(table: sa.Table) -> dict[str, int]:
    """The bounded text columns of ``table`` and the characters each holds."""
    return {
        column.name: column.type.length
        for column in table.columns
        if isinstance(column.type, sa.String) and column.type.length
    }


metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
