"""PostgreSQL test databases kept for the process's next tests instead of dropped.

Dropping a database makes PostgreSQL checkpoint: 0.3 s idle, 0.8 s on the busy 2-core
host, and each test using a migrated database paid two drops and two creates. Renaming
one is a catalog row. So a test's database, when the test is done, is kept if it is
exactly the template's schema (or exactly empty) and nobody else is connected: its rows
are truncated (sequences restarted, the template's own rows put back), which is a clean
slate for the next test, and ``migrate_from_template`` renames a kept migrated one into
the empty one's name. Anything else (another schema, a setting, a session left) is
dropped as before.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from .kept import KeptDatabases, new_name

# What makes two databases the same to a test: every object outside the system schemas,
# with its definition, and the database's own settings.
_SHAPE = """
SELECT 'rel ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT 'col ' || c.relname || '.' || a.attnum || ' ' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' ' || a.attisdropped
       || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace NOT IN
       (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))
UNION ALL
SELECT 'idx ' || pg_get_indexdef(indexrelid) FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT 'nsp ' || nspname FROM pg_namespace
UNION ALL
SELECT 'fun ' || p.oid::regprocedure FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'trg ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'typ ' || t.typname || ' ' || t.typtype::text FROM pg_type t
  JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
UNION ALL
SELECT 'ext ' || extname FROM pg_extension
UNION ALL
SELECT 'set ' || array_to_string(s.setconfig, ',') FROM pg_db_role_setting s
  JOIN pg_database db ON db.oid = s.setdatabase WHERE db.datname = current_database()
"""
_NO_FLUSH = "set synchronous_commit=off"
_OTHERS = (
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
    "AND pid <> pg_backend_pid()"
)
_TABLES = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
)
_SEQUENCES = (
    "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'S'"
)


class _Shape:
    """A database's objects, and for the template also its rows (the version row)."""

    def __init__(self, shape: frozenset[str], rows: dict[str, list[dict[str, object]]]) -> None:
        self.shape, self.rows = shape, rows


def _read_shape(conn: sa.Connection, with_rows: bool) -> _Shape:
    shape = frozenset(conn.execute(sa.text(_SHAPE)).scalars())
    rows: dict[str, list[dict[str, object]]] = {}
    if with_rows:
        for table in conn.execute(sa.text(_TABLES)).scalars().all():
            found = [dict(r) for r in conn.execute(sa.text(f"SELECT * FROM {table}")).mappings()]
            if found:
                rows[table] = found
    return _Shape(shape, rows)


class PostgresPool(KeptDatabases):
    """One process's kept PostgreSQL databases: empty ones and ones at the template."""

    FORCE = " WITH (FORCE)"

    def __init__(self, server_url: str, admin: Callable[[], sa.Engine]) -> None:
        super().__init__(admin)
        self._server = make_url(server_url)
        self._template: _Shape | None = None
        self._empty_shape: frozenset[str] | None = None

    def _engine(self, name: str) -> sa.Engine:
        # Each statement its own transaction: a wait re-reads pg_stat_activity (a
        # transaction would see one snapshot of it), and a clear half done is dropped.
        url = self._server.set(database=name)
        return sa.create_engine(url, poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")

    def learn_template(self, name: str) -> None:
        """Read the template's shape and rows once (nobody stays connected to it)."""
        if self._template is None:
            engine = self._engine(name)
            try:
                with engine.connect() as conn:
                    template = _read_shape(conn, with_rows=True)
            finally:
                engine.dispose()
            # Its copies are told not to wait for the disk (``_no_commit_flush``); it is not.
            self._template = _Shape(template.shape | {_NO_FLUSH}, template.rows)

    def swap_in_migrated(self, name: str) -> bool:
        """Give the empty database ``name`` a kept migrated one's place, by two renames;
        the empty one is kept under a new name. False when none is kept or ``name`` is
        in use (then the caller copies the template as before)."""
        if not self.migrated:
            return False
        spare, hold = self.migrated.pop(), new_name()
        with self._admin().connect() as conn:
            try:
                conn.execute(sa.text(f"ALTER DATABASE {name} RENAME TO {hold}"))
            except sa.exc.OperationalError:
                self.migrated.append(spare)
                return False
            conn.execute(sa.text(f"ALTER DATABASE {spare} RENAME TO {name}"))
        self.empty.append(hold)
        return True

    def keep(self, name: str) -> bool:
        """Keep ``name`` for a later test if it can be made a clean slate; False: drop it."""
        engine = self._engine(name)
        try:
            with engine.connect() as conn:
                if not self._alone(conn):
                    return False
                shape = _read_shape(conn, with_rows=False).shape
                if self._empty_shape is None:
                    self._empty_shape = self._learn_empty_shape()
                if shape == self._empty_shape:
                    self.empty.append(name)
                    return True
                if self._template is None or shape != self._template.shape:
                    return False
                self._clear(conn, self._template)
        except sa.exc.SQLAlchemyError:
            return False
        finally:
            engine.dispose()
        self.migrated.append(name)
        return True

    def _alone(self, conn: sa.Connection) -> bool:
        return self.alone(
            lambda: conn.execute(sa.text(_OTHERS)).first() is not None,
            lambda: conn.execute(
                sa.text(f"SELECT pg_terminate_backend(pid) FROM ({_OTHERS}) AS o")
            ),
        )

    @staticmethod
    def _clear(conn: sa.Connection, template: _Shape) -> None:
        tables = conn.execute(sa.text(_TABLES)).scalars().all()
        conn.execute(sa.text("SET lock_timeout = '5s'"))
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        for sequence in conn.execute(sa.text(_SEQUENCES)).scalars().all():
            conn.execute(sa.text(f"ALTER SEQUENCE {sequence} RESTART"))
        for table, rows in template.rows.items():
            columns = ", ".join(f'"{c}"' for c in rows[0])
            values = ", ".join(f":{i}" for i in range(len(rows[0])))
            insert = sa.text(f"INSERT INTO {table} ({columns}) VALUES ({values})")
            conn.execute(insert, [{str(i): v for i, v in enumerate(r.values())} for r in rows])

    def _learn_empty_shape(self) -> frozenset[str]:
        name = new_name()
        with self._admin().connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
            conn.execute(sa.text(f"ALTER DATABASE {name} SET synchronous_commit = off"))
        engine = self._engine(name)
        try:
            with engine.connect() as conn:
                shape = _read_shape(conn, with_rows=False).shape
        finally:
            engine.dispose()
        self.empty.append(name)
        return shape
