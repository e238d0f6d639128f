"""MariaDB test databases kept for the process's next tests instead of dropped.

MariaDB has no database templates: each test's copy was some fifteen ``CREATE TABLE``s and
its drop as many files deleted, 0.2 to 0.6 s each on the busy 2-core host. So, as on
PostgreSQL (``db_pool``), a test's database is kept when it is exactly the template's
tables (or has nothing in it) and nobody is connected: its rows are deleted, its
``AUTO_INCREMENT``s set back and the template's rows put back, and the next test's copy of
the template is one ``RENAME TABLE`` of a kept one's tables into the empty database
(foreign keys follow). Anything else is dropped as before.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import sqlalchemy as sa

from .kept import KeptDatabases

_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")
_TABLES = (
    "SELECT table_name, table_type, COALESCE(auto_increment, 1) FROM information_schema.tables "
    "WHERE table_schema = :s"
)
# Everything else a test could leave in a database: none of it is ever kept.
_OTHER_OBJECTS = (
    "SELECT (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = :s)"
    " + (SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = :s)"
    " + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = :s)"
)
_CHARSET = (
    "SELECT CONCAT(default_character_set_name, ' ', default_collation_name) "
    "FROM information_schema.schemata WHERE schema_name = :s"
)
_SESSIONS = "SELECT id FROM information_schema.processlist WHERE db = :s AND id <> CONNECTION_ID()"
_OTHERS = "SELECT 1 FROM information_schema.processlist WHERE db = :s AND id <> CONNECTION_ID()"


def _shape(conn: sa.Connection, name: str) -> tuple[dict[str, str], set[str]] | None:
    """Each table's ``CREATE TABLE`` (its counter left out), and the tables whose counter
    has moved; None when the database holds a view, a routine, a trigger or an event."""
    tables = conn.execute(sa.text(_TABLES), {"s": name}).all()
    if (
        any(kind != "BASE TABLE" for _, kind, _ in tables)
        or conn.execute(sa.text(_OTHER_OBJECTS), {"s": name}).scalar()
    ):
        return None
    ddl = {
        table: _AUTO_INCREMENT.sub(
            "", conn.execute(sa.text(f"SHOW CREATE TABLE {name}.{table}")).one()[1]
        )
        for table, _, _ in tables
    }
    return ddl, {table for table, _, counter in tables if int(counter) > 1}


class MariaDbPool(KeptDatabases):
    """One process's kept MariaDB databases: empty ones and ones at the template."""

    def __init__(self, admin: Callable[[], sa.Engine]) -> None:
        super().__init__(admin)
        self._template = ""
        self._template_shape: dict[str, str] = {}
        self._with_rows: list[str] = []
        self._charset = ""

    def learn_template(self, name: str) -> None:
        if self._template:
            return
        with self._admin().connect() as conn:
            found = _shape(conn, name)
            assert found is not None, "the template holds tables only"
            shape = found[0]
            self._with_rows = [
                table
                for table in shape
                if conn.execute(sa.text(f"SELECT 1 FROM {name}.{table} LIMIT 1")).first()
            ]
            self._charset = str(conn.execute(sa.text(_CHARSET), {"s": name}).scalar())
        self._template, self._template_shape = name, shape

    def swap_in_migrated(self, name: str) -> bool:
        """Move a kept migrated database's tables into the empty ``name`` in one atomic
        ``RENAME TABLE``; the emptied one is kept. False when none is kept."""
        if not self.migrated:
            return False
        spare = self.migrated.pop()
        moves = ", ".join(f"{spare}.{t} TO {name}.{t}" for t in self._template_shape)
        with self._admin().connect() as conn:
            try:
                conn.execute(sa.text(f"RENAME TABLE {moves}"))
            except sa.exc.DBAPIError:
                self.migrated.append(spare)
                return False
        self.empty.append(spare)
        return True

    def keep(self, name: str) -> bool:
        """Keep ``name`` for a later test if it can be made a clean slate; False: drop it."""
        try:
            with self._admin().connect() as conn:
                if not self._alone(conn, name):
                    return False
                if conn.execute(sa.text(_CHARSET), {"s": name}).scalar() != self._charset:
                    return False
                found = _shape(conn, name)
                if found is not None and found[0] == {}:
                    self.empty.append(name)
                    return True
                if not self._template or found is None or found[0] != self._template_shape:
                    return False
                self._clear(conn, name, counters=found[1])
        except sa.exc.SQLAlchemyError:
            return False
        self.migrated.append(name)
        return True

    def _alone(self, conn: sa.Connection, name: str) -> bool:
        def end_others() -> None:
            for session in conn.execute(sa.text(_SESSIONS), {"s": name}).scalars().all():
                with contextlib.suppress(sa.exc.DBAPIError):  # gone meanwhile
                    conn.execute(sa.text(f"KILL CONNECTION {int(session)}"))

        return self.alone(
            lambda: conn.execute(sa.text(_OTHERS), {"s": name}).first() is not None, end_others
        )

    def _clear(self, conn: sa.Connection, name: str, counters: set[str]) -> None:
        conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 0"))
        try:
            conn.execute(sa.text("START TRANSACTION"))
            for table in self._template_shape:
                conn.execute(sa.text(f"DELETE FROM {name}.{table}"))
            for table in self._with_rows:
                conn.execute(
                    sa.text(f"INSERT INTO {name}.{table} SELECT * FROM {self._template}.{table}")
                )
            conn.execute(sa.text("COMMIT"))
            for table in counters:  # back to 1 once empty; a DDL, so outside the transaction
                conn.execute(sa.text(f"ALTER TABLE {name}.{table} AUTO_INCREMENT = 1"))
        finally:
            conn.execute(sa.text("SET FOREIGN_KEY_CHECKS = 1"))
