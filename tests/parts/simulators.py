"""One way to start simulated Zendesk accounts in a test: ``make_sim(...)``.

Each simulator is stopped when the test (or module) ends, and the test fails if one
answered a request with an unexpected error. ``shared_sim`` is one simulator per test
module for tests that only read from it: starting one and generating its history costs
more than most such tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zendesk_sim import SimulatedZendesk, generate_records
from zendesk_sim.generate import RecordSource

SHARED_RECORDS = 1500


def history(
    count: int, *, days: float = 1, end: datetime | None = None, seed: int = 0
) -> RecordSource:
    """``count`` generated records over ``days`` ending ``end`` (30 minutes ago by default:
    old enough for the API's newest-allowed end)."""
    end = end or (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0)
    return generate_records(count, start=end - timedelta(days=days), end=end, seed=seed)


class Simulators:
    """Starts simulators and stops them all on ``close``."""

    def __init__(self) -> None:
        self.started: list[SimulatedZendesk] = []

    def __call__(
        self,
        records: Iterable[Mapping[str, Any]] | RecordSource | None = None,
        *,
        count: int = 300,
        days: float = 1,
        seed: int = 0,
        **options: Any,
    ) -> SimulatedZendesk:
        """A started simulator serving ``records`` (else ``count`` generated ones over
        ``days``); ``options`` go to ``SimulatedZendesk`` (latency, auth, faults' rate...)."""
        if records is None:
            records = history(count, days=days, seed=seed)
        sim = SimulatedZendesk(records, **options).start()
        self.started.append(sim)
        return sim

    def close(self) -> list[str]:
        """Stop every simulator; the unexpected errors they answered with."""
        errors: list[str] = []
        for sim in self.started:
            sim.stop()
            errors += sim.errors
        self.started.clear()
        return errors


@pytest.fixture
def make_sim() -> Iterator[Simulators]:
    """Start simulated Zendesk accounts for this test: ``make_sim(count=500, latency=0.01)``."""
    sims = Simulators()
    try:
        yield sims
    finally:
        errors = sims.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimulatedZendesk]:
    """One simulator for the module's tests that only read: 1,500 records over three days
    ending 30 minutes ago. A test that adds records or faults makes its own (``make_sim``)."""
    sims = Simulators()
    sim = sims(history(SHARED_RECORDS, days=3))
    try:
        yield sim
        assert sim.record_count == SHARED_RECORDS, "a test changed the shared simulator"
    finally:
        errors = sims.close()
    assert errors == [], errors
