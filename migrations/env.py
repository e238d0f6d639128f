"""Alembic environment for zendesk-audit-etl, driven from code by ``etl.storage.migrate``.

Online, ``etl.storage.migrate`` passes an open connection as ``config.attributes["connection"]``.
Offline (``etl.storage.migrate.upgrade_sql``), it passes ``config.attributes["dialect_name"]``
and the DDL is written out instead of run. There is no ini file and no URL here, and
logging is left to the application (no ``fileConfig``).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from etl.storage.schema.every_table import metadata
from etl.storage.schema.metadata import VERSION_TABLE

config = context.config


def run_online(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline(dialect_name: str) -> None:
    context.configure(
        dialect_name=dialect_name,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=dialect_name == "sqlite",
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    dialect_name = config.attributes.get("dialect_name")
    if not isinstance(dialect_name, str):
        raise RuntimeError("offline migrations need config.attributes['dialect_name']")
    run_offline(dialect_name)
else:
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "these migrations run from code with an open connection: "
            "use `zendesk-audit-etl migrate`, not the alembic command"
        )
    run_online(connection)
