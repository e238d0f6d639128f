"""What a newcomer meets on the way in: each message says what is true and what to do.

Each test here failed on the code before it: a wrong or cut-off message, a silent
surprise (``list`` ending a minute ago, a database file made by a read-only command), or a
config mistake reported as an internal error.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from loopback import Exchange, LoopbackServer
from parts.cli import run_cli_in
from support import SIM_OAUTH_TOKEN, recent, wait_until

from etl.cli import report
from etl.cli.main import build_parser
from etl.cli.progress import Estimator, Reading
from etl.common.errors import ExitCode, LockedError
from etl.config.loader import parse
from etl.storage.engine import open_engine
from etl.storage.locking.lock import run_lock
from etl.storage.store import SliceRow
from etl.sync.run import RunSummary
from zendesk_sim import SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    with SimulatedZendesk(generate_records(300, start=end - timedelta(days=2), end=end)) as s:
        yield s


def write_config(tmp_path: Path, zendesk: str, database: str = "") -> Path:
    path = tmp_path / "config.toml"
    db = database or f'url = "sqlite:///{tmp_path / "audit.db"}"'
    path.write_text(f"[zendesk]\n{zendesk}\n\n[database]\n{db}\n")
    path.chmod(0o600)
    return path


def sim_zendesk(url: str, extra: str = "", timeout: str = "2s") -> str:
    return f'base_url = "{url}"\nname = "acme"\nretry_budget = "2s"\ntimeout = "{timeout}"\n{extra}'


def cli(
    config: Path | None, *args: str, env: dict[str, str] | None = None, token: bool = True
) -> subprocess.CompletedProcess[str]:
    """The command in this process (``parts.cli``): what it says is the subject here. Its
    environment is this one without Zendesk's or the units' settings, the simulator's token
    unless ``token`` is False. Tests about the process itself (a signal, stdout as it comes,
    the installed script) start a real one."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONF"))}
    environ.pop("CREDENTIALS_DIRECTORY", None)
    environ.update({"ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN} if token else {})
    environ.update(env or {})
    return run_cli_in([*(["--config", str(config)] if config else []), *args], environ)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line (its continuation lines, indented, belong to it)."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("zendesk-audit-etl")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- the configuration -------------------------------------------------------------------


def test_a_sqlite_url_with_two_slashes_is_a_config_error_that_names_the_fix(
    tmp_path: Path, sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, sim_zendesk(sim.url), 'url = "sqlite://audit.db"')
    result = cli(config, "migrate")
    assert result.returncode == ExitCode.CONFIG
    line = error_line(result)
    assert "internal error" not in line
    assert "sqlite:///audit.db" in line and len(result.stderr.splitlines()) == 1


def test_a_mistyped_key_gets_did_you_mean() -> None:
    data = {"zendesk": {"subdomian": "acme", "oauth_token": "x"}, "databse": {"url": "x"}}
    with pytest.raises(Exception) as err:
        parse(data, environ={}, source="c.toml")
    message = str(err.value)
    assert "zendesk.subdomian: unknown key; did you mean subdomain?" in message
    assert "databse: unknown key; did you mean database?" in message


def test_several_config_problems_come_one_per_line(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, 'subdomian = "acme"\noauth_tokn = "x"\n[sync]\nlag = "bogus"', 'url = "x"'
    )
    result = cli(config, "check")
    assert result.returncode == ExitCode.CONFIG
    head = error_line(result)
    assert head.endswith("problems:"), head
    items = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert len(items) >= 4 and all(item.startswith("- ") for item in items), result.stderr
    assert any(item.startswith("- sync.lag: 'bogus'") for item in items)


def test_credentials_directory_outside_systemd_says_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        'subdomain = "acme"\nclient_id = "c"\n'
        'client_secret_file = "${CREDENTIALS_DIRECTORY}/zendesk_client_secret"',
    )
    result = cli(config, "check", token=False)
    assert result.returncode == ExitCode.CONFIG
    line = error_line(result)
    assert "CREDENTIALS_DIRECTORY" in line and "systemd" in line
    assert "LoadCredential" in line
    # and what the README does by hand, which the message once left out
    assert "export CREDENTIALS_DIRECTORY=/etc/zendesk-audit-etl" in line


def test_a_base_url_ending_in_api_v2_is_not_doubled(tmp_path: Path, sim: SimulatedZendesk) -> None:
    settings = parse(
        {"zendesk": {"base_url": "https://acme.zendesk.com/api/v2/", "name": "acme",
                     "oauth_token": "x"}},
        environ={}, source="c.toml",
    )  # fmt: skip
    assert settings.accounts[0].zendesk.base_url == "https://acme.zendesk.com"
    config = write_config(tmp_path, sim_zendesk(f"{sim.url}/api/v2"))
    assert cli(config, "migrate").returncode == 0
    result = cli(config, "check")
    assert result.returncode == 0, result.stderr


# -- the database ------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "status"])
def test_read_only_commands_create_no_database_file(
    tmp_path: Path, sim: SimulatedZendesk, command: str
) -> None:
    config = write_config(tmp_path, sim_zendesk(sim.url))
    result = cli(config, command)
    assert not (tmp_path / "audit.db").exists()
    assert result.returncode == ExitCode.DATABASE
    assert f"--config {config} migrate" in result.stdout + result.stderr


def test_migrate_to_a_revision_below_the_current_one_refuses(
    tmp_path: Path, sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, sim_zendesk(sim.url))
    assert cli(config, "migrate").returncode == 0
    result = cli(config, "migrate", "--revision", "0001")
    assert result.returncode == ExitCode.CONFIG
    line = error_line(result)
    assert "0001" in line and "lower than" in line and "not supported" in line


def test_a_wait_that_ran_out_does_not_advise_wait(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    try:
        with run_lock(engine, "acme"):
            with pytest.raises(LockedError) as quick, run_lock(engine, "acme"):
                pass
            with (
                pytest.raises(LockedError) as waited,
                run_lock(engine, "acme", wait=0.2, poll_interval=0.05),
            ):
                pass
    finally:
        engine.dispose()
    assert "--wait" in str(quick.value)
    assert "--wait" not in str(waited.value) and "0.2 s" in str(waited.value)


# -- Zendesk -----------------------------------------------------------------------------


def test_a_wrong_oauth_secret_is_named_as_the_likely_cause(
    tmp_path: Path, sim: SimulatedZendesk
) -> None:
    config = write_config(
        tmp_path, sim_zendesk(sim.url, 'client_id = "sim-client"\nclient_secret = "wrong"')
    )
    result = cli(config, "list", "--limit", "1", token=False)
    assert result.returncode == ExitCode.AUTH
    line = error_line(result)
    assert "client_secret" in line
    advice = line.index("check")
    assert "auditlogs:read" in line[advice:]
    # Zendesk's own words come last: if anything is cut, it is not the advice
    assert line.index("client_secret") < line.index("Zendesk said")


def test_connection_refused_and_unknown_host_are_told_apart(tmp_path: Path) -> None:
    with LoopbackServer() as server:
        closed = server.url  # nothing listens there once it is closed
    refused = cli(write_config(tmp_path, sim_zendesk(closed)), "list")
    assert refused.returncode == ExitCode.UPSTREAM
    assert "connection refused" in error_line(refused)
    (tmp_path / "dns").mkdir()
    unknown = write_config(
        tmp_path / "dns",
        'base_url = "https://no-such-host.invalid"\nname = "acme"\nretry_budget = "1s"',
    )
    result = cli(unknown, "list")
    assert result.returncode == ExitCode.UPSTREAM
    line = error_line(result)
    assert "no-such-host.invalid" in line and "not found" in line, line


# -- list --------------------------------------------------------------------------------


def test_list_says_where_it_ends(tmp_path: Path, sim: SimulatedZendesk) -> None:
    config = write_config(tmp_path, sim_zendesk(sim.url))
    result = cli(config, "list", "--limit", "1", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "note: listing records created up to" in result.stderr
    assert "--until" in result.stderr and "lag" in result.stderr
    given = cli(config, "list", "--limit", "1", "--until", "2020-01-01")
    assert "note:" not in given.stderr
    # an end Zendesk would refuse (400) is brought back to now - lag, and said so
    future = cli(config, "list", "--limit", "1", "--until", "2030-01-01")
    assert future.returncode == 0, future.stderr
    assert "note: --until 2030-01-01T00:00:00Z is too recent; listing records" in future.stderr


def test_list_refuses_an_empty_or_future_window_with_the_time_format(
    tmp_path: Path, sim: SimulatedZendesk
) -> None:
    config = write_config(tmp_path, sim_zendesk(sim.url))
    backwards = cli(config, "list", "--since", "2026-12-05", "--until", "2026-12-01")
    assert backwards.returncode == ExitCode.CONFIG
    assert "2026-12-05T00:00:00Z" in error_line(backwards)
    naive = cli(config, "list", "--since", "2026-12-01T10:00")
    assert "2024-01-31T12:00:00Z" in error_line(naive)


def test_list_prints_each_record_as_it_comes(tmp_path: Path) -> None:
    """``list | head -1`` needs the first page only: the second is not awaited."""
    second_asked = threading.Event()
    release = threading.Event()

    def respond(exchange: Exchange) -> None:
        if "after%5D=next" in exchange.path or "after]=next" in exchange.path:
            second_asked.set()
            release.wait(60)
            exchange.send_json({"audit_logs": [], "meta": {"has_more": False}})
            return
        records = [
            {"id": i, "created_at": "2026-01-01T00:00:00Z", "action": "update"} for i in (1, 2)
        ]
        meta = {"has_more": True, "after_cursor": "next"}  # the job continues by the cursor
        exchange.send_json({"audit_logs": records, "meta": meta})

    with LoopbackServer(respond) as server:
        config = write_config(tmp_path, sim_zendesk(server.url, "page_size = 2"))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ZENDESK_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "etl", "--config", str(config), "list", "--limit", "10",
             "--format", "json", "--until", "2026-02-01"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**environ, "ZENDESK_OAUTH_TOKEN": "t"},
        )  # fmt: skip
        try:
            assert process.stdout is not None
            first = process.stdout.readline()  # before the second page is answered
            assert '"id": 1' in first
            assert not release.is_set()
        finally:
            release.set()
            process.wait(60)


def test_list_account_help_does_not_say_repeatable() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["list", "--help"])
    text = out.getvalue()
    options = text[text.index("options:") :]
    account = options[options.index("--account") :].split("\n  -")[0]
    assert "repeatable" not in account and "one" in account


