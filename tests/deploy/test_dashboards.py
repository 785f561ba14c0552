"""The shipped Grafana dashboard and Prometheus alert rules: well formed, and every metric they
name is one a gateway exports (a renamed metric would leave a panel empty or an alert silent)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import HOUSE, World, bearer
from tests.deploy.nginx import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "predgate-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bpredgate_[a-z0-9_]+\b")
# The panels the dashboard promises, by a word of their title.
PANELS = (
    "status",
    "latency",
    "model",
    "429",
    "authentication",
    "audit write",
    "audit failures",
    "cache hit",
    "store failures",
)
ALERTED = (
    "predgate_audit_write_failures_total",
    "predgate_requests_total",
    "predgate_ratelimit_store_failures_total",
    "predgate_request_duration_seconds_bucket",
)


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_dashboard_has_a_panel_for_each_concern() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [panel["title"].lower() for panel in dashboard["panels"]]
    for word in PANELS:
        assert any(word in title for title in titles), word
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["type"] == "prometheus"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_alert_rules_are_complete() -> None:
    rules = alert_rules()
    for rule in rules:
        assert set(rule) >= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert re.fullmatch(r"\d+[smh]", rule["for"])
    named = {name for rule in rules for name in METRIC.findall(rule["expr"])}
    assert named >= set(ALERTED)


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_named_is_exported(source: str, client: FlaskClient, world: World) -> None:
    queries = dashboard_queries() if source == "dashboard" else [r["expr"] for r in alert_rules()]
    named = {name for query in queries for name in METRIC.findall(query)}
    assert named
    # A few requests: a prediction, a refused credential, a 404.
    assert client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key)).status_code == 200
    assert client.get("/v1/model", headers=bearer("pgk_" + "z" * 40)).status_code == 401
    assert client.get("/nowhere").status_code == 404
    exposition = client.get("/metrics").get_data(as_text=True)
    exported = {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert named <= exported, sorted(named - exported)
