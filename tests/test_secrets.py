"""Secrets never leak: not in output or logs, the database, the command line or the network.

Each credential kind has a distinctive secret. Every failure path reachable through the
command line (run in this process, with exactly the environment a user's process would
see) runs plain, with ``--verbose`` and with ``--log-format json``; then all of stdout
and stderr and every byte of every file the job wrote (the database with its run
history, rejects and audit tables, its journal and lock files) are searched for every
secret, in every form it travels in (as is, and base64 inside a Basic header). The OAuth
access token the job obtains is a secret too. Credentials go only to ``base_url``: TLS
always verified, plain http only on loopback, redirects never followed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from parts.cli import run_cli_in
from parts.databases import SERVER_URLS
from sqlalchemy.engine import make_url
from support import recent, sim_account, wait_until

from etl.cli import main as etl_cli
from etl.common.errors import ConfigError, ExitCode, RequestRejectedError
from etl.common.secret import Secret
from etl.common.settings import Credentials
from etl.zendesk.client import ZendeskClient
from zendesk_sim import Fault, SimAuth, SimulatedZendesk, generate_records

ROOT = Path(__file__).resolve().parent.parent
EMAIL = "admin@example.com"
CLIENT_ID = "sim-client"
CLIENT_SECRET = "cs-ZEBRA-7f3a9c1e-client-secret"
OAUTH_TOKEN = "ot-OKAPI-52b8d0e4-oauth-token"
API_TOKEN = "at-LEMUR-c91e6a27-api-token"
PASSWORD = "pw-TAPIR-0d4f83b5-password"
DB_PASSWORD = "db-NARWHAL-e6a1b9f2-password"
PASSWORD_VAR = "AUDIT_JOB_ZD_PASSWORD"
ISSUED_PREFIX = "sim-issued-"  # every OAuth access token the simulator hands out

ACCOUNT_AUTH = SimAuth(
    email=EMAIL,
    api_token=API_TOKEN,
    password=PASSWORD,
    oauth_tokens=(OAUTH_TOKEN,),
    client_id=CLIENT_ID,
    client_secret=CLIENT_SECRET,
)
# The same account with other secrets: every one of ours is wrong there.
OTHER_SECRETS = SimAuth(
    email=EMAIL,
    api_token="other-api-token",
    password="other-password",
    oauth_tokens=("other-oauth-token",),
    client_id=CLIENT_ID,
    client_secret="other-client-secret",
)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Every form a secret could leak in.
FORBIDDEN = {
    "client secret": CLIENT_SECRET,
    "oauth token": OAUTH_TOKEN,
    "api token": API_TOKEN,
    "password": PASSWORD,
    "database password": DB_PASSWORD,
    "api token (Basic header)": _b64(f"{EMAIL}/token:{API_TOKEN}"),
    "password (Basic header)": _b64(f"{EMAIL}:{PASSWORD}"),
    "client credentials (Basic header)": _b64(f"{CLIENT_ID}:{CLIENT_SECRET}"),
    "issued OAuth access token": ISSUED_PREFIX,
}
# Fragments: a secret cut or wrapped in a message must not show either.
FRAGMENTS = ("ZEBRA-7f3a", "OKAPI-52b8", "LEMUR-c91e", "TAPIR-0d4f", "NARWHAL-e6a1")
CREDENTIAL_HEADER = re.compile(r"(?i)\b(bearer|basic)\s+(?!\*)[A-Za-z0-9._~+/=-]{8,}")

# Method -> config lines; the secrets come from every kind of source.
METHODS = {
    "client-credentials": f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n',
    "oauth-token": "",  # from ZENDESK_OAUTH_TOKEN
    "api-token": f'email = "{EMAIL}"\napi_token_file = "{{secret_file}}"\n',
    "password": f'email = "{EMAIL}"\npassword_env = "{PASSWORD_VAR}"\n',
}
# Plain output is the INFO-and-above part of --verbose in the same format, so these two
# variants cover all three: text and JSON lines, each with every debug line.
FLAGS = {"verbose": ["--verbose"], "json": ["--verbose", "--log-format", "json"]}


def assert_no_secret(text: str, where: str) -> None:
    for name, secret in FORBIDDEN.items():
        assert secret not in text, f"the {name} appears in {where}"
    for fragment in FRAGMENTS:
        assert fragment not in text, f"a piece of a secret ({fragment}) appears in {where}"
    header = CREDENTIAL_HEADER.search(text)
    assert header is None, f"a credential header appears in {where}: {header.group(0)[:12]}…"


# -- running the real command line ---------------------------------------------------------
@dataclass
class Job:
    """A config and data directory for one scenario; the secrets live outside ``data``."""

    tmp: Path
    method: str
    base_url: str
    db_url: str = ""
    extra: str = ""
    database_extra: str = "auto_migrate = true\n"
    config_text: str | None = None
    outputs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = self.tmp / "data"
        self.data.mkdir(exist_ok=True)
        self.db_url = self.db_url or f"sqlite:///{self.data / 'audit.db'}"
        secrets = self.tmp / "secrets"
        secrets.mkdir(exist_ok=True)
        self.secret_file = secrets / "api_token"
        self.secret_file.write_text(API_TOKEN + "\n")
        self.secret_file.chmod(0o600)

    @property
    def config(self) -> Path:
        path = self.tmp / "config.toml"
        if self.config_text is not None:
            text = self.config_text
        else:
            credentials = METHODS[self.method].format(secret_file=self.secret_file)
            text = (
                f'[zendesk]\nbase_url = "{self.base_url}"\nname = "acme"\n{credentials}'
                f'requests_per_minute = 2500\nretry_budget = "1s"\ntimeout = "2s"\n{self.extra}\n'
                f'[database]\nurl = "{self.db_url}"\n{self.database_extra}'
            )
        path.write_text(text)
        path.chmod(0o600)
        return path

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENDESK_", "ETL_"))}
        env[PASSWORD_VAR] = PASSWORD
        if self.method == "oauth-token":
            env["ZENDESK_OAUTH_TOKEN"] = OAUTH_TOKEN
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "etl", "--config", str(self.config), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The command in this process with exactly the job's environment: what it writes
        is the subject, not the process (about 75 of them cost 26 CPU seconds of
        the file's 27); the process list is searched by a real process below."""
        command = self.command(*args)
        assert_no_secret(" ".join(command), "the command line")
        result = run_cli_in(command[command.index("--config") :], self.environ())
        self.outputs.append(f"$ {' '.join(args)}\n{result.stdout}\n{result.stderr}")
        assert_no_secret(result.stdout, f"stdout of {' '.join(args)}")
        assert_no_secret(result.stderr, f"stderr of {' '.join(args)}")
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def assert_nothing_stored_leaks(self) -> None:
        """Every byte of every file the job wrote, and every column of every table."""
        for path in sorted(self.data.rglob("*")):
            if path.is_file():
                assert_no_secret(path.read_bytes().decode("latin-1"), f"the file {path.name}")
        database = self.data / "audit.db"
        if not database.exists():
            return
        with sqlite3.connect(database) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
            for table in tables:
                if table.startswith("sqlite_") or "_idx" in table or table.startswith("ix_"):
                    continue
                try:
                    rows = conn.execute(f'SELECT * FROM "{table}"').fetchall()
                except sqlite3.OperationalError:  # an index, not a table
                    continue
                assert_no_secret(repr(rows), f"the table {table}")


