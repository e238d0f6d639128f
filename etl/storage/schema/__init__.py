"""The tables as SQLAlchemy Core metadata, by concern; front door: ``every_table.metadata``.

These modules describe the schema for queries; they never create it. Tables are created
and changed only by the Alembic revisions in ``migrations/versions``, which must agree
with ``every_table.metadata`` (``tests/test_migrations.py`` checks). A statement imports
the tables it names from ``logs`` (the copied records, a table per stream), ``state``
(where each account stands: watermarks, runs, plans, rejects, consumers, lock owners) or
``integrity`` (the ledger and what checks it); ``metadata`` holds what every table shares.

Every timestamp column is ``coltypes.UTCDateTime``: aware UTC datetimes in and out on every
dialect (PostgreSQL ``timestamptz``; MySQL naive UTC; SQLite ISO 8601 text, ``sqlite_time``).
"""
