"""The parallel verify's stores: one a database kind, built once per module (three syncs,
a resync serving changed records, a reject; versions of a record far apart), each test
reading or tampering with its own copy (``stored``); spans made small (``small_spans``,
autouse where imported) so that a few hundred entries make three; where they meet."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support import audit_record, one_row, recent

from etl.integrity.keys import PublicKey, read_public_key
from etl.integrity.parallel import split
from etl.integrity.parallel.piece import FIRST_SEQ, Span
from etl.records import chain
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs
from parts.cli import cli
from parts.copies import copy_database
from parts.databases import kind_of, make_database, migrate_from_template
from parts.verify.signed import config, keygen
from zendesk_sim import Fault, SimulatedZendesk, generate_records

FORGED = 9_500_000_000_000  # ids above every stored one: sorted after them


def _zendesk() -> SimulatedZendesk:
    end = recent(30)
    records = generate_records(600, start=end - timedelta(days=2), end=end, seed=11)
    sim = SimulatedZendesk(records)
    sim.add_records(  # a reject, chained too
        [audit_record(9_000_000_000_001, end - timedelta(hours=1), action="x" * 300)]
    )
    return sim


def _build(tmp_path: Path, db_url: str) -> list[PublicKey]:
    """A store whose records have versions far apart: three records a page stored changed
    by the first sync, as Zendesk serves them by a resync, so their first entries wait for
    a row across the seams; three checkpoints. Its public key."""
    key, public = keygen(tmp_path, "ledger.key")
    with _zendesk() as zendesk:
        path = config(tmp_path, zendesk, db_url, key)
        zendesk.inject(Fault("mangle", mangle="extra_field", times=-1, count=3))
        assert cli(path, "sync").returncode == 0
        zendesk.clear_faults()
        assert cli(path, "resync", "--since", "2000-01-01").returncode == 0
        zendesk.add_records([audit_record(FORGED - 100 + i, recent(8)) for i in range(20)])
        assert cli(path, "sync").returncode == 0
    return [read_public_key(str(public))]


class _Built:
    """The module's stores, one a kind, each built on first use and dropped at the end:
    building one is three syncs, and every test reads or tampers with its own copy."""

    def __init__(self, folders: pytest.TempPathFactory, stack: contextlib.ExitStack) -> None:
        self._folders, self._stack = folders, stack
        self._stores: dict[str, tuple[str, list[PublicKey]]] = {}

    def copy_into(self, db_url: str) -> list[PublicKey]:
        kind = kind_of(db_url)
        if kind not in self._stores:
            folder = self._folders.mktemp(f"built-{kind}")
            url = self._stack.enter_context(contextlib.contextmanager(make_database)(kind, folder))
            assert migrate_from_template(url), "a fresh database is empty and unused"
            self._stores[kind] = (url, _build(folder, url))
        url, keys = self._stores[kind]
        copy_database(url, db_url)
        return keys


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Built]:
    with contextlib.ExitStack() as stack:
        yield _Built(tmp_path_factory, stack)


@pytest.fixture
def stored(db_url: str, built: _Built) -> list[PublicKey]:
    """This test's copy of the module's store of its kind (``_build``): its public key."""
    return built.copy_into(db_url)


@pytest.fixture(autouse=True)
def small_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "MIN_SPAN", 100)


def first_span() -> Span:
    return Span(0, None, FIRST_SEQ, None, chain.genesis("acme"), frozenset(), "audit_logs")


def seams(db_url: str) -> list[tuple[int, int]]:
    """(entry, stored_seq) of the first entry of each span after the first, of three."""
    engine = open_engine(db_url)
    with engine.connect() as conn:
        spans = split.plan(conn, "acme", first_span(), 3)
    engine.dispose()
    assert len(spans) == 3
    return [(span.after + 1, span.low) for span in spans[1:]]


def seq_row(db_url: str, seq: int) -> dict[str, Any]:
    return one_row(db_url, audit_logs.c.stored_seq, seq)
