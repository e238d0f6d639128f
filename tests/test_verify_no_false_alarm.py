"""``verify`` raises no false alarm on an untouched database, whatever the job went through:
SIGKILLs at random moments of a sync and of a parallel backfill, resyncs, scope changes,
rejects, exports and verifies running beside a sync; and a rewrite of rows, ledger and the
database's checkpoints together, consistent in itself, is caught by the external copies.

The kill loop's moments are chosen by events (entries committed, a checkpoint's row
committed), with a seeded random; a failure names its seed. ``make soak`` runs it long.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import CLI_ENV, ROOT, CliProcess, cli_command, run_cli
from parts.configs import write_config
from parts.databases import kind_of
from parts.simulators import Simulators, history
from parts.verify.verdict import ACCOUNT, assert_clean, keygen, ledger_config, sync, verify
from support import assert_table_matches, audit_record, recent, wait_until

from etl.common.errors import ExitCode
from etl.integrity import note
from etl.integrity.keys import SigningKey, load_signing_key
from etl.records import chain
from etl.storage.engine import open_engine
from etl.storage.schema.integrity import checkpoints, ledger, ledger_head
from etl.storage.schema.logs import audit_logs
from zendesk_sim import Fault

UNSTORABLE = 9_000_000_000_001  # an action too long for any database: a reject each read


# -- the job's config, its key, and verify's verdict ---------------------------------------


def count(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


# -- 1. kills at random moments ------------------------------------------------------------


def kill_loop(
    db_url: str, tmp_path: Path, make_sim: Simulators, rounds: int, seed: int
) -> Counter[str]:
    try:
        return _kill_loop(db_url, tmp_path, make_sim, rounds, seed)
    except BaseException as exc:
        exc.add_note(f"kill loop seed {seed} (rerun it: random.Random({seed}))")
        raise


def _kill_loop(
    db_url: str, tmp_path: Path, make_sim: Simulators, rounds: int, seed: int
) -> Counter[str]:
    rng = random.Random(seed)
    key, public = keygen(tmp_path)
    # Two days: past parallel_after (1 day), so the first runs are a parallel backfill;
    # paced by the answers' latency so that kills land mid-way however fast the machine.
    sim = make_sim(history(4_000, days=2, seed=seed), latency=0.01, rate_limit_per_minute=10**6)
    engine = open_engine(db_url)
    outcomes: Counter[str] = Counter()
    try:
        for i in range(rounds):
            # The parallel backfill's fetchers, or one cursor (a sequential read).
            workers = rng.choice(("auto", "auto", 1))
            path = ledger_config(tmp_path, db_url, sim, key, workers=workers)
            moment = _moment(rng, engine)
            proc = CliProcess(path, "--quiet", "sync")
            wait_until(lambda: proc.proc.poll() is not None or moment(), "the kill's moment")  # noqa: B023
            proc.proc.send_signal(signal.SIGKILL)
            killed = proc.finish() == -signal.SIGKILL
            outcomes["killed" if killed else "finished"] += 1
            # What committed verifies; a kill between a checkpoint's row and its file is
            # the one thing said, until the next run writes the file.
            code, report = verify(path, "--public-key", str(public))
            kinds = [f["kind"] for f in report["findings"]]
            assert code == ExitCode.OK or kinds == ["missing from the external copy"], json.dumps(
                report
            )
            outcomes["between row and file"] += bool(kinds)
            if i % 2 == 1:  # upstream moves on: new records, and a few that appear late
                base = 8_000_000_000_000 + i * 1_000
                sim.add_records(
                    [audit_record(base + j, recent(6)) for j in range(150)]
                    + [audit_record(base + 500 + j, recent(12)) for j in range(5)]
                )
    finally:
        engine.dispose()
    # The run after the kills, in process and at full speed: what it stores is the subject.
    sim.latency = 0.0
    sync(path)
    assert_clean(path, public, len(sim.visible_records()))
    assert_table_matches(db_url, sim.visible_records())  # every record, exactly once
    return outcomes


def _moment(rng: random.Random, engine: sa.Engine) -> Callable[[], bool]:
    """When to kill the run about to start: an event, chosen at random."""
    entries, made = count(engine, ledger), count(engine, checkpoints)
    if rng.random() < 0.3:  # just after a checkpoint's row commits: its file is next
        return lambda: count(engine, checkpoints) > made
    more = rng.choice((0, rng.randint(1, 4_000)))  # at once (start-up), or after some
    return lambda: count(engine, ledger) >= entries + more  # entries (pages) committed


def test_kills_at_random_moments_raise_no_false_alarm(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    outcomes = kill_loop(migrated_url, tmp_path, make_sim, rounds=6, seed=24)
    assert outcomes["killed"] >= 2, outcomes


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ETL_SOAK"), reason="long: run with `make soak`")
def test_soak_kills_raise_no_false_alarm(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    rounds = int(os.environ.get("ETL_SOAK_KILLS", "100"))
    seed = int(os.environ.get("ETL_SOAK_SEED") or time.time())
    outcomes = kill_loop(migrated_url, tmp_path, make_sim, rounds, seed)
    assert outcomes["killed"] >= rounds // 4, outcomes
    report = os.environ.get("ETL_SOAK_REPORT")
    if report:
        with open(report, "a", encoding="utf-8") as handle:
            line = {"test": "verify", "database": kind_of(migrated_url), "kills": rounds}
            handle.write(json.dumps({**line, **outcomes}) + "\n")


# -- 2. resyncs, scope changes and rejects ---------------------------------------------------

REJECTING = ("no_id", "string_id", "bad_created_at")  # rejected, not stored
STORED_AS_SERVED = ("extra_field", "wrong_type", "missing_field")  # a new version stored


def test_resyncs_scope_changes_and_rejects_raise_no_false_alarm(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    sim = make_sim(history(1_200, days=2, seed=5))
    sim.add_records([audit_record(UNSTORABLE, recent(60), action="x" * 300)])
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)

    def mangled(kinds: tuple[str, ...], rng: random.Random) -> None:
        sim.inject(*[Fault("mangle", mangle=k, skip=rng.randint(0, 4), count=2) for k in kinds])

    rng = random.Random(5)
    mangled(REJECTING, rng)
    sync(path)
    mangled(REJECTING + STORED_AS_SERVED, rng)
    sync(path, "resync", "--since", "2000-01-01")  # every record read again, some mangled
    # A change of scope (start_time and filters): the history read again from start_time.
    start = recent(60 * 24).isoformat().replace("+00:00", "Z")
    scoped = ledger_config(
        tmp_path,
        migrated_url,
        sim,
        key,
        start_time=start,
        sync_text='[sync.filters]\naction = ["create", "update", "destroy", "login"]\n',
    )
    mangled(STORED_AS_SERVED + REJECTING, rng)
    sync(scoped)
    assert_clean(scoped, public, count_rows(migrated_url))
    # Back to the whole history: read again, the mangled versions replaced by Zendesk's.
    sim.clear_faults()
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    sync(path, "resync", "--since", "2000-01-01")
    stored = [r for r in sim.visible_records() if r["id"] != UNSTORABLE]
    assert_clean(path, public, len(stored))
    assert_table_matches(migrated_url, stored)
    engine = open_engine(migrated_url)
    with engine.connect() as conn:
        kinds = Counter(conn.execute(sa.select(ledger.c.kind)).scalars())
    engine.dispose()
    assert kinds[chain.REJECT] > 4 and kinds[chain.ROW] > len(stored)  # rejects, versions


def count_rows(db_url: str) -> int:
    engine = open_engine(db_url)
    try:
        return count(engine, audit_logs)
    finally:
        engine.dispose()


# -- 3. exports and verifies beside a sync ------------------------------------------------------


def test_exports_and_verifies_beside_a_sync_raise_no_false_alarm(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    # 3,000 records, 30 pages at 600 a minute: the sync runs 3 s or more, each round (an
    # export's process started, verify beside it) a second or so: rounds while it writes.
    sim = make_sim(history(3_000, days=2, seed=9), latency=0.02, rate_limit_per_minute=10**6)
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key, zendesk={"requests_per_minute": 600})
    out = tmp_path / "feed.jsonl"
    export = cli_command(path, "--quiet", "export", "--consumer", "siem", "--output", str(out))
    engine = open_engine(migrated_url)
    proc = CliProcess(path, "--quiet", "sync")
    try:
        wait_until(lambda: proc.proc.poll() is not None or count(engine, ledger) > 0, "a page")
        rounds = beside = 0
        while proc.proc.poll() is None or rounds == 0:
            exporting = subprocess.Popen(export, env=CLI_ENV, cwd=ROOT, stderr=subprocess.PIPE)
            code, report = verify(path, "--public-key", str(public))  # beside both
            assert code == ExitCode.OK and report["findings"] == [], json.dumps(report)
            beside += proc.proc.poll() is None  # the sync ran from before verify to after
            _, err = exporting.communicate(timeout=120)
            assert exporting.returncode == 0, err
            rounds += 1
        assert proc.finish() == 0, proc.stderr
        assert beside >= 1, "no verify ran while the sync wrote"
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.finish()
        engine.dispose()
    assert run_cli(*export[export.index("--config") :]).returncode == 0
    assert_clean(path, public, len(sim.visible_records()))
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(ids) == sorted(r["id"] for r in sim.visible_records())  # each once


def test_verify_while_an_export_waits_mid_way_raises_no_false_alarm(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    """An export to standard output, a pipe this test reads one line of and then leaves
    full: the export waits mid-way, its lock held, while verify runs. On SQLite too: the
    export writes to a pipe outside its transaction, so it holds no write lock while it
    waits, and verify records its outcome without waiting."""
    sim = make_sim(history(2_000, days=0.5, seed=10))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    exporting = subprocess.Popen(
        cli_command(path, "--quiet", "export", "--consumer", "pipe"),
        env=CLI_ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert exporting.stdout is not None
        assert json.loads(exporting.stdout.readline())["id"]  # it reads and writes
        assert_clean(path, public, len(sim.visible_records()))
        lines = 1 + len(exporting.stdout.read().splitlines())
        assert exporting.wait(timeout=120) == 0
    finally:
        if exporting.poll() is None:
            exporting.kill()
            exporting.wait()
    assert lines == len(sim.visible_records())


# -- 4. a consistent rewrite, caught outside -----------------------------------------------


def test_a_consistent_rewrite_with_the_checkpoints_is_caught_by_the_external_copies(
    migrated_url: str, tmp_path: Path, make_sim: Simulators
) -> None:
    """A DBA rewrites a row, recomputes every ledger entry and the head, and rewrites the
    database's checkpoints to match: unsigned ones (no key), then ones signed with the
    host's key. The database alone verifies; the directory's copies do not agree."""
    sim = make_sim(history(600, days=0.5, seed=4))
    key, public = keygen(tmp_path)
    path = ledger_config(tmp_path, migrated_url, sim, key)
    sync(path)
    sim.add_records([audit_record(8_200_000_000_000 + j, recent(8)) for j in range(5)])
    sync(path)  # two checkpoints, in the database and in the directory
    signing = load_signing_key(str(key), None, {})
    assert signing is not None
    alone = write_config(tmp_path, migrated_url, filename="no-directory.toml")  # an auditor's
    for with_key in (None, signing):
        _rewrite(migrated_url, with_key)
        # The database alone is consistent: nothing to say but the unanchored range.
        code, report = verify(alone, "--public-key", str(public))
        assert code == ExitCode.OK and report["findings"] == [], json.dumps(report)
        # Against the copies kept elsewhere: the mismatch, named.
        code, report = verify(path, "--public-key", str(public))
        assert code == ExitCode.FINDINGS
        kinds = {f["kind"] for f in report["findings"]}
        assert {
            "missing from the database",  # the directory's checkpoints are not the database's
            "missing from the external copy",  # nor the database's the directory's
            "chain broken",  # and the chain no longer reaches the directory's heads
        } <= kinds, report
        assert kinds <= {
            "missing from the database",
            "missing from the external copy",
            "chain broken",
        }, report


def _rewrite(db_url: str, key: SigningKey | None) -> None:
    """Change one row's ``ip_address`` (its ``raw`` and its column: the columns derived
    from ``raw`` are checked against it too); recompute the chain, the head and the checkpoints."""
    engine = open_engine(db_url)
    with engine.begin() as conn:
        seq, raw = conn.execute(
            sa.select(audit_logs.c.stored_seq, audit_logs.c.raw)
            .order_by(audit_logs.c.stored_seq)
            .limit(1)
            .offset(10)
        ).one()
        conn.execute(
            sa.update(audit_logs)
            .where(audit_logs.c.stored_seq == seq)
            .values(raw={**raw, "ip_address": "10.9.9.9"}, ip_address="10.9.9.9")
        )
        rows = dict(conn.execute(sa.select(audit_logs.c.stored_seq, audit_logs.c.raw)).all())
        previous, heads = chain.genesis(ACCOUNT), {}
        for e in conn.execute(sa.select(ledger).order_by(ledger.c.entry)).mappings().all():
            record = bytes(e["record_hash"])
            if e["kind"] == chain.ROW and e["stored_seq"] in rows:
                record = chain.record_hash(rows[e["stored_seq"]])
            previous = chain.entry_hash(
                previous, e["entry"], e["kind"], e["stored_seq"], e["record_id"], record
            )
            heads[e["entry"]] = previous
            conn.execute(
                sa.update(ledger)
                .where(ledger.c.entry == e["entry"])
                .values(record_hash=record, entry_hash=previous)
            )
        conn.execute(sa.update(ledger_head).values(head=previous.hex()))
        for made in conn.execute(sa.select(checkpoints)).mappings().all():
            old = note.parse(made["note"])
            assert old is not None
            at = recent(0)
            unsigned = note.make(old.origin, old.size, heads[old.size], ACCOUNT, at)
            signed = (key.public.id, key.sign(unsigned.body)) if key else None
            new = note.make(old.origin, old.size, heads[old.size], ACCOUNT, at, signed)
            conn.execute(
                sa.update(checkpoints)
                .where(checkpoints.c.id == made["id"])
                .values(head=heads[old.size].hex(), key_id=new.key_id, note=new.text)
            )
    engine.dispose()
