"""deploy/alertmanager/alertmanager.yml routes every alert the project emits to the right
receiver, checked with Alertmanager's own `amtool` (scripts/tools.sh builds it, at the version
of the compose stack's Alertmanager image).

The alerts are read from the code, not copied by hand: the notifier's alert names and labels
come from `notification_from_record` on one record of each type at each severity its config
allows, and the monitor's own alerts from the Prometheus rules file. Policy: critical (and
error) alerts page someone, the monitor's own outages whoever runs it
(`stream-monitor-oncall`), model problems and every retrain request the ML team (`ml-oncall`);
anything else goes to the default receiver.
"""

from __future__ import annotations

import re
import subprocess
import typing

import pytest
import yaml

from stream_monitor.notify.config import Severity
from stream_monitor.notify.notification import ALERTNAMES, notification_from_record

from ..unit.notify_samples import drift_alert, drift_resolved, retrain_request
from ..unit.test_notify_incidents import _records as incident_records
from .conftest import ROOT, Tools

pytestmark = pytest.mark.deploy

CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
RULES = ROOT / "deploy" / "prometheus" / "stream-monitor-rules.yml"
PAGING = {"critical", "error"}


def _records(severity: str) -> list[tuple[dict[str, typing.Any], dict[str, str]]]:
    """(record, severities config) of every record type the notifier forwards, each at
    ``severity``."""
    alert = drift_alert()
    check = {"type": "deployment_check", "model_id": "churn-model", "model_version": "2",
             "previous_version": "1", "check_id": "c-1", "reasons": ["error rose"]}
    return [
        (alert, {"drift_alert": severity}),
        (drift_resolved(alert, "2026-01-01T01:00:00.000Z"), {"drift_alert": severity}),
        ({**drift_alert(), "type": "data_quality_alert", "signal": "quality:missing:amount"},
         {"data_quality_alert": severity}),
        (retrain_request(), {"retrain_request": severity}),
        ({**check, "verdict": "fail"}, {"deployment_check_fail": severity}),
        ({**check, "verdict": "warn"}, {"deployment_check_warn": severity}),
        (incident_records()[1][0], {"incident": severity}),  # an incident opened
    ]


def notifier_alerts() -> list[dict[str, str]]:
    """Alertmanager labels of every kind of alert the notifier posts, at every severity."""
    severities = set()
    for field in Severity.model_fields.values():
        severities.update(typing.get_args(field.annotation))
    assert severities == {"critical", "error", "warning", "info"}
    out = []
    for severity in sorted(severities):
        for record, config in _records(severity):
            n = notification_from_record(record, config)
            assert n is not None
            out.append(n.labels)
    assert {a["alertname"] for a in out} == set(ALERTNAMES.values()), "a record type is missing"
    return out


def default_notifier_alerts() -> list[dict[str, str]]:
    """The same, at the notifier's default severities."""
    out = []
    for record, _ in _records("warning"):
        n = notification_from_record(record)
        assert n is not None
        out.append(n.labels)
    return out


def rule_alerts() -> list[dict[str, str]]:
    """Labels of the monitor's own alerts (Prometheus rules)."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    out = [{"alertname": r["alert"], **r.get("labels", {})}
           for g in groups for r in g["rules"] if "alert" in r]
    assert len(out) >= 8 and all("severity" in a for a in out)
    return out


def expected_receiver(labels: dict[str, str]) -> str:
    name, severity = labels["alertname"], labels["severity"]
    if name == "RetrainRequested":
        return "ml-oncall"
    if severity not in PAGING:
        return "stream-monitor-default"
    return "stream-monitor-oncall" if name.startswith("StreamMonitor") else "ml-oncall"


def routed(tools: Tools, labels: dict[str, str]) -> list[str]:
    """The receivers Alertmanager's routing tree picks for an alert with these labels."""
    r = subprocess.run([str(tools.amtool), "config", "routes", "test",
                        f"--config.file={CONFIG}", *(f"{k}={v}" for k, v in labels.items())],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().split(",")


def test_amtool_accepts_the_config(tools: Tools) -> None:
    r = subprocess.run([str(tools.amtool), "check-config", str(CONFIG)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_amtool_is_the_version_of_the_compose_alertmanager() -> None:
    tools_sh = (ROOT / "scripts" / "tools.sh").read_text()
    version = re.search(r"^AMTOOL_VERSION=(\S+)$", tools_sh, re.M)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert version and compose["services"]["alertmanager"]["image"] == (
        f"prom/alertmanager:{version[1]}")


@pytest.mark.parametrize("labels", rule_alerts(), ids=lambda a: a["alertname"])
def test_the_monitors_own_alerts_reach_their_receiver(tools: Tools,
                                                      labels: dict[str, str]) -> None:
    assert routed(tools, labels) == [expected_receiver(labels)]


@pytest.mark.parametrize("labels", notifier_alerts(),
                         ids=lambda a: f"{a['alertname']}-{a['severity']}")
def test_the_notifiers_alerts_reach_their_receiver(tools: Tools,
                                                   labels: dict[str, str]) -> None:
    assert routed(tools, labels) == [expected_receiver(labels)]


def test_critical_alerts_page_on_call_and_not_the_empty_default(tools: Tools) -> None:
    """The two cases `amtool config routes test` showed going to the default receiver."""
    (down,) = [a for a in rule_alerts() if a["alertname"] == "StreamMonitorWorkerDown"]
    assert down["severity"] == "critical"
    assert routed(tools, down) == ["stream-monitor-oncall"]
    failed = [a for a in default_notifier_alerts() if a["alertname"] == "ModelDeploymentCheck"
              and a["severity"] == "critical"]
    assert len(failed) == 1, "a failed deployment check is critical by default"
    assert routed(tools, failed[0]) == ["ml-oncall"]
    receivers = {r["name"] for r in yaml.safe_load(CONFIG.read_text())["receivers"]}
    assert {"ml-oncall", "stream-monitor-oncall", "stream-monitor-default"} <= receivers

