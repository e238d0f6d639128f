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
from itertools import pairwise
from pathlib import Path

import pytest
import sqlalchemy as sa
from parts.cli import cli
from support import SIM_OAUTH_TOKEN, assert_table_matches, recent

from etl.cli.progress import CLEAR_TO_END, ProgressBar, Reading, render
from etl.cli.terminal import text_width
from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.schema.logs import audit_logs
from zendesk_sim import Fault, SimAuth, SimulatedZendesk, generate_records

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
    # 700 records: the 7th page is full, so its cursor confirms the end (an empty 8th)
    assert prod_run["pages"] == 8 and prod_run["requests"] == 8
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
    assert journald.stderr.startswith("INFO etl.cli.main: account=acme")


def on_terminal(config: Path, columns: int) -> str:
    """``sync`` with stderr on a pseudo-terminal ``columns`` wide: what it drew."""
    controller, terminal = pty.openpty()
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
    return output.decode()


def drawn_lines(text: str) -> list[str]:
    lines = [line.replace(CLEAR_TO_END, "") for line in re.split(r"[\r\n]+", text)]
    return [line for line in lines if "records" in line and "[" in line]


def terminal_config(tmp_path: Path, url: str, db_url: str, extra: str = "") -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{url}"\nname = "acme"\nrequests_per_minute = 2500\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n{extra}'
    )
    return config


def test_progress_bar_shows_on_a_terminal_only(tmp_path: Path, sqlite_url: str) -> None:
    end = recent(30)
    records = generate_records(3000, start=end - timedelta(days=3), end=end, seed=4)
    with SimulatedZendesk(records, latency=0.02) as sim:
        config = terminal_config(tmp_path, sim.url, sqlite_url)
        columns = 60  # a narrow terminal: a longer line would wrap onto a new one each redraw
        text = on_terminal(config, columns)
        assert "\r" in text and "records" in text and "/s" in text and "left" in text
        drawn = drawn_lines(text)
        assert drawn and all(len(line) < columns for line in drawn), drawn
        assert "100.0%" in drawn[-1]  # a completed run ends its bar at 100%
        # and nothing of it when stderr is not a terminal
        piped = cli(config, "sync")
        assert "\r" not in piped.stderr and "[#" not in piped.stderr


# The parallel run is fetch-bound (0.3 s a page), so that "auto" starts several fetchers.
# One worker needs only that the resumed run's last 7 pages (of 10) outlast the bar's
# MIN_INTERVAL of 0.5 s, so a line with a share is drawn before the 100% (its first, at
# page 3, has no density yet): 0.15 s a page, 1 s, however fast the machine; 0.3 took 11 s.
@pytest.mark.parametrize(
    ("workers", "latency"), [("1", 0.15), ('"auto"', 0.3)], ids=["sequential", "parallel"]
)
def test_a_resumed_sync_starts_its_bar_where_the_first_one_stopped(
    tmp_path: Path, sqlite_url: str, workers: str, latency: float
) -> None:
    """The first run fails after about two thirds of the records; the second one's bar
    counts them as done instead of starting from 0%."""
    end = recent(30)
    records = generate_records(3000, start=end - timedelta(days=3), end=end, seed=5)
    with SimulatedZendesk(records, latency=latency) as sim:
        config = terminal_config(tmp_path, sim.url, sqlite_url, f"[sync]\nworkers = {workers}\n")
        sim.inject(Fault("status", status=401, skip=20, times=1))
        assert cli(config, "sync").returncode == ExitCode.AUTH
        engine = open_engine(sqlite_url)
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(audit_logs)).scalar_one()
        engine.dispose()
        assert 1000 <= stored < 3000
        shares = [
            float(found.group(1)) / 100
            for line in drawn_lines(on_terminal(config, 200))
            if (found := re.search(r"(\d+\.\d)%", line))
        ]
        assert len(shares) >= 2, shares  # a line mid-run, not only the completed 100%
        assert shares and min(shares) >= 0.9 * stored / 3000, shares
        assert shares[-1] == 1.0


class Stream(io.StringIO):
    """What a terminal would receive; ``tty=False`` stands for cron's mail, journald, a pipe."""

    def __init__(self, tty: bool = True) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    @property
    def text(self) -> str:
        return self.getvalue()

    def lines(self) -> list[str]:
        return [line.replace(CLEAR_TO_END, "") for line in self.text.split("\r")[1:]]


DAY = 86400.0


def feed(
    bar: ProgressBar, steps: list[tuple[float, Reading]], position: datetime | None = None
) -> list[str]:
    """Give ``bar`` (on a ``Stream``) a synthetic run: (time, reading) after each page;
    the lines drawn."""
    assert isinstance(bar.stream, Stream)
    now = [0.0]
    bar.clock = lambda: now[0]
    for page, (at, reading) in enumerate(steps, start=1):
        now[0] = at
        bar.update("acme", lambda: reading, position, page)  # noqa: B023
    return bar.stream.text.split("\r")[1:]


