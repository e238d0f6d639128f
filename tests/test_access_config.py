"""``[sync] streams``: the access log turned on at the top level or per account."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.common.errors import ConfigError
from etl.common.settings import Settings
from etl.config import loader as config

MINIMAL = '[zendesk]\nsubdomain = "acme"\nemail = "a@acme.com"\napi_token = "tok"\n'
ACCOUNTS = (
    '[[accounts]]\nsubdomain = "prod"\noauth_token = "a"\n'
    '[accounts.sync]\nstreams = ["access_logs", "audit_logs"]\n'
    '[[accounts]]\nsubdomain = "test"\noauth_token = "b"\n'
)


def load_text(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return config.load(path, environ={})


def test_the_audit_log_alone_by_default(tmp_path: Path) -> None:
    assert load_text(tmp_path, MINIMAL).accounts[0].sync.streams == ("audit_logs",)


def test_streams_at_the_top_level_and_per_account(tmp_path: Path) -> None:
    top = load_text(tmp_path, MINIMAL + '[sync]\nstreams = ["audit_logs", "access_logs"]\n')
    assert top.accounts[0].sync.streams == ("audit_logs", "access_logs")
    prod, test = load_text(tmp_path, ACCOUNTS).accounts
    assert prod.sync.streams == ("audit_logs", "access_logs")  # the audit log first, always
    assert test.sync.streams == ("audit_logs",)
    alone = load_text(tmp_path, MINIMAL + '[sync]\nstreams = ["access_logs"]\n')
    assert alone.accounts[0].sync.streams == ("access_logs",)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("[]", "sync.streams: must be a non-empty list"),
        ('"access_logs"', "sync.streams: must be a non-empty list"),
        ('["access_log"]', 'sync.streams: unknown stream access_log; known: "audit_logs"'),
        ('["audit_logs", "audit_logs"]', "sync.streams: lists a stream more than once"),
    ],
)
def test_bad_streams_are_refused_naming_the_key(tmp_path: Path, value: str, said: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, MINIMAL + f"[sync]\nstreams = {value}\n")
    assert said in str(err.value)
