"""The columns ``verify`` reads as numbers or bytes, as the server's catalog types them.

A DBA's ``ALTER TABLE`` that makes the ledger's ``stored_seq`` a decimal, its hashes a
text, or a row's ``stored_seq`` a text leaves values the walk cannot read as the job wrote
them (a number between two integers, a hash that is no bytes): the walk stopped with an
internal error, or read such a store as clean. Such a column is itself the finding, named
before the walk, which is then not made. Only the family is compared (an integer of any
width, bytes of any kind), so a server's own spelling of a type never raises an alarm;
text and JSON columns are read by their values (``checks.derived``). SQLite has no column
types to alter: its odd storage classes are read per value (``etl.integrity.sqlite``).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.storage.schema.integrity import ledger, ledger_head
from etl.storage.schema.logs import access_logs, audit_logs

_TABLES = (ledger, ledger_head, audit_logs, access_logs)
LEDGER_TABLES = frozenset({ledger.name, ledger_head.name})  # the others hold a log's rows
# information_schema's data_type per family, PostgreSQL's and MariaDB's spellings
_FAMILIES = {
    int: {"smallint", "integer", "bigint", "int", "tinyint", "mediumint"},
    bytes: {"bytea", "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"},
}
_SCHEMA = {"postgresql": "current_schema()"}
# The audit id is read as it is stored and compared with its entry's text, so an id made a
# text is found per row, by its value (deleted and inserted: ``mariadb.frames``).
_BY_VALUE = {(audit_logs.name, "id")}


def _family(column: sa.Column[object]) -> type | None:
    """int or bytes for a column the walk reads as one; None for the others."""
    made = column.type
    if isinstance(made, sa.TypeDecorator):  # its python_type is object: its impl's says
        made = made.impl_instance
    try:
        kind = made.python_type
    except NotImplementedError:
        return None
    return kind if kind in _FAMILIES else None


def altered(conn: Connection) -> list[tuple[str, str, str, str]]:
    """(table, column, its type now, the family the job makes) of each column read as a
    number or bytes whose catalog type is of another family; empty on SQLite."""
    if conn.dialect.name == "sqlite":
        return []
    expected = {
        (table.name, column.name): family
        for table in _TABLES
        for column in table.columns
        if (family := _family(column)) is not None and (table.name, column.name) not in _BY_VALUE
    }
    schema = _SCHEMA.get(conn.dialect.name, "DATABASE()")
    names = ", ".join(f"'{table.name}'" for table in _TABLES)
    found = conn.exec_driver_sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = {schema} AND table_name IN ({names})"
    )
    wrong = []
    for table, column, data_type in found:
        family = expected.get((str(table), str(column)))
        if family is not None and str(data_type).lower() not in _FAMILIES[family]:
            made = "an integer" if family is int else "bytes"
            wrong.append((str(table), str(column), str(data_type).lower(), made))
    return sorted(wrong)
