"""What an attacker without the signing key can do to an export and its manifests, and
where it shows: a DBA who moves a consumer's position so that the next export skips or
repeats rows (a ``seq gap``, a ``seq overlap`` at the next manifest, on each database); a
file cut back to an earlier manifest with the later manifests removed (consistent, so
``verify-export`` sees nothing until the next export, whose manifest is a ``seq gap``);
a manifest removed and its bytes edited, which the next run's manifest covers as a killed
run's bytes (docs/INTEGRITY.md, "What is not covered"): the job's log names the range."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import cli, run_cli
from parts.simulators import Simulators
from parts.verify.signed import keygen, synced
from support import audit_record, recent

from etl.common.errors import ExitCode
from etl.integrity import manifest
from etl.integrity.keys import parse_signing_key
from etl.storage.engine import open_engine
from etl.storage.schema.state import export_consumers
from zendesk_sim import SimulatedZendesk

FIRST_ID = 9_800_000_000_000


def _findings(out: Path, public: Path) -> set[tuple[str, int | None]]:
    done = run_cli("verify-export", str(out), "--json", "--public-key", str(public))
    assert done.returncode in (ExitCode.OK, ExitCode.FINDINGS), done.stderr
    return {(f["kind"], f["manifest"]) for f in json.loads(done.stdout)["findings"]}


def _entries(out: Path) -> list[str]:
    text = Path(f"{out}.manifest").read_text()
    return [manifest.HEADER + part for part in text.split(manifest.HEADER)[1:]]


def _bytes_end(entry: str) -> int:
    (line,) = [line for line in entry.splitlines() if line.startswith("bytes ")]
    return int(line.split("-")[1])


class _Export:
    """A synced account exported by consumer ``siem`` into one file, run after run."""

    def __init__(self, tmp_path: Path, db_url: str, sim: SimulatedZendesk) -> None:
        key, self.public = keygen(tmp_path, "ledger.key")
        self.config, self.sim, self.db_url = synced(tmp_path, sim, db_url, key), sim, db_url
        self.out = tmp_path / "audit.jsonl"
        self.runs = 0

    def run(self) -> None:
        if self.runs:  # new rows first
            ids = [FIRST_ID + 100 + 10 * self.runs + i for i in range(3)]
            self.sim.add_records([audit_record(i, recent(8)) for i in ids])
            assert cli(self.config, "sync").returncode == 0
        self.runs += 1
        done = cli(self.config, "export", "--consumer", "siem", "--output", str(self.out))
        assert done.returncode == 0, done.stderr

    def move_position(self, change: Callable[[int], int]) -> None:
        engine = open_engine(self.db_url)
        table = export_consumers
        with engine.begin() as conn:
            position = conn.execute(sa.select(table.c.position)).scalar_one()
            conn.execute(sa.update(table).values(position=change(position)))
        engine.dispose()


@pytest.fixture
def export(tmp_path: Path, db_url: str, make_sim: Simulators) -> _Export:
    records = [audit_record(FIRST_ID + i, recent(20)) for i in range(6)]
    return _Export(tmp_path, db_url, make_sim(records))


@pytest.mark.parametrize(("change", "kind"), [(2, "seq gap"), (-2, "seq overlap")])
def test_a_position_a_dba_moved_shows_at_the_next_manifest(
    export: _Export, change: int, kind: str
) -> None:
    export.run()
    assert _findings(export.out, export.public) == set()
    export.move_position(lambda position: position + change)  # rows skipped, or repeated
    export.run()
    assert _findings(export.out, export.public) == {(kind, 2)}


def test_a_file_cut_back_with_its_last_manifests_shows_at_the_next_export(
    export: _Export,
) -> None:
    for _ in range(3):
        export.run()
    entries = _entries(export.out)
    # Consistent: the file ends where manifest 1 ends, and manifests 2 and 3 are gone.
    os.truncate(export.out, _bytes_end(entries[0]))
    Path(f"{export.out}.manifest").write_text(entries[0])
    assert _findings(export.out, export.public) == set()  # not covered: nothing to compare
    export.run()  # its manifest starts at the database's position, not at manifest 1's end
    assert _findings(export.out, export.public) == {("seq gap", 2)}


def test_a_manifest_removed_and_its_bytes_edited_is_named_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_path, _ = keygen(tmp_path, "ledger.key")
    key = parse_signing_key(key_path.read_text(), "test")
    out = tmp_path / "audit.jsonl"
    at = datetime(2026, 12, 7, tzinfo=UTC)
    for number, data in enumerate([b'{"n": 1}\n', b'{"n": 2}\n', b'{"n": 3}\n'], start=1):
        if number == 3:  # manifest 2 removed, its bytes edited
            Path(f"{out}.manifest").write_text(_entries(out)[0] + "\n")
            out.write_bytes(out.read_bytes().replace(b'"n": 2', b'"n": 9'))
        with out.open("ab") as written:
            written.write(data)
        with caplog.at_level(logging.WARNING, logger="etl.integrity.manifest"):
            text = manifest.manifest("siem", "acme", out, (number, number), len(data), at, key)
        manifest.append(out, text)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "also covers bytes 9-18, seq 2-2, which no manifest in audit.jsonl.manifest" in warning
