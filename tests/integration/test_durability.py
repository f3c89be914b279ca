"""Nothing lost, nothing doubled across kill -9: the durable inbox and persistent sessions.

The daemon runs as a real child process on a state directory; the test kills it with
SIGKILL at chosen points and starts it again on the same directory.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio

from daemon.sim import webhooks
from daemon.sim.audio import speak
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, open_sims, spawn_daemon

ALICE = "16505551234"
BOB = "447700900123"


def sender(client: httpx.AsyncClient, url: str) -> webhooks.WebhookSender:
    return webhooks.WebhookSender(client, url, SECRETS["WHATSAPP_APP_SECRET"])


def body(*items: webhooks.Item) -> dict[str, object]:
    return webhooks.envelope(*items, phone_number_id=PHONE_NUMBER_ID)


async def kill(daemon_process: trio.Process) -> None:
    daemon_process.send_signal(signal.SIGKILL)
    await daemon_process.wait()


async def test_a_turn_killed_before_its_answer_is_answered_once_after_restart(
    tmp_path: Path,
) -> None:
    release = trio.Event()

    async def held(session: object, text: str) -> list[dict[str, object]]:
        await release.wait()
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    message = webhooks.text_message(ALICE, "hello before the crash")
    async with open_sims(agentforce_options={"responder": held}) as sims:
        with trio.fail_after(40):
            async with httpx.AsyncClient() as client:
                async with spawn_daemon(sims, tmp_path) as first:
                    assert (
                        await sender(client, first.webhook_url).post(body(message))
                    ).status_code == 200
                    await sims.agentforce.wait_received(1)
                    await kill(first.process)  # the 200 was given; the answer was not sent
                release.set()
                async with spawn_daemon(sims, tmp_path) as second:
                    [sent] = await sims.graph.wait_sent(1)
                    await second.read_log_until(r"(turn=\w+ done .*outcome=answered)")
                    # Meta redelivers the message it got a 200 for: still a duplicate.
                    again = await sender(client, second.webhook_url).post(body(message))
                    assert again.status_code == 200
                    await second.read_log_until(r"(resuming 1 unfinished turns)")
    assert sent.text == "answer to hello before the crash"
    assert len(sims.graph.sent) == 1


async def test_a_voice_turn_killed_after_its_text_sends_only_the_voice_note_after_restart(
    tmp_path: Path,
) -> None:
    async with open_sims() as sims:
        with trio.fail_after(40):
            async with httpx.AsyncClient() as client:
                audio = speak("Do you ship to Canada?")
                media_id = sims.graph.add_user_media(audio, "audio/ogg; codecs=opus")
                sha = webhooks.media_sha256(audio)
                note = webhooks.voice_message(ALICE, media_id, sha256=sha)
                async with spawn_daemon(sims, tmp_path, log={"level": "debug"}) as first:
                    post = sender(client, first.webhook_url)
                    assert (await post.post(body(note))).status_code == 200
                    await sims.elevenlabs.wait_stt(1)
                    sims.elevenlabs.faults.hang_rate = 1.0  # TTS will hang: no voice note
                    [text] = await sims.graph.wait_sent(1)
                    await first.read_log_until(r"(turn reached text_sent)")
                    await kill(first.process)
                sims.elevenlabs.faults.hang_rate = 0.0
                async with spawn_daemon(sims, tmp_path) as second:
                    sent = await sims.graph.wait_sent(2)
                    await second.read_log_until(r"(turn=\w+ done .*resumed=text_sent)")
    assert text.type == "text"
    assert [m.type for m in sent] == ["text", "audio"]  # the text was not sent twice
    assert len(sims.agentforce.received) == 1  # nor the agent asked twice
    assert len(sims.elevenlabs.stt_requests) == 1  # nor the voice note transcribed twice


async def test_agent_sessions_survive_a_restart(tmp_path: Path) -> None:
    async with open_sims() as sims:
        with trio.fail_after(40):
            async with httpx.AsyncClient() as client:
                async with spawn_daemon(sims, tmp_path) as first:
                    post = sender(client, first.webhook_url)
                    await post.post(body(webhooks.text_message(BOB, "My name is Bob")))
                    await sims.graph.wait_sent(1)
                    await first.read_log_until(r"(turn=\w+ done)")
                # A graceful stop this time (a deploy), then the same user goes on.
                async with spawn_daemon(sims, tmp_path) as second:
                    post = sender(client, second.webhook_url)
                    await post.post(body(webhooks.text_message(BOB, "[context] who am I?")))
                    sent = await sims.graph.wait_sent(2)
    assert len(sims.agentforce.started) == 1  # no new session: the conversation went on
    assert "My name is Bob" in (sent[1].text or "")
