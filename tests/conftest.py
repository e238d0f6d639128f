"""Shared fixtures: a fresh, real database of each kind per test, and the shared test parts.

``db_url`` is parametrized over SQLite, PostgreSQL and MariaDB/MySQL. Each test
gets its own empty database, dropped afterwards (on the servers emptied and kept for the
process's next test: ``parts/db_pool.py``), so tests never see each other's rows and
can run in parallel (pytest-xdist); what a killed run left on the servers is dropped at
the next run's start (``parts/kept.py``). ``migrated_url`` is the same, already at the current
schema (copied from a template: see ``parts/databases.py``, which also says how to point
the tests at other servers).

The parts tests share (a simulator factory, a fake clock, a config writer, the CLI
in-process) live in ``tests/parts/``; their fixtures are imported below. Tests are
marked by what they need (pure, http, db, process: see ``parts/marks.py``);
``make test-fast`` runs those that need no database and no new process, ``make
test-sqlite`` all but the whole-process ones, on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts import bytecode, cputime, marks, order
from parts.databases import make_database, migrate_from_template, selected_kinds, sweep_leftovers
from parts.exports import kill_db_url
from parts.packaging import built_wheel
from parts.simulators import PACED, make_sim, shared_sim, unpaced
from parts.verify.signed import zendesk
from parts.verify.spans import built, stored

from etl.storage.engine import open_engine

# The fixtures of tests/parts that tests take by name: pytest sees only a conftest's own
# names. Helpers are imported from tests/parts or tests/support.py, never from here
# (tests/test_layout.py holds to it).
__all__ = [
    "built",
    "built_wheel",
    "kill_db_url",
    "make_sim",
    "shared_sim",
    "stored",
    "unpaced",
    "zendesk",
]


@pytest.fixture(params=selected_kinds())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each selected kind, as a SQLAlchemy URL."""
    yield from make_database(str(request.param), tmp_path)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """For tests whose subject does not depend on the database kind."""
    return f"sqlite:///{tmp_path / 'audit.db'}"


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """``db_url`` at the current schema, copied from a migrated template (not migrated)."""
    assert migrate_from_template(db_url), "a fresh database is empty and unused"
    return db_url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on ``db_url`` (empty), disposed after the test."""
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(migrated_url: str) -> Iterator[sa.Engine]:
    """An engine on ``migrated_url``, disposed after the test."""
    engine = open_engine(migrated_url)
    yield engine
    engine.dispose()


# -- the marks by need ----------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    cputime.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    cputime.install(config)
    config.addinivalue_line("markers", PACED)
    marks.install_checks()
    order.one_at_a_time(config)
    bytecode.compile_once(config)
    if not hasattr(config, "workerinput"):  # once a run, in xdist's controller
        config.stash[_SWEPT] = sweep_leftovers()


_SWEPT = pytest.StashKey[list[str]]()


def pytest_report_header(config: pytest.Config) -> str | None:
    """The test databases a killed run had left, dropped before this one's tests."""
    swept = config.stash.get(_SWEPT, [])
    return (
        f"dropped {len(swept)} test databases of killed runs: {', '.join(swept)}" if swept else None
    )


@pytest.hookimpl(tryfirst=True)  # before -m selects by them
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marks.mark_by_need(items)
    # @pytest.mark.databases("postgresql", "mysql"): a test whose subject the other kinds
    # do not have runs on these only (left out, rather than skipped, on the others).
    dropped = [item for item in items if not _wanted_kind(item)]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if _wanted_kind(item)]
    order.longest_first(items)


def _wanted_kind(item: pytest.Item) -> bool:
    mark = item.get_closest_marker("databases")
    callspec = getattr(item, "callspec", None)
    if mark is None or callspec is None or "db_url" not in callspec.params:
        return True
    return callspec.params["db_url"] in mark.args


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    marks.running(item)
    try:
        return (yield)
    finally:
        marks.running(None)