# -- status ------------------------------------------------------------------------------


def test_status_says_the_backfill_share_is_of_time_not_records() -> None:
    start = datetime(2020, 1, 1, tzinfo=UTC)
    slices = [
        SliceRow(1, start, start + timedelta(days=900), None, True),
        SliceRow(2, start + timedelta(days=900), start + timedelta(days=1000), None, False),
    ]
    text = report.status_text([], {}, start, {"acme": slices})  # no accounts: one line
    assert text == "no accounts configured"
    progress = report.backfill_line(slices)
    assert "of its time span" in progress and "not of its records" in progress


# -- signals -----------------------------------------------------------------------------


def test_a_first_ctrl_c_is_not_called_a_second_one(tmp_path: Path) -> None:
    asked = threading.Event()

    def respond(exchange: Exchange) -> None:
        asked.set()
        exchange.closing.wait(60)  # never answers while the test runs

    with LoopbackServer(respond) as server:
        config = write_config(tmp_path, sim_zendesk(server.url, timeout="60s"))
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ZENDESK_")}
        process = subprocess.Popen(
            [sys.executable, "-m", "etl", "--config", str(config), "list", "--until",
             "2026-01-01"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**environ, "ZENDESK_OAUTH_TOKEN": "t"},
        )  # fmt: skip
        try:
            wait_until(asked.is_set, "the request")
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == ExitCode.INTERRUPTED
    assert "second" not in stderr and "stopped by SIGINT" in stderr


