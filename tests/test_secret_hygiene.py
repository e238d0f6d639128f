"""Secrets are clean or refused at the door, and no message shows one.

Every source of a secret (inline, ``*_file``, ``*_env``, ``ZENDESK_*``, the OAuth token
answer) is stripped of surrounding whitespace, a common leftover of a file read into a
variable; what still holds a control character is refused in one line (exit 2) naming the
key, never the value. Secret files are read only when regular and small. A failure the code
did not foresee names its type and place, never its arguments (which held the header).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from loopback import Exchange, LoopbackServer
from parts.cli import cli, one_error_line
from parts.configs import quick_config

from etl.common.errors import ExitCode

TOKEN = "SECRET-ibis-77c3a0f1-token"  # what the server accepts, as Bearer
FRAGMENT = "ibis-77c3"
ISSUED = "ISSUED-heron-4b1e93d2"  # the token endpoint's answer
FLAGS: tuple[list[str], ...] = ([], ["--verbose"], ["--verbose", "--log-format", "json"])


def _zendesk(accepted: str, issued: str | None = None) -> LoopbackServer:
    """Answers the token endpoint with ``issued`` and an empty audit page to
    ``Bearer accepted``, 401 to anything else."""

    def respond(exchange: Exchange) -> None:
        if exchange.path.startswith("/oauth/tokens"):
            exchange.send_json({"access_token": issued, "token_type": "bearer"})
        elif exchange.handler.headers.get("Authorization") == f"Bearer {accepted}":
            exchange.send_json({"audit_logs": [], "meta": {"has_more": False}, "links": {}})
        else:
            exchange.send_json({"error": "Couldn't authenticate you"}, status=401)

    return LoopbackServer(respond)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with _zendesk(TOKEN) as zendesk:
        yield zendesk


def _assert_clean(text: str, *secrets: str) -> None:
    for secret in (*secrets, FRAGMENT):
        assert secret not in text
    assert "Traceback" not in text


def _source(kind: str, value: str, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """Config lines and environment giving the OAuth token ``value`` from ``kind``."""
    if kind == "ZENDESK_OAUTH_TOKEN":
        return "", {"ZENDESK_OAUTH_TOKEN": value}
    if kind == "oauth_token_env":
        env = {"AUDIT_TOKEN": value, "ZENDESK_OAUTH_TOKEN": ""}
        return 'oauth_token_env = "AUDIT_TOKEN"\n', env
    if kind == "inline":
        return f"oauth_token = {json.dumps(value)}\n", {"ZENDESK_OAUTH_TOKEN": ""}
    secret = tmp_path / "token"
    secret.write_text(value)
    secret.chmod(0o600)
    return f'oauth_token_file = "{secret}"\n', {"ZENDESK_OAUTH_TOKEN": ""}


SOURCES = ["ZENDESK_OAUTH_TOKEN", "oauth_token_env", "inline", "oauth_token_file"]


@pytest.mark.parametrize("kind", SOURCES)
def test_surrounding_whitespace_is_stripped_from_every_source(
    kind: str, tmp_path: Path, sqlite_url: str, server: LoopbackServer
) -> None:
    """``SECRET\\n`` (a secret file read into a variable) works: it used to end in an
    internal error that printed the header, token and all."""
    extra, env = _source(kind, f" {TOKEN}\r\n", tmp_path)
    config = quick_config(tmp_path, server.url, sqlite_url, extra, "auto_migrate = true\n")
    result = cli(config, "sync", env=env)
    assert result.returncode == 0, result.stderr
    assert server.credentials_seen() == [f"Bearer {TOKEN}"]


@pytest.mark.parametrize("kind", SOURCES)
def test_a_control_character_inside_is_refused_in_one_line(
    kind: str, tmp_path: Path, sqlite_url: str, server: LoopbackServer
) -> None:
    bad = f"SEC\x01RET-{TOKEN}"
    extra, env = _source(kind, bad, tmp_path)
    config = quick_config(tmp_path, server.url, sqlite_url, extra, "auto_migrate = true\n")
    for flags in FLAGS:
        result = cli(config, *flags, "sync", env=env)
        assert result.returncode == ExitCode.CONFIG, result.stderr
        _assert_clean(result.stdout + result.stderr, TOKEN)
        if "json" not in flags:
            line = one_error_line(result)
            assert "control character" in line
            named = {"inline": "oauth_token:", "ZENDESK_OAUTH_TOKEN": "oauth_token (from ZENDESK_"}
            assert f"zendesk.{named.get(kind, kind + ':')}" in line, line
    assert server.seen == []  # refused before any request


def _runs_errors(db_url: str) -> list[str]:
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            query = "SELECT error FROM zendesk_audit_sync_runs"
            return [str(e) for e in conn.execute(sa.text(query)).scalars()]
    finally:
        engine.dispose()


def test_a_token_answer_with_surrounding_whitespace_is_stripped(
    tmp_path: Path, sqlite_url: str
) -> None:
    credentials = 'client_id = "c"\nclient_secret = "client-secret-value"\n'
    with _zendesk(ISSUED, issued=f"\n{ISSUED}\r\n") as zendesk:
        config = quick_config(tmp_path, zendesk.url, sqlite_url, credentials, "auto_migrate = true")
        result = cli(config, "sync", env={"ZENDESK_OAUTH_TOKEN": ""})
        assert result.returncode == 0, result.stderr
        assert zendesk.credentials_seen() == [f"Bearer {ISSUED}"]


def test_a_token_answer_with_a_control_character_is_refused(tmp_path: Path, db_url: str) -> None:
    """The answer's token is a secret too: refused in one line (exit 2), and nowhere in
    the output, the JSON logs or the run history (it used to be in all of them)."""
    credentials = 'client_id = "c"\nclient_secret = "client-secret-value"\n'
    bad = f"{ISSUED}\n{TOKEN}"
    with _zendesk(ISSUED, issued=bad) as zendesk:
        config = quick_config(tmp_path, zendesk.url, db_url, credentials, "auto_migrate = true")
        for flags in FLAGS:
            result = cli(config, *flags, "sync", env={"ZENDESK_OAUTH_TOKEN": ""})
            assert result.returncode == ExitCode.CONFIG, result.stderr
            _assert_clean(result.stdout + result.stderr, ISSUED, TOKEN, "heron")
            assert "control character" in result.stderr
        assert zendesk.credentials_seen() == []  # the bad token was never sent
    errors = _runs_errors(db_url)
    assert errors and all("control character" in error for error in errors), errors
    _assert_clean("\n".join(errors), ISSUED, TOKEN, "heron")


def test_an_unsendable_header_names_no_argument(
    tmp_path: Path, sqlite_url: str, server: LoopbackServer
) -> None:
    """A token that passes the door but cannot travel in a header (not Latin-1) fails in
    one line that names the failure's type, not its arguments (which held the header)."""
    token = f"{TOKEN}-€"
    config = quick_config(tmp_path, server.url, sqlite_url, "", "auto_migrate = true\n")
    for flags in FLAGS:
        result = cli(config, *flags, "sync", env={"ZENDESK_OAUTH_TOKEN": token})
        assert result.returncode == ExitCode.CONFIG, result.stderr
        _assert_clean(result.stdout + result.stderr, token)
        assert "could not be sent" in result.stderr
    errors = _runs_errors(sqlite_url)
    assert errors and "UnicodeEncodeError" in errors[0], errors
    _assert_clean("\n".join(errors), token)


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "token.fifo"
    os.mkfifo(path)
    return str(path)


def _big(tmp_path: Path) -> str:
    path = tmp_path / "token.big"
    path.write_text("x" * (1024 * 1024))
    return str(path)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp_path: "/dev/zero", "not a regular file"),
        (_fifo, "not a regular file"),
        (lambda tmp_path: str(tmp_path), "not a regular file"),
        (_big, "larger than"),
    ],
    ids=["dev-zero", "fifo", "directory", "one-mebibyte"],
)
def test_a_secret_file_must_be_a_small_regular_file(
    tmp_path: Path, sqlite_url: str, make: object, says: str
) -> None:
    """``/dev/zero`` used to end in MemoryError and a FIFO to block start-up forever."""
    assert callable(make)
    extra = f'email = "a@example.com"\napi_token_file = "{make(tmp_path)}"\n'
    config = quick_config(tmp_path, "http://127.0.0.1:9", sqlite_url, extra, "auto_migrate = true")
    try:
        result = cli(config, "sync", env={"ZENDESK_OAUTH_TOKEN": ""}, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("start-up blocked on the secret file")
    assert result.returncode == ExitCode.CONFIG, result.stderr
    line = one_error_line(result)
    assert "api_token_file" in line and says in line, line
