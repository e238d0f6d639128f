"""The shipped systemd units pass `systemd-analyze verify` and say what the README says."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from docs_corpus import DOCS
from parts.packaging import DEPLOY, units_with_real_binary

from etl.common.settings import Credentials, SyncSettings, ZendeskSettings


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
@pytest.mark.parametrize(
    "units",
    [
        ("zendesk-audit-etl.service", "zendesk-audit-etl.timer"),
        ("zendesk-audit-etl@acme.service", "zendesk-audit-etl@acme.timer"),
        ("zendesk-audit-etl-verify.service", "zendesk-audit-etl-verify.timer"),
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
    # the export drop-in beside each sync service was verified with it (a template's applies
    # to its instances); the verify unit has none
    drop_in = folder / f"{units[0].replace('@acme', '@')}.d" / "export.conf"
    assert drop_in.exists() or units[0] == "zendesk-audit-etl-verify.service"


def test_verification_reads_the_export_drop_in(tmp_path: Path) -> None:
    """So the test above does check the drop-ins: a misspelt key in one is reported."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing")
    folder = units_with_real_binary(tmp_path)
    drop_in = folder / "zendesk-audit-etl.service.d" / "export.conf"
    drop_in.write_text(drop_in.read_text().replace("LogsDirectory=", "LogDirectory="))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(folder / "zendesk-audit-etl.service")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "export.conf" in result.stderr and "LogDirectory" in result.stderr, result.stderr


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
    # a backstop above [sync] max_run_time and a request's retry budget, both by default
    limit = SyncSettings().max_run_time
    assert limit is not None
    budget = timedelta(seconds=ZendeskSettings("https://x", Credentials()).retry_budget)
    assert service["TimeoutStartSec"] == "1h" and limit + budget < timedelta(hours=1)


@pytest.mark.parametrize("name", ["zendesk-audit-etl.timer", "zendesk-audit-etl@.timer"])
def test_timer_runs_every_five_minutes_and_catches_up(name: str) -> None:
    timer = read_unit(name)["Timer"]
    assert timer["OnCalendar"] == "*:0/5"
    assert timer["Persistent"] == "true"
    assert "RandomizedDelaySec" in timer


DROP_INS = {
    "zendesk-audit-etl.service": "zendesk-audit-etl.service.d/export.conf",
    "zendesk-audit-etl@.service": "zendesk-audit-etl@.service.d/export.conf",
}


def exec_starts(path: Path) -> list[list[str]]:
    """A unit file's ExecStart= lines in order, each split as systemd splits it."""
    return [
        shlex.split(line.split("=", 1)[1])
        for line in path.read_text().splitlines()
        if line.startswith("ExecStart=")
    ]


@pytest.mark.parametrize("service", sorted(DROP_INS))
def test_the_export_drop_in_runs_export_after_the_sync(service: str) -> None:
    """A oneshot service runs its ExecStart= lines in turn, each once the last succeeded:
    the unit's sync, then the drop-in's export into the logs directory it adds."""
    (sync,) = exec_starts(DEPLOY / service)
    (export,) = exec_starts(DEPLOY / DROP_INS[service])
    assert read_unit(service)["Service"]["Type"] == "oneshot"
    assert sync[0] == export[0] == VENV_BINARY and "sync" in sync and "export" in export
    drop_in = read_unit(DROP_INS[service])["Service"]
    output = Path(export[export.index("--output") + 1])
    assert output.parent == Path("/var/log") / drop_in["LogsDirectory"]  # writable there
    consumer = export[export.index("--consumer") + 1]
    if "@" in service:  # each account its own consumer and file, like its own sync
        assert export[export.index("--account") + 1] == sync[sync.index("--account") + 1]
        assert consumer.endswith("-%i") and output.name == "%i.jsonl"
    else:  # what README's `sync && export` line runs
        readme = re.search(
            r"^zendesk-audit-etl sync && zendesk-audit-etl (export .*)$", README, re.M
        )
        assert readme and shlex.split(readme[1]) == export[export.index("export") :]
    assert DROP_INS[service] in README