# -- the demo ----------------------------------------------------------------------------


def load_demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_demo_prints_commands_that_can_be_pasted_and_what_to_try_next() -> None:
    demo = load_demo()
    printed = shlex.join(demo.command_line("--version"))
    assert "python -m" not in printed and "zendesk-audit-etl" in printed
    # pasted from the checkout, as the demo itself runs it
    result = subprocess.run(shlex.split(printed), cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("zendesk-audit-etl "), result
    after = demo.next_steps()
    assert after.startswith("Try next")
    assert shlex.join(demo.command_line("status")) in after and "docs/QUERIES.md" in after


# -- the test suite itself ---------------------------------------------------------------


@pytest.mark.parametrize("allow_skip", ["", "1"])
def test_a_database_server_that_is_down_fails_in_one_line_or_skips(allow_skip: str) -> None:
    with LoopbackServer() as server:
        port = server.url.rsplit(":", 1)[1]  # closed once the server is
    environ = {
        **os.environ,
        "ETL_TEST_DATABASES": "postgresql",
        "ETL_TEST_POSTGRES": f"postgresql+psycopg://postgres@127.0.0.1:{port}/test",
        "ETL_TEST_ALLOW_SKIP": allow_skip,
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_store.py::test_naive_datetimes_are_refused", "-k", "created_at"],
        capture_output=True, text=True, cwd=ROOT, env=environ, timeout=300,
    )  # fmt: skip
    if allow_skip:
        assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
        return
    assert result.returncode != 0
    assert "ETL_TEST_DATABASES=sqlite" in result.stdout and "ETL_TEST_ALLOW_SKIP=1" in result.stdout
    assert "Traceback" not in result.stdout and "OperationalError" not in result.stdout


def test_a_hint_names_the_program_as_it_can_be_run_again(tmp_path: Path) -> None:
    """Run by its path (a venv in /opt, not on PATH), the hint gives that path."""
    script = Path(sys.executable).parent / "zendesk-audit-etl"
    config = write_config(tmp_path, 'subdomain = "acme"\noauth_token = "x"')
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ZENDESK_")}
    cases = [
        ("/usr/bin:/bin", f"run: {script} --config"),
        (f"{script.parent}:/usr/bin:/bin", "run: zendesk-audit-etl --config"),
    ]
    for path, expected in cases:
        result = subprocess.run(
            [str(script), "--config", str(config), "status"],
            capture_output=True, text=True, cwd=ROOT, env={**environ, "PATH": path},
        )  # fmt: skip
        assert result.returncode == ExitCode.DATABASE
        assert expected in error_line(result), result.stderr


def test_the_progress_share_never_goes_backwards() -> None:
    """A denser stretch of history raises the estimate of what is left, not the done."""
    estimator = Estimator()
    shares = []
    # a sparse stretch, then after a while ten times denser pages
    readings = [(0, 0, 0.0, 1000.0), (1, 10, 10.0, 990.0), (60, 20, 11.0, 989.0)]
    for now, records, read, unread in readings:
        estimate = estimator.add(now, Reading(records=records, read=read, unread=unread))
        if estimate.share is not None:
            shares.append(estimate.share)
    assert len(shares) == 2 and shares == sorted(shares), shares


# -- what the docs and units promise -----------------------------------------------------


def test_the_systemd_units_write_the_summary_line_journalctl_is_read_for() -> None:
    """--quiet drops the INFO summary line; journald is where the README sends you for it."""
    units = sorted((ROOT / "deploy" / "systemd").rglob("*.service")) + sorted(
        (ROOT / "deploy" / "systemd").rglob("*.conf")
    )
    starts = [
        line
        for unit in units
        for line in unit.read_text().splitlines()
        if line.startswith("ExecStart=/")
    ]
    assert starts and not [line for line in starts if "--quiet" in line]


def test_the_export_help_names_the_path_the_units_use() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["export", "--help"])
    example = out.getvalue().split("example:", 1)[1]
    unit = (ROOT / "deploy/systemd/zendesk-audit-etl.service.d/export.conf").read_text()
    path = example.split("--output ", 1)[1].split()[0]
    assert path in unit


