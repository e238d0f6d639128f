"""The real command line, as cron runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from docs_corpus import DOCS
from parts.cli import cli, one_error_line, subcommands
from parts.configs import quick_config
from support import (
    SIM_OAUTH_TOKEN,
    assert_table_matches,
    count_rows,
    fresh_store,
    recent,
    wait_until,
)

from etl.common.errors import ExitCode
from etl.storage.engine import open_engine
from etl.storage.locking.lock import run_lock
from zendesk_sim import SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent
README = DOCS  # the README and the docs pages it links


@pytest.fixture
def sim(shared_sim: SimulatedZendesk) -> SimulatedZendesk:
    """The module's simulator (1,500 records over three days): these tests only read."""
    return shared_sim


# Against a Zendesk that is down: the first wait (0.5 to 1 s, BACKOFF_INITIAL) always fits
# in it and the second (1 to 2 s) never does, so every run retries once, then gives up.
DOWN_BUDGET = 1.5  # seconds


def cli_process(
    config: Path | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "etl"]
    if config is not None:
        command += ["--config", str(config)]
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_CONFIG"))}
    environ.update({"ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN, **(env or {})})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, env=environ, timeout=timeout, cwd=ROOT
    )


def test_migrate_sync_status_end_to_end(tmp_path: Path, db_url: str, sim: SimulatedZendesk) -> None:
    config = quick_config(tmp_path, sim.url, db_url)
    assert cli(config, "migrate").returncode == 0
    synced = cli_process(config, "sync")  # one real process: `python -m etl` end to end
    assert synced.returncode == 0, synced.stderr
    assert "status=success" in synced.stderr and "inserted=1500" in synced.stderr
    assert_table_matches(db_url, sim.visible_records())

    status = cli(config, "status", "--json")
    assert status.returncode == 0, status.stderr
    (account,) = json.loads(status.stdout)
    assert account["rows"] == 1500
    assert account["recent_runs"][0]["status"] == "success"
    assert 4 * 60 < account["lag_seconds"] < 10 * 60

    text = cli(config, "status")
    assert "rows          1,500" in text.stdout
    fresh = cli(config, "status", "--max-lag", "1h")
    assert fresh.returncode == 0
    stale = cli(config, "status", "--max-lag", "1m")
    assert stale.returncode == ExitCode.STALE
    assert "data older than 1m 0s for: acme" in one_error_line(stale)


def test_sync_refuses_an_unmigrated_database_with_the_command_to_run(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url)
    result = cli(config, "sync")
    assert result.returncode == ExitCode.DATABASE
    assert f"--config {config} migrate" in one_error_line(result)


def test_auto_migrate_creates_the_schema(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    assert cli(config, "sync").returncode == 0
    assert_table_matches(sqlite_url, sim.visible_records())


@pytest.mark.parametrize(
    ("args", "config_text", "code", "expected"),
    [
        (["sync"], None, ExitCode.CONFIG, "config file not found"),
        (["sync"], "[zendesk\n", ExitCode.CONFIG, "not valid TOML"),
        (["sync"], "[zendesk]\nsubdomain='acme'\ncolour=1\n", ExitCode.CONFIG, "zendesk.colour"),
        (["sync", "--wait", "soon"], "", ExitCode.CONFIG, "--wait"),
        (["frobnicate"], "", ExitCode.CONFIG, "invalid choice"),
        (["status", "--max-lag", "x"], "", ExitCode.CONFIG, "--max-lag"),
        (["list", "--filter", "colour=red"], "", ExitCode.CONFIG, "KEY=VALUE"),
        (["list", "--filter", "actor_id=bob"], "", ExitCode.CONFIG, "'bob' is not an integer"),
        (["list", "--filter", "ip_address=1.2.3"], "", ExitCode.CONFIG, "not an IP address"),
        (["sync", "--account", "nope"], "", ExitCode.CONFIG, "unknown account nope"),
        (["sync"], "[database]\nurl='oracle://x'\n", ExitCode.CONFIG, "oracle"),
        (
            ["sync"],
            "[database]\nurl='postgresql://postgres:hunter2@127.0.0.1:1/x'\n",
            ExitCode.DATABASE,
            "127.0.0.1:1",
        ),
    ],
    ids=[
        "missing-file",
        "bad-toml",
        "unknown-key",
        "bad-wait",
        "unknown-command",
        "bad-max-lag",
        "bad-filter",
        "filter-not-an-integer",
        "filter-not-an-ip-address",
        "unknown-account",
        "unknown-dialect",
        "database-down",
    ],
)
def test_bad_input_gives_one_line_and_its_exit_code(
    tmp_path: Path, args: list[str], config_text: str | None, code: int, expected: str
) -> None:
    config = tmp_path / "config.toml"
    if config_text is not None:
        base = '[zendesk]\nsubdomain = "acme"\n' if "[zendesk" not in config_text else ""
        config.write_text(base + config_text)
    result = cli(config, *args)
    assert result.returncode == code, result.stderr
    line = one_error_line(result)
    assert expected in line
    assert "hunter2" not in result.stderr


def test_wrong_credentials_exit_3_without_showing_them(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    result = cli(config, "sync", env={"ZENDESK_OAUTH_TOKEN": "not-the-token-0451"})
    assert result.returncode == ExitCode.AUTH
    assert "401" in one_error_line(result)
    assert "not-the-token-0451" not in result.stderr + result.stdout


def test_zendesk_down_exits_4_after_the_retry_budget(tmp_path: Path, sqlite_url: str) -> None:
    config = quick_config(
        tmp_path,
        "http://127.0.0.1:9",
        sqlite_url,
        database_extra="auto_migrate = true",
        retry_budget=DOWN_BUDGET,
    )
    started = time.monotonic()
    result = cli(config, "sync")
    assert result.returncode == ExitCode.UPSTREAM
    line = one_error_line(result)
    assert "127.0.0.1:9" in line and "gave up after 2 attempts" in line, line  # retried once
    assert time.monotonic() - started < 30


def test_a_held_lock_exits_5_at_once_or_after_waiting(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    engine = open_engine(sqlite_url)
    fresh_store(sqlite_url)
    with run_lock(engine, "acme"):
        result = cli(config, "sync")
        assert result.returncode == ExitCode.LOCKED
        assert "in progress" in one_error_line(result)
        started = time.monotonic()
        waited = cli(config, "sync", "--wait", "1")
        assert waited.returncode == ExitCode.LOCKED
        assert time.monotonic() - started >= 1
    assert cli(config, "sync").returncode == 0
    engine.dispose()


def wait_for_rows(sqlite_url: str, at_least: int) -> None:
    engine = open_engine(sqlite_url)
    try:
        wait_until(lambda: count_rows(engine) >= at_least, f"{at_least} rows committed")
    finally:
        engine.dispose()


def test_sigterm_commits_or_rolls_back_the_page_and_exits_130(
    tmp_path: Path, sqlite_url: str
) -> None:
    end = recent(30)
    records = generate_records(3000, start=end - timedelta(days=1), end=end, seed=9)
    with SimulatedZendesk(records, latency=0.05) as slow:
        config = quick_config(tmp_path, slow.url, sqlite_url, database_extra="auto_migrate=true")
        command = [sys.executable, "-m", "etl", "--config", str(config), "sync"]
        env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        wait_for_rows(sqlite_url, at_least=100)  # mid-run: some pages are committed
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == ExitCode.INTERRUPTED, stderr
        assert "status=interrupted" in stderr
        status = json.loads(cli(config, "status", "--json").stdout)[0]
        assert status["recent_runs"][0]["status"] == "interrupted"
        assert 0 < status["rows"] < 3000
        assert cli(config, "sync").returncode == 0
        assert_table_matches(sqlite_url, slow.visible_records())


def test_list_prints_json_lines_straight_from_the_api(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url)
    records = sim.visible_records()
    result = cli(config, "list", "--limit", "5", "--sort", "asc", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == records[:5]
    newest = cli(config, "list", "--limit", "3", "--filter", "source_type=user")
    users = [r for r in records if r["source_type"] == "user"]
    assert [json.loads(line)["id"] for line in newest.stdout.splitlines()] == [
        r["id"] for r in reversed(users[-3:])
    ]
    table = cli(config, "list", "--limit", "2", "--format", "table")
    assert table.stdout.splitlines()[0].split()[:3] == ["created_at", "id", "action"]
    assert not Path(sqlite_url.removeprefix("sqlite:///")).exists()  # no database touched


def test_list_into_a_pipe_closed_early_is_no_error(tmp_path: Path, sim: SimulatedZendesk) -> None:
    """``list | head -1``: the reader stops after one line; the command stops quietly."""
    config = quick_config(tmp_path, sim.url, f"sqlite:///{tmp_path / 'unused.db'}")
    environ = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
    command = [sys.executable, "-m", "etl", "--config", str(config), "list", "--limit", "1500"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environ, cwd=ROOT
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert json.loads(proc.stdout.readline())["id"]
        proc.stdout.close()  # what head does after its line
        errors = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0
    # no error; the one note says where the listing ends (now - lag)
    assert [line for line in errors.splitlines() if not line.startswith("note: ")] == []


def test_check_reports_database_and_account(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url)
    cli(config, "migrate")
    result = cli(config, "check")
    assert result.returncode == 0, result.stderr
    assert "schema at revision" in result.stdout
    assert "account acme: OK" in result.stdout
    assert "OAuth access token" in result.stdout
    newest = sim.visible_records()[-1]
    assert str(newest["id"]) in result.stdout


def test_help_and_version() -> None:
    assert cli(None, "--help").returncode == 0
    version = cli(None, "--version")
    assert version.stdout.startswith("zendesk-audit-etl ")


def test_status_never_migrates_even_with_auto_migrate(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    result = cli(config, "status")
    assert result.returncode == ExitCode.DATABASE
    assert "migrate" in one_error_line(result)
    assert cli(config, "sync").returncode == 0  # sync does migrate when configured to
    assert cli(config, "status").returncode == 0


def test_the_garbage_collector_is_off_only_while_a_command_starts(
    tmp_path: Path, sqlite_url: str, sim: SimulatedZendesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start-up (imports) runs without the cyclic collector, the run itself with it (what
    the start-up made frozen): a long backfill must never pile up garbage. Whatever
    happens, it is back as it was after. During the run the youngest generation is
    collected less often (``WORK_GEN0``), and its threshold is restored after."""
    import gc

    from etl.cli import gc_freeze
    from etl.cli import main as cli_module
    from etl.sync import job

    seen: list[tuple[bool, bool, int]] = []
    real_run_accounts = job.run_accounts
    threshold = gc.get_threshold()

    def watching(*args: object, **kwargs: object) -> object:
        # the start-up's objects frozen; gen0 collected after WORK_GEN0 allocations
        seen.append((gc.isenabled(), gc.get_freeze_count() > 0, gc.get_threshold()[0]))
        return real_run_accounts(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(job, "run_accounts", watching)
    monkeypatch.setenv("ZENDESK_OAUTH_TOKEN", SIM_OAUTH_TOKEN)
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    assert gc.isenabled()
    assert cli_module.main(["--config", str(config), "--quiet", "sync"]) == 0
    assert seen == [(True, True, max(threshold[0], gc_freeze.WORK_GEN0))]
    assert gc.isenabled() and gc.get_freeze_count() == 0 and gc.get_threshold() == threshold
    assert cli_module.main(["--config", str(tmp_path / "missing.toml"), "sync"]) == ExitCode.CONFIG
    assert gc.isenabled() and gc.get_threshold() == threshold


def test_verify_and_reconcile_walk_with_the_collector_on(
    tmp_path: Path, sqlite_url: str, sim: SimulatedZendesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify (millions of rows) and reconcile (days of pages) are long walks as sync is:
    their work runs with the cyclic collector on and the start-up frozen, never with the
    collector left off for the whole command."""
    import gc

    from etl.cli import main as cli_module
    from etl.integrity import reconcile, verify

    seen: dict[str, tuple[bool, bool]] = {}

    def watching(name: str, real: Any) -> Any:
        def call(*args: object, **kwargs: object) -> object:
            seen[name] = (gc.isenabled(), gc.get_freeze_count() > 0)
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(verify, "verify_account", watching("verify", verify.verify_account))
    monkeypatch.setattr(
        reconcile, "reconcile_account", watching("reconcile", reconcile.reconcile_account)
    )
    monkeypatch.setenv("ZENDESK_OAUTH_TOKEN", SIM_OAUTH_TOKEN)
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    assert cli_module.main(["--config", str(config), "--quiet", "sync"]) == 0
    assert cli_module.main(["--config", str(config), "--quiet", "verify", "--jobs", "1"]) == 0
    since = ["--since", (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")]  # 2 days
    assert cli_module.main(["--config", str(config), "--quiet", "reconcile", *since]) == 0
    assert seen == {"verify": (True, True), "reconcile": (True, True)}
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_sync_with_nothing_new_loads_only_what_it_needs(
    tmp_path: Path, db_url: str, sim: SimulatedZendesk
) -> None:
    """Start-up is most of a run with nothing new: no Alembic (the schema is current), no
    cryptography (no signing key), of SQLAlchemy's dialects only the database's own, no
    sqlite3 but on SQLite, no difflib (a config's typo hints); and one request, the whole
    process counted."""
    config = quick_config(tmp_path, sim.url, db_url, database_extra="auto_migrate = true")
    assert cli(config, "--quiet", "sync").returncode == 0
    sim.clear_log()
    code = (
        "import sys; from etl.cli.main import main; "
        f"code = main(['--config', {str(config)!r}, '--quiet', 'sync']); "
        "IMPORTS = ('alembic', 'cryptography', 'difflib', 'sqlite3'); "
        "print(code, *sorted(m for m in sys.modules if m in IMPORTS or "
        "m.count('.') == 2 and m.startswith('sqlalchemy.dialects.') and '._' not in m))"
    )
    environ = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=ROOT
    )
    kind = db_url.split(":")[0].split("+")[0]
    # PyMySQL imports cryptography itself when it is installed (for its sha256 logins).
    driver = ["cryptography"] if kind == "mysql" else []
    sqlite = ["sqlite3"] if kind == "sqlite" else []
    expected = ["0", *driver, f"sqlalchemy.dialects.{kind}", *sqlite]
    assert done.stdout.split() == expected, done.stderr
    assert len(sim.requests) == 1


# What the command line's module may import: `--version`, `--help`, a mistyped option
# and every command's start pay for it. A command imports its database, HTTP and crypto
# libraries itself, once it knows it needs them (issue 27: start-up is measured).
HEAVY = (
    "alembic", "asyncio", "cryptography", "difflib", "orjson", "psycopg", "pymysql",
    "requests", "sqlalchemy", "sqlite3", "ssl", "tenacity", "urllib3",
)  # fmt: skip


def test_the_command_line_module_imports_no_library_a_command_needs() -> None:
    code = "import sys, etl.cli.main; print(*sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "etl" in loaded
    assert sorted(loaded & set(HEAVY)) == []


# -- small things an operator meets (issue 16) ----------------------------------------------


def test_global_options_work_after_the_command_too(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    command = [sys.executable, "-m", "etl", "sync", "--config", str(config), "-q"]
    env = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # -q after the command: no summary line
    status = cli(None, "status", "--config", str(config), "--log-format", "json", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)[0]["account"] == "acme"
    before = cli(config, "-q", "status")  # given before the command, a later default keeps it
    assert before.returncode == 0 and before.stderr == ""


def test_every_command_has_a_description_and_an_example() -> None:
    for name, parser in subcommands().items():
        text = parser.format_help()
        assert parser.description, f"{name} --help has no description"
        assert re.search(rf"example:\n  zendesk-audit-etl .*\b{name}\b", text), name


def test_an_unknown_revision_is_a_clear_argument_error(tmp_path: Path, sqlite_url: str) -> None:
    config = quick_config(tmp_path, "https://acme.zendesk.com", sqlite_url)
    result = cli(config, "migrate", "--revision", "9999")
    assert result.returncode == ExitCode.CONFIG
    assert "unknown schema revision '9999'" in one_error_line(result)


def test_a_failure_says_its_error_once_short_and_in_json_when_asked(
    tmp_path: Path, sqlite_url: str
) -> None:
    config = quick_config(
        tmp_path,
        "http://127.0.0.1:9",
        sqlite_url,
        database_extra="auto_migrate = true",
        retry_budget=DOWN_BUDGET,
    )
    text = cli(config, "sync")
    assert text.returncode == ExitCode.UPSTREAM
    error = one_error_line(text)
    assert len(error) < 200 and "filter[" not in error, error
    summary = next(line for line in text.stderr.splitlines() if "status=failed" in line)
    assert "connection refused" not in summary  # the error is said once, on its own line

    as_json = cli(config, "--log-format", "json", "sync")
    lines = [json.loads(line) for line in as_json.stderr.splitlines()]  # every line is JSON
    assert lines[-1]["level"] == "error" and lines[-1]["exit_code"] == ExitCode.UPSTREAM
    finished = next(line for line in lines if line.get("event") == "run_finished")
    assert "connection refused" in finished["error"]  # the structured field keeps it


def test_check_fails_when_sync_would_refuse(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url)
    result = cli(config, "check")
    assert result.returncode == ExitCode.DATABASE
    assert "migrate" in one_error_line(result)
    assert "account acme: OK" in result.stdout  # the other checks still ran and said so
    auto = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    result = cli(auto, "check")
    assert result.returncode == 0, result.stderr  # sync would migrate it itself
    assert "sync will upgrade it" in result.stdout


def test_max_lag_not_longer_than_lag_explains_itself(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    config = quick_config(tmp_path, sim.url, sqlite_url, database_extra="auto_migrate = true")
    assert cli(config, "sync").returncode == 0
    result = cli(config, "status", "--max-lag", "1m")
    assert result.returncode == ExitCode.STALE
    assert "configured lag of 5m 0s" in one_error_line(result)
    assert cli(config, "status", "--max-lag", "1h").returncode == 0


def test_init_writes_a_commented_config_that_the_not_found_error_points_at(
    tmp_path: Path,
) -> None:
    path = tmp_path / "etc" / "config.toml"
    path.parent.mkdir()
    missing = cli(path, "status")
    assert f"zendesk-audit-etl init {path}" in one_error_line(missing)
    assert cli(None, "init", str(path)).returncode == 0
    assert path.read_text() == (ROOT / "config.example.toml").read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    again = cli(None, "--config", str(path), "init")
    assert again.returncode == ExitCode.CONFIG and "not overwriting" in one_error_line(again)


def test_the_commands_init_suggests_all_succeed_in_their_order(
    tmp_path: Path, sim: SimulatedZendesk, sqlite_url: str
) -> None:
    """`check` exits 6 until `migrate` has run: init names both, in the README's order."""
    path = tmp_path / "config.toml"
    written = cli(None, "init", str(path))
    assert written.returncode == 0, written.stderr
    suggested = written.stdout.strip().split("then run: ", 1)[1].split(" && ")
    assert [line.split()[-1] for line in suggested] == ["migrate", "check"]
    readme_order = re.findall(r"^/opt/zendesk-audit-etl/bin/zendesk-audit-etl (\w+)", README, re.M)
    assert readme_order[:2] == ["migrate", "check"]
    quick_config(tmp_path, sim.url, sqlite_url)  # what the user fills in, at the same path
    for line in suggested:
        prog, option, config_path, command = line.split()
        assert (prog, option, config_path) == ("zendesk-audit-etl", "--config", str(path))
        ran = cli(path, command)
        assert ran.returncode == 0, (line, ran.stderr)


def test_list_table_has_every_field_aligned_for_wide_characters() -> None:
    from etl.cli.terminal import LIST_COLUMNS, records_table, text_width

    records = [
        {"id": 1, "created_at": "2026-01-01T00:00:00Z", "actor_name": "山田太郎",
         "change_description": "名前を東京から大阪に変更"},
        {"id": 22, "created_at": "2026-01-01T00:00:01Z", "actor_name": "Bob",
         "change_description": "x" * 100},
    ]  # fmt: skip
    header, *rows = records_table(records).splitlines()
    assert header.split() == list(LIST_COLUMNS) and "change_description" in header
    start = header.index("change_description")  # the header is ASCII: columns = characters
    for row, last in zip(rows, ["名前を東京から大阪に変更", "x" * 39 + "…"], strict=True):
        assert row.endswith(last)
        assert text_width(row[: -len(last)]) == start, row


def test_verify_since_names_both_of_its_forms() -> None:
    """``verify --since`` takes an entry number too: its error said only "not a date or
    time", which sent a newcomer away from the entry number the help offers."""
    bad = cli(None, "verify", "--since", "yesterday")
    assert bad.returncode == ExitCode.CONFIG
    assert "'yesterday' is not a ledger entry number, a date or a time; use e.g. 15234, " in (
        one_error_line(bad)
    )


def test_verify_export_needs_no_database_library(tmp_path: Path) -> None:
    """``verify-export`` runs on the SIEM's host with the file, its manifest and the public
    key: of the libraries a command may need, only cryptography (to check the signatures)."""
    from etl.integrity import manifest
    from etl.integrity.keys import generate

    public = generate(tmp_path / "ledger.key")
    (tmp_path / "ledger.pub").write_text(public.pem())
    out = tmp_path / "audit.jsonl"
    out.write_bytes(b'{"id": 1}\n')
    from etl.integrity.keys import parse_signing_key

    key = parse_signing_key((tmp_path / "ledger.key").read_text(), "test")
    text = manifest.manifest("siem", "acme", out, (1, 1), 10, datetime.now(UTC), key)
    manifest.append(out, text)
    code = (
        "import sys; from etl.cli.main import main; "
        f"code = main(['verify-export', {str(out)!r}, '--public-key', "
        f"{str(tmp_path / 'ledger.pub')!r}]); "
        "print(code, *sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *HEAVY], capture_output=True, text=True, cwd=ROOT,
        timeout=120,
    )  # fmt: skip
    assert done.stdout.split()[-2:] == ["0", "cryptography"], done.stdout + done.stderr
