"""Config: every key validated, every problem named, secrets wrapped from every source."""

from __future__ import annotations

import logging
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from etl.common.errors import ConfigError
from etl.common.secret import Secret
from etl.common.settings import Settings
from etl.config import loader as config

ROOT = Path(__file__).resolve().parent.parent
MINIMAL = '[zendesk]\nsubdomain = "acme"\nemail = "a@acme.com"\napi_token = "tok"\n'


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def load_text(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return config.load(write(tmp_path, text), environ=environ or {})


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    settings = load_text(tmp_path, MINIMAL)
    (account,) = settings.accounts
    assert account.name == "acme"
    assert account.zendesk.base_url == "https://acme.zendesk.com"
    assert account.zendesk.credentials.api_token == Secret("tok")
    assert account.zendesk.requests_per_minute == 400
    assert account.sync.lag == timedelta(minutes=5)
    assert account.sync.overlap == timedelta(minutes=10)
    assert account.sync.start_time is None
    assert settings.database.url == "sqlite:///zendesk_audit_logs.db"


def test_example_config_is_valid_and_documents_every_key() -> None:
    text = (ROOT / "config.example.toml").read_text()
    settings = config.parse(tomllib.loads(text), environ={"ZENDESK_API_TOKEN": "x"}, source="ex")
    assert settings.accounts[0].name == "acme"
    documented = {
        line.lstrip("# ").split("=")[0].strip()
        for line in text.splitlines()
        if "=" in line and not line.startswith("#   ")
    }
    keys = config.ZENDESK_KEYS | config.SYNC_KEYS | config.DATABASE_KEYS
    secret_forms = {k for k in keys if k.endswith(("_file", "_env"))} | set(config.SECRET_KEYS)
    assert keys - secret_forms - {"filters"} - documented == set()
    # each secret is shown in at least one of its forms (inline, _file, _env)
    for secret in config.SECRET_KEYS:
        assert documented & {secret, f"{secret}_file", f"{secret}_env"}, secret


def test_every_problem_is_reported_at_once_naming_its_key(tmp_path: Path) -> None:
    text = (
        '[zendesk]\nsubdomain = "Not A Subdomain"\nbogus = 1\nrequests_per_minute = "fast"\n'
        "timeout = -3\n\n"
        '[sync]\nlag = "30s"\nstart_time = "yesterday"\n\n[sync.filters]\ncolour = "red"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    # one problem a line, under the error line (each line names its key)
    assert all(line.startswith("  - ") for line in message.splitlines()[1:])
    for key in (
        "zendesk.subdomain",
        "zendesk.bogus: unknown key",
        "zendesk.requests_per_minute: must be an integer",
        "zendesk.timeout",
        "sync.lag: must be at least 61 s",
        "sync.start_time",
        "sync.filters.colour",
        "no credentials",
    ):
        assert key in message
    assert str(tmp_path / "config.toml") in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "zendesk: missing"),
        ("[zendesk]\nsubdomain = 'acme'\n", "no credentials"),
        (MINIMAL + "oauth_token = 'x'\n", "several credentials given"),
        ("[zendesk]\nsubdomain = 'acme'\napi_token = 't'\n", "need email"),
        ("[zendesk]\nsubdomain = 'acme'\nclient_id = 'c'\n", "needs both client_id"),
        (MINIMAL + "base_url = 'ftp://x'\n", "not an http(s) URL"),
        (MINIMAL + "base_url = 'http://acme.example.com'\n", "plain http:// is refused"),
        (MINIMAL + "base_url = 'https://u:p@acme.example.com'\n", "must not carry credentials"),
        (MINIMAL + "[database]\nurl = 'nonsense'\n", "not a database URL"),
        (MINIMAL + "[database]\nauto_migrate = 'yes'\n", "must be true or false"),
        (MINIMAL + "[sync]\nlag = -5\n", "must not be negative"),
        (MINIMAL + "[sync]\nstart_time = 2024-01-01T00:00:00\n", "has no UTC offset"),
        (MINIMAL + "[sync.filters]\nsource_id = 5\n", "requires source_type"),
        (MINIMAL + "[sync.filters]\naction = [true]\n", "must be a string, an integer"),
        (MINIMAL + "page_size = 500\n", "between 1 and 100"),
        # "auto" is a string too: not "must be an integer", which hid it
        (MINIMAL + "[sync]\nworkers = 'many'\n", 'workers: must be "auto" or an integer from 1'),
        (MINIMAL + "[sync]\nworkers = 0\n", "sync.workers: must be between 1 and 256"),
        (MINIMAL.replace("[zendesk]", "[[accounts]]") + "[zendesk]\n", "not both"),
    ],
)
def test_bad_values_give_one_line_naming_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found; copy config.example.toml"):
        config.load(tmp_path / "nope.toml", environ={})


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config.toml: not valid TOML: .*line 2"):
        load_text(tmp_path, "[zendesk]\nsubdomain = \n")