def shown_share(line: str) -> float:
    match = re.search(r"(\d+\.\d)%", line)
    assert match, line
    return float(match.group(1)) / 100


def shown_left(line: str) -> float:
    match = re.search(r"~(?:(\d+):)?(\d+):(\d\d) left", line)
    assert match, line
    hours, minutes, secs = (int(g or 0) for g in match.groups())
    return hours * 3600.0 + minutes * 60 + secs


def test_progress_render_reports_share_rate_and_estimate() -> None:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    line = render("acme", 0.4, at, 5000, 500.0, 15.0)
    assert "40.0%" in line
    assert "5,000 records 500/s" in line
    assert "~0:15 left" in line
    assert "?%" in render("acme", None, at, 10, None, None)  # not measurable yet


def test_progress_bar_stays_quiet_for_short_runs() -> None:
    stream = Stream()
    clock = iter(float(i) for i in range(100))
    bar = ProgressBar(stream, clock=lambda: next(clock))
    bar.update("acme", lambda: Reading(100, 0.0, DAY), None, pages=1)
    bar.finish()
    assert stream.text == ""
    for pages in (3, 4):
        bar.update("acme", lambda: Reading(100 * pages, pages * 3600.0, DAY), None, pages)  # noqa: B023
    bar.finish()
    assert stream.text.count("\r") == 2 and stream.text.endswith("\n")


def test_nothing_reaches_a_stream_that_is_not_a_terminal() -> None:
    """Cron's mail and journald: no line, and the database is not even asked."""
    stream = Stream(tty=False)
    asked: list[int] = []

    def reading() -> Reading:
        asked.append(1)
        return Reading(100, 3600.0, DAY)

    bar = ProgressBar(stream, clock=iter(float(i) for i in range(100)).__next__, min_pages=1)
    for page in range(1, 20):
        bar.update("acme", reading, None, page)
    bar.finish(complete=True)
    assert stream.text == "" and asked == []


def test_the_share_is_of_records_where_time_says_otherwise() -> None:
    """A resumed sync: 8,500 records stored before, 1,500 left over the last 10 days of
    created_at. Half-way through those days, time says 50% and records say 92.5%."""
    steps = [(t * 1.0, Reading(150 * t, t * DAY, (10 - t) * DAY, stored=8500)) for t in range(6)]
    lines = feed(ProgressBar(Stream(), min_pages=1, width=lambda: 200), steps)
    assert "?%" in lines[0]  # one reading measures nothing yet
    assert shown_share(lines[-1]) == 0.925  # (8,500 + 750) of 10,000, not 5 of 10 days
    assert "750 records 150/s" in lines[-1] and "~0:05 left" in lines[-1]


def test_the_share_follows_where_the_records_are_dense() -> None:
    """A first run over 10 days of created_at, sparse for 6 days (10 records a day) and
    dense for the last 4 (1,000 a day), read at 100 records a second. After 9 days, time
    says 90%; the records say about 75% (3,060 of ~4,060): the bar must be near that."""
    records, at, steps = 0, 0.0, []
    for day in range(9):
        read = 10 if day < 6 else 1000
        records, at = records + read, at + read / 100
        steps.append((at, Reading(records, (day + 1) * DAY, (9 - day) * DAY)))
    lines = feed(ProgressBar(Stream(), min_pages=1, width=lambda: 200), steps)
    share, truth, by_time = shown_share(lines[-1]), 3060 / 4060, 0.9
    assert share < by_time - 0.03
    assert abs(share - truth) < abs(by_time - truth) / 2


def test_the_estimate_settles_on_a_bursty_steady_run() -> None:
    """100 records a second, but drawn every 0.5 s and committed in 100-record pages
    every second (so every other redraw sees nothing new); 10,000 records over 100 s of
    run and 100 days of created_at."""
    steps = []
    for half in range(0, 200):
        t = half / 2
        records = 100 * int(t)
        steps.append((t, Reading(records, records / 100 * DAY, (100 - records / 100) * DAY)))
    lines = feed(ProgressBar(Stream(), min_pages=1, width=lambda: 200), steps)
    settled = [(t, shown_left(line)) for (t, _), line in zip(steps, lines, strict=True) if t >= 20]
    for t, left in settled:  # after 20 s: within 10% (+ 2 s for rounding and bursts)
        assert abs(left - (100 - t)) <= 0.1 * (100 - t) + 2, (t, left)
    lefts = [left for _, left in settled]
    jumps = [abs(b - a) for a, b in pairwise(lefts)]
    assert max(jumps) <= 1  # counts down with the run (0.5 s a redraw), no jumping about


