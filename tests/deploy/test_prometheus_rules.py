"""deploy/prometheus/wa-agentd.rules.yml: valid for promtool, its unit tests pass, every alert
has a firing and a quiet case, and every metric name it uses is one the daemon exposes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.promql import binary, exposed_names, metric_names

RULES_DIR = Path(__file__).parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "wa-agentd.rules.yml"
RULE_TESTS = RULES_DIR / "wa-agentd.rules.test.yml"

# What issue 15 asks the rules to cover, by the alert that covers it.
REQUIRED = {
    "WaAgentdDown": "daemon down",
    "WaAgentdAbsent": "daemon down (no target at all)",
    "WaAgentdWebhooksRefused": "webhooks refused (401/400/503) above a rate",
    "WaAgentdCircuitOpen": "a circuit open for more than N minutes",
    "WaAgentdApologies": "turns ending in apologies above a share",
    "WaAgentdVoiceNotesFailing": "voice notes failing (in)",
    "WaAgentdVoiceRepliesFailing": "voice notes failing (out)",
    "WaAgentdQueueNearFull": "queue depth near its bound",
    "WaAgentdDeferredPilingUp": "deferred turns piling up",
    "WaAgentdRetryBudgetExhausted": "retry budget exhausted",
    "WaAgentdUsersLimited": "per-user cost caps hit",
    "WaAgentdBudgetExhausted": "global cost caps hit",
    "WaAgentdMemoryNearHigh": "RSS near MemoryHigh",
}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], capture_output=True, text=True, cwd=RULES_DIR, check=False
    )


def test_promtool_check_rules_accepts_them() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_is_tested_firing_and_quiet() -> None:
    alerts = {rule["alert"] for rule in rules()}
    assert set(REQUIRED) <= alerts
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == alerts, f"never seen firing: {alerts - fires}"
    assert quiet == alerts, f"never seen quiet: {alerts - quiet}"


async def test_every_metric_name_in_the_rules_is_exposed_by_the_daemon(scrape: str) -> None:
    exposed = exposed_names(scrape)
    used = {name for rule in rules() for name in metric_names(rule["expr"])}
    assert "wa_agentd_turns_total" in used and "up" in used  # the parser finds names
    missing = used - exposed - {"up"}  # up: Prometheus' own
    assert not missing, f"rules use names the daemon does not expose: {sorted(missing)}"


def test_metric_names_reads_selectors_not_labels_functions_or_durations() -> None:
    expr = (
        'sum by (job, instance) (rate(wa_agentd_turns_total{outcome=~"a|b", kind="voice"}[5m]))'
        " / ignoring(bound) 0.8 * wa_agentd_capacity{bound='queue_size'} > bool 0.1"
        ' and on(instance) label_replace(up, "x", "$1", "job", "(.*)") offset 1h'
        " or histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))"
    )
    assert metric_names(expr) == {"wa_agentd_turns_total", "wa_agentd_capacity", "up", "x_bucket"}
