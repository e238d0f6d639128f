"""Migrations: from empty to head on each kind of database, version checks, packaging."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from etl.common.errors import SchemaError
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.schema.every_table import metadata
from etl.storage.schema.metadata import MYSQL_TABLE_OPTIONS, VERSION_TABLE
from etl.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2024, 5, 1, tzinfo=UTC)
HINT = "run: zendesk-audit-etl migrate --config /etc/x.toml"
TABLES = {
    "zendesk_audit_logs",
    "zendesk_audit_sync_state",
    "zendesk_audit_sync_runs",
    "zendesk_audit_rejects",
}


@dataclass(frozen=True)
class Rejected:
    record_id: str | None
    reason: str
    raw: str


def set_version(engine: Engine, version: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :v"), {"v": version})


def test_upgrade_creates_the_schema_from_empty(engine: Engine) -> None:
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(sa.inspect(engine).get_table_names()) >= TABLES
    migrate.upgrade(engine)  # a second run changes nothing
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_migrations_build_what_etl_schema_describes(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "version_table": VERSION_TABLE}
        )
        assert compare_metadata(context, metadata) == []


def test_the_whole_schema_holds_every_table_module(sqlite_url: str) -> None:
    """migrations/env.py compares with ``every_table.metadata`` in a process that imported no
    other table module: one it left out would hold tables a migration seems to drop."""
    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)
    migrated = set(sa.inspect(engine).get_table_names()) - {VERSION_TABLE}
    engine.dispose()
    code = (
        "import importlib, json, pkgutil; import etl.storage.schema as package; "
        "from etl.storage.schema.every_table import metadata; whole = sorted(metadata.tables); "
        "[importlib.import_module(f'etl.storage.schema.{m.name}') "
        "for m in pkgutil.iter_modules(package.__path__)]; "
        "print(json.dumps([whole, sorted(metadata.tables)]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    whole, with_every_module = json.loads(result.stdout)
    assert whole == with_every_module == sorted(migrated)
    assert len(whole) == 15


@pytest.mark.databases("mysql")
def test_mysql_tables_take_the_documented_engine_charset_and_collation(engine: Engine) -> None:
    migrate.upgrade(engine)
    with engine.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT table_name, engine, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name LIKE 'zendesk_audit_%'"
            )
        ).all()
    assert {name for name, _, _ in found} >= TABLES | {VERSION_TABLE}
    expected = (MYSQL_TABLE_OPTIONS["mysql_engine"], MYSQL_TABLE_OPTIONS["mysql_collate"])
    assert {name: (eng, coll) for name, eng, coll in found if name != VERSION_TABLE} == {
        name: expected for name, _, _ in found if name != VERSION_TABLE
    }
    assert all(coll.startswith(MYSQL_TABLE_OPTIONS["mysql_charset"]) for _, _, coll in found)


def test_named_constraints(engine: Engine) -> None:
    migrate.upgrade(engine)
    inspector = sa.inspect(engine)
    indexes = {ix["name"] for ix in inspector.get_indexes("zendesk_audit_logs")}
    assert "ix_zendesk_audit_logs_account_actor_id_created_at" in indexes
    assert inspector.get_pk_constraint("zendesk_audit_logs")["constrained_columns"] == [
        "account",
        "id",
    ]
    (fk,) = inspector.get_foreign_keys("zendesk_audit_rejects")
    assert fk["referred_table"] == "zendesk_audit_sync_runs"


def test_ensure_current_on_an_empty_database_says_what_to_run(engine: Engine) -> None:
    with pytest.raises(SchemaError) as caught:
        migrate.ensure_current(engine, auto_migrate=False, migrate_hint=HINT)
    assert HINT in str(caught.value)
    assert migrate.current_revision(engine) is None


def test_ensure_current_migrates_when_allowed(engine: Engine) -> None:
    migrate.ensure_current(engine, auto_migrate=True, migrate_hint=HINT)
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.ensure_current(engine, auto_migrate=False, migrate_hint=HINT)


def test_a_newer_schema_is_refused(engine: Engine) -> None:
    migrate.upgrade(engine)
    set_version(engine, "9999_from_the_future")
    for auto_migrate in (False, True):
        with pytest.raises(SchemaError, match="newer version"):
            migrate.ensure_current(engine, auto_migrate=auto_migrate, migrate_hint=HINT)
    with pytest.raises(SchemaError, match="newer version"):
        migrate.upgrade(engine)


NEXT_REVISION = '''
"""A later revision, for the test of an older schema."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rebuilding a table that others reference is the hard case on SQLite.
    recreate = "always" if op.get_context().dialect.name == "sqlite" else "auto"
    with op.batch_alter_table("zendesk_audit_sync_runs", recreate=recreate) as batch:
        batch.add_column(sa.Column("note", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("zendesk_audit_sync_runs") as batch:
        batch.drop_column("note")
'''


def test_an_older_schema_is_upgraded_or_reported(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = migrate.head_revision()
    migrate.upgrade(engine)  # this code's head
    store = Store(engine)
    run_id = store.start_run("acme", T0, T0, None)
    store.write_page("acme", run_id, [], [Rejected(None, "no id", "{}")], None)
    later = tmp_path / "migrations"
    shutil.copytree(ROOT / "migrations", later, ignore=shutil.ignore_patterns("__pycache__"))
    (later / "versions" / "9001_note.py").write_text(NEXT_REVISION.replace("{head}", head))
    monkeypatch.setattr(migrate, "migrations_dir", lambda: later)
    monkeypatch.setattr(migrate, "SCHEMA_HEAD", "9001")  # as the newer code would have it
    assert migrate.head_revision() == "9001"

    with pytest.raises(SchemaError) as caught:
        migrate.ensure_current(engine, auto_migrate=False, migrate_hint=HINT)
    assert head in str(caught.value) and HINT in str(caught.value)

    migrate.ensure_current(engine, auto_migrate=True, migrate_hint=HINT)
    assert migrate.current_revision(engine) == "9001"
    columns = {c["name"] for c in sa.inspect(engine).get_columns("zendesk_audit_sync_runs")}
    assert "note" in columns
    assert store.account_status("acme")[0].rejects == 1  # the data survived the rebuild
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_another_applications_alembic_history_is_not_ours(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.exec_driver_sql("INSERT INTO alembic_version VALUES ('abc123')")
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
def test_offline_sql_for_a_dba(dialect: str) -> None:
    sql = migrate.upgrade_sql(dialect)
    assert "CREATE TABLE zendesk_audit_logs" in sql
    assert VERSION_TABLE in sql


def test_the_source_checkout_finds_its_migrations() -> None:
    assert migrate.migrations_dir() == ROOT / "migrations"


def test_an_installed_wheel_finds_its_migrations(tmp_path: Path) -> None:
    """Build the wheel, unpack it as an installer would, and migrate from there."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", str(wheels), str(ROOT)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = wheels.glob("zendesk_audit_etl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "etl/migrations/env.py" in names
        assert "etl/migrations/script.py.mako" in names
        assert "etl/migrations/versions/0001_initial.py" in names
        assert not any("__pycache__" in name for name in names)
        site = tmp_path / "site"
        archive.extractall(site)

    script = textwrap.dedent(
        """
        import sys
        import etl
        from etl.storage import migrate
        from etl.storage.engine import open_engine
        assert etl.__file__.startswith(sys.argv[1]), etl.__file__
        assert str(migrate.migrations_dir()).startswith(sys.argv[1])
        engine = open_engine(sys.argv[2])
        migrate.ensure_current(engine, auto_migrate=True, migrate_hint="x")
        print(migrate.current_revision(engine))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(site), f"sqlite:///{tmp_path / 'w.db'}"],
        cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == migrate.head_revision()


def test_the_fast_schema_check_knows_the_real_head() -> None:
    """ensure_current skips Alembic when the schema is at SCHEMA_HEAD: it must be the head."""
    assert migrate.head_revision() == migrate.SCHEMA_HEAD


def test_a_current_schema_is_checked_without_importing_alembic(sqlite_url: str) -> None:
    import subprocess
    import sys

    engine = open_engine(sqlite_url)
    migrate.upgrade(engine)
    engine.dispose()
    code = (
        "import sys; from etl.storage import migrate; from etl.storage.engine import open_engine; "
        f"migrate.ensure_current(open_engine({sqlite_url!r}), auto_migrate=False, "
        "migrate_hint=''); print('alembic' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