def test_rate_and_estimate_follow_a_change_of_pace() -> None:
    """Slow for 60 s (10 records/s), then fast (100/s): the rate and the estimate move to
    the new pace instead of staying at the average since the start."""
    steps, records = [], 0
    for t in range(0, 181):
        steps.append((float(t), Reading(records, records * 60.0, (20000 - records) * 60.0)))
        records += 10 if t < 60 else 100
    lines = feed(ProgressBar(Stream(), min_pages=1, width=lambda: 200), steps)
    last = lines[-1]
    rate = int(re.search(r"records ([\d,]+)/s", last).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 95 <= rate <= 100  # the average since the start would be 70
    left_records = 20000 - 12600
    assert abs(shown_left(last) - left_records / 100) <= 0.05 * left_records / 100


def test_a_completed_run_ends_at_100_percent() -> None:
    stream = Stream()
    steps = [(t * 1.0, Reading(100 * t, t * DAY, (20 - t) * DAY)) for t in range(11)]
    feed(ProgressBar(stream, min_pages=1, width=lambda: 200), steps)
    assert shown_share(stream.lines()[-1]) == 0.5
    bar = ProgressBar(stream, min_pages=1, width=lambda: 200)
    feed(bar, steps)
    bar.finish(complete=True)
    assert "100.0%" in stream.lines()[-1] and "~0:00 left" in stream.lines()[-1]
    assert stream.text.endswith("\n")


@pytest.mark.parametrize("columns", [30, 80])
def test_a_redraw_never_wraps_at_any_width(columns: int) -> None:
    stream = Stream()
    now = [0.0]
    bar = ProgressBar(stream, clock=lambda: now[0], min_pages=1, width=lambda: columns)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for second in range(1, 5):
        now[0] = float(second)
        reading = Reading(123_456_789 * second, second * DAY, DAY)
        bar.update("アカウント-long-name", lambda: reading, at, second)  # noqa: B023
    assert len(stream.lines()) == 4
    for shown in stream.lines():
        assert text_width(shown) <= columns - 1


@pytest.mark.parametrize("columns_variable", [None, "0"], ids=["no-COLUMNS", "COLUMNS=0"])
def test_a_terminal_reporting_no_width_gets_the_default_width(
    monkeypatch: pytest.MonkeyPatch, columns_variable: str | None
) -> None:
    """A pseudo-terminal says 0 columns until someone sets its size (serial consoles, some
    container runtimes): the bar is drawn 80 wide, not as empty lines."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    stream = open(terminal, "w", encoding="utf-8")  # noqa: SIM115  # closed below
    if columns_variable is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns_variable)
    monkeypatch.setattr(sys, "__stdout__", stream)  # the fallback asks stdout: 0 too
    now = [0.0]
    bar = ProgressBar(stream, clock=lambda: now[0], min_pages=1)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for second in range(1, 4):
        now[0] = float(second)
        reading = Reading(123_456_789 * second, second * DAY, DAY)
        bar.update("acme-" + "x" * 100, lambda: reading, at, second)  # noqa: B023
    stream.close()
    drawn = b""
    while True:  # a pty hands its output over in pieces; EIO once it is all read
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(controller)
    lines = [line.replace(CLEAR_TO_END, "") for line in drawn.decode().split("\r")[1:]]
    assert len(lines) == 3
    for line in lines:
        # the long account name fills the default 80 columns, less the cursor's
        assert line.startswith("acme-x") and text_width(line) == 79, line


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
    from etl.cli.report import backfill_progress
    from etl.storage.store import SliceRow

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


@pytest.mark.paced  # about 429s / Retry-After: the headers say Zendesk's 700
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
    assert [e["page"] for e in pages] == list(range(1, 9))  # the 8th: the 7th's end, confirmed
    assert sum(e["rows_inserted"] for e in pages) == 700
    assert all(e["account"] == "acme" and e["position"] for e in pages)
    (retry,) = [e for e in events if e.get("event") == "retry"]
    assert retry["wait"] == 1 and retry["rate_limited"] is True and retry["level"] == "warning"
    (finished,) = [e for e in events if e.get("event") == "run_finished"]
    assert finished["rate_limited"] == 1


def test_an_estimate_given_by_the_plan_wins_and_an_unknown_one_shows_unknown() -> None:
    """A parallel backfill passes the records left (its slices' densities) or, before
    each slice has one, nothing: "?" rather than a guess from this run's density."""
    unknown = [
        (float(t), Reading(100 * t, t * DAY, DAY, 0, None, by_density=False)) for t in range(3)
    ]
    lines = feed(ProgressBar(Stream(), min_pages=1, width=lambda: 200), unknown)
    assert all("?%" in line for line in lines)
    given = [
        (float(t), Reading(100 * t, t * DAY, 9 * DAY, 1000, 200.0 * (9 - t), False))
        for t in range(9)
    ]
    lines = feed(ProgressBar(Stream(), min_pages=1, width=lambda: 200), given)
    assert shown_share(lines[-1]) == 0.9  # (1,000 + 800) of 2,000, not what 9 days say
