"""Running it for years: several accounts, logs for shippers and journald, metrics, progress."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import SIM_OAUTH_TOKEN, assert_table_matches, recent
from test_cli import cli

from etl.db import open_engine
from etl.errors import ExitCode
from etl.progress import CLEAR_TO_END, ProgressBar, render, slices_share, span_share
from etl.report import text_width
from etl.schema import audit_logs
from zendesk_sim import SimAuth, SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def two_sims() -> Iterator[tuple[SimulatedZendesk, SimulatedZendesk]]:
    end = recent(30)
    prod = generate_records(700, start=end - timedelta(days=1), end=end, seed=1)
    sandbox = generate_records(300, start=end - timedelta(days=1), end=end, seed=2)
    with (
        SimulatedZendesk(prod) as a,
        SimulatedZendesk(sandbox, auth=SimAuth(oauth_tokens=("sandbox-token",))) as b,
    ):
        yield a, b


def accounts_config(tmp_path: Path, db_url: str, prod_url: str, sandbox_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[[accounts]]\nbase_url = "{prod_url}"\nname = "prod"\noauth_token_env = "PROD_TOKEN"\n'
        f"requests_per_minute = 2500\n\n"
        f'[[accounts]]\nbase_url = "{sandbox_url}"\nname = "sandbox"\n'
        f'oauth_token_env = "SANDBOX_TOKEN"\nrequests_per_minute = 2500\nretry_budget = "2s"\n\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n\n'
        "[sync]\nworkers = 1  # sequential: the tests count pages and requests exactly\n\n"
        f'[monitoring]\nmetrics_file = "{tmp_path / "metrics" / "etl.prom"}"\n'
    )
    return path


def test_two_accounts_share_one_database_and_fail_independently(
    tmp_path: Path, db_url: str, two_sims: tuple[SimulatedZendesk, SimulatedZendesk]
) -> None:
    prod, sandbox = two_sims
    config = accounts_config(tmp_path, db_url, prod.url, sandbox.url)
    bad = cli(config, "sync", env={"PROD_TOKEN": SIM_OAUTH_TOKEN, "SANDBOX_TOKEN": "wrong"})
    assert bad.returncode == ExitCode.AUTH
    assert "account sandbox:" in bad.stderr
    assert "1 of 2 accounts failed: sandbox" in bad.stderr
    assert_table_matches(db_url, prod.visible_records(), account="prod")

    good = cli(
        config, "sync", env={"PROD_TOKEN": SIM_OAUTH_TOKEN, "SANDBOX_TOKEN": "sandbox-token"}
    )
    assert good.returncode == 0, good.stderr
    assert_table_matches(db_url, prod.visible_records(), account="prod")
    assert_table_matches(db_url, sandbox.visible_records(), account="sandbox")

    only = cli(config, "sync", "--account", "sandbox", env={"SANDBOX_TOKEN": "sandbox-token"})
    assert only.returncode == 0
    assert "account=prod" not in only.stderr

    status = json.loads(cli(config, "status", "--json").stdout)
    by_name = {s["account"]: s for s in status}
    assert by_name["prod"]["rows"] == 700 and by_name["sandbox"]["rows"] == 300
    assert by_name["sandbox"]["last_failure_error"] is not None

    metrics = (tmp_path / "metrics" / "etl.prom").read_text()
    assert 'zendesk_audit_etl_rows{account="prod"} 700' in metrics
    assert 'zendesk_audit_etl_rows{account="sandbox"} 300' in metrics
    assert 'zendesk_audit_etl_last_run_success{account="sandbox"} 1' in metrics
    lag = re.search(r'zendesk_audit_etl_lag_seconds\{account="prod"\} (\S+)', metrics)
    assert lag and 4 * 60 < float(lag.group(1)) < 10 * 60


def test_json_logs_are_one_object_per_line_with_the_run_figures(
    tmp_path: Path, sqlite_url: str, two_sims: tuple[SimulatedZendesk, SimulatedZendesk]
) -> None:
    prod, sandbox = two_sims
    config = accounts_config(tmp_path, sqlite_url, prod.url, sandbox.url)
    env = {"PROD_TOKEN": SIM_OAUTH_TOKEN, "SANDBOX_TOKEN": "sandbox-token"}
    result = cli(config, "--log-format", "json", "sync", env=env)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    finished = [e for e in events if e.get("event") == "run_finished"]
    assert {e["account"] for e in finished} == {"prod", "sandbox"}
    prod_run = next(e for e in finished if e["account"] == "prod")
    assert prod_run["rows_inserted"] == 700
    assert prod_run["pages"] == 7 and prod_run["requests"] == 7
    assert {"time", "level", "window_start", "window_end", "watermark_after"} <= set(prod_run)


def test_under_journald_text_lines_carry_no_timestamp(
    tmp_path: Path, sqlite_url: str, two_sims: tuple[SimulatedZendesk, SimulatedZendesk]
) -> None:
    prod, _ = two_sims
    config = tmp_path / "c.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{prod.url}"\nname = "acme"\n[database]\nurl = "{sqlite_url}"\n'
        "auto_migrate = true\n"
    )
    plain = cli(config, "sync")
    assert re.match(r"^\d\d:\d\d:\d\d INFO ", plain.stderr)
    journald = cli(config, "sync", env={"JOURNAL_STREAM": "8:1234"})
    assert journald.stderr.startswith("INFO etl.cli: account=acme")


def test_progress_bar_shows_on_a_terminal_only(tmp_path: Path, sqlite_url: str) -> None:
    end = recent(30)
    records = generate_records(3000, start=end - timedelta(days=3), end=end, seed=4)
    with SimulatedZendesk(records, latency=0.02) as sim:
        config = tmp_path / "c.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
            f'[database]\nurl = "{sqlite_url}"\nauto_migrate = true\n'
        )
        controller, terminal = pty.openpty()
        columns = 60  # a narrow terminal: a longer line would wrap onto a new one each redraw
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
        env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        command = [sys.executable, "-m", "etl", "--config", str(config), "sync"]
        proc = subprocess.Popen(command, stderr=terminal, env=env, cwd=ROOT)
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(timeout=60) == 0
        os.close(controller)
        text = output.decode()
        assert "\r" in text and "records" in text and "/s" in text and "left" in text
        lines = [line.replace(CLEAR_TO_END, "") for line in re.split(r"[\r\n]+", text)]
        drawn = [line for line in lines if "records" in line and "[" in line]
        assert drawn and all(len(line) < columns for line in drawn), drawn
        assert "100.0%" in drawn[-1]  # a completed run ends its bar at 100%
        # and nothing of it when stderr is not a terminal
        piped = cli(config, "sync")
        assert "\r" not in piped.stderr and "[#" not in piped.stderr


class Stream(io.StringIO):
    @property
    def text(self) -> str:
        return self.getvalue()


def test_progress_render_reports_share_rate_and_estimate() -> None:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    line = render("acme", 0.4, at, 5000, 500.0, 15.0)
    assert "40.0%" in line
    assert "5,000 records 500/s" in line
    assert "~0:15 left" in line


def test_progress_bar_stays_quiet_for_short_runs() -> None:
    stream = Stream()
    clock = iter(float(i) for i in range(100))
    bar = ProgressBar(stream, clock=lambda: next(clock))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    bar.update("acme", lambda: 0.0, start, 100, pages=1)
    bar.finish()
    assert stream.text == ""
    for pages in (3, 4):
        bar.update("acme", lambda: 0.25, start + timedelta(hours=6), 300, pages)
    bar.finish()
    assert stream.text.count("\r") == 2 and stream.text.endswith("\n")


def test_share_counts_from_where_the_data_starts_and_over_every_slice() -> None:
    from etl.store import SliceRow

    history = datetime(2007, 1, 1, tzinfo=UTC)
    data = datetime(2026, 1, 1, tzinfo=UTC)
    end = data + timedelta(days=10)
    # the first page ended at `data`: of the window 2007..end that is 99.7%, of the work 0%
    assert span_share(history, end, data) > 0.99
    assert span_share(data, end, data + timedelta(days=4)) == 0.4
    day = timedelta(days=1)
    plan = [
        SliceRow(1, data, data + day, None, True),  # read by an earlier, killed run
        SliceRow(2, data + day, data + 2 * day, data + day + day / 2, False),
        SliceRow(3, data + 2 * day, data + 4 * day, data + 3 * day, False),
    ]
    assert slices_share(plan) == 0.625  # not the contiguous read point (1.5 of 4 days)


def test_rate_and_estimate_count_this_run_only_and_settle() -> None:
    """A resumed backfill starts at 80%: its estimate comes from this run's own pace."""
    stream = Stream()
    now = [0.0]
    bar = ProgressBar(stream, clock=lambda: now[0], min_pages=1, width=lambda: 200)
    for second in range(0, 11):
        now[0] = float(second)
        share = 0.8 + 0.01 * second
        bar.update("acme", lambda: share, None, 100 * second, second + 1)  # noqa: B023
    last = stream.text.rsplit("\r", 1)[1]
    assert "90.0%" in last and "100/s" in last
    assert "~0:10 left" in last  # 10% in 10 s: 10% more takes 10 s (not 2 s, nor 40 s)
    bar.finish(complete=True)
    assert "100.0%" in stream.text.rsplit("\r", 1)[1] and stream.text.endswith("\n")