def test_the_drop_in_commands_run_as_written(tmp_path: Path, sqlite_url: str) -> None:
    """The unit's sync then the drop-in's export, as written (the binary, the config and the
    logs directory swapped for this checkout's): every record lands in the file once."""
    from support import SIM_OAUTH_TOKEN, recent

    from zendesk_sim import SimulatedZendesk, generate_records

    end = recent(30)
    records = generate_records(300, start=end - timedelta(days=1), end=end)
    binary = str(Path(sys.executable).parent / "zendesk-audit-etl")
    with SimulatedZendesk(records) as sim:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\nrequests_per_minute = 2500\n'
            f'[database]\nurl = "{sqlite_url}"\nauto_migrate = true\n'
        )
        env = {**os.environ, "ETL_CONFIG": str(config), "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}
        service = "zendesk-audit-etl.service"
        for command in exec_starts(DEPLOY / service) + exec_starts(DEPLOY / DROP_INS[service]):
            command = [binary if w == VENV_BINARY else w for w in command]
            command = [w.replace("/var/log/zendesk-audit-etl", str(tmp_path)) for w in command]
            ran = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
            assert ran.returncode == 0, (command, ran.stderr)
        lines = (tmp_path / "audit.jsonl").read_text().splitlines()
        ids = sorted(json.loads(line)["id"] for line in lines)
        assert ids == sorted(int(r["id"]) for r in sim.visible_records())


def test_no_unit_names_a_file_of_the_config_directory_its_user_cannot_read() -> None:
    """/etc/zendesk-audit-etl is root's, mode 700 (README): a unit's dynamic user reads its
    files only as credentials (%d/NAME), as the verify unit's --public-key once did not."""
    for unit in sorted(DEPLOY.rglob("*.service")) + sorted(DEPLOY.rglob("*.conf")):
        lines = [line for line in unit.read_text().splitlines() if not line.startswith("#")]
        for line in lines:
            if not line.startswith("LoadCredential="):
                assert "/etc/zendesk-audit-etl" not in line, f"{unit.name}: {line}"


def test_template_passes_the_instance_as_account() -> None:
    service = read_unit("zendesk-audit-etl@.service")["Service"]
    assert service["ExecStart"].endswith("sync --account %i")


def test_kubernetes_example_is_valid_and_its_config_parses(tmp_path: Path) -> None:
    import tomllib

    import yaml

    from etl.config import loader as config

    documents = list(
        yaml.safe_load_all((DEPLOY.parent / "kubernetes" / "cronjob.yaml").read_text())
    )
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"Secret", "ConfigMap", "CronJob"}
    cron = kinds["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    # the Secret's keys as the files of its volume, as mounted at /secrets
    for key, value in kinds["Secret"]["stringData"].items():
        (tmp_path / key).write_text(value)
    toml_text = kinds["ConfigMap"]["data"]["config.toml"]
    assert "password" not in toml_text and "REPLACE-ME" not in toml_text
    settings = config.parse(
        tomllib.loads(toml_text.replace("/secrets/", f"{tmp_path}/")),
        environ={}, source="cronjob", require_credentials=True,
    )  # fmt: skip
    assert settings.database.url.startswith("postgresql://etl:REPLACE-ME@")
    assert settings.accounts[0].zendesk.credentials.client_secret
    pod = cron["jobTemplate"]["spec"]["template"]["spec"]
    (sync,) = pod["initContainers"]  # runs to success before the containers start
    (export,) = pod["containers"]
    assert sync["args"][-1] == "sync"
    assert export["args"][-3:] == ["export", "--consumer", "siem"]  # to stdout: no --output
    assert export["image"] == sync["image"] and export["env"] == sync["env"]
    assert export["volumeMounts"] == sync["volumeMounts"]


ROOT = DEPLOY.parent.parent
README = DOCS  # the README and the docs pages it links
VENV_BINARY = "/opt/zendesk-audit-etl/bin/zendesk-audit-etl"
CONFIG_PATH = "/etc/zendesk-audit-etl/config.toml"


def test_no_instruction_installs_a_package_that_is_not_published() -> None:
    texts = [README, (ROOT / "config.example.toml").read_text()]
    texts += [p.read_text() for p in (ROOT / "deploy").rglob("*") if p.is_file()]
    for text in texts:
        assert not re.search(r"pip3? install [^\n]*zendesk-audit-etl\[", text)
        assert not re.search(r"pip3? install [^\n]*['\"]?zendesk-audit-etl['\" ]", text)


def test_every_path_in_the_readme_and_units_is_the_same() -> None:
    assert "python3 -m venv /opt/zendesk-audit-etl" in README
    for name in ("zendesk-audit-etl.service", "zendesk-audit-etl@.service"):
        service = read_unit(name)["Service"]
        assert service["ExecStart"].startswith(VENV_BINARY + " ")
        assert read_unit(DROP_INS[name])["Service"]["ExecStart"].startswith(VENV_BINARY + " ")
        assert f"LoadCredential=config.toml:{CONFIG_PATH}\n" in (DEPLOY / name).read_text()
        assert service["Environment"] == "ETL_CONFIG=%d/config.toml"
    cron = re.search(r"```cron\n(.*?)```", README, re.S)
    assert cron, "README has a cron example"
    lines = [line for line in cron.group(1).splitlines() if not line.startswith("#")]
    assert f"ETL_CONFIG={CONFIG_PATH}" in lines
    job = next(line for line in lines if line.startswith("*/5"))
    user, *command = job.split()[5:]
    assert all(word.startswith(("/", "-")) or word == "sync" for word in command), job
    assert VENV_BINARY in command
    assert f"chown -R {user}: /etc/zendesk-audit-etl" in README  # cron's user reads the config
    assert set(re.findall(r"/etc/zendesk-audit-etl[\w./-]*\.toml", README)) == {CONFIG_PATH}


def test_kubernetes_job_runs_a_built_image_and_can_read_its_secret() -> None:
    import yaml

    documents = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "cronjob.yaml").read_text())
    cron = next(d for d in documents if d["kind"] == "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    for container in pod["initContainers"] + pod["containers"]:
        assert not container["image"].startswith("python:"), "an image with the package"
        assert "pip" not in " ".join(container.get("command", []) + container.get("args", []))
    assert "deploy/container/Dockerfile" in README
    assert (ROOT / "deploy" / "container" / "Dockerfile").exists()
    group = pod["securityContext"]["fsGroup"]
    assert group == pod["securityContext"]["runAsGroup"]
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"]["defaultMode"] & 0o040, "the job's group reads the Secret"


@pytest.mark.packaging
def test_the_built_wheel_installs_into_a_fresh_venv_and_migrates(
    tmp_path: Path, built_wheel: Path
) -> None:
    """`make dist`'s wheel (built once: tests/test_wheel.py), then what README's "Use it on
    your account" does with it."""
    wheel = built_wheel
    venv = tmp_path / "venv"
    # Deadlines against a hang, not timings: on a busy machine pip alone took over 120 s.
    # No bytecode compiled for the dependencies: most of pip's time, none of the subject.
    # The venv is fresh (its packages are only what the wheel's dependency list brings) but
    # pip-less: this venv's pip installs into it (`--python`); ensurepip's pip, unused after,
    # and its own slower start cost 9 of the test's 20 s.
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=600
    )
    python = str(venv / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-compile"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=600)
    binary = venv / "bin" / "zendesk-audit-etl"
    # The commands write the bytecode of what they import into this venv (where the
    # environment says not to, each of them compiled its dependencies anew: 1.5 s apiece).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    assert (
        "migrate"
        in subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, check=True, timeout=60,
            env=env,
        ).stdout
    )  # fmt: skip
    example = tmp_path / "example.toml"  # `init` finds the example inside the wheel
    subprocess.run(
        [str(binary), "init", str(example)], check=True, timeout=60, cwd=tmp_path, env=env
    )
    assert example.read_text() == (ROOT / "config.example.toml").read_text()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nsubdomain = "acme"\n\n[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n'
    )
    migrated = subprocess.run(
        [str(binary), "--config", str(config), "migrate"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "a.db").exists()
    # then the README's first run, in its order, from the installed command
    from support import SIM_OAUTH_TOKEN, recent

    from zendesk_sim import SimulatedZendesk, generate_records

    end = recent(30)
    with SimulatedZendesk(generate_records(30, start=end - timedelta(days=1), end=end)) as sim:
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\n\n'
            f'[database]\nurl = "sqlite:///{tmp_path / "a.db"}"\n'
        )
        env["ZENDESK_OAUTH_TOKEN"] = SIM_OAUTH_TOKEN
        for command in ("check", "sync", "status"):
            ran = subprocess.run(
                [str(binary), "--config", str(config), command],
                capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
            )  # fmt: skip
            assert ran.returncode == 0, (command, ran.stderr)
        assert "rows          30" in ran.stdout


