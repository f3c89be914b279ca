"""The real command line, as a separate process: `wa-agentd serve` and `wa-agentd demo`."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest
import trio

from daemon.sim import webhooks
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, open_sims, spawn_daemon

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
    log = daemon.log.decode()
    assert "stopped" in log
    assert "16505551234" not in log  # phone numbers only hashed
    assert SECRETS["WHATSAPP_ACCESS_TOKEN"] not in log


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
