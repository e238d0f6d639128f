"""The access log: its records (``records``: ``AccessSource``, ``AccessLog``) and
``GET /api/v2/access_logs`` (``endpoint``: the filters, cursor pages, the add-on's 403).
Sorts by the audit log's keys and misbehaves by the same ``edge.faults``."""
