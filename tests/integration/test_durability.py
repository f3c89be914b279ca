"""Nothing lost, nothing doubled across kill -9: the durable inbox and persistent sessions.

The daemon runs as a real child process on a state directory; the test kills it with
SIGKILL at chosen points and starts it again on the same directory. The inbox, the journal
and the sessions do not know the provider, so every test runs on both.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import trio

from daemon.sim.stack import open_sims, spawn_daemon

ALICE = "16505551234"
BOB = "447700900123"
TTS = r"/v1/text-to-speech/"


async def kill(daemon_process: trio.Process) -> None:
    daemon_process.send_signal(signal.SIGKILL)
    await daemon_process.wait()


async def test_a_turn_killed_before_its_answer_is_answered_once_after_restart(
    tmp_path: Path, provider: str
) -> None:
    release = trio.Event()

    async def held(session: object, text: str) -> list[dict[str, object]]:
        await release.wait()
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    async with open_sims(agentforce_options={"responder": held}) as sims:
        with trio.fail_after(40):
            async with httpx.AsyncClient() as client:
                async with spawn_daemon(sims, tmp_path, provider=provider) as first:
                    users = first.whatsapp(sims, client)
                    _, body = users.text_body(ALICE, "hello before the crash")
                    assert (await users.post_body(body)).status_code == 200
                    await sims.agentforce.wait_received(1)
                    await kill(first.process)  # the 200 was given; the answer was not sent
                release.set()
                async with spawn_daemon(sims, tmp_path, provider=provider) as second:
                    users = second.whatsapp(sims, client)
                    [sent] = await users.wait_delivered(1)
                    await second.read_log_until(r"(turn=\w+ done .*outcome=answered)")
                    # The provider redelivers the message it got a 200 for: still a duplicate.
                    assert (await users.post_body(body)).status_code == 200
                    await second.read_log_until(r"(resuming 1 unfinished turns)")
    assert sent.text == "answer to hello before the crash"
    assert users.delivered() == [sent]


async def test_a_voice_turn_killed_after_its_text_sends_only_the_voice_note_after_restart(
    tmp_path: Path, provider: str
) -> None:
    async with open_sims() as sims:
        sims.elevenlabs.faults.hang_paths = (TTS,)  # TTS hangs: no voice note yet
        with trio.fail_after(40):
            async with httpx.AsyncClient() as client:
                async with spawn_daemon(
                    sims, tmp_path, provider=provider, log={"level": "debug"}
                ) as first:
                    users = first.whatsapp(sims, client)
                    _, response = await users.send_voice(ALICE, "Do you ship to Canada?")
                    assert response.status_code == 200
                    [text] = await users.wait_delivered(1)
                    await first.read_log_until(r"(turn reached text_sent)")
                    await kill(first.process)
                sims.elevenlabs.faults.hang_paths = ()
                async with spawn_daemon(sims, tmp_path, provider=provider) as second:
                    users = second.whatsapp(sims, client)
                    sent = await users.wait_delivered(2)
                    await second.read_log_until(r"(turn=\w+ done .*resumed=text_sent)")
    assert text.type == "text"
    assert [m.type for m in sent] == ["text", "audio"]  # the text was not sent twice
    assert sent[1].renders_as_voice_note
    assert len(users.delivered()) == 2
    assert len(sims.agentforce.received) == 1  # nor the agent asked twice
    assert len(sims.elevenlabs.stt_requests) == 1  # nor the voice note transcribed twice


async def test_agent_sessions_survive_a_restart(tmp_path: Path, provider: str) -> None:
    async with open_sims() as sims:
        with trio.fail_after(40):
            async with httpx.AsyncClient() as client:
                async with spawn_daemon(sims, tmp_path, provider=provider) as first:
                    users = first.whatsapp(sims, client)
                    await users.send_text(BOB, "My name is Bob")
                    await users.wait_delivered(1)
                    await first.read_log_until(r"(turn=\w+ done)")
                # A graceful stop this time (a deploy), then the same user goes on.
                async with spawn_daemon(sims, tmp_path, provider=provider) as second:
                    users = second.whatsapp(sims, client)
                    await users.send_text(BOB, "[context] who am I?")
                    sent = await users.wait_delivered(2)
    assert len(sims.agentforce.started) == 1  # no new session: the conversation went on
    assert "My name is Bob" in (sent[1].text or "")
