"""The monitoring kit in deploy/monitoring: alert rules that promtool accepts and whose unit
tests pass, every alert tested firing and not firing with a runbook section, and a dashboard
and rules that use only series the job really writes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from parts.cli import cli
from parts.configs import quick_config
from support import recent

from zendesk_sim import SimulatedZendesk, generate_records
from zendesk_sim.access.records import AccessSource

ROOT = Path(__file__).resolve().parent.parent
KIT = ROOT / "deploy" / "monitoring"
RULES = yaml.safe_load((KIT / "prometheus_alerts.yaml").read_text())
ALERTS = [rule for group in RULES["groups"] for rule in group["rules"]]
DASHBOARD = json.loads((KIT / "grafana_dashboard.json").read_text())
MONITORING_DOC = (ROOT / "docs" / "MONITORING.md").read_text()
METRIC = re.compile(r"\bzendesk_audit_etl_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("ETL_TEST_ALLOW_SKIP") == "1":
            pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
        pytest.fail("promtool not installed: apt-get install prometheus (.ci/run does)")
    return found


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = subprocess.run(
        [promtool(), "check", "rules", "prometheus_alerts.yaml"],
        cwd=KIT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    tested = subprocess.run(
        [promtool(), "test", "rules", "prometheus_alerts_test.yaml"],
        cwd=KIT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load((KIT / "prometheus_alerts_test.yaml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    for alert in ALERTS:
        mine = [case for case in cases if case["alertname"] == alert["alert"]]
        assert any(case["exp_alerts"] for case in mine), f"{alert['alert']} never fires"
        assert any(not case["exp_alerts"] for case in mine), f"{alert['alert']} always fires"


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_section() -> None:
    sections = anchors(MONITORING_DOC)
    for alert in ALERTS:
        page, _, anchor = alert["annotations"]["runbook_url"].partition("#")
        assert (ROOT / page).is_file()
        assert anchor in sections, f"{alert['alert']}: no section #{anchor} in {page}"
        assert alert["labels"]["severity"] in {"warning", "critical"}


@pytest.fixture(scope="module")
def written_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The series names a real sync and export write into their metrics files."""
    tmp = tmp_path_factory.mktemp("metrics")
    end = recent(30)
    prom = tmp / "etl.prom"
    access = AccessSource(30, start=end - timedelta(days=1), end=end)
    records = generate_records(50, start=end - timedelta(days=1), end=end)
    with SimulatedZendesk(records, access_records=access) as sim:
        config = quick_config(
            tmp, sim.url, f"sqlite:///{tmp / 'audit.db'}",
            extra='[sync]\nstreams = ["audit_logs", "access_logs"]\n',
            database_extra="auto_migrate = true\n",
        )  # fmt: skip
        config.write_text(config.read_text() + f'\n[monitoring]\nmetrics_file = "{prom}"\n')
        assert cli(config, "sync").returncode == 0
        export = cli(config, "export", "--consumer", "siem", "--output", str(tmp / "out.jsonl"))
        assert export.returncode == 0, export.stderr
    files = [prom, prom.with_name("etl_export.prom")]
    return {name for path in files for name in METRIC.findall(path.read_text())}


def test_the_dashboard_and_the_rules_use_only_series_the_job_writes(
    written_metrics: set[str],
) -> None:
    exprs = [t["expr"] for panel in DASHBOARD["panels"] for t in panel["targets"]]
    exprs += [alert["expr"] for alert in ALERTS]
    exprs.append(DASHBOARD["templating"]["list"][1]["definition"])
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used - written_metrics == set()
    # and the dashboard shows every series the job writes
    shown = {name for panel in DASHBOARD["panels"] for t in panel["targets"]
             for name in METRIC.findall(t["expr"])}  # fmt: skip
    assert written_metrics - shown == set()


def test_the_summary_line_the_page_shows_is_the_one_a_run_prints() -> None:
    """MONITORING.md spells the line out for those who grep logs for it: the same names in
    the same order (it once lacked ``window=``), and the JSON names it gives are the event's."""
    from etl.sync.run import RunSummary

    shown = re.search(r"one summary line \(`(.+?)`, with `(.+?)` after", MONITORING_DOC, re.S)
    assert shown
    printed = RunSummary("acme", stream="access_logs", error="x").line()
    assert re.findall(r"(\w+)=", shown.group(1)) == [
        name for name in re.findall(r"(?<!\S)(\w+)=", printed) if name not in ("stream", "error")
    ]
    assert shown.group(2) + " " in printed and " error=x" in printed
    event = re.search(r"`run_finished` with (.+?); a time", MONITORING_DOC, re.S)
    assert event
    fields = RunSummary("acme").fields()
    for name in re.findall(r"`(\w+)`", event.group(1)):
        assert name in fields, f"MONITORING.md names {name}, which run_finished lacks"
