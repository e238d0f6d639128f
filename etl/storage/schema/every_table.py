"""The whole schema: ``metadata`` holding every table, what the migrations are compared
with (``migrations/env.py``, ``tests/test_migrations.py``).

A table module adds its tables to the shared ``MetaData`` when it is imported, so this
module imports each one; a statement imports only the module of the tables it names.
"""

from __future__ import annotations

from etl.storage.schema import integrity, logs, state
from etl.storage.schema.metadata import metadata as metadata

# Named so that the imports above read as used: they are what fills ``metadata``.
TABLE_MODULES = (logs, state, integrity)
