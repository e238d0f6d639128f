"""Every SQL block of docs/QUERIES.md runs on every database it claims to, on synced data,
and gives the same rows through each database's own client, bound as the page shows."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.databases import make_database, selected_kinds
from sqlalchemy.engine import make_url
from support import FakeTime, fake_time_client, fresh_store, recent, sim_account

from etl.records.audit import Reject, parse_record
from etl.storage import migrate
from etl.storage.engine import open_engine
from etl.storage.store import Store
from etl.sync.account import sync_account
from zendesk_sim import SimulatedZendesk, generate_records

QUERIES = (Path(__file__).resolve().parent.parent / "docs" / "QUERIES.md").read_text()
BLOCKS = re.findall(r"```sql\n(.*?)```", QUERIES, re.S)


def dialects_of(block: str) -> set[str] | None:
    match = re.match(r"-- only: (.+)\n", block)
    return {d.strip() for d in match.group(1).split(",")} if match else None


def test_the_page_has_queries_and_each_is_valid_somewhere() -> None:
    assert len(BLOCKS) >= 10
    for block in BLOCKS:
        dialects = dialects_of(block)
        assert dialects is None or dialects <= {"sqlite", "postgresql", "mysql"}


def test_every_query_runs_and_finds_rows(db_url: str) -> None:
    end = recent(30)
    records = generate_records(600, start=end - timedelta(days=3), end=end, seed=5)
    with SimulatedZendesk(records) as sim:
        account = sim_account(sim.url)
        store = fresh_store(db_url)
        with fake_time_client(account, FakeTime()) as client:
            sync_account(account, client, store)
    login = next(r for r in records if r["action"] == "login" and r["ip_address"])
    params = {
        "account": "acme",
        "actor_id": login["actor_id"],
        "ip_address": login["ip_address"],
        "since": datetime(2000, 1, 1, tzinfo=UTC),
        "until": datetime.now(UTC),
    }
    engine = open_engine(db_url)
    dialect = "mysql" if engine.dialect.name in ("mysql", "mariadb") else engine.dialect.name
    ran = 0
    try:
        with engine.connect() as conn:
            for block in BLOCKS:
                wanted = dialects_of(block)
                if wanted is not None and dialect not in wanted:
                    continue
                statement = sa.text(block.strip().rstrip(";"))
                used = {k: v for k, v in params.items() if f":{k}" in block}
                rows = conn.execute(statement, used).fetchall()
                if "zendesk_audit_rejects" not in block:
                    assert rows, f"no rows from:\n{block}"
                ran += 1
    finally:
        engine.dispose()
    assert ran >= 9


@pytest.mark.parametrize("block", BLOCKS)
def test_every_query_is_scoped_to_one_account(block: str) -> None:
    """Several accounts share the tables: a query without the account mixes them up."""
    assert "account = :account" in block


# -- through the real clients ------------------------------------------------------------

START = datetime(2026, 11, 1, tzinfo=UTC)
SYNCED = datetime(2026, 11, 4, 0, 0, 0, 250000, tzinfo=UTC)
# Values as a user types them: a bare date and a time as the tool prints it, inside the data.
VALUES = {"account": "acme", "since": "2026-11-02", "until": "2026-11-03T12:00:00Z"}
KIND_DIALECT = {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql"}
_TIME = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?(?:Z|\+00(?::00)?)?")


def fill(url: str) -> dict[str, object]:
    """The same rows in every database: records, a run and a reject, at fixed times."""
    records = list(generate_records(800, start=START, end=START + timedelta(days=3), seed=11))
    engine = open_engine(url)
    try:
        migrate.upgrade(engine)
        store = Store(engine, now=lambda: SYNCED)
        run_id = store.start_run("acme", START, SYNCED, None)
        parsed = [parse_record(r, "acme", SYNCED) for r in records]
        rows = [r for r in parsed if isinstance(r, dict)]
        reject = Reject("17", "example reason", '{"id": 17}')
        store.write_page("acme", run_id, rows, [reject], SYNCED)
        store.finish_run(run_id, "success", watermark_after=SYNCED, requests=1, rate_limited=0)
    finally:
        engine.dispose()
    login = next(r for r in records if r["action"] == "login" and r["ip_address"])
    return {**VALUES, "actor_id": login["actor_id"], "ip_address": login["ip_address"]}


def normal(cell: str | None) -> str:
    """A cell as every client would print it: NULL empty, a time as ``date`` + ``T`` + time
    (+ its fraction, unless zero)."""
    if cell is None or cell == "NULL":
        return ""

    def time(match: re.Match[str]) -> str:
        fraction = (match[3] or "").ljust(6, "0")
        return f"{match[1]}T{match[2]}" + (f".{fraction}" if int(fraction or 0) else "")

    return _TIME.sub(time, cell)


def run_sqlite3(url: str, values: dict[str, object], block: str) -> list[tuple[str, ...]]:
    # .param set takes an SQL literal: text quoted twice, as the page says
    lines = [
        f".param set :{name} " + (str(value) if isinstance(value, int) else f"\"'{value}'\"")
        for name, value in values.items()
    ]
    script = "\n".join([".bail on", ".mode csv", *lines, block])
    path = make_url(url).database
    assert path
    out = client(["sqlite3", path], script)
    return [tuple(normal(c) for c in row) for row in csv.reader(io.StringIO(out))]


def run_psql(url: str, values: dict[str, object], block: str) -> list[tuple[str, ...]]:
    parsed = make_url(url)
    quoted = re.sub(r":(\w+)", r":'\1'", block)  # psql -v NAME=VALUE is used as :'NAME'
    command = ["psql", "-X", "-q", "--csv", "-t", "-v", "ON_ERROR_STOP=1"]
    command += ["-h", str(parsed.host), "-p", str(parsed.port or 5432)]
    command += ["-U", str(parsed.username), "-d", str(parsed.database)]
    for name, value in values.items():
        command += ["-v", f"{name}={value}"]
    out = client(command, quoted, {"PGTZ": "UTC"})
    return [tuple(normal(c) for c in row) for row in csv.reader(io.StringIO(out))]


def run_mariadb(url: str, values: dict[str, object], block: str) -> list[tuple[str, ...]]:
    parsed = make_url(url)
    sets = ", ".join(
        f"@{name} = {value}" if isinstance(value, int) else f"@{name} = '{value}'"
        for name, value in values.items()
    )
    script = f"SET {sets};\n" + re.sub(r":(\w+)", r"@\1", block)
    command = ["mariadb", "--batch", "--skip-column-names", "-h", str(parsed.host)]
    command += ["-P", str(parsed.port or 3306), "-u", str(parsed.username), str(parsed.database)]
    out = client(command, script)
    rows = []
    for line in out.splitlines():
        cells = [_unescape(c) for c in line.split("\t")]
        rows.append(tuple(normal(c) for c in cells))
    return rows


def _unescape(cell: str) -> str:
    """mariadb --batch writes newline, tab and backslash as \\n, \\t and \\\\."""
    return re.sub(r"\\([nt0\\])", lambda m: {"n": "\n", "t": "\t", "0": "\0"}.get(m[1], "\\"), cell)


def client(command: list[str], script: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command,
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0 and not result.stderr.strip(), (command[0], result.stderr)
    return result.stdout


RUNNERS = {"sqlite": run_sqlite3, "postgresql": run_psql, "mysql": run_mariadb}


@pytest.fixture(scope="module")
def databases(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[str, dict[str, object]]]]:
    """Each selected database, filled once for all the blocks, with the values to bind."""
    with ExitStack() as stack:
        made = {}
        for kind in selected_kinds():
            database = make_database(kind, tmp_path_factory.mktemp(kind))
            url = next(database)
            stack.callback(next, database, None)  # runs on past its yield: drops it
            made[kind] = (url, fill(url))
        yield made


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_query_gives_the_same_rows_in_each_databases_own_client(
    databases: dict[str, tuple[str, dict[str, object]]], block: str
) -> None:
    found: dict[str, list[tuple[str, ...]]] = {}
    for kind, (url, values) in databases.items():
        wanted = dialects_of(block)
        if wanted is not None and KIND_DIALECT[kind] not in wanted:
            continue
        used = {k: v for k, v in values.items() if f":{k}" in block}
        found[kind] = sorted(RUNNERS[kind](url, used, block.strip()))
    if not found:
        pytest.skip("no selected database runs this block")
    first = next(iter(found.values()))
    assert first or "zendesk_audit_rejects" in block, f"no rows from:\n{block}"
    for kind, rows in found.items():
        assert rows == first, f"{kind} differs from {next(iter(found))} on:\n{block}"
