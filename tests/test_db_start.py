"""Failures at the start of a run: a bad MySQL charset, a SQLite database locked by another
process. One line, a documented exit code, and the run's summary line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import SIM_OAUTH_TOKEN, audit_record, fresh_store, recent

from etl.common.errors import ConfigError
from etl.storage.engine import for_writing, open_engine
from zendesk_sim import SimulatedZendesk

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "ZENDESK_OAUTH_TOKEN": SIM_OAUTH_TOKEN}


def test_an_unknown_mysql_charset_is_a_config_error(tmp_path: Path) -> None:
    url = "mysql://root@127.0.0.1:3306/test?charset=nonsense"
    with pytest.raises(ConfigError, match="unknown MySQL charset 'nonsense'"):
        open_engine(url)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "http://127.0.0.1:9"\nname = "acme"\n[database]\nurl = "{url}"\n'
    )
    ran = subprocess.run(
        [sys.executable, "-m", "etl", "--config", str(config), "migrate"],
        env=ENV, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.strip().splitlines() == [
        "zendesk-audit-etl: error: unknown MySQL charset 'nonsense' in database url; "
        "leave it out (utf8mb4 is used)"
    ]


def test_a_sqlite_database_locked_at_start_still_ends_with_a_summary_line(
    tmp_path: Path,
) -> None:
    database = tmp_path / "audit.db"
    fresh_store(f"sqlite:///{database}").engine.dispose()
    holder = open_engine(f"sqlite:///{database}")
    records = [audit_record(1000 + i, recent(60 - i)) for i in range(5)]
    with SimulatedZendesk(records) as sim, for_writing(holder).begin():
        config = tmp_path / "config.toml"
        config.write_text(
            f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\n'
            f'[database]\nurl = "sqlite:///{database}?timeout=1"\n'
        )
        ran = subprocess.run(
            [sys.executable, "-m", "etl", "--config", str(config), "sync"],
            env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    holder.dispose()
    assert ran.returncode == 6, ran.stderr
    assert "Traceback" not in ran.stderr
    # The run cannot take its write epoch (etl.storage.locking.fence), so it never starts;
    # it still ends with its summary line (status=failed), as the README promises.
    summaries = [line for line in ran.stderr.splitlines() if "account=acme status=" in line]
    assert len(summaries) == 1 and "status=failed" in summaries[0], ran.stderr
    errors = [line for line in ran.stderr.splitlines() if "error: account acme:" in line]
    assert len(errors) == 1 and "waited over the busy timeout" in errors[0]
    assert "write epoch" in errors[0]
