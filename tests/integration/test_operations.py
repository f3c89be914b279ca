"""Running as a service: sd_notify, graceful stop, journald logs, /metrics, /readyz."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from daemon.sim import webhooks
from daemon.sim.base import Faults
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Stack, open_sims, open_stack, spawn_daemon

ALICE = "16505551234"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def test_metrics_parse_and_move_when_a_turn_runs(stack: Stack) -> None:
    with trio.fail_after(10):
        before = (await stack.client.get(stack.daemon.admin_url + "/metrics")).text
        await stack.send_text(ALICE, "What are your opening hours?")
        await stack.wait_reports(1)
        response = await stack.client.get(stack.daemon.admin_url + "/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert list(text_string_to_metric_families(after))  # parses
    turn = {"kind": "text", "outcome": "answered"}
    assert metric(before, "wa_agentd_turns_total", **turn) == 0
    assert metric(after, "wa_agentd_turns_total", **turn) == 1
    assert metric(after, "wa_agentd_webhooks_total", outcome="accepted") == 1
    assert metric(after, "wa_agentd_stage_seconds_count", stage="agent") == 1
    assert metric(after, "wa_agentd_upstream_calls_total", upstream="agentforce", status="200") >= 2
    assert metric(after, "wa_agentd_upstream_calls_total", upstream="whatsapp", status="200") >= 1
    assert metric(after, "wa_agentd_agent_sessions") == 1
    assert metric(after, "process_resident_memory_bytes") > 10_000_000


async def test_agent_outage_opens_the_circuit_fails_fast_and_readyz_says_why() -> None:
    async with open_stack(
        agentforce_faults=Faults(error_rate=1.0, error_status=503),
        breakers={"window": 4, "min_calls": 4, "open_seconds": 600},
    ) as stack:
        url = stack.daemon.admin_url + "/readyz"
        with trio.fail_after(30):
            assert (await stack.client.get(url)).status_code == 200
            n = 0
            while "circuit open" not in (await stack.client.get(url)).text:
                n += 1
                await stack.send_text(f"1555000{n:04d}", "hello?")
                await stack.wait_reports(n)
                assert n < 10, "the circuit never opened"
            calls_when_open = len(stack.agentforce.requests)
            down = await stack.client.get(url)
            # While open the user gets the apology at once, and the agent is not called.
            await stack.send_text("15559999999", "anyone there?")
            report = (await stack.wait_reports(n + 1))[-1]
            metrics = (await stack.client.get(stack.daemon.admin_url + "/metrics")).text
    assert down.status_code == 503 and "agentforce circuit open" in down.text
    assert report.outcome == "agent_down" and ("agentforce", "circuit_open") in report.failures
    assert report.stages["agent"] < 0.05
    assert len(stack.agentforce.requests) == calls_when_open
    apology = stack.settings.texts.for_language("en").agent_down
    assert [m.text for m in stack.graph.sent].count(apology) == n + 1
    assert 'wa_agentd_circuit_state{upstream="agentforce"} 2.0' in metrics


async def test_admin_routes_on_their_own_listener() -> None:
    async with open_stack(admin={"bind": "127.0.0.1:0"}) as stack:
        d = stack.daemon
        assert d.admin_url != d.url
        with trio.fail_after(10):
            assert (await stack.client.get(d.admin_url + "/healthz")).status_code == 200
            assert (await stack.client.get(d.admin_url + "/metrics")).status_code == 200
            # the public listener serves the webhook only
            assert (await stack.client.get(d.url + "/metrics")).status_code == 404


class NotifySocket:
    """A fake $NOTIFY_SOCKET: the datagrams systemd would get."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    async def bind(self) -> None:
        await self.sock.bind(str(self.path))

    async def next(self) -> str:
        return (await self.sock.recv(4096)).decode()

    async def until(self, prefix: str, seen: list[str]) -> None:
        while True:
            message = await self.next()
            seen.append(message)
            if message.startswith(prefix):
                return


async def test_notify_watchdog_graceful_stop_and_journal_lines(tmp_path: Path) -> None:
    release = trio.Event()

    async def slow_agent(session: object, text: str) -> list[dict[str, object]]:
        await release.wait()  # a turn in flight when SIGTERM comes
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    notify = NotifySocket(tmp_path / "notify.sock")
    with notify.sock:
        await notify.bind()
        await _run_and_stop(tmp_path, notify, release, slow_agent)


async def _run_and_stop(
    tmp_path: Path,
    notify: NotifySocket,
    release: trio.Event,
    slow_agent: object,
) -> None:
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "200000",  # a WATCHDOG=1 every 0.1 s
        "JOURNAL_STREAM": "8:12345",  # as if stderr went to journald
    }
    seen: list[str] = []
    async with open_sims(agentforce_options={"responder": slow_agent}) as sims:
        with trio.fail_after(30):
            async with (
                spawn_daemon(sims, tmp_path, env=env) as daemon,
                httpx.AsyncClient() as client,
            ):
                await notify.until("READY=1", seen)
                await notify.until("WATCHDOG=1", seen)
                sender = webhooks.WebhookSender(
                    client, daemon.webhook_url, SECRETS["WHATSAPP_APP_SECRET"]
                )
                slow = webhooks.text_message(ALICE, "a slow question")
                body = webhooks.envelope(slow, phone_number_id=PHONE_NUMBER_ID)
                assert (await sender.post(body)).status_code == 200
                await sims.agentforce.wait_received(1)

                daemon.process.send_signal(signal.SIGTERM)
                await notify.until("STOPPING=1", seen)
                # While the turn drains, new webhooks are refused so Meta retries them.
                late = webhooks.envelope(
                    webhooks.text_message("15550001111", "too late"),
                    phone_number_id=PHONE_NUMBER_ID,
                )
                assert (await sender.post(late)).status_code == 503
                assert (await client.get(daemon.url + "/readyz")).status_code == 503

                release.set()  # the slow turn finishes and is answered
                [sent] = await sims.graph.wait_sent(1)
                assert sent.text == "answer to a slow question"
                assert await daemon.process.wait() == 0
    ready = next(i for i, m in enumerate(seen) if m.startswith("READY=1"))
    watchdog = next(i for i, m in enumerate(seen) if m == "WATCHDOG=1")
    stopping = next(i for i, m in enumerate(seen) if m == "STOPPING=1")
    assert ready < watchdog < stopping
    assert "STATUS=listening on http://127.0.0.1:" in seen[ready]

    log = daemon.log.decode()
    lines = [line for line in log.splitlines() if line]
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), log
    summary = next(line for line in lines if " done " in line)
    assert summary.startswith("<6>") and "outcome=answered" in summary
    assert "<4>" in log or "<6>" in log
    # no phone number, no secret, no message text in clear
    for secret in SECRETS.values():
        assert secret not in log
    assert ALICE not in log and "15550001111" not in log
    assert "a slow question" not in log