@pytest.mark.parametrize("columns", [30, 80])
def test_a_redraw_never_wraps_at_any_width(columns: int) -> None:
    stream = Stream()
    now = [0.0]
    bar = ProgressBar(stream, clock=lambda: now[0], min_pages=1, width=lambda: columns)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for second in range(1, 5):
        now[0] = float(second)
        bar.update("アカウント-long-name", lambda: 0.5, at, 123_456_789, second)
    for line in stream.text.split("\r")[1:]:
        shown = line.replace(CLEAR_TO_END, "")
        assert text_width(shown) <= columns - 1


def test_resync_repairs_a_window_without_moving_the_watermark(
    tmp_path: Path, db_url: str, two_sims: tuple[SimulatedZendesk, SimulatedZendesk]
) -> None:
    prod, _ = two_sims
    config = tmp_path / "c.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{prod.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n'
    )
    assert cli(config, "sync").returncode == 0
    watermark = json.loads(cli(config, "status", "--json").stdout)[0]["watermark"]
    records = prod.visible_records()
    # damage the stored history: three rows lost, one record stored differently
    engine = open_engine(db_url)
    with engine.begin() as conn:
        lost = [r["id"] for r in records[100:103]]
        conn.execute(audit_logs.delete().where(audit_logs.c.id.in_(lost)))
        altered = {**records[200], "actor_name": "tampered"}
        conn.execute(
            audit_logs.update()
            .where(audit_logs.c.id == altered["id"])
            .values(raw=altered, actor_name="tampered")
        )
    engine.dispose()
    since = records[50]["created_at"]
    until = records[400]["created_at"]
    repaired = cli(config, "resync", "--since", since, "--until", until)
    assert repaired.returncode == 0, repaired.stderr
    assert "3 were missing and 1 differed, now stored" in repaired.stdout
    assert_table_matches(db_url, records, account="acme")
    checked = cli(config, "resync", "--since", since, "--until", until)
    assert "stored history matched Zendesk" in checked.stdout
    status = json.loads(cli(config, "status", "--json").stdout)[0]
    assert status["watermark"] == watermark
    bad = cli(config, "resync", "--since", "2030-01-01")
    assert bad.returncode == ExitCode.CONFIG
    assert "nothing to re-read" in bad.stderr