def test_lock_files_do_not_pile_up_beside_the_sqlite_file(tmp_path: Path) -> None:
    """One per account and one per export consumer, each gone once let go."""
    engine = open_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        for name in ("acme", "export:siem", "export:archive"):
            with run_lock(engine, name):
                assert len(list(tmp_path.glob("*.lock"))) == 1
                with pytest.raises(LockedError), run_lock(engine, name):  # held while held
                    pass
    finally:
        engine.dispose()
    assert list(tmp_path.glob("*.lock")) == []


def test_the_summary_line_says_why_records_exceed_rows_written() -> None:
    summary = RunSummary(account="acme", status="success")
    summary.records, summary.inserted, summary.updated, summary.rejected = 5118, 5000, 3, 1
    assert "records=5118 inserted=5000 updated=3 rejected=1 unchanged=114 " in summary.line()
    assert summary.fields()["records_unchanged"] == 114


def test_migrate_makes_the_directory_of_a_new_sqlite_file(
    tmp_path: Path, sim: SimulatedZendesk
) -> None:
    database = tmp_path / "var" / "lib" / "zendesk-audit-etl" / "audit.db"
    config = write_config(tmp_path, sim_zendesk(sim.url), f'url = "sqlite:///{database}"')
    status = cli(config, "status")  # only looks: makes nothing
    assert status.returncode == ExitCode.DATABASE and not database.parent.exists()
    result = cli(config, "migrate")
    assert result.returncode == 0, result.stderr
    assert database.is_file() and (database.parent.stat().st_mode & 0o777) == 0o700


def test_the_units_state_the_systemd_version_they_need() -> None:
    for unit in (ROOT / "deploy" / "systemd").glob("*.service"):
        text = unit.read_text()
        if "LoadCredential=" in text:  # systemd 247's
            assert "Needs systemd 247 or later" in text, unit.name