def test_secrets_from_environment_file_and_named_variable(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    text = (
        f'[zendesk]\nsubdomain = "acme"\nclient_id = "cid"\nclient_secret_file = "{secret_file}"\n'
    )
    creds = load_text(tmp_path, text).accounts[0].zendesk.credentials
    assert creds.client_secret == Secret("from-file")

    env_default = load_text(
        tmp_path, '[zendesk]\nsubdomain = "acme"\n', {"ZENDESK_OAUTH_TOKEN": "o"}
    )
    assert env_default.accounts[0].zendesk.credentials.oauth_token == Secret("o")

    named = load_text(
        tmp_path,
        '[zendesk]\nsubdomain = "acme"\nemail = "e@x"\napi_token_env = "MY_TOKEN"\n',
        {"MY_TOKEN": "t"},
    )
    assert named.accounts[0].zendesk.credentials.api_token == Secret("t")


def test_unreadable_secret_file_and_unset_variable_are_named(tmp_path: Path) -> None:
    text = (
        '[zendesk]\nsubdomain = "acme"\nclient_id = "c"\n'
        f'client_secret_file = "{tmp_path / "missing"}"\n'
    )
    with pytest.raises(ConfigError, match=r"zendesk.client_secret_file: cannot read .*missing"):
        load_text(tmp_path, text)
    with pytest.raises(ConfigError, match=r"environment variable NOPE is not set"):
        load_text(tmp_path, '[zendesk]\nsubdomain = "a"\noauth_token_env = "NOPE"\n')


@pytest.mark.parametrize(
    "given",
    [
        'client_id = "c"\nclient_secret_file = "{missing}"',
        'email = "a@b.c"\napi_token_file = "{missing}"',
    ],
    ids=["oauth", "api-token"],
)
def test_an_unreadable_secret_is_one_problem_not_also_a_missing_one(
    tmp_path: Path, given: str
) -> None:
    text = '[zendesk]\nsubdomain = "acme"\n' + given.format(missing=tmp_path / "missing") + "\n"
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    assert "1 problem:" in str(err.value) and "cannot read" in str(err.value), str(err.value)
    without_id = text.replace('client_id = "c"\n', "")
    if without_id != text:  # still said at once: the secret alone is not a way in
        with pytest.raises(ConfigError, match=r"(?s)2 problems:.*cannot read.*OAuth needs both"):
            load_text(tmp_path, without_id)


def test_status_and_migrate_do_not_need_credentials(tmp_path: Path) -> None:
    path = write(tmp_path, '[zendesk]\nsubdomain = "acme"\n')
    settings = config.load(path, environ={}, require_credentials=False)
    assert settings.accounts[0].name == "acme"
    with pytest.raises(ConfigError):
        config.load(path, environ={})


def test_only_the_selected_accounts_need_readable_secrets(tmp_path: Path) -> None:
    text = "".join(
        f'[[accounts]]\nsubdomain = "{name}"\noauth_token_file = "{tmp_path / name}"\n'
        for name in ("prod", "sandbox")
    )
    (tmp_path / "sandbox").write_text("sandbox-token")
    path = write(tmp_path, text)
    settings = config.load(path, environ={}, require_credentials=["sandbox"])
    assert settings.accounts[1].zendesk.credentials.oauth_token == Secret("sandbox-token")
    with pytest.raises(ConfigError, match=r"accounts\[0\].oauth_token_file: cannot read"):
        config.load(path, environ={}, require_credentials=["prod"])


def test_secret_never_shows_in_repr_of_settings(tmp_path: Path) -> None:
    settings = load_text(tmp_path, MINIMAL.replace('"tok"', '"s3cr3t-value"'))
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings)