def test_status_reports_an_unfinished_backfill() -> None:
    from etl.report import backfill_progress
    from etl.store import SliceRow

    start = datetime(2026, 1, 1, tzinfo=UTC)
    day = timedelta(days=1)
    slices = [
        SliceRow(1, start, start + day, None, True),
        SliceRow(2, start + day, start + 2 * day, start + day + day / 2, False),
        SliceRow(3, start + 2 * day, start + 4 * day, None, False),
    ]
    progress = backfill_progress(slices)
    assert progress == {
        "slices": 3,
        "slices_done": 1,
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-05T00:00:00Z",
        "share_read": 0.375,  # 1 day + half a day of 4 days
    }
    assert backfill_progress([]) is None


def test_verbose_json_logs_carry_page_and_retry_events(
    tmp_path: Path, sqlite_url: str, two_sims: tuple[SimulatedZendesk, SimulatedZendesk]
) -> None:
    from zendesk_sim import Fault

    prod, _ = two_sims
    prod.inject(Fault("status", status=429, retry_after=1, skip=2))
    config = tmp_path / "c.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{prod.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'[sync]\nworkers = 1\n[database]\nurl = "{sqlite_url}"\nauto_migrate = true\n'
    )
    result = cli(config, "--verbose", "--log-format", "json", "sync")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    pages = [e for e in events if e.get("event") == "page_committed"]
    assert [e["page"] for e in pages] == list(range(1, 8))
    assert sum(e["rows_inserted"] for e in pages) == 700
    assert all(e["account"] == "acme" and e["position"] for e in pages)
    (retry,) = [e for e in events if e.get("event") == "retry"]
    assert retry["wait"] == 1 and retry["rate_limited"] is True and retry["level"] == "warning"
    (finished,) = [e for e in events if e.get("event") == "run_finished"]
    assert finished["rate_limited"] == 1
