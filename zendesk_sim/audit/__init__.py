"""The audit log: its records and ``GET /api/v2/audit_logs``.

``generate`` (``RecordSource``: when record ``i`` happened and its id) with ``content``
(what it says), ``store`` (``RecordStore``: generated and added records, one order),
``query`` (the parameters, validated) and ``listing`` (a page and its body). Imports only
``zendesk_sim.wire``."""