def expected_error(result: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert result.returncode == code, result.stderr
    if code == ExitCode.OK:
        return
    text = result.stderr
    if says not in text:  # JSON logs escape some characters; the error line does not
        raise AssertionError(f"{says!r} not in stderr:\n{text}")


# -- scenarios ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    code: ExitCode
    says: str
    auth: SimAuth | None = ACCOUNT_AUTH  # None: Zendesk is down (nothing listens)
    faults: tuple[Fault, ...] = ()
    also: tuple[tuple[str, ...], ...] = ()  # other commands, run once with --verbose


DOWN = Scenario(ExitCode.UPSTREAM, "gave up", auth=None)
OUTAGE = Scenario(ExitCode.UPSTREAM, "503", faults=(Fault("status", status=503, times=-1),))
OK = Scenario(
    ExitCode.OK,
    "",
    faults=(Fault("mangle", mangle="no_id", skip=1),),  # one reject, so that table has a row
    also=(("status", "--json"), ("check",), ("list", "--limit", "3")),
)
REFUSED = Scenario(ExitCode.AUTH, "401", auth=OTHER_SECRETS, also=(("check",), ("list",)))
FORBIDDEN_ACCESS = Scenario(ExitCode.AUTH, "Enterprise", auth=replace(ACCOUNT_AUTH, admin=False))

# Success and 401 differ per method (each names its method); the other failures are
# method-independent past the auth object, so one method each covers them.
SCENARIOS = [
    pytest.param(method, scenario, id=f"{method}-{name}")
    for name, scenario, methods in [
        ("success", OK, METHODS),
        ("wrong-credentials-401", REFUSED, METHODS),
        ("forbidden-403", FORBIDDEN_ACCESS, ["password"]),
        ("zendesk-down", DOWN, ["client-credentials"]),  # the token fetch fails first
        ("5xx-until-budget-exhausted", OUTAGE, ["api-token"]),
    ]
    for method in methods
] + [
    pytest.param(
        "client-credentials",
        Scenario(ExitCode.AUTH, "invalid_scope", auth=replace(ACCOUNT_AUTH, scopes=("read",))),
        id="client-credentials-grant-refused-scope",
    ),
    pytest.param(
        "client-credentials",
        Scenario(
            ExitCode.UPSTREAM,
            "OAuth token",
            faults=(Fault("status", status=503, times=-1, path="/oauth/tokens"),),
        ),
        id="client-credentials-token-endpoint-down",
    ),
]


@pytest.fixture(scope="module")
def history() -> Any:
    end = recent(30)
    return generate_records(150, start=end - timedelta(hours=2), end=end, seed=11)


@pytest.mark.parametrize(("method", "scenario"), SCENARIOS)
def test_no_secret_leaks_from_any_outcome(
    tmp_path: Path, history: Any, method: str, scenario: Scenario
) -> None:
    if scenario.auth is None:
        run_scenario(Job(tmp_path, method, "http://127.0.0.1:9"), scenario)
        return
    with SimulatedZendesk(history, auth=scenario.auth) as sim:
        run_scenario(Job(tmp_path, method, sim.url), scenario, sim)


def run_scenario(job: Job, scenario: Scenario, sim: SimulatedZendesk | None = None) -> None:
    for flags in FLAGS.values():
        if sim is not None:
            sim.clear_faults()
            sim.inject(*scenario.faults)
        expected_error(job.run(*flags, "sync"), scenario.code, scenario.says)
    for command in scenario.also:
        code = ExitCode.OK if command[0] == "status" else scenario.code
        expected_error(job.run("--verbose", *command), code, scenario.says)
    job.assert_nothing_stored_leaks()
    if scenario is OK:  # the tables that were searched do hold what they should
        with sqlite3.connect(job.data / "audit.db") as conn:
            assert conn.execute("SELECT count(*) FROM zendesk_audit_rejects").fetchone()[0] == 1
            assert conn.execute("SELECT count(*) FROM zendesk_audit_logs").fetchone()[0] == 149
            runs = conn.execute("SELECT count(*) FROM zendesk_audit_sync_runs").fetchone()[0]
            assert runs == len(FLAGS)


# -- bad configuration and unreachable databases --------------------------------------------
def _server_url_with_password(kind: str, **changes: Any) -> str:
    url = make_url(SERVER_URLS[kind]).set(password=DB_PASSWORD, **changes)
    return url.render_as_string(hide_password=False)


SECRET_LINE = f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"\n'
CONFIG_FAILURES = [
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\n{SECRET_LINE}colour = "blue"\n',
        ExitCode.CONFIG,
        "zendesk.colour",
        id="unknown-key-next-to-a-secret",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret = ["{CLIENT_SECRET}"]\n',
        ExitCode.CONFIG,
        "must be a string",
        id="secret-of-the-wrong-type",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret = "{CLIENT_SECRET}\n',
        ExitCode.CONFIG,
        "not valid TOML",
        id="toml-error-on-the-secret-line",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\n{SECRET_LINE}api_token = "{API_TOKEN}"\n'
        f'email = "{EMAIL}"\npassword = "{PASSWORD}"\n',
        ExitCode.CONFIG,
        "several credentials",
        id="several-methods-at-once",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\n{SECRET_LINE}'
        f'[database]\nurl = "{_server_url_with_password("postgresql", port=1)}"\n',
        ExitCode.DATABASE,
        "127.0.0.1:1",
        id="database-unreachable-with-password",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\n{SECRET_LINE}'
        f'[database]\nurl = "{_server_url_with_password("postgresql", database="no_such_db")}"\n',
        ExitCode.DATABASE,
        "no_such_db",
        id="database-missing-with-password",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\n{SECRET_LINE}'
        f'[database]\nurl = "{_server_url_with_password("mysql")}"\n',
        ExitCode.DATABASE,
        "Access denied",
        id="database-refuses-the-password",
    ),
    pytest.param(
        f'[zendesk]\nsubdomain = "acme"\n{SECRET_LINE}'
        f'[database]\nurl = "postgresql:/postgres:{DB_PASSWORD}@127.0.0.1/x"\n',
        ExitCode.CONFIG,
        "database.url",
        id="malformed-database-url-with-password",
    ),
    pytest.param(
        f'[zendesk]\nbase_url = "htps://admin:{PASSWORD}@acme.zendesk.com"\n{SECRET_LINE}',
        ExitCode.CONFIG,
        "base_url",
        id="base-url-typo-with-user-info",
    ),
    pytest.param(
        f'[zendesk]\nbase_url = "http://acme.zendesk.com"\n{SECRET_LINE}',
        ExitCode.CONFIG,
        "plain http",
        id="plain-http-to-a-remote-host",
    ),
]


