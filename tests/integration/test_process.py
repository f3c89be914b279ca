"""The real command line, as a separate process: `wa-agentd serve` and `wa-agentd demo`."""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import trio

from daemon.sim import webhooks
from daemon.sim.agentforce import JsonDict, inform
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, DaemonProcess, open_sims, spawn_daemon

WA_AGENTD = [sys.executable, "-m", "daemon"]


async def test_serve_answers_a_webhook_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with open_sims() as sims:
        with trio.fail_after(30):
            # Secrets come from a systemd-style credentials directory, not the environment.
            async with spawn_daemon(sims, tmp_path) as daemon:
                async with httpx.AsyncClient() as client:
                    sender = webhooks.WebhookSender(
                        client, daemon.webhook_url, SECRETS["WHATSAPP_APP_SECRET"]
                    )
                    body = webhooks.envelope(
                        webhooks.text_message("16505551234", "What are your opening hours?"),
                        phone_number_id=PHONE_NUMBER_ID,
                    )
                    assert (await sender.post(body)).status_code == 200
                    [sent] = await sims.graph.wait_sent(1)
                    assert sent.text and "open" in sent.text
                    await daemon.read_log_until(r"(turn=\w+ done .*outcome=answered)")
                daemon.process.send_signal(signal.SIGTERM)
                assert await daemon.process.wait() == 0
                await daemon.drain_log()
                user = daemon.user_hash("16505551234")  # the salt is in its state directory
    log = daemon.log.decode()
    assert "stopped" in log
    # The user is in the log, hashed (so the checks below look at a log that names them)...
    assert f" user={user} " in log
    # ... and never in clear: no number in any spelling, no secret, not what they wrote.
    for spelling in ("16505551234", "+16505551234", "6505551234", "5551234"):
        assert spelling not in log
    for secret in SECRETS.values():
        assert secret not in log
    assert "opening hours" not in log


# The answer is the only message: no "one moment" while the agent is held back on purpose.
NO_HOLDING = {"holding_after": 0.0}


def slow_agent(release: trio.Event) -> Callable[[object, str], Awaitable[list[JsonDict]]]:
    """A simulated agent that answers only once ``release`` is set."""

    async def respond(session: object, text: str) -> list[JsonDict]:
        await release.wait()
        return [inform(f"answer to {text}")]

    return respond


async def post_text(daemon: DaemonProcess, client: httpx.AsyncClient, user: str, text: str) -> None:
    sender = webhooks.WebhookSender(client, daemon.webhook_url, SECRETS["WHATSAPP_APP_SECRET"])
    body = webhooks.envelope(webhooks.text_message(user, text), phone_number_id=PHONE_NUMBER_ID)
    assert (await sender.post(body)).status_code == 200


async def test_sigint_stops_as_gracefully_as_sigterm(tmp_path: Path) -> None:
    # Ctrl-C in a terminal: the turn in flight still finishes, and the exit is 0 (not a
    # KeyboardInterrupt traceback and 130).
    release = trio.Event()
    async with open_sims(agentforce_options={"responder": slow_agent(release)}) as sims:
        with trio.fail_after(30):
            async with (
                spawn_daemon(sims, tmp_path, ux=NO_HOLDING) as daemon,
                httpx.AsyncClient() as client,
            ):
                await post_text(daemon, client, "16505551234", "a question")
                await sims.agentforce.wait_received(1)
                daemon.process.send_signal(signal.SIGINT)
                await daemon.read_log_until(r"(received SIGINT, stopping gracefully)")
                await daemon.read_log_until(r"(draining: webhooks answered 503)")
                release.set()
                [sent] = await sims.graph.wait_sent(1)
                assert sent.text == "answer to a question"
                assert await daemon.process.wait() == 0
    log = daemon.log.decode()
    assert "outcome=answered" in log and "stopped" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log


async def test_turns_past_the_drain_timeout_are_cancelled_and_resume_after_a_restart(
    tmp_path: Path,
) -> None:
    release = trio.Event()
    env = {"JOURNAL_STREAM": "8:1"}  # priorities on the lines
    async with open_sims(agentforce_options={"responder": slow_agent(release)}) as sims:
        with trio.fail_after(30):
            async with (
                spawn_daemon(
                    sims, tmp_path, env=env, server={"drain_timeout": 0.5}, ux=NO_HOLDING
                ) as first,
                httpx.AsyncClient() as client,
            ):
                await post_text(first, client, "16505551234", "hanging question")
                await sims.agentforce.wait_received(1)
                first.process.send_signal(signal.SIGTERM)
                # The agent never answers: the drain gives up after 0.5 s and still exits 0.
                assert await first.process.wait() == 0
            assert sims.graph.sent == []
            release.set()  # the agent is back
            async with spawn_daemon(sims, tmp_path, env=env, ux=NO_HOLDING) as second:
                [sent] = await sims.graph.wait_sent(1)
                await second.read_log_until(r"(turn=\w+ done .*outcome=answered.*)")
    drained = first.log.decode()
    warnings = [line for line in drained.splitlines() if line.startswith("<4>")]
    assert warnings == [
        "<4>wa_agentd: drain timeout (0.5s): 1 turns still running were cancelled; "
        "they resume when the daemon starts again"
    ], drained
    assert "stopped" in drained and " done " not in drained  # cancelled, not finished
    # The durable inbox kept the message: the restart answers it, once.
    assert sent.text == "answer to hanging question"
    assert "resuming 1 unfinished turns" in second.log.decode()
    assert len(sims.graph.sent) == 1


@pytest.mark.parametrize("provider", ["meta", "twilio"])
async def test_demo_once_plays_the_script_and_exits_zero(provider: str) -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            [*WA_AGENTD, "demo", "--once", "--bind", "127.0.0.1:0", "--provider", provider],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()
    assert out.count("webhook acknowledged: HTTP 200") == 4
    assert out.count("text reply") == 4
    assert out.count("voice reply") == 1
    assert "outcome=unsupported" in out
