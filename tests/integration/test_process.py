"""The real command line, as a separate process: `wa-agentd serve` and `wa-agentd demo`."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import httpx
import trio

from daemon.sim import webhooks
from daemon.sim.agentforce import AgentforceSim
from daemon.sim.elevenlabs import ElevenLabsSim
from daemon.sim.graph import GraphSim
from daemon.sim.stack import AGENT_ID, PHONE_NUMBER_ID, SECRETS, VOICE_ID

WA_AGENTD = [sys.executable, "-m", "daemon"]


async def _read_until(stream: trio.abc.ReceiveStream, pattern: str, seen: bytearray) -> str:
    regex = re.compile(pattern)
    while True:
        match = regex.search(seen.decode(errors="replace"))
        if match:
            return match.group(1)
        chunk = await stream.receive_some(4096)
        assert chunk, f"process ended before printing {pattern!r}:\n{seen.decode()}"
        seen += chunk


async def test_serve_answers_a_webhook_and_stops_cleanly_on_sigterm(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    graph = GraphSim(access_token=SECRETS["WHATSAPP_ACCESS_TOKEN"], phone_number_id=PHONE_NUMBER_ID)
    agent = AgentforceSim(
        client_id=SECRETS["AGENTFORCE_CLIENT_ID"],
        client_secret=SECRETS["AGENTFORCE_CLIENT_SECRET"],
        agent_id=AGENT_ID,
        instance_endpoint="https://sim.my.salesforce.com",
    )
    speech = ElevenLabsSim(api_key=SECRETS["ELEVENLABS_API_KEY"], voice_ids=(VOICE_ID,))
    graph_url, agent_url, speech_url = (
        await graph.start(nursery),
        await agent.start(nursery),
        await speech.start(nursery),
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[server]
bind = "127.0.0.1:0"
[whatsapp]
graph_url = "{graph_url}/v23.0"
phone_number_id = "{PHONE_NUMBER_ID}"
media_hosts = ["127.0.0.1"]
[agentforce]
token_url = "{agent_url}/services/oauth2/token"
api_url = "{agent_url}/einstein/ai-agent/v1"
instance_endpoint = "https://sim.my.salesforce.com"
agent_id = "{AGENT_ID}"
[elevenlabs]
api_url = "{speech_url}"
voice_id = "{VOICE_ID}"
"""
    )
    # Secrets from a systemd-style credentials directory, not the environment.
    creds = tmp_path / "creds"
    creds.mkdir()
    for name, value in SECRETS.items():
        (creds / name.lower().replace("_", "-")).write_text(value + "\n")
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    env |= {"CREDENTIALS_DIRECTORY": str(creds), "WA_AGENTD_CONFIG": str(config)}

    with trio.fail_after(30):
        process = await trio.lowlevel.open_process(
            [*WA_AGENTD, "serve"], env=env, stderr=-1, cwd=tmp_path
        )
        assert process.stderr is not None
        seen = bytearray()
        url = await _read_until(process.stderr, r"listening on (http://\S+)", seen)
        async with httpx.AsyncClient() as client:
            sender = webhooks.WebhookSender(
                client, url + "/webhook", SECRETS["WHATSAPP_APP_SECRET"]
            )
            body = webhooks.envelope(
                webhooks.text_message("16505551234", "What are your opening hours?"),
                phone_number_id=PHONE_NUMBER_ID,
            )
            assert (await sender.post(body)).status_code == 200
            [sent] = await graph.wait_sent(1)
            assert sent.text and "open" in sent.text
            await _read_until(process.stderr, r"(turn \w+ .*outcome=answered)", seen)
        process.send_signal(signal.SIGTERM)
        assert await process.wait() == 0
        with trio.move_on_after(5):
            while chunk := await process.stderr.receive_some(4096):
                seen += chunk
    log = seen.decode()
    assert "stopped" in log
    assert "16505551234" not in log  # phone numbers only hashed
    assert SECRETS["WHATSAPP_ACCESS_TOKEN"] not in log


async def test_demo_once_plays_the_script_and_exits_zero() -> None:
    with trio.fail_after(60):
        result = await trio.run_process(
            [*WA_AGENTD, "demo", "--once", "--bind", "127.0.0.1:0"],
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
