"""The shipped systemd units pass `systemd-analyze verify` and say what the README says."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
INSTALLED_BINARY = "/usr/local/bin/zendesk-audit-etl"


def units_with_real_binary(tmp_path: Path) -> Path:
    """Copies whose ExecStart points at this checkout's console script, which exists."""
    binary = Path(sys.executable).parent / "zendesk-audit-etl"
    assert binary.exists(), "install the package (make install) to get the console script"
    for unit in DEPLOY.iterdir():
        (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED_BINARY, str(binary)))
    # a template is verified through an instance of it
    shutil.copy(
        tmp_path / "zendesk-audit-etl@.service", tmp_path / "zendesk-audit-etl@acme.service"
    )
    shutil.copy(tmp_path / "zendesk-audit-etl@.timer", tmp_path / "zendesk-audit-etl@acme.timer")
    return tmp_path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize(
    "units",
    [
        ("zendesk-audit-etl.service", "zendesk-audit-etl.timer"),
        ("zendesk-audit-etl@acme.service", "zendesk-audit-etl@acme.timer"),
    ],
)
def test_units_verify_without_warnings(tmp_path: Path, units: tuple[str, ...]) -> None:
    folder = units_with_real_binary(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(folder / u) for u in units)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DEPLOY / name)
    return parser


@pytest.mark.parametrize("name", ["zendesk-audit-etl.service", "zendesk-audit-etl@.service"])
def test_service_is_hardened_and_treats_a_held_lock_as_success(name: str) -> None:
    service = read_unit(name)["Service"]
    assert service["Type"] == "oneshot"
    assert service["DynamicUser"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "zendesk-audit-etl"
    assert service["LoadCredential"].startswith("client_secret:")
    assert service["SuccessExitStatus"] == "5"  # ExitCode.LOCKED
    assert "sync" in service["ExecStart"]


@pytest.mark.parametrize("name", ["zendesk-audit-etl.timer", "zendesk-audit-etl@.timer"])
def test_timer_runs_every_five_minutes_and_catches_up(name: str) -> None:
    timer = read_unit(name)["Timer"]
    assert timer["OnCalendar"] == "*:0/5"
    assert timer["Persistent"] == "true"
    assert "RandomizedDelaySec" in timer


def test_template_passes_the_instance_as_account() -> None:
    service = read_unit("zendesk-audit-etl@.service")["Service"]
    assert service["ExecStart"].endswith("sync --account %i")


def test_kubernetes_example_is_valid_and_its_config_parses() -> None:
    import tomllib

    import yaml

    from etl import config

    documents = list(
        yaml.safe_load_all((DEPLOY.parent / "kubernetes" / "cronjob.yaml").read_text())
    )
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"Secret", "ConfigMap", "CronJob"}
    cron = kinds["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    toml_text = kinds["ConfigMap"]["data"]["config.toml"]
    settings = config.parse(
        tomllib.loads(toml_text), environ={}, source="cronjob", require_credentials=False
    )
    assert settings.database.url.startswith("postgresql://")
    container = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "sync" in container["args"][0]
