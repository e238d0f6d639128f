"""Small hostile inputs, each once: control characters for the terminal, a lock name
shared across namespaces, a token endpoint's bad ``Location``, RFC 3339's lowercase
``z``, and ``timeout``(1)'s signal to the whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from loopback import Exchange, LoopbackServer
from support import SIM_OAUTH_TOKEN, fresh_store, oauth_client, wait_until

from etl.cli import report, streams_info, terminal
from etl.common.errors import ExitCode, LockedError, RequestRejectedError
from etl.records.audit import parse_created_at, parse_record
from etl.storage.history import AccountStatus
from etl.storage.locking.lock import run_lock
from etl.storage.streams import StreamStatus

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "Eve\x1b]0;owned\x07\x1b[2J\x9b31m\u202egnp.exe\r"


def test_a_records_control_characters_are_escaped_in_the_table() -> None:
    record = {"id": 1, "actor_name": HOSTILE, "change_description": "a\x1b[1Ab"}
    table = terminal.records_table([record])
    assert not any(c in table for c in "\x1b\x07\x9b\u202e\r")
    assert "Eve\\x1b]0;owned\\x07\\x1b[2J\\x9b31m\\u202e" in table  # cut at 40 columns
    assert "a\\x1b[1Ab" in table


def test_status_text_escapes_what_servers_and_records_wrote() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    status = AccountStatus(
        account="acme", watermark=now, rows=1, rejects=0, last_run=None, last_success_at=None,
        last_failure_at=now, last_failure_error=f"503 ({HOSTILE})", scope=None,
    )  # fmt: skip
    text = report.status_text([status], {}, now)
    assert "\x1b" not in text and "\x9b" not in text and "\\x1b]0;owned" in text


def test_a_streams_status_block_escapes_what_servers_wrote_as_the_audit_logs_does() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    status = StreamStatus(
        account="acme", stream="access_logs", watermark=None, rows=0, rejects=0, last_run=None,
        last_success_at=None, last_failure_at=now, last_failure_error=f"503 ({HOSTILE})",
    )  # fmt: skip
    text = streams_info.stream_text(status, now)
    assert "\x1b" not in text and "\x9b" not in text and "\\x1b]0;owned" in text
    assert "account acme, access_logs" in text and "never synced" in text


@pytest.mark.parametrize("plain", ["acme", "ünïcode-name", "a" * 40])
def test_printable_leaves_ordinary_text_alone(plain: str) -> None:
    assert terminal.printable(plain) == plain


def test_an_account_named_like_an_export_consumer_has_a_lock_of_its_own(db_url: str) -> None:
    """The account ``export:siem`` and the export consumer ``siem`` used to share one lock:
    a sync of the one was refused while the other exported."""
    engine = fresh_store(db_url).engine
    with run_lock(engine, "siem", namespace="export"):
        account = run_lock(engine, "export:siem")  # taken: another subject
        same = run_lock(engine, "siem", namespace="export")  # still one lock
        with account, pytest.raises(LockedError), same:
            pass
        with run_lock(engine, "siem"):  # an account named like the consumer, too
            pass
    engine.dispose()


@pytest.mark.parametrize("location", ["http://[::1/oauth", "http://[zz]:80/", "http://h:99999999/"])
def test_a_token_endpoints_bad_location_is_one_line_exit_2(location: str) -> None:
    def respond(exchange: Exchange) -> None:
        exchange.send(302, {"Location": location}, b"")

    with LoopbackServer(respond) as server:
        auth, session = oauth_client(server.url)
        with pytest.raises(RequestRejectedError, match="redirects are not followed") as caught:
            session.get(server.url + "/api/v2/audit_logs", auth=auth, timeout=30)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert "\n" not in str(caught.value) and "[" not in str(caught.value)


@pytest.mark.parametrize(
    "text", ["2026-03-01T12:00:00z", "2026-03-01t12:00:00z", "2026-03-01T12:00:00.250z"]
)
def test_a_lowercase_z_is_utc(text: str) -> None:
    moment = parse_created_at(text)
    assert moment is not None and moment.replace(microsecond=0) == datetime(
        2026, 3, 1, 12, tzinfo=UTC
    )
    row = parse_record({"id": 7, "created_at": text, "action": "login"}, "acme", moment)
    assert isinstance(row, dict) and row["created_at"] == moment


def test_timeouts_broadcast_to_the_process_group_is_one_sigterm(
    sqlite_url: str, tmp_path: Path
) -> None:
    """``timeout``(1) sends SIGTERM to the job and then to its process group: the job used
    to take the echo for a second signal and leave at once, unrecorded. Sent here the
    same way, once the run waits for an answer (the echo once the first is acted on, the
    case that used to fail): it stops gently and records the run."""
    arrived = threading.Event()

    def respond(exchange: Exchange) -> None:
        arrived.set()
        exchange.closing.wait(120)  # no answer: the run waits until it is stopped

    with LoopbackServer(respond) as server:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{server.url}"\nname = "acme"\ntimeout = "120s"\n'
            f'[database]\nurl = "{sqlite_url}"\nauto_migrate = true\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_"))}
        env["ZENDESK_OAUTH_TOKEN"] = SIM_OAUTH_TOKEN
        proc = subprocess.Popen(
            [sys.executable, "-m", "etl", "--config", str(config), "sync"],
            env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or ()), daemon=True)
        reader.start()
        try:
            wait_until(lambda: arrived.is_set() or proc.poll() is not None, "the first request")
            os.kill(proc.pid, signal.SIGTERM)  # what timeout does: the child...
            wait_until(lambda: any("SIGTERM received" in line for line in lines), "acted on")
            os.killpg(proc.pid, signal.SIGTERM)  # ...then its whole process group
            proc.wait(timeout=60)
            reader.join(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = "".join(lines)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert "second SIGTERM" not in stderr
    assert "SIGTERM received: finishing the current page" in stderr
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM zendesk_audit_sync_runs")).scalars()
        assert list(statuses) == ["interrupted"]  # stopped gently: the run is recorded
    engine.dispose()


def test_a_different_second_signal_still_leaves_at_once() -> None:
    """The echo rule takes only the same signal, once: SIGINT after SIGTERM still counts."""
    code = (
        "import os, signal, threading, time\n"
        "from etl.cli.signals import signals_set\n"
        "stop = threading.Event()\n"
        "with signals_set(stop):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    assert stop.wait(30)\n"
        "    print('gentle', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.stdout == "gentle\n", result.stderr
    assert result.returncode == ExitCode.INTERRUPTED
    assert "stopped by a second SIGINT" in result.stderr
