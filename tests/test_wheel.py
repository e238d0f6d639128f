"""The wheel holds what production runs: no simulated Zendesk, none of its credentials."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from zendesk_sim import SimAuth

ROOT = Path(__file__).resolve().parent.parent


def _simulator_secrets() -> list[bytes]:
    """The simulator's default credentials, as they would appear in a shipped file."""
    auth = SimAuth()
    values = [auth.api_token, auth.password, auth.client_secret, *(auth.oauth_tokens or ())]
    return [value.encode() for value in values if value]


@pytest.mark.packaging
def test_the_wheel_ships_no_simulator_and_no_default_credentials(built_wheel: Path) -> None:
    """The built wheel: every file name and every file's bytes in it."""
    wheel = built_wheel
    secrets = _simulator_secrets()
    assert b"sim-oauth-token" in secrets  # the list is the simulator's real defaults
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "etl/cli/main.py" in names  # the production package is there
        tops = {name.split("/", 1)[0] for name in names}
        assert tops == {"etl", next(t for t in tops if t.endswith(".dist-info"))}, tops
        assert not [name for name in names if "simulator" in name or "zendesk_sim" in name]
        for name in names:
            data = archive.read(name)
            found = [secret.decode() for secret in secrets if secret in data]
            assert not found, f"{name} holds the simulator's credential {found}"