def test_world_readable_file_with_secrets_draws_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, MINIMAL, mode=0o644), environ={})
    assert "chmod 600" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, MINIMAL, mode=0o600), environ={})
    assert caplog.text == ""


def test_several_accounts_with_shared_and_own_sync_settings(tmp_path: Path) -> None:
    text = (
        '[sync]\nlag = "2m"\n\n'
        '[[accounts]]\nsubdomain = "prod"\noauth_token_env = "PROD"\n\n'
        '[[accounts]]\nsubdomain = "sandbox"\nname = "sbx"\noauth_token_env = "SBX"\n'
        '[accounts.sync]\noverlap = "1h"\n[accounts.sync.filters]\naction = "login"\n'
    )
    prod, sbx = load_text(tmp_path, text, {"PROD": "p", "SBX": "s"}).accounts
    assert (prod.name, sbx.name) == ("prod", "sbx")
    assert prod.sync.lag == sbx.sync.lag == timedelta(minutes=2)
    assert sbx.sync.overlap == timedelta(hours=1)
    assert prod.sync.overlap == timedelta(minutes=10)
    assert sbx.sync.filters == {"action": ("login",)}


def test_duplicate_account_names_are_refused(tmp_path: Path) -> None:
    text = "".join(f'[[accounts]]\nsubdomain = "acme"\noauth_token = "t{i}"\n' for i in range(2))
    with pytest.raises(ConfigError, match="appears twice"):
        load_text(tmp_path, text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (300, timedelta(seconds=300)),
        (1.5, timedelta(seconds=1.5)),
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("45", timedelta(seconds=45)),
    ],
)
def test_durations(value: object, expected: timedelta) -> None:
    assert config.parse_duration(value) == expected


@pytest.mark.parametrize("value", ["soon", "", "5x", True, -1, "1h-2m"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        config.parse_duration(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31", datetime(2024, 1, 31, tzinfo=UTC)),
        ("2024-01-31T12:00:00Z", datetime(2024, 1, 31, 12, tzinfo=UTC)),
        ("2024-01-31T14:00:00+02:00", datetime(2024, 1, 31, 12, tzinfo=UTC)),
    ],
)
def test_times_become_aware_utc(value: str, expected: datetime) -> None:
    assert config.parse_time(value) == expected


def test_config_path_resolution_order() -> None:
    assert config.resolve_path("x.toml", {"ETL_CONFIG": "y.toml"}) == Path("x.toml")
    assert config.resolve_path(None, {"ETL_CONFIG": "y.toml"}) == Path("y.toml")
    assert config.resolve_path(None, {}) == Path("config.toml")


# -- identity, filters and key paths (issues 12.6, 12.7, 14.4) ------------------------------

CREDENTIALS = 'email = "a@acme.com"\napi_token = "tok"\n'


def test_an_account_is_never_named_after_base_url(tmp_path: Path) -> None:
    text = '[zendesk]\nbase_url = "http://127.0.0.1:8080"\n' + CREDENTIALS
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    assert "1 problem" in message
    assert "zendesk.name: missing" in message
    assert "\n" not in message
    named = load_text(tmp_path, text.replace("[zendesk]\n", '[zendesk]\nname = "proxy"\n'))
    assert named.accounts[0].name == "proxy"
    by_subdomain = load_text(tmp_path, text.replace("[zendesk]\n", '[zendesk]\nsubdomain = "x"\n'))
    assert by_subdomain.accounts[0].name == "x"


def test_a_name_longer_than_the_column_is_a_config_error(tmp_path: Path) -> None:
    length = config.MAX_NAME_LENGTH
    assert length == 255  # the schema's String(255)
    ok = load_text(tmp_path, MINIMAL + f'name = "{"n" * length}"\n')
    assert len(ok.accounts[0].name) == length
    with pytest.raises(ConfigError, match=r"zendesk\.name: longer than the database column"):
        load_text(tmp_path, MINIMAL + f'name = "{"n" * (length + 1)}"\n')


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ('actor_id = "sixty"', "sync.filters.actor_id: 'sixty' is not an integer"),
        ('source_type = "ticket"\nsource_id = ["1", "x"]', "sync.filters.source_id: 'x'"),
        ('ip_address = "10.0.0.300"', "sync.filters.ip_address: '10.0.0.300' is not an IP"),
        ('action = ""', "sync.filters.action: must not be empty"),
    ],
)
def test_filter_values_are_validated_naming_the_key(
    tmp_path: Path, filters: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL + f"[sync.filters]\n{filters}\n")
    assert expected in str(err.value)


