"""deploy/grafana/wa-agentd.json: a dashboard Grafana imports, whose every query names metrics
the daemon exposes, and runs without error on a real Prometheus scraping the real daemon.

The last test starts Debian's ``prometheus`` on loopback. It scrapes the daemon (on the
simulators, after a text turn, a cache hit and a voice note) through a relay in this test,
so the test knows when a scrape happened instead of sleeping: once the third scrape is
asked for, the first two are stored. Then every panel's query (and every alert rule's) is
run as an instant query: each must succeed, and each must return series unless it is listed
in MAY_BE_EMPTY with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio

from daemon.observe.cgroup import memory_limits
from daemon.sim.stack import free_port, open_stack
from tests.deploy import emitted
from tests.deploy.conftest import FAQ, exercise
from tests.deploy.promql import binary, exposed_names, metric_names
from tests.deploy.test_prometheus_rules import rules

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "wa-agentd.json"

# What issue 15 asks the dashboard to show, by a name some query must use.
REQUIRED = {
    "turns by outcome": "wa_agentd_turns_total",
    "time to text": 'stage="to_text"',
    "time to voice": 'stage="to_voice"',
    "upstream latency": "wa_agentd_stage_seconds_bucket",
    "upstream errors": "wa_agentd_upstream_calls_total",
    "circuit states": "wa_agentd_circuit_state",
    "cache hit rates and savings": "wa_agentd_cache_lookups_total",
    "queue depth": "wa_agentd_queue_depth",
    "lanes": "wa_agentd_lanes",
    "RSS": "process_resident_memory_bytes",
}

# (panel title, legend) -> why it has no series after the scenario above.
MAY_BE_EMPTY = {
    ("Upstream errors, by upstream", "{{upstream}}"): "nothing failed",
    ("Retries, by upstream and outcome", "{{upstream}} {{outcome}}"): "nothing was retried",
}
MEMORY = "Resident memory and the cgroup's limits"


def may_be_empty() -> dict[tuple[str, str], str]:
    """MAY_BE_EMPTY, and the cgroup limits this machine does not set: the daemon runs in the
    test's cgroup and exports memory.high / memory.max only where they are set (a cgroup-v2
    runner with limits shows them, a laptop shows none)."""
    empty = dict(MAY_BE_EMPTY)
    limits = memory_limits()
    for name, legend in (("high", "MemoryHigh {{instance}}"), ("max", "MemoryMax {{instance}}")):
        if name not in limits:
            empty[MEMORY, legend] = f"no memory.{name} on this machine's cgroup"
    return empty


def targets() -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of the dashboard."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    found = [(p["title"], t) for p in panels if p["type"] != "row" for t in p["targets"]]
    found += [(p["title"], t) for r in panels for p in r.get("panels", []) for t in p["targets"]]
    return found


def instant(expr: str, instance: str = ".+") -> str:
    """The query as Grafana would send it, its variables filled in."""
    for name, value in {
        "$__rate_interval": "1m",
        "$__range": "5m",
        "$__interval": "15s",
        "$job": "wa-agentd",
        "$instance": instance,
    }.items():
        expr = expr.replace(name, value)
    return expr


def test_the_dashboard_is_importable_and_covers_what_the_operator_needs() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] == "wa-agentd" and board["title"] == "wa-agentd"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert {"job", "instance"} <= set(variables)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            # Every query follows the job and instance pickers (or the dashboard lies).
            assert 'job="$job"' in target["expr"] and "$instance" in target["expr"], panel["title"]
    queries = " ".join(t["expr"] for _, t in targets())
    for topic, needle in REQUIRED.items():
        assert needle in queries, f"no panel shows {topic}"


async def test_every_metric_name_in_the_dashboard_is_exposed_by_the_daemon(scrape: str) -> None:
    exposed = exposed_names(scrape)
    for title, target in targets():
        missing = metric_names(target["expr"]) - exposed
        assert not missing, f"panel {title!r} uses names the daemon does not expose: {missing}"


async def test_every_label_value_in_the_dashboard_is_one_the_daemon_emits(scrape: str) -> None:
    table, family_of = emitted.emitted(scrape)
    wrong = [
        f"{title}: {problem}"
        for title, target in targets()
        for problem in emitted.problems(target["expr"], table, family_of)
    ]
    assert not wrong, "\n".join(wrong)


def test_every_import_input_is_used_and_every_used_one_declared() -> None:
    # Grafana's import asks for each __inputs entry and substitutes ${NAME} in the JSON; an
    # input nothing references asks the operator for nothing (and provisioning, which reads
    # no __inputs, leaves any ${DS_...} unresolved). The panels use the datasource picker.
    raw = DASHBOARD.read_text()
    declared = {i["name"] for i in json.loads(raw).get("__inputs", [])}
    used = set(re.findall(r"\$\{(DS_[A-Z0-9_]+)\}", raw))
    assert declared == used == set()


@asynccontextmanager
async def relay(upstream: str, client: httpx.AsyncClient) -> AsyncIterator[tuple[str, Any]]:
    """An HTTP server whose /metrics is the daemon's /metrics; yields its address and a
    receive channel that gets one item per scrape, when it is asked for."""
    send, receive = trio.open_memory_channel[None](1000)
    app = QuartTrio("relay")

    @app.get("/metrics")
    async def metrics() -> Response:
        send.send_nowait(None)
        answer = await client.get(upstream)
        return Response(answer.content, content_type=answer.headers["content-type"])

    config = HypercornConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        yield urls[0].removeprefix("http://"), receive
        stop.set()


@asynccontextmanager
async def prometheus(tmp_path: Path, target: str) -> AsyncIterator[str]:
    """Debian's prometheus on a loopback port, scraping ``target`` every second."""
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: wa-agentd\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    process = await trio.lowlevel.open_process(
        [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    log = bytearray()
    try:
        while b"Server is ready to receive web requests" not in log:
            chunk = await process.stderr.receive_some(65536)
            if not chunk:
                raise RuntimeError(f"prometheus ended:\n{log.decode(errors='replace')}")
            log += chunk
        async with trio.open_nursery() as nursery:  # keep its pipe from filling up
            nursery.start_soon(_drain, process.stderr)
            yield f"http://127.0.0.1:{port}"
            nursery.cancel_scope.cancel()
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _drain(stream: Any) -> None:
    while await stream.receive_some(65536):
        pass


@pytest.mark.slow
async def test_every_query_runs_on_a_real_prometheus_scraping_the_daemon(tmp_path: Path) -> None:
    async with open_stack(cache=FAQ) as stack:
        with trio.fail_after(60):
            await exercise(stack)
            metrics_url = stack.daemon.admin_url + "/metrics"
            async with (
                relay(metrics_url, stack.client) as (target, scrapes),
                prometheus(tmp_path, target) as prom,
            ):
                for _ in range(3):  # the third asked for: the first two are stored
                    await scrapes.receive()
                results = {}
                queries = [(title, t["legendFormat"], t["expr"]) for title, t in targets()]
                queries += [(f"alert {r['alert']}", "", r["expr"]) for r in rules()]
                for title, legend, expr in queries:
                    answer = await stack.client.get(
                        f"{prom}/api/v1/query", params={"query": instant(expr)}
                    )
                    body = answer.json()
                    assert answer.status_code == 200 and body["status"] == "success", (
                        f"{title} ({legend}): {body.get('error')}\n{instant(expr)}"
                    )
                    assert not body.get("warnings"), (title, body["warnings"])
                    results[title, legend] = body["data"]["result"]
    empty = {
        key for key, result in results.items() if not result and not key[0].startswith("alert ")
    }
    assert empty == set(may_be_empty()), "panels with no data, or listed but not empty"
    # The alerts are quiet on a healthy daemon (WaAgentdAbsent looks for up{job="wa-agentd"}).
    firing = {key[0] for key, result in results.items() if key[0].startswith("alert ") and result}
    assert firing == set(), firing
    assert re.fullmatch(r"127\.0\.0\.1:\d+", target)
