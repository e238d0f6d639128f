"""docs/INTEGRITY.md's auditor, step by step as written: the public key by the documented
``openssl`` line, the read-only user by the documented SQL through the database's own
client, the documented config, then ``verify`` as that user with the public key alone."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from docs_corpus import ROOT
from parts.cli import cli
from parts.verify.signed import keygen, synced
from sqlalchemy.engine import make_url

from etl.common.errors import ExitCode
from zendesk_sim import SimulatedZendesk

PAGE = (ROOT / "docs" / "INTEGRITY.md").read_text()
SECTION = PAGE[PAGE.index("**As an auditor.**") :]
SQL = re.findall(r"```sql\n(.*?)```", SECTION, re.S)[:2]
TOML = re.search(r"```toml\n(.*?)```", SECTION, re.S)
OPENSSL = re.search(r"^openssl pkey .*$", SECTION, re.M)
PASSWORD = "choose-a-password"


def admin(url: str, script: str, *, as_user: str | None = None) -> subprocess.CompletedProcess[str]:
    """``script`` through the database's own client, as the test's user or ``as_user``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(parsed.host)]
        command += ["-p", str(parsed.port or 5432), "-U", as_user or str(parsed.username)]
        command += ["-d", str(parsed.database)]
        env = {**os.environ, "PGPASSWORD": PASSWORD}
    else:
        command = ["mariadb", "--batch", "-h", str(parsed.host), "-P", str(parsed.port or 3306)]
        command += ["-u", as_user or str(parsed.username), str(parsed.database)]
        command += [f"--password={PASSWORD}"] if as_user else []
        env = dict(os.environ)
    return subprocess.run(
        command, input=script, capture_output=True, text=True, env=env, timeout=60
    )


def test_the_page_gives_every_step() -> None:
    assert len(SQL) == 2 and TOML is not None and OPENSSL is not None
    assert "CREATE ROLE auditor" in SQL[0] and "CREATE USER 'auditor'" in SQL[1]


@pytest.mark.databases("postgresql", "mysql")
def test_an_auditor_verifies_as_documented(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    assert TOML is not None and OPENSSL is not None
    key, public = keygen(tmp_path, "ledger.key")
    synced(tmp_path, zendesk, db_url, key)
    line = OPENSSL[0].replace("/etc/zendesk-audit-etl/ledger.key", str(key))
    done = subprocess.run(line, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "ledger.pub").read_text() == public.read_text()  # keygen's PEM

    parsed = make_url(db_url)
    postgres = parsed.get_backend_name() == "postgresql"
    name = f"auditor_{uuid.uuid4().hex[:12]}"
    database = str(parsed.database)
    script = SQL[0] if postgres else SQL[1]
    script = script.replace("auditor", name).replace("DATABASE audit ", f"DATABASE {database} ")
    script = script.replace("ON audit.*", f"ON `{database}`.*")
    made = admin(db_url, script)
    try:
        assert made.returncode == 0, made.stderr
        url = parsed.set(username=name, password=PASSWORD).render_as_string(hide_password=False)
        text = re.sub(r'^url = ".*$', f'url = "{url}"', TOML[1], flags=re.M)
        auditor = tmp_path / "auditor.toml"
        auditor.write_text(text)
        auditor.chmod(0o600)
        checked = cli(auditor, "verify", "--public-key", str(tmp_path / "ledger.pub"),
                      "--checkpoints", str(tmp_path / "checkpoints"))  # fmt: skip
        assert checked.returncode == ExitCode.OK, checked.stdout + checked.stderr
        assert ", 0 findings" in checked.stdout and "records verified" in checked.stdout
        # read-only indeed: the user the page makes cannot change a row
        wrote = admin(db_url, "DELETE FROM zendesk_audit_logs;", as_user=name)
        assert wrote.returncode != 0 and "denied" in wrote.stderr.lower(), wrote.stderr
    finally:
        drop = f"DROP OWNED BY {name}; DROP ROLE {name};"
        dropped = admin(db_url, drop if postgres else f"DROP USER '{name}'@'%';")
        assert dropped.returncode == 0, dropped.stderr


def test_the_manifest_checks_by_hand_as_documented(
    tmp_path: Path, db_url: str, zendesk: SimulatedZendesk
) -> None:
    """The SIEM side's check of a signed export manifest, the page's block as written:
    openssl verifies the signature with the public key, sha256sum gives the body's line."""
    key, public = keygen(tmp_path, "ledger.key")
    config = synced(tmp_path, zendesk, db_url, key)
    exported = cli(
        config, "export", "--consumer", "siem", "--output", str(tmp_path / "audit.jsonl")
    )
    assert exported.returncode == 0, exported.stderr
    (tmp_path / "ledger.pub").write_text(public.read_text())
    heading = PAGE.index("tests/test_docs_auditor.py runs it on one")
    block = re.search(r"```sh\n(.*?)```", PAGE[heading:], re.S)
    assert block is not None
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block[1]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    signed, digest = done.stdout.splitlines()
    assert signed == "Signature Verified Successfully"
    body = (tmp_path / "body").read_text()
    assert f"sha256 {digest.split()[0]}\n" in body and "bytes 0-" in body
