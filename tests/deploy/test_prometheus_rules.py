"""deploy/prometheus/wa-agentd.rules.yml: valid for promtool, its unit tests pass, every alert
has a firing and a quiet case, and every metric name it uses is one the daemon exposes."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import emitted
from tests.deploy.promql import binary, exposed_names, metric_names

RULES_DIR = Path(__file__).parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "wa-agentd.rules.yml"
RULE_TESTS = RULES_DIR / "wa-agentd.rules.test.yml"

# What issue 15 asks the rules to cover, by the alert that covers it.
REQUIRED = {
    "WaAgentdDown": "daemon down",
    "WaAgentdAbsent": "daemon down (no target at all)",
    "WaAgentdWebhooksRefused": "webhooks refused (401/400/503) above a rate",
    "WaAgentdConnectionsRefused": "connections refused at the cap (a lock-out)",
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


async def test_every_label_value_in_the_rules_is_one_the_daemon_emits(scrape: str) -> None:
    table, family_of = emitted.emitted(scrape)
    used = [m for rule in rules() for m in emitted.matchers(rule["expr"])]
    assert any(m.value == "budget_spent" for m in used)  # the matchers are found
    wrong = [p for rule in rules() for p in emitted.problems(rule["expr"], table, family_of)]
    assert not wrong, "\n".join(wrong)


def rule(name: str) -> dict[str, Any]:
    (found,) = (r for r in rules() if r["alert"] == name)
    return found


def test_the_refused_webhooks_alert_covers_every_refusal_the_web_layer_answers() -> None:
    # From daemon/web.py itself: every answer("<outcome>", <status>) it can give.
    answered = emitted.answers(emitted.modules("web"))
    assert answered["unsigned"] == 401 and answered["bodies_full"] == 503  # the finder works
    # The GET handshake's 403 is left out on purpose (the rule says why).
    refusals = {outcome for outcome, status in answered.items() if status >= 400}
    refusals -= {"handshake_refused"}
    (matcher,) = (
        m for m in emitted.matchers(rule("WaAgentdWebhooksRefused")["expr"]) if m.label == "outcome"
    )
    assert matcher.op == "=~"
    assert set(emitted.alternatives(matcher.value) or ()) == refusals


def test_label_checks_find_values_the_daemon_never_emits() -> None:
    table = {
        ("wa_agentd_webhooks", "outcome"): emitted.Emitted({"unsigned", "bad_signature"}),
        ("wa_agentd_upstream_calls", "status"): emitted.Emitted({"200", "503", "timeout"}),
        ("wa_agentd_turns", "outcome"): emitted.Emitted({"answered", "limited_*"}),
    }
    family_of = {
        "wa_agentd_webhooks_total": "wa_agentd_webhooks",
        "wa_agentd_upstream_calls_total": "wa_agentd_upstream_calls",
        "wa_agentd_turns_total": "wa_agentd_turns",
    }
    fine = (
        'rate(wa_agentd_webhooks_total{job="$job", outcome=~"unsigned|bad_signature"}[5m])'
        ' + wa_agentd_upstream_calls_total{status=~"5..|timeout"}'
        ' + wa_agentd_turns_total{outcome!="answered"}'
        ' + wa_agentd_turns_total{outcome="limited_rate"}'
    )
    assert emitted.problems(fine, table, family_of) == []
    assert emitted.problems(
        'wa_agentd_webhooks_total{outcome=~"unsigned|bad_sig"}', table, family_of
    )
    assert emitted.problems('wa_agentd_webhooks_total{outcome!="drained"}', table, family_of)
    assert emitted.problems(
        'wa_agentd_upstream_calls_total{status=~"4..|timeout"}', table, family_of
    )
    assert emitted.problems('wa_agentd_turns_total{kind="voice"}', table, family_of)  # no source
    assert emitted.problems('wa_agentd_nothing_total{outcome="x"}', table, family_of)
    assert emitted.alternatives("(a|b)_(c|d)") == ["a_c", "a_d", "b_c", "b_d"]
    assert emitted.alternatives("4..|x") is None


def test_the_code_reader_finds_what_the_daemon_binds() -> None:
    # The sources the label checks trust, on values known to be there.
    assert {"gave_up", "deferred", "agent_down", "answered"} <= emitted.turn_outcomes()
    assert "limited_rate" in emitted.Emitted(emitted.turn_outcomes())
    assert "budget_spent" in emitted.from_code()[("wa_agentd_retries", "outcome")]
    assert {"sent", "failed", "skipped"} == emitted.from_code()[
        ("wa_agentd_voice_replies", "result")
    ]


def test_metric_names_reads_selectors_not_labels_functions_or_durations() -> None:
    expr = (
        'sum by (job, instance) (rate(wa_agentd_turns_total{outcome=~"a|b", kind="voice"}[5m]))'
        " / ignoring(bound) 0.8 * wa_agentd_capacity{bound='queue_size'} > bool 0.1"
        ' and on(instance) label_replace(up, "x", "$1", "job", "(.*)") offset 1h'
        " or histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))"
    )
    assert metric_names(expr) == {"wa_agentd_turns_total", "wa_agentd_capacity", "up", "x_bucket"}
