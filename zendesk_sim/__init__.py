"""A simulated Zendesk: a real HTTP server on loopback that behaves like the audit-log API.

Tests, the demo and the benchmark talk to it over HTTP exactly as to Zendesk::

    with SimulatedZendesk(generate_records(10_000, start=a, end=b)) as sim:
        requests.get(sim.url + "/api/v2/audit_logs", params=..., auth=...)

Packages, each importing only those below it (an import-linter contract in pyproject.toml):

    simulator   ``SimulatedZendesk``: the pieces, the request log; ``__main__`` runs it
    web         HTTP: one request -> one response (``app``), the server, ``/_sim/*``
    access      the access log: its records and ``GET /api/v2/access_logs``
    edge        credentials, the rate limit, the faults
    audit       the audit log: generated and added records, ``GET /api/v2/audit_logs``
    wire        the API's formats: timestamps, cursors, responses

Import the public names from here; tests of one part import its module.

A development package beside ``etl/``, not shipped in the wheel (it holds default
credentials): it imports nothing from ``etl`` and nothing in ``etl`` imports it.
"""

from zendesk_sim.access.records import AccessSource
from zendesk_sim.audit.generate import RecordSource, generate_records
from zendesk_sim.edge.auth import SimAuth
from zendesk_sim.edge.faults import KINDS as FAULT_KINDS
from zendesk_sim.edge.faults import MANGLES, Fault
from zendesk_sim.simulator import RequestLog, SimulatedZendesk


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
