"""The database URL (and its password) from a file or the environment, never inline only."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from parts.cli import cli

from etl.common.errors import ConfigError
from etl.config import loader as config

PASSWORD = "db-hunter2-secret"
URL = f"postgresql://etl:{PASSWORD}@db.internal/audit"


def parse(database: dict[str, object], environ: dict[str, str] | None = None) -> str:
    data = {"zendesk": {"subdomain": "acme"}, "database": database}
    settings = config.parse(data, environ=environ or {}, source="t.toml", require_credentials=False)
    return settings.database.url


def test_the_url_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert parse({"url_env": "AUDIT_DB"}, {"AUDIT_DB": URL}) == URL
    secret = tmp_path / "database_url"
    secret.write_text(URL + "\n")
    assert parse({"url_file": str(secret)}) == URL
    # ${CREDENTIALS_DIRECTORY} expands, as for the other secrets (systemd LoadCredential=)
    assert parse({"url_file": "${CREDENTIALS_DIRECTORY}/database_url"},
                 {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == URL  # fmt: skip


@pytest.mark.parametrize(
    ("database", "key", "says"),
    [
        ({"url_env": "AUDIT_DB"}, "database.url_env", "AUDIT_DB is not set"),
        ({"url_file": "/nonexistent/db_url"}, "database.url_file", "cannot read"),
        ({"url": URL, "url_env": "AUDIT_DB"}, "database.url", "give only one"),
        ({"url_env": "BAD"}, "database.url_env", "not a database URL"),
    ],
    ids=["unset-env", "missing-file", "two-ways", "not-a-url"],
)
def test_problems_name_the_key_and_never_the_url(
    database: dict[str, object], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(database, {"BAD": f"etl:{PASSWORD}@nowhere"})
    assert key in str(caught.value) and says in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_unencoded_at_sign_in_the_password_is_named_not_shown(tmp_path: Path) -> None:
    """``postgresql://etl:hunter@2@db/audit``: the driver took ``2@db`` for the host and the
    error showed that tail of the password; now a config problem, exit 2, nothing shown."""
    for url in ("postgresql://etl:dbhunter@2tail@db.internal/audit",
                "mysql://etl:dbhunter@2tail@127.0.0.1:3306/audit?charset=utf8mb4"):  # fmt: skip
        with pytest.raises(ConfigError) as caught:
            parse({"url": url})
        message = str(caught.value)
        assert "database.url: holds '@' more than once: percent-encode" in message, message
        assert "2tail" not in message and "dbhunter" not in message
    assert parse({"url": "postgresql://etl:dbhunter%402tail@db.internal/audit"}).endswith("audit")
    assert parse({"url": "mysql://etl@db/a?init_command=SET%20x%3D'a@b'"}).startswith("mysql")
    path = tmp_path / "config.toml"
    path.write_text('[zendesk]\nsubdomain = "acme"\n[database]\n'
                    'url = "postgresql://etl:dbhunter@2tail@127.0.0.1:1/audit"\n')  # fmt: skip
    path.chmod(0o600)
    result = cli(path, "status")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "2tail" not in result.stderr + result.stdout


@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o640, True), (0o600, False)])
def test_an_inline_password_in_a_readable_file_draws_the_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, warned: bool
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[zendesk]\nsubdomain = "acme"\n[database]\nurl = "{URL}"\n')
    path.chmod(mode)
    with caplog.at_level(logging.WARNING):
        config.load(path, environ={}, require_credentials=False)
    assert ("can be read by other users" in caplog.text) == warned
    assert PASSWORD not in caplog.text


def test_no_warning_for_a_url_without_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[zendesk]\nsubdomain = "acme"\n[database]\nurl = "postgresql://etl@db/a"\n')
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        config.load(path, environ={}, require_credentials=False)
    assert caplog.text == ""


def test_migrate_and_status_with_the_url_from_the_environment(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[zendesk]\nsubdomain = "acme"\n[database]\nurl_env = "AUDIT_DB"\n')
    migrated = cli(path, "migrate", env={"AUDIT_DB": db_url})
    assert migrated.returncode == 0, migrated.stderr
    status = cli(path, "status", "--json", env={"AUDIT_DB": db_url})
    assert status.returncode == 0, status.stderr