def test_filters_are_canonical_and_an_unknown_action_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = (
        MINIMAL + '[sync.filters]\nactor_id = [12, "007", "-1"]\nip_address = "::FFFF:1.2.3.4"\n'
        'action = ["update", "purge", "create"]\nsource_type = "ticket"\nsource_id = 3\n'
    )
    with caplog.at_level(logging.WARNING, logger="etl.config.loader"):
        filters = load_text(tmp_path, text).accounts[0].sync.filters
    assert filters["actor_id"] == ("-1", "12", "7")
    assert filters["ip_address"] == ("::ffff:102:304",)
    assert filters["action"] == ("create", "purge", "update")
    assert filters["source_id"] == ("3",)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "sync.filters.action: 'purge' is not one of Zendesk's documented" in warnings[0]


def test_each_problem_is_reported_once_at_its_full_path(tmp_path: Path) -> None:
    accounts = (
        '[[accounts]]\nsubdomain = "prod"\noauth_token = "p"\n\n'
        '[[accounts]]\nsubdomain = "sbx"\noauth_token = "s"\n'
        '[accounts.sync]\nlag = "10s"\nbogus = 1\n[accounts.sync.filters]\nactor_id = "x"\n'
    )
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, '[sync]\nlag = "5s"\n\n' + accounts)
    message = str(err.value)
    assert "4 problems" in message
    assert message.count("sync.lag: must be at least 61 s") == 2  # [sync] once, account once
    assert "\n  - sync.lag: must be" in message
    assert "accounts[1].sync.lag: must be at least 61 s" in message
    assert "accounts[1].sync.bogus: unknown key" in message
    assert "accounts[1].sync.filters.actor_id: 'x' is not an integer" in message


ONE_ACCOUNT = '[[accounts]]\nsubdomain = "a"\noauth_token = "t"\n'


@pytest.mark.parametrize(
    "text",
    [MINIMAL + '[sync]\nlag = "soon"\n', ONE_ACCOUNT + '[accounts.sync]\nlag = "soon"\n'],
    ids=["sync", "accounts.sync"],
)
def test_a_lag_that_is_not_a_duration_is_one_problem(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, text)
    message = str(err.value)
    assert "1 problem:" in message
    assert "sync.lag: 'soon' is not a duration" in message
    assert "at least 61 s" not in message  # the same bad value, not a second problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, timedelta(minutes=50)),
        ('"2h"', timedelta(hours=2)),
        ("90", timedelta(seconds=90)),
        ("0", None),
    ],
    ids=["default", "text", "seconds", "zero-is-no-limit"],
)
def test_max_run_time(tmp_path: Path, value: str | None, expected: timedelta | None) -> None:
    text = MINIMAL if value is None else MINIMAL + f"\n[sync]\nmax_run_time = {value}\n"
    (account,) = load_text(tmp_path, text).accounts
    assert account.sync.max_run_time == expected


def test_a_bad_max_run_time_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sync\.max_run_time"):
        load_text(tmp_path, MINIMAL + '\n[sync]\nmax_run_time = "soon"\n')