@pytest.mark.parametrize(("config_text", "code", "says"), CONFIG_FAILURES)
def test_no_secret_leaks_from_bad_config_or_database(
    tmp_path: Path, history: Any, config_text: str, code: ExitCode, says: str
) -> None:
    with SimulatedZendesk(history, auth=ACCOUNT_AUTH) as sim:
        text = config_text.replace('subdomain = "acme"', f'name = "acme"\nbase_url = "{sim.url}"')
        if "[database]" not in text:
            text += f'[database]\nurl = "sqlite:///{tmp_path / "data" / "audit.db"}"\n'
        job = Job(tmp_path, "client-credentials", sim.url, config_text=text)
        for flags in FLAGS.values():
            expected_error(job.run(*flags, "sync"), code, says)
        if code == ExitCode.DATABASE:  # the commands that need no credentials, too
            for command in ("migrate", "status"):
                expected_error(job.run("--verbose", command), code, says)
        job.assert_nothing_stored_leaks()


# -- the command line never takes a secret ----------------------------------------------------
# Every option that takes a value, per command. A new one must be added here after
# checking that it cannot carry a secret (the process list is public).
GLOBAL = {"--config", "--log-format"}  # accepted before and after the command
VALUE_OPTIONS = {
    "": GLOBAL,
    "sync": {*GLOBAL, "--account", "--wait"},
    "resync": {*GLOBAL, "--account", "--wait", "--since", "--until", "--stream"},
    "migrate": {*GLOBAL, "--revision"},
    "status": {*GLOBAL, "--account", "--max-lag"},
    "check": {*GLOBAL, "--account"},
    "list": {
        *GLOBAL,
        "--account",
        "--since",
        "--until",
        "--filter",
        "--sort",
        "--limit",
        "--format",
        "--stream",
    },
    "init": GLOBAL,
    "export": {
        *GLOBAL,
        "--account",
        "--consumer",
        "--output",
        "--format",
        "--since",
        "--streams",
    },
    "verify": {*GLOBAL, "--account", "--public-key", "--checkpoints", "--since", "--jobs"},
    "verify-export": {*GLOBAL, "--public-key"},
    "keygen": GLOBAL,
    "reconcile": {*GLOBAL, "--account", "--since", "--until"},
}
SECRETISH_OPTION = re.compile(r"(?i)token|secret|passw|credential|auth|key|bearer|login|user")
# A path to a public key names nothing secret: verify and verify-export check signatures with it.
NOT_SECRET = {"--public-key"}


