"""A hanging upstream costs its own timeout, then the user gets one clear message.

The simulators hang (never answer) on demand; the daemon's [timeouts] are set to a fraction
of a second so each test runs in well under its fail_after. These are real sockets, so the
timeouts are real time: trio's MockClock can't jump over a peer that is another task's I/O.
"""

from __future__ import annotations

import trio

from daemon.config import TextsConfig
from daemon.sim.base import Faults
from daemon.sim.stack import open_stack

TEXTS = TextsConfig().for_language("en")
ALICE = "16505551234"
FAST = {"download": 0.5, "stt": 0.5, "agent": 0.5, "tts": 0.5, "whatsapp": 0.5, "turn": 5.0}


async def test_agent_timeout_gives_the_apology() -> None:
    async with open_stack(timeouts=FAST) as stack:
        stack.agentforce.faults.hang_rate = 1.0
        with trio.fail_after(10):
            await stack.send_text(ALICE, "hello?")
            [sent] = await stack.graph.wait_sent(1)
            [report] = await stack.wait_reports(1)
    assert sent.text == TEXTS.agent_down
    assert report.outcome == "agent_down" and "agentforce" in report.error


async def test_stt_timeout_asks_the_user_to_type() -> None:
    async with open_stack(timeouts=FAST, elevenlabs_faults=Faults(hang_rate=1.0)) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "hello?")
            [sent] = await stack.graph.wait_sent(1)
            [report] = await stack.wait_reports(1)
    assert sent.text == TEXTS.not_understood
    assert report.outcome == "not_understood" and "elevenlabs-stt" in report.error
    assert stack.agentforce.received == []


async def test_tts_timeout_leaves_the_text_answer_alone() -> None:
    async with open_stack(timeouts=FAST) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "What are your opening hours?")
            await stack.elevenlabs.wait_stt(1)
            stack.elevenlabs.faults.hang_rate = 1.0  # STT went through; TTS will hang
            [text] = await stack.graph.wait_sent(1)
            [report] = await stack.wait_reports(1)
    assert text.type == "text" and text.text != TEXTS.agent_down
    assert report.outcome == "answered" and report.voice == "failed"
    assert [s.type for s in stack.graph.sent] == ["text"]  # no voice note, no apology


async def test_media_download_timeout_asks_the_user_to_type() -> None:
    async with open_stack(timeouts=FAST) as stack:
        stack.graph.faults.hang_rate = 1.0  # the media lookup hangs
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "hello?")
            report = (await stack.wait_reports(1))[0]
            stack.graph.faults.hang_rate = 0.0
    assert report.outcome == "not_understood"
    assert "whatsapp" in report.error and report.stages["download"] >= 0.5
    assert ("whatsapp", "timeout") in report.failures
    # The apology itself hit the hanging Graph too: the send's outcome is unknown, so
    # nothing more was tried (a second message is worse than none).
    assert stack.agentforce.received == []


async def test_whatsapp_send_timeout_sends_nothing_more() -> None:
    async with open_stack(timeouts=FAST) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "hello?")
            await stack.agentforce.wait_received(1)
            stack.graph.faults.hang_rate = 1.0  # the answer's send hangs
            [report] = await stack.wait_reports(1)
    assert report.outcome == "send_unknown" and "whatsapp" in report.error
    assert stack.graph.sent == []
