"""What ``verify`` costs before and beside its walk: a worker process started without the
parent's main script (spawn runs it again as ``__mp_main__`` unless told otherwise: the
console script's imports are all of ``etl.cli``), and PostgreSQL's ledger pages read by
the primary key's index with the tables' statistics as a user's server has them
(autovacuum's): no bitmap heap scan and sort of every page, spilled to disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from parts.cli import CLI_ENV, ROOT

from etl.integrity import pages, streams
from etl.storage.engine import open_engine

# A main script that leaves a mark when a worker imports it again, then starts a worker
# with one task that it answers at once (the head it is given is not the store's).
MAIN = """
import pathlib, sys
if __name__ == "__mp_main__":
    pathlib.Path(sys.argv[2]).write_text("imported")
if __name__ == "__main__":
    from etl.integrity.parallel.crew import Crew, Task
    from etl.integrity.parallel.piece import Span
    crew = Crew(sys.argv[1], 1)
    span = Span(0, None, 1, None, b"", frozenset(), None)
    [pipe] = crew.start([Task("nobody", (1, "not the head"), None, span)])
    assert crew.receive(pipe) is None  # stale: the worker ran, and answered
    crew.close()
"""


def test_a_worker_does_not_import_the_main_script_again(tmp_path: Path, migrated_url: str) -> None:
    script, mark = tmp_path / "main.py", tmp_path / "imported"
    script.write_text(MAIN)
    done = subprocess.run(
        [sys.executable, str(script), migrated_url, str(mark)],
        env=CLI_ENV,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not mark.exists()


@pytest.mark.databases("postgresql")
def test_postgresql_reads_a_ledger_page_by_its_index_with_statistics(migrated_url: str) -> None:
    engine = open_engine(migrated_url, create=False)
    try:
        with engine.begin() as conn:  # a ledger the planner would take by bitmap and sort
            conn.exec_driver_sql(
                "INSERT INTO zendesk_audit_ledger (account, entry, kind, record_id, stored_seq,"
                " record_hash, entry_hash, written_at) SELECT 'acme', n, 'R', n::text, n,"
                " sha256(n::text::bytea), sha256((n + 1)::text::bytea), now()"
                " FROM generate_series(1, 300000) AS n"
            )
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "ANALYZE zendesk_audit_ledger"
            )
        with engine.begin() as conn:
            pages.by_index(conn)
            sql = f"EXPLAIN {streams.ledger_page(conn)}"
            plan = "\n".join(conn.exec_driver_sql(sql, ("acme", 100000, 125000)).scalars())
    finally:
        engine.dispose()
    assert "Index Scan using" in plan, plan
    assert "Sort" not in plan and "Bitmap" not in plan, plan
