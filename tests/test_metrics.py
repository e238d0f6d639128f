"""The Prometheus text file: exact values, every series from the first run on, valid format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from parts.cli import cli
from prometheus_client.parser import text_string_to_metric_families
from support import recent

from etl.cli import metrics
from etl.common.errors import ExitCode
from etl.storage.store import AccountStatus
from etl.sync.run import RunSummary
from zendesk_sim import SimulatedZendesk, generate_records

NOW = datetime(2026, 12, 4, 21, 0, 0, 250000, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedZendesk]:
    end = recent(30)
    with SimulatedZendesk(generate_records(300, start=end - timedelta(days=1), end=end)) as s:
        yield s


def parse(text: str) -> dict[tuple[str, str], float]:
    """(name, account) -> value, through the Prometheus client's own parser."""
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation
        for sample in family.samples:
            values[(sample.name, sample.labels["account"])] = sample.value
    return values


def status(account: str, **fields: object) -> AccountStatus:
    base: dict[str, object] = dict(
        account=account, watermark=None, rows=0, rejects=0, last_run=None,
        last_success_at=None, last_failure_at=None, last_failure_error=None,
    )  # fmt: skip
    return AccountStatus(**{**base, **fields})  # type: ignore[arg-type]


def test_values_are_exact_integers_and_timestamps_to_the_millisecond() -> None:
    success = datetime(2026, 12, 4, 20, 59, 3, 123000, tzinfo=UTC)
    summary = RunSummary("big", status="success", requests=10_001, inserted=1_234_567, updated=1)
    summary.duration = 3.5
    text = metrics.render(
        [status("big", watermark=NOW - timedelta(seconds=301), rows=12_345_678, rejects=3,
                last_success_at=success)],
        {"big": summary}, NOW,
    )  # fmt: skip
    assert 'zendesk_audit_etl_rows{account="big"} 12345678\n' in text
    assert 'zendesk_audit_etl_last_success_timestamp_seconds{account="big"} 1796417943.123\n' in (
        text
    )
    assert "e+" not in text
    values = parse(text)
    timestamp = values[("zendesk_audit_etl_last_success_timestamp_seconds", "big")]
    assert timestamp == success.timestamp()
    assert values[("zendesk_audit_etl_lag_seconds", "big")] == 301
    assert values[("zendesk_audit_etl_last_run_rows_written", "big")] == 1_234_568
    assert values[("zendesk_audit_etl_last_run_duration_seconds", "big")] == 3.5


def test_export_values_are_exact_too() -> None:
    from etl.export.backlogs import ConsumerStatus

    moved = datetime(2026, 12, 4, 20, 59, 3, 123000, tzinfo=UTC)
    text = metrics.render_export(
        [ConsumerStatus("siem", "big", 12_345_678, 1_500_000, None, moved)], NOW
    )
    assert "e+" not in text
    assert 'zendesk_audit_etl_export_position{consumer="siem",account="big"} 12345678\n' in text
    values = {
        (s.name, s.labels["consumer"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert values[("zendesk_audit_etl_export_backlog_rows", "siem")] == 1_500_000
    assert values[("zendesk_audit_etl_export_last_timestamp_seconds", "siem")] == moved.timestamp()


def test_an_account_that_never_succeeded_has_every_series() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values = parse(metrics.render([status('odd "name"\\')], {}, NOW, {'odd "name"\\': start}))
    names = {name for name, _ in values}
    assert names == {f"zendesk_audit_etl_{name}" for name in metrics.HELP}
    account = 'odd "name"\\'
    assert values[("zendesk_audit_etl_last_success_timestamp_seconds", account)] == 0
    assert values[("zendesk_audit_etl_last_run_success", account)] == 0
    assert values[("zendesk_audit_etl_lag_seconds", account)] == (NOW - start).total_seconds()


def test_a_failed_first_run_writes_a_file_that_makes_the_freshness_alert_fire(
    tmp_path: Path, db_url: str, sim: SimulatedZendesk
) -> None:
    prom = tmp_path / "etl.prom"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[zendesk]\nbase_url = "{sim.url}"\nname = "acme"\n\n'
        f'[database]\nurl = "{db_url}"\nauto_migrate = true\n\n'
        f'[monitoring]\nmetrics_file = "{prom}"\n'
    )
    failed = cli(config, "sync", env={"ZENDESK_OAUTH_TOKEN": "wrong"})
    assert failed.returncode == ExitCode.AUTH, failed.stderr
    values = parse(prom.read_text())
    series = {**metrics.HELP, **metrics.LEDGER_HELP}
    assert {name for name, _ in values} == {f"zendesk_audit_etl_{name}" for name in series}
    assert values[("zendesk_audit_etl_last_success_timestamp_seconds", "acme")] == 0
    assert values[("zendesk_audit_etl_last_run_success", "acme")] == 0

    assert cli(config, "sync").returncode == 0
    values = parse(prom.read_text())
    assert values[("zendesk_audit_etl_rows", "acme")] == len(sim.visible_records())
    assert values[("zendesk_audit_etl_last_run_success", "acme")] == 1
    assert abs(values[("zendesk_audit_etl_last_success_timestamp_seconds", "acme")] -
               datetime.now(UTC).timestamp()) < 600  # fmt: skip
