"""A driver option in ``database.url`` that the driver refuses (a value it cannot read, a
name it does not take, a file that is not there) is a configuration error: exit 2, one
line naming the option, never the URL's password. It was a failure to connect (exit 6)
on PostgreSQL, whose libpq checks most values as it connects, and an internal error
(exit 1) on MariaDB and SQLite, where SQLAlchemy or PyMySQL raise a ``ValueError`` or a
``TypeError``. An option the driver takes still reaches the database."""

from __future__ import annotations

from pathlib import Path

import pytest
from parts.cli import run_cli
from sqlalchemy.engine import make_url

from etl.common.errors import ExitCode

PASSWORD = "s3cret-pw-7"
# backend -> (option, value, a part of the message that names it)
REFUSED = {
    "postgresql": [
        ("sslmode", "bogus", 'invalid sslmode value: "bogus"'),  # libpq, as it connects
        ("target_session_attrs", "zz", "invalid target_session_attrs value"),
        ("keepalives", "x", 'for connection option "keepalives"'),
        ("connect_timeout", "abc", "bad value for connect_timeout"),  # psycopg's
        ("sslmod", "require", 'invalid connection option "sslmod"'),  # before connecting
    ],
    "mysql": [
        ("ssl_mode", "REQUIRED", "PyMySQL takes no option 'ssl_mode' (its TLS options:"),
        ("bogus", "1", "PyMySQL takes no option 'bogus'"),
        ("connect_timeout", "abc", "option 'connect_timeout' has a value"),
        ("ssl_ca", "/nonexistent/ca.pem", "option 'ssl_ca' names no file"),
    ],
    "sqlite": [
        ("timeout", "abc", "option 'timeout' has a value"),
        ("tiemout", "5", "sqlite3 does not take 'tiemout'"),
    ],
}
# an option each driver takes: the run goes on to the database
TAKEN = {
    "postgresql": ("sslmode", "disable"),
    "mysql": ("ssl_disabled", "true"),
    "sqlite": ("timeout", "5"),
}


def _config(tmp_path: Path, db_url: str, option: str, value: str, password: bool = True) -> Path:
    url = make_url(db_url)
    if password and url.get_backend_name() != "sqlite":
        url = url.set(password=PASSWORD)  # shown nowhere (PostgreSQL's test server: trust)
    url = url.update_query_dict({option: value})
    path = tmp_path / "config.toml"
    rendered = url.render_as_string(hide_password=False)
    path.write_text(f'[zendesk]\nsubdomain = "acme"\n[database]\nurl = "{rendered}"\n')
    path.chmod(0o600)
    return path


def _backend(db_url: str) -> str:
    return make_url(db_url).get_backend_name().replace("mariadb", "mysql")


def _refused(tmp_path: Path, db_url: str, option: str, value: str, named: str) -> None:
    result = run_cli("--config", str(_config(tmp_path, db_url, option, value)), "migrate")
    assert result.returncode == ExitCode.CONFIG, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("zendesk-audit-etl: error: database url: "), line
    assert named in line and line.endswith("fix or remove it in database.url's query string")
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.databases("postgresql")
@pytest.mark.parametrize(("option", "value", "named"), REFUSED["postgresql"])
def test_a_refused_postgresql_option_is_a_config_error_naming_it(
    tmp_path: Path, db_url: str, option: str, value: str, named: str
) -> None:
    _refused(tmp_path, db_url, option, value, named)


@pytest.mark.databases("mysql")
@pytest.mark.parametrize(("option", "value", "named"), REFUSED["mysql"])
def test_a_refused_mysql_option_is_a_config_error_naming_it(
    tmp_path: Path, db_url: str, option: str, value: str, named: str
) -> None:
    _refused(tmp_path, db_url, option, value, named)


@pytest.mark.databases("sqlite")
@pytest.mark.parametrize(("option", "value", "named"), REFUSED["sqlite"])
def test_a_refused_sqlite_option_is_a_config_error_naming_it(
    tmp_path: Path, db_url: str, option: str, value: str, named: str
) -> None:
    _refused(tmp_path, db_url, option, value, named)


def test_an_option_the_driver_takes_reaches_the_database(tmp_path: Path, db_url: str) -> None:
    config = _config(tmp_path, db_url, *TAKEN[_backend(db_url)], password=False)
    result = run_cli("--config", str(config), "migrate")
    assert result.returncode == ExitCode.OK, result.stderr