def test_the_dockerfile_agrees_with_the_cronjob() -> None:
    """No docker daemon in the tests: the Dockerfile is checked as text against the
    CronJob that runs its image (user, group, the installed command, the driver)."""
    import yaml

    dockerfile = (ROOT / "deploy" / "container" / "Dockerfile").read_text()
    documents = list(
        yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "cronjob.yaml").read_text())
    )
    cron = next(d for d in documents if d["kind"] == "CronJob")
    context = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"]
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    assert user, "the image runs as a numeric user and group"
    assert (int(user[1]), int(user[2])) == (context["runAsUser"], context["runAsGroup"])
    assert context["fsGroup"] == int(user[2]) and context["runAsNonRoot"]
    assert f"--uid {user[1]} --gid {user[2]}" in dockerfile and f"--gid {user[2]} etl" in dockerfile
    assert f'ENTRYPOINT ["{VENV_BINARY}"]' in dockerfile
    assert "python -m venv /opt/zendesk-audit-etl" in dockerfile
    # the driver installed is the one the example's database needs, and no package index name
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]["config.toml"]
    secret = next(d for d in documents if d["kind"] == "Secret")["stringData"]
    assert "url_file" in config and secret["database_url"].startswith("postgresql://")
    assert '/dist/*.whl)[postgres]"' in dockerfile
    # the build context leaves out what the checkout holds beside the sources
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "dist", ".git"} <= set(ignored)
