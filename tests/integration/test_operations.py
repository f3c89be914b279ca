"""Running as a service: sd_notify, graceful stop, journald logs, /metrics, /readyz."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from daemon.sim import webhooks
from daemon.sim.agentforce import JsonDict, default_brain, inform
from daemon.sim.base import Faults
from daemon.sim.stack import (
    PHONE_NUMBER_ID,
    SECRETS,
    DaemonProcess,
    Sims,
    Stack,
    open_sims,
    open_stack,
    spawn_daemon,
)

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
    """A fake $NOTIFY_SOCKET: the datagrams systemd would get, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock = trio.socket.from_stdlib_socket(self.raw)
        self.seen: list[str] = []

    async def bind(self) -> None:
        await self.sock.bind(str(self.path))

    async def next(self) -> str:
        message = (await self.sock.recv(4096)).decode()
        self.seen.append(message)
        return message

    async def until(self, wanted: Callable[[str], bool]) -> str:
        while not wanted(message := await self.next()):
            pass
        return message

    def rest(self) -> None:
        """What is left in the socket's queue (the daemon has exited)."""
        while True:
            try:
                self.seen.append(self.raw.recv(4096, socket.MSG_DONTWAIT).decode())
            except BlockingIOError:
                return


ALICE_SLOW = "a slow question"
BOB = "15550002222"
CAROL = "15550003333"


async def agent(session: object, text: str, release: trio.Event) -> list[JsonDict]:
    """The simulated agent: hangs on the slow question until released, fails on "[down]",
    else the sim's usual brain ("[escalate]" hands over to a person)."""
    if ALICE_SLOW in text:
        await release.wait()
        return [inform(f"answer to {text}")]
    if "[down]" in text:
        raise RuntimeError("the agent is down")  # the sim answers HTTP 500
    return default_brain(session, text)  # type: ignore[arg-type]


async def test_notify_watchdog_status_graceful_stop_and_journal_lines(tmp_path: Path) -> None:
    release = trio.Event()
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {
        "NOTIFY_SOCKET": str(notify.path),
        "WATCHDOG_USEC": "200000",  # a WATCHDOG=1 every 0.1 s
        "JOURNAL_STREAM": "8:12345",  # as if stderr went to journald
    }
    responder = partial(agent, release=release)
    with notify.sock:
        await notify.bind()
        async with open_sims(agentforce_options={"responder": responder}) as sims:
            with trio.fail_after(30):
                async with (
                    # No "one moment" message: the answer is the only one to wait for.
                    spawn_daemon(sims, tmp_path, env=env, ux={"holding_after": 0.0}) as daemon,
                    httpx.AsyncClient() as client,
                ):
                    await _serve_and_stop(daemon, sims, client, notify, release)
                    notify.rest()
    _check_notify_order(notify.seen)
    _check_journal_lines(daemon)


async def _serve_and_stop(
    daemon: DaemonProcess,
    sims: Sims,
    client: httpx.AsyncClient,
    notify: NotifySocket,
    release: trio.Event,
) -> None:
    await notify.until(lambda m: m.startswith("READY=1"))
    await notify.until(lambda m: m == "WATCHDOG=1")
    sender = webhooks.WebhookSender(client, daemon.webhook_url, SECRETS["WHATSAPP_APP_SECRET"])

    async def say(user: str, text: str) -> None:
        body = webhooks.envelope(webhooks.text_message(user, text), phone_number_id=PHONE_NUMBER_ID)
        assert (await sender.post(body)).status_code == 200

    await say(BOB, "[escalate] can I talk to a person?")
    await sims.graph.wait_sent(1, to=BOB)
    await say(CAROL, "[down] are you there?")
    await sims.graph.wait_sent(1, to=CAROL)
    await say(ALICE, ALICE_SLOW)
    await sims.agentforce.wait_received(3)
    # The turn in flight shows in `systemctl status` (refreshed every second).
    await notify.until(lambda m: m.startswith("STATUS=") and "1 turns in flight" in m)

    daemon.process.send_signal(signal.SIGTERM)
    await notify.until(lambda m: m == "STOPPING=1")
    # While the turn drains, new webhooks are refused so Meta retries them.
    late = webhooks.envelope(
        webhooks.text_message("15550001111", "too late"), phone_number_id=PHONE_NUMBER_ID
    )
    assert (await sender.post(late)).status_code == 503
    assert (await client.get(daemon.url + "/readyz")).status_code == 503

    release.set()  # the slow turn finishes and is answered
    [sent] = await sims.graph.wait_sent(1, to=ALICE)
    assert sent.text == f"answer to {ALICE_SLOW}"
    assert await daemon.process.wait() == 0


