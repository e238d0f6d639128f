"""Deadlines, size caps and stop requests against servers that misbehave on purpose.

requests' timeout bounds each socket read, not the answer: a body trickled a byte at a
time never times out. Each attempt must end (connect, headers and the whole body) within
``timeout``, the retry budget must hold for the whole request, an oversized answer must
be refused while it is read, and a stop (SIGTERM) must be seen while waiting on the
network. Upper bounds on elapsed time are generous (a busy machine is slow).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import Exchange, LoopbackServer
from support import FakeTime

from etl.common.errors import ExitCode, InterruptedRun, RetryBudgetExhausted
from etl.common.secret import Secret
from etl.common.settings import Credentials, ZendeskSettings
from etl.zendesk.client import ZendeskClient
from etl.zendesk.exchange import MAX_BODY_BYTES

PAGE = b'{"audit_logs": [], "meta": {"has_more": false}}'
SLOW_MACHINE = 10.0  # seconds of slack for a busy machine
ROOT = Path(__file__).resolve().parent.parent


def client_for(url: str, *, timeout: float, budget: float, fake: bool = False,
               stop: threading.Event | None = None) -> ZendeskClient:  # fmt: skip
    settings = ZendeskSettings(
        base_url=url,
        credentials=Credentials(oauth_token=Secret("tok")),
        timeout=timeout,
        retry_budget=budget,
    )
    if fake:  # retry waits cost no time; only the exchanges themselves do
        clock = FakeTime()
        return ZendeskClient(settings, sleep=clock.sleep, clock=clock.clock, stop=stop)
    return ZendeskClient(settings, stop=stop)


def trickle(exchange: Exchange) -> None:
    """Headers at once, then the body one byte every 0.2 s: each read succeeds."""
    exchange.handler.send_response(200)
    exchange.handler.send_header("Content-Type", "application/json")
    exchange.handler.send_header("Content-Length", str(len(PAGE) * 1000))
    exchange.handler.end_headers()
    for byte in PAGE * 1000:
        if exchange.closing.wait(0.2):
            return
        exchange.wfile.write(bytes([byte]))
        exchange.wfile.flush()


def stall(exchange: Exchange) -> None:
    """Reads the request, then never answers (until the test is over)."""
    exchange.closing.wait(300)


@pytest.fixture
def trickling() -> Iterator[LoopbackServer]:
    with LoopbackServer(trickle) as server:
        yield server


@pytest.fixture
def stalling() -> Iterator[LoopbackServer]:
    with LoopbackServer(stall) as server:
        yield server


def test_a_trickled_body_ends_within_the_timeout_and_the_budget(
    trickling: LoopbackServer,
) -> None:
    timeout, budget = 2.0, 5.0
    began = time.monotonic()
    with (
        client_for(trickling.url, timeout=timeout, budget=budget) as client,
        pytest.raises(RetryBudgetExhausted, match="timed out") as caught,
    ):
        client.get_json("/api/v2/audit_logs")
    elapsed = time.monotonic() - began
    assert elapsed < budget + timeout * 3 + SLOW_MACHINE
    assert caught.value.exit_code == ExitCode.UPSTREAM
    assert len(trickling.seen) >= 2  # retried within the budget


def test_stalled_headers_end_within_the_timeout(stalling: LoopbackServer) -> None:
    timeout = 2.0
    began = time.monotonic()
    with (
        client_for(stalling.url, timeout=timeout, budget=1.0) as client,
        pytest.raises(RetryBudgetExhausted, match="timed out"),
    ):
        client.get_json("/api/v2/audit_logs")
    assert time.monotonic() - began < timeout * 3 + SLOW_MACHINE


def test_no_attempt_runs_past_the_retry_budget(trickling: LoopbackServer) -> None:
    """A budget shorter than the timeout bounds the whole request, the first attempt too."""
    began = time.monotonic()
    with (
        client_for(trickling.url, timeout=60.0, budget=3.0) as client,
        pytest.raises(RetryBudgetExhausted),
    ):
        client.get_json("/api/v2/audit_logs")
    assert time.monotonic() - began < 3.0 * 3 + SLOW_MACHINE  # not 60 s


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_refused_while_it_is_read(declared: bool) -> None:
    """A valid JSON page past the cap: corrupt, and never read whole into memory."""
    size = MAX_BODY_BYTES * 3
    pad = b"x" * (1024 * 1024)
    sent: list[int] = []

    def huge(exchange: Exchange) -> None:
        head = b'{"audit_logs": [], "meta": {"has_more": false}, "pad": "'
        exchange.handler.send_response(200)
        exchange.handler.send_header("Content-Type", "application/json")
        if declared:
            exchange.handler.send_header("Content-Length", str(len(head) + size + 2))
        exchange.handler.send_header("Connection", "close")
        exchange.handler.end_headers()
        written = 0
        try:
            exchange.wfile.write(head)
            while written < size:
                exchange.wfile.write(pad)
                written += len(pad)
            exchange.wfile.write(b'"}')
            exchange.wfile.flush()
        finally:
            sent.append(written)

    with LoopbackServer(huge) as server:
        client = client_for(server.url, timeout=30.0, budget=6.0, fake=True)
        with client, pytest.raises(RetryBudgetExhausted, match="larger than 64 MiB") as caught:
            client.get_json("/api/v2/audit_logs")
        assert client.stats.corrupt == client.stats.requests >= 2
    assert caught.value.exit_code == ExitCode.UPSTREAM
    if not declared:  # refused mid-body: the client hung up long before the end
        deadline = time.monotonic() + 30
        while len(sent) < len(server.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sent and max(sent) < size


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_stop_is_seen_while_waiting_on_the_network(
    where: str, stalling: LoopbackServer, trickling: LoopbackServer
) -> None:
    server = stalling if where == "headers" else trickling
    stop = threading.Event()
    caught: list[BaseException] = []
    stopped_at: list[float] = []

    def run() -> None:
        with client_for(server.url, timeout=120.0, budget=300.0, stop=stop) as client:
            try:
                client.get_json("/api/v2/audit_logs")
            except BaseException as exc:  # handed to the test thread
                caught.append(exc)
            stopped_at.append(time.monotonic())

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while not server.seen and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.seen, "the request never arrived"
    stop_set = time.monotonic()
    stop.set()
    worker.join(60)
    assert stopped_at, "get_json did not return after the stop"
    assert isinstance(caught[0], InterruptedRun)
    assert caught[0].exit_code == ExitCode.INTERRUPTED
    assert stopped_at[0] - stop_set < 30  # not the 120 s socket timeout


def test_a_healthy_connection_is_kept_alive() -> None:
    with LoopbackServer(lambda ex: ex.send(200, {"Content-Type": "application/json"}, PAGE)) as s:
        with client_for(s.url, timeout=5.0, budget=5.0) as client:
            for _ in range(3):
                assert client.get_json("/api/v2/audit_logs")["meta"] == {"has_more": False}
        assert len({seen.client_port for seen in s.seen}) == 1


def test_sigterm_while_the_answer_trickles_exits_130_at_once(
    tmp_path: Path, sqlite_url: str, trickling: LoopbackServer
) -> None:
    """The real command: the first SIGTERM is acted on while a body trickles in."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{trickling.url}"\nname = "acme"\noauth_token = "tok"\n'
        f'timeout = "2m"\nretry_budget = "5m"\n[database]\nurl = "{sqlite_url}"\n'
        "auto_migrate = true\n[sync]\nworkers = 1\n"  # read by the main thread itself
    )
    config.chmod(0o600)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl", "--config", str(config), "sync"],
        env=environ, cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not trickling.seen and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert trickling.seen, "the request never arrived"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert time.monotonic() - sent < 30  # not the 2-minute timeout
    assert "Traceback" not in stderr