def _value_options(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str]]:
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subparsers.update(action.choices)
        elif action.option_strings and action.nargs != 0:
            for option in action.option_strings:
                yield "", option
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.option_strings and action.nargs != 0:
                for option in action.option_strings:
                    yield name, option


def test_the_command_line_has_no_option_that_takes_a_secret() -> None:
    parser = etl_cli.build_parser()
    found: dict[str, set[str]] = {}
    for command, option in _value_options(parser):
        if option not in NOT_SECRET:
            assert not SECRETISH_OPTION.search(option), f"{command} {option} looks like a secret"
        found.setdefault(command, set()).add(option)
    unknown = {c: opts - VALUE_OPTIONS.get(c, set()) for c, opts in found.items()}
    assert not any(unknown.values()), f"new options that take a value: {unknown}"


def test_a_running_sync_shows_no_secret_in_the_process_list(tmp_path: Path, history: Any) -> None:
    with SimulatedZendesk(history, auth=ACCOUNT_AUTH, latency=0.2) as sim:
        for method in METHODS:
            job = Job(tmp_path, method, sim.url, extra="page_size = 10\n")
            proc = subprocess.Popen(
                job.command("sync"),
                env=job.environ(),
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                wait_until(lambda: sim.requests, "the sync's first request")
                cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ")
                assert_no_secret(cmdline.decode(), f"the process list ({method})")
            finally:
                proc.terminate()
                proc.wait(timeout=60)
            sim.clear_log()


# -- TLS, plain http, redirects -----------------------------------------------------------------
def test_nothing_in_etl_switches_tls_verification_off() -> None:
    pattern = re.compile(
        r"verify\s*=\s*(False|0|None|\"\")|CERT_NONE|check_hostname\s*=\s*False"
        r"|_create_unverified_context|disable_warnings"
    )
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "etl").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not offenders


