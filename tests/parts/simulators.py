"""One way to start simulated Zendesk accounts in a test: ``make_sim(...)``.

Every simulator a test starts (by ``make_sim`` or ``SimulatedZendesk(...)``) reports a
limit far above the job's budget in its headers unless it enforces one (``unpaced``), so
the job is not held to Zendesk's 700 a minute (86 ms a request) where that pacing is not
the subject; tests about it are marked ``@pytest.mark.paced``.

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
from zendesk_sim.audit.generate import RecordSource

SHARED_RECORDS = 1500
# The limit the tests' simulators report in their headers when none is enforced: far above
# any test's budget (sim_account's 2,500 a minute), so the job keeps to its budget.
UNPACED = 1_000_000
PACED = "paced: the simulator's headers say Zendesk's 700 a minute (the job paces by them)"


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


@pytest.fixture(autouse=True)
def unpaced(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulators started in this test advertise ``UNPACED`` unless it is marked ``paced``."""
    if request.node.get_closest_marker("paced") is None:
        monkeypatch.setattr(SimulatedZendesk, "advertised_limit", UNPACED)


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
    # Started before any test's ``unpaced``: told here (no test reading it is about the pace).
    sim = sims(history(SHARED_RECORDS, days=3), advertised_limit=UNPACED)
    try:
        yield sim
        assert sim.record_count == SHARED_RECORDS, "a test changed the shared simulator"
    finally:
        errors = sims.close()
    assert errors == [], errors
