"""A simulated Zendesk: a real HTTP server on loopback that behaves like the audit-log API.

Tests, the demo and the benchmark talk to it over HTTP exactly as to Zendesk::

    with SimulatedZendesk(generate_records(10_000, start=a, end=b)) as sim:
        requests.get(sim.url + "/api/v2/audit_logs", params=..., auth=...)

Modules: ``generate`` (lazy records), ``data`` (the record collection),
``query``/``listing`` (the list endpoint), ``auth``, ``ratelimit``, ``faults``,
``app`` (one request -> one response), ``server`` (HTTP and the public class),
``control`` (``/_sim/*``), ``__main__`` (run as a process).

A development package beside ``etl/``, not shipped in the wheel (it holds default
credentials): it imports nothing from ``etl`` and nothing in ``etl`` imports it.
"""

from zendesk_sim.access_data import AccessSource
from zendesk_sim.auth import SimAuth
from zendesk_sim.faults import KINDS as FAULT_KINDS
from zendesk_sim.faults import MANGLES, Fault
from zendesk_sim.generate import RecordSource, generate_records
from zendesk_sim.server import RequestLog, SimulatedZendesk


def all_records(sim: SimulatedZendesk) -> list[dict[str, object]]:
    """Every record visible in ``sim``, ascending by (created_at, id)."""
    return list(sim.visible_records())


__all__ = [
    "FAULT_KINDS",
    "MANGLES",
    "AccessSource",
    "Fault",
    "RecordSource",
    "RequestLog",
    "SimAuth",
    "SimulatedZendesk",
    "all_records",
    "generate_records",
]
