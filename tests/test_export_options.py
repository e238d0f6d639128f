"""A consumer keeps the options it started with: ``--since`` and ``--format`` are saved
with its position, so a first export killed half-way resumes with them, and a run asking
for others is refused (exit 2, one line) unless it says ``--reset-options``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from parts.cli import one_error_line, run_cli
from parts.configs import write_config
from parts.exports import T0, export, record, size, store_records
from support import fresh_store, wait_until

from etl.common.errors import ConfigError, ExitCode

ROOT = Path(__file__).resolve().parent.parent
ROWS = 30_000  # 6 chunks of 5,000: a signal sent once the first is written lands mid-export
SINCE = "2026-03-01T12:00:00Z"  # T0: half of the rows below were created before it


def _config(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, db_url)  # Zendesk unreachable: export needs none


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONFIG"))}


def _export(config: Path, consumer: str, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "etl", "--config", str(config), "export",
            "--consumer", consumer, "--output", str(out), *options]  # fmt: skip


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    """In process: what a run does counts here; the stopped ones are real processes."""
    return run_cli(*command[command.index("--config") :])


def _resumed(command: list[str]) -> subprocess.CompletedProcess[str]:
    """The rerun, once the stopped export's lock is gone: a killed process's lock goes when
    the server sees its connection close (MariaDB's named lock, on a busy host a moment
    after the kill); until then the rerun is refused, writing nothing."""

    def run() -> subprocess.CompletedProcess[str] | None:
        done = _run(command)
        return None if "is in progress" in done.stderr else done

    return wait_until(run, "the stopped export's lock to go", interval=0.2)


def _stopped_once_it_has_written(command: list[str], out: Path, how: signal.Signals) -> None:
    proc = subprocess.Popen(command, env=_env(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: size(out) > 0 or proc.poll() is not None, "the export's first chunk",
                   interval=0.001)  # fmt: skip
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = ExitCode.INTERRUPTED if how == signal.SIGTERM else -how
    assert proc.returncode == expected, stderr


def test_a_first_export_stopped_half_way_resumes_with_its_since(
    kill_db_url: str,
    tmp_path: Path,
) -> None:
    """``export --since T`` stopped after its first chunk (by SIGTERM, then by SIGKILL),
    then run again with and without ``--since``: every file is byte for byte the
    uninterrupted export's, and none holds a record created before T. (The rerun used to
    forget ``--since``.) Both signals in one test: they share its 30,000 rows and the
    uninterrupted export (the rows' store was half of each signal's own test)."""
    store = fresh_store(kill_db_url)
    for start in range(1, ROWS + 1, 10_000):  # created out of order, around T0
        rows = [record(i, minutes=(i * 7919) % 1200 - 600) for i in range(start, start + 10_000)]
        store_records(store, rows)
    store.engine.dispose()
    config = _config(tmp_path, kill_db_url)

    reference = tmp_path / "uninterrupted.jsonl"
    whole = _run(_export(config, "reference", reference, "--since", SINCE))
    assert whole.returncode == 0, whole.stderr
    expected = reference.read_bytes()
    assert 0 < len(expected.splitlines()) < ROWS
    assert all(json.loads(line)["created_at"] >= SINCE for line in expected.splitlines())

    for how in (signal.SIGTERM, signal.SIGKILL):  # each its own consumers
        for rerun, rerun_options in (("again", ["--since", SINCE]), ("bare", [])):
            consumer = f"{how.name.lower()}-{rerun}"
            out = tmp_path / f"{consumer}.jsonl"
            command = _export(config, consumer, out, "--since", SINCE)
            _stopped_once_it_has_written(command, out, how)
            assert 0 < size(out) < len(expected), f"{consumer}: stopped before it was done"
            resumed = _resumed(_export(config, consumer, out, *rerun_options))
            assert resumed.returncode == 0, resumed.stderr
            assert out.read_bytes() == expected, consumer


def test_a_rerun_with_other_options_is_refused_in_one_line(sqlite_url: str, tmp_path: Path) -> None:
    store = fresh_store(sqlite_url)
    store_records(store, [record(1, minutes=-10), record(2, minutes=10)])
    config = _config(tmp_path, sqlite_url)
    out = tmp_path / "feed.jsonl"
    first = _run(_export(config, "siem", out, "--since", SINCE))
    assert first.returncode == 0, first.stderr
    written = out.read_bytes()
    store_records(store, [record(3, minutes=20)])

    for other in (["--since", "2026-03-01T11:00:00Z"], ["--format", "ocsf"]):
        refused = _run(_export(config, "siem", out, *other))
        assert refused.returncode == ExitCode.CONFIG, refused.stderr
        line = one_error_line(refused)
        assert "consumer siem exports with --format raw, --since 2026-03-01T12:00:00Z" in line
        assert "--reset-options" in line
        assert out.read_bytes() == written  # nothing written, the position unmoved

    reset = _run(_export(config, "siem", out, "--format", "ocsf", "--reset-options"))
    assert reset.returncode == 0, reset.stderr
    (added,) = out.read_bytes()[len(written) :].splitlines()
    assert json.loads(added)["metadata"]["uid"] == "3"  # OCSF from the position on
    # the reset options are the consumer's now: the same run again is not refused
    again = _run(_export(config, "siem", out, "--format", "ocsf"))
    assert again.returncode == 0, again.stderr


def test_options_left_out_are_the_saved_ones(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1, minutes=-10), record(2, minutes=10)])
    lines = export(store, out, fmt="ocsf", since=T0)
    assert [line["metadata"]["uid"] for line in lines] == ["2"]
    store_records(store, [record(3, minutes=-30)])  # late: exported, since the first is done
    assert [line["metadata"]["uid"] for line in export(store, out)] == ["3"]


def test_other_options_are_refused_even_with_nothing_new(db_url: str, tmp_path: Path) -> None:
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1)])
    export(store, out, since=T0)
    with pytest.raises(ConfigError, match="consumer siem exports with"):
        export(store, out, since=T0 - timedelta(days=1))
    with pytest.raises(ConfigError, match="consumer siem exports with"):
        export(store, out, fmt="ocsf")
    export(store, out)  # left out: as saved
    export(store, out, reset_options=True)  # a new consumer's options: no --since
    with pytest.raises(ConfigError, match="consumer siem exports with --format raw, no --since"):
        export(store, out, since=T0)


def test_a_new_account_of_a_consumer_gets_its_since(db_url: str, tmp_path: Path) -> None:
    """``--since`` is the consumer's: an account it exports for the first time starts there
    too, while its rows stored later (late records) are exported whatever their time."""
    store = fresh_store(db_url)
    out = tmp_path / "feed.jsonl"
    store_records(store, [record(1, minutes=10)])
    export(store, out, since=T0)
    store_records(store, [record(2, minutes=-10), record(3, minutes=10)], account="beta")
    lines = export(store, out, accounts=("acme", "beta"))
    assert [(line["account"], line["id"]) for line in lines] == [("beta", 3)]
    store_records(store, [record(4, minutes=-60)], account="beta")
    assert [line["id"] for line in export(store, out, accounts=("acme", "beta"))] == [4]