@pytest.mark.parametrize("verify", [False, None, "", 0], ids=["false", "none", "empty", "zero"])
def test_the_client_refuses_a_session_that_does_not_verify(verify: Any) -> None:
    """requests verifies only for True or a CA bundle path: None, "" and 0 switch it off too."""
    session = requests.Session()
    session.verify = verify
    account = sim_account("https://acme.zendesk.com")
    with pytest.raises(ConfigError, match="TLS"):
        ZendeskClient(account.zendesk, session=session)


def test_a_ca_bundle_path_is_still_accepted() -> None:
    session = requests.Session()
    session.verify = "/etc/ssl/certs/ca-certificates.crt"
    ZendeskClient(sim_account("https://acme.zendesk.com").zendesk, session=session).close()


@pytest.mark.parametrize(
    "base_url",
    [
        "http://acme.zendesk.com",
        "http://10.0.0.1",
        "http://127.0.0.1.nip.io",
        "http://localhost.evil.example",
        "http://0.0.0.0:8080",
        "HTTP://acme.zendesk.com",
    ],
)
def test_plain_http_is_refused_for_a_remote_host(tmp_path: Path, base_url: str) -> None:
    account = sim_account(base_url)
    with pytest.raises(ConfigError, match="plain http"):
        ZendeskClient(account.zendesk)
    from etl.config import loader as config

    path = tmp_path / "config.toml"
    path.write_text(f'[zendesk]\nbase_url = "{base_url}"\noauth_token = "{OAUTH_TOKEN}"\n')
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="plain http") as refused:
        config.load(path, environ={})
    assert_no_secret(str(refused.value), "the config error")


class _Recorder:
    """A loopback HTTP server recording what reaches it; ``redirect_to`` makes it answer 302."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.seen: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
                recorder.seen.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "body": body,
                    }
                )
                if redirect_to is not None:
                    status = 302 if self.command == "GET" else 307
                    self.send_response(status)
                    self.send_header("Location", redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps(
                    {"audit_logs": [], "meta": {"has_more": False}, "access_token": "x"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


CREDENTIALS = {
    "client-credentials": Credentials(client_id=CLIENT_ID, client_secret=Secret(CLIENT_SECRET)),
    "oauth-token": Credentials(oauth_token=Secret(OAUTH_TOKEN)),
    "api-token": Credentials(email=EMAIL, api_token=Secret(API_TOKEN)),
    "password": Credentials(email=EMAIL, password=Secret(PASSWORD)),
}


@pytest.mark.parametrize("method", CREDENTIALS)
def test_a_redirect_to_another_host_is_not_followed(method: str) -> None:
    with _Recorder() as elsewhere, _Recorder(redirect_to=elsewhere.url) as base:
        account = sim_account(base.url, credentials=CREDENTIALS[method])
        with ZendeskClient(account.zendesk) as client, pytest.raises(RequestRejectedError) as err:
            client.get_json("/api/v2/audit_logs", [("page[size]", "1")])
        assert "redirects are not followed" in str(err.value)
        assert err.value.exit_code == ExitCode.CONFIG
        assert_no_secret(str(err.value), "the redirect error")
        assert base.seen, "the request never reached base_url"
        assert elsewhere.seen == [], "a request followed the redirect to another host"


def test_a_redirected_sync_stops_with_exit_2_and_sends_nothing_elsewhere(tmp_path: Path) -> None:
    with _Recorder() as elsewhere, _Recorder(redirect_to=elsewhere.url) as base:
        for method in METHODS:
            job = Job(tmp_path, method, base.url)
            result = job.run("--verbose", "sync")
            expected_error(result, ExitCode.CONFIG, "redirects are not followed")
        assert elsewhere.seen == []
        assert {entry["method"] for entry in base.seen} == {"GET", "POST"}  # POST: token fetch


# -- files the job creates ----------------------------------------------------------------------
def test_the_sqlite_database_and_its_companions_are_private(tmp_path: Path, history: Any) -> None:
    """0600 whatever the umask: the tables hold who did what from which IP address."""
    with SimulatedZendesk(history, auth=ACCOUNT_AUTH) as sim:
        job = Job(tmp_path, "oauth-token", sim.url)
        result = subprocess.run(
            job.command("sync"),
            env=job.environ(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            preexec_fn=lambda: os.umask(0),
        )
        assert result.returncode == 0, result.stderr
    files = sorted(p for p in job.data.iterdir() if p.is_file())
    assert job.data / "audit.db" in files
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in files}
    assert all(mode == "0o600" for mode in modes.values()), modes
