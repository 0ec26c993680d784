"""deploy/: the Grafana dashboard and the Prometheus alerting rules query what /metrics serves,
and the rules pass promtool (its checks and the unit tests in alerts_test.yml)."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

DEPLOY = Path(__file__).parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "callwatch.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b(?:callwatch|process)_[a-z_]+\b")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",)}


def served(text: str) -> set[str]:
    """The names of the series /metrics serves, histograms' and counters' suffixes included."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in SUFFIXES.get(kind, ("",))}
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_the_dashboard_and_the_rules_query_only_metrics_that_exist(client: TestClient) -> None:
    exposed = served(client.get("/metrics").text)

    queried = {
        name for expr in dashboard_queries() + rule_queries() for name in METRIC.findall(expr)
    }

    assert queried - exposed == set()
    # Every panel the issue asks for is there (one query each at least).
    assert {
        "callwatch_webhooks_total",
        "callwatch_inbox_pending",
        "callwatch_assembly_latency_seconds_bucket",
        "callwatch_deliveries_outstanding",
        "callwatch_recent_agent_calls",
        "callwatch_recent_agent_turn_latency_seconds_bucket",
    } <= queried


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (.ci/run installs it)"
)
@pytest.mark.parametrize(
    "check", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts_test.yml"]]
)
def test_the_alerting_rules_pass_promtool(check: list[str]) -> None:
    done = subprocess.run(
        ["promtool", *check], cwd=RULES.parent, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stdout + done.stderr