def _check_notify_order(seen: list[str]) -> None:
    """READY, WATCHDOG, STATUS..., STOPPING, STATUS=draining, in that order."""
    ready = seen.index(next(m for m in seen if m.startswith("READY=1")))
    assert seen[ready] == f"READY=1\nSTATUS={seen[ready].split('STATUS=', 1)[1]}"
    assert re.fullmatch(r"READY=1\nSTATUS=listening on http://127\.0\.0\.1:\d+", seen[ready])
    watchdog = seen.index("WATCHDOG=1")
    in_flight = next(
        i for i, m in enumerate(seen) if m.startswith("STATUS=") and "1 turns in flight" in m
    )
    stopping = seen.index("STOPPING=1")
    assert ready < watchdog < in_flight < stopping, seen
    statuses = [m for m in seen[:stopping] if m.startswith("STATUS=")]
    assert statuses[0].startswith("STATUS=listening on http://127.0.0.1:")
    assert re.fullmatch(
        r"STATUS=listening on http://127\.0\.0\.1:\d+; 1 turns in flight, 0 queued, "
        r"\d+ users active",
        seen[in_flight],
    )
    # Right after STOPPING=1, what the stop is waiting for; then the drain as it goes.
    assert seen[stopping + 1] == "STATUS=draining: 1 turns in flight, 0 queued", seen
    after = [m for m in seen[stopping + 1 :] if m != "WATCHDOG=1"]
    assert all(m.startswith("STATUS=draining: ") for m in after), after
    assert "READY=1" not in "".join(seen[ready + 1 :])


def _check_journal_lines(daemon: DaemonProcess) -> None:
    log = daemon.log.decode()
    lines = [line for line in log.splitlines() if line]
    # Every line has its priority, so journald files each one right.
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), log
    summaries = {
        outcome: line
        for line in lines
        if (found := re.search(r" turn=\w+ done .*outcome=(\w+)", line))
        and (outcome := found.group(1))
    }
    assert set(summaries) == {"answered", "escalated", "agent_down"}, log
    assert summaries["answered"].startswith("<6>daemon.turn: turn=")
    assert summaries["escalated"].startswith("<6>daemon.turn: turn=")  # business as usual
    assert summaries["agent_down"].startswith("<4>daemon.turn: turn=")
    # `journalctl -p warning` (priority 4 and more urgent) shows exactly the problems: here
    # the one turn whose user got an apology instead of an answer.
    problems = [line for line in lines if re.match(r"<[0-4]>", line)]
    assert problems == [summaries["agent_down"]], log
    # Each turn's lines share its id, and each turn has exactly one summary.
    turn_ids = re.findall(r" turn=(\w+) ", log)
    done = re.findall(r" turn=(\w+) done ", log)
    assert sorted(done) == sorted(set(turn_ids)) and len(done) == 3, log
    # Users appear only hashed, keyed with the salt the daemon keeps in its state directory.
    for user in (ALICE, BOB, CAROL):
        assert f" user={daemon.user_hash(user)} " in log, (user, log)
    _assert_nothing_private(log)


def _assert_nothing_private(log: str) -> None:
    """No phone number (in any common spelling), secret or message text in clear."""
    for number in (ALICE, BOB, CAROL, "15550001111"):
        for spelling in (number, "+" + number, number[1:], number[-7:]):
            assert spelling not in log, spelling
    for secret in SECRETS.values():
        assert secret not in log
    for text in (ALICE_SLOW, "can I talk to a person", "are you there", "too late"):
        assert text not in log


def test_the_privacy_check_catches_a_leak() -> None:
    # The check above must not pass vacuously: each kind of leak makes it fail.
    clean = "<6>daemon.turn: turn=ab12cd34 done user=u:0123456789 outcome=answered"
    _assert_nothing_private(clean)
    for leak in (
        f"to +{ALICE}",
        f"to {BOB}",
        f"national {CAROL[1:]}",
        f"sent to ...{ALICE[-7:]}",
        SECRETS["WHATSAPP_ACCESS_TOKEN"],
        "text=a slow question",
    ):
        with pytest.raises(AssertionError):
            _assert_nothing_private(f"{clean}\n<6>daemon.x: {leak}")
