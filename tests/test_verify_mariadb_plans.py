"""What MariaDB's server does for ``verify``'s queries: each plan read with ``EXPLAIN`` on the
store a sync made, so that a query shape that makes the server read more than it needs
(the whole table for one number) is caught here rather than in a benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from parts.databases import skip_unless_mariadb
from parts.verify.signed import synced

from etl.integrity import pages
from etl.integrity.parallel.piece import FIRST_SEQ
from etl.integrity.reads import rows as row_reads
from etl.storage.engine import open_engine
from zendesk_sim import SimulatedZendesk

# A plan that reads no row: the number from the index's end, or none there
_NO_TABLE = ("Select tables optimized away", "No matching min/max row")


@pytest.mark.databases("mysql")  # a MySQL server there: skipped below
def test_mariadb_finds_a_spans_first_row_in_the_index_alone(
    tmp_path: Path,
    db_url: str,
    zendesk: SimulatedZendesk,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first ``stored_seq`` of a span (verify's own from -2**63, a worker's from its
    seam) is read from the ``stored_seq`` index's end, no row touched: the server's plan
    is "Select tables optimized away" (or, past the last, none there), not a read of the
    table by its primary key (two lower bounds made it that, a second of the server's CPU
    a million rows). And the walk reads every row from either start, and none before it."""
    skip_unless_mariadb(db_url, "MariaDB's plan of a span's first row")
    synced(tmp_path, zendesk, db_url, None)
    asked: list[tuple[str, list[Any]]] = []
    real = pages._fetch

    def fetch(driver: Any, sql: str, params: Any) -> list[Any]:
        if str(sql).startswith("SELECT MIN(stored_seq)"):
            asked.append((str(sql), list(params)))
        return real(driver, sql, params)

    monkeypatch.setattr(pages, "_fetch", fetch)
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            every = [row[0] for row in row_reads.rows(conn, "acme", FIRST_SEQ)]
            assert len(every) > 20 and every == sorted(every)
            middle = every[len(every) // 2]
            assert [row[0] for row in row_reads.rows(conn, "acme", middle)] == [
                seq for seq in every if seq >= middle
            ]
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            firsts = [(sql, params) for sql, params in asked if "zendesk_audit_logs" in sql]
            assert len(firsts) >= 2  # from each start
            for sql, params in firsts:
                cursor.execute(f"EXPLAIN {sql}", params)
                plan = cursor.fetchall()
                assert len(plan) == 1 and plan[0][-1] in _NO_TABLE, plan
            cursor.close()
    finally:
        engine.dispose()
