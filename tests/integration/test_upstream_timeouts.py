"""A hanging upstream costs its own timeout, then the user gets one clear message.

One test per upstream call of a turn, on both WhatsApp providers where the call is not one
provider's own. The simulators hang one route on demand (``Faults.hang_paths``), so the rest
of the world keeps answering: the apology after a hung download really goes out. The hung
call gets a fraction of a second; the calls that must succeed keep generous timeouts, so a
busy CI machine does not turn them into failures. These are real sockets, so the timeouts
are real time: trio's MockClock can't jump over a peer that is another task's I/O.
"""

from __future__ import annotations

import pytest
import trio

from daemon.config import TextsConfig
from daemon.sim.base import Faults
from daemon.sim.stack import open_stack
from daemon.turn import TurnReport

TEXTS = TextsConfig().for_language("en")
ALICE = "16505551234"
HUNG = 0.3  # seconds: the timeout of the call that hangs
TOKEN = r"/services/oauth2/token$"
STT = r"/v1/speech-to-text$"
TTS = r"/v1/text-to-speech/"


def timeouts(**hung: float) -> dict[str, float]:
    """[timeouts] with ``hung`` short and every other call given plenty of time."""
    generous = {"download": 5, "stt": 5, "agent": 5, "tts": 5, "whatsapp": 5, "upload": 5}
    return {**generous, **hung, "turn": 20}


def names_the_timeout(report: TurnReport, upstream: str) -> None:
    assert (upstream, "timeout") in report.failures, report.failures
    assert f"error='{upstream}: no answer within {HUNG:g}s'" in report.summary()


async def test_agent_timeout_gives_the_apology(provider: str) -> None:
    async def hangs(session: object, text: str) -> list[dict[str, object]]:
        await trio.sleep_forever()  # the agent took the question and never answers
        raise AssertionError("unreachable")

    async with open_stack(
        provider=provider, timeouts=timeouts(agent=HUNG), agentforce_options={"responder": hangs}
    ) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "hello?")
            [sent] = await stack.wait_delivered(1)
            [report] = await stack.wait_reports(1)
    assert sent.text == TEXTS.agent_down
    assert stack.delivered() == [sent]
    assert report.outcome == "agent_down"
    names_the_timeout(report, "agentforce")
    assert len(stack.agentforce.received) == 1  # a question is not asked twice


async def test_token_endpoint_timeout_gives_the_apology(provider: str) -> None:
    async with open_stack(
        provider=provider,
        timeouts=timeouts(agent=HUNG),
        agentforce_faults=Faults(hang_paths=(TOKEN,)),
    ) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "hello?")
            [sent] = await stack.wait_delivered(1)
            [report] = await stack.wait_reports(1)
    assert sent.text == TEXTS.agent_down
    assert stack.delivered() == [sent]
    assert report.outcome == "agent_down"
    names_the_timeout(report, "agentforce")
    assert stack.agentforce.token_requests >= 1  # it hung there, before any session
    assert stack.agentforce.started == [] and stack.agentforce.received == []


async def test_stt_timeout_asks_the_user_to_type(provider: str) -> None:
    async with open_stack(
        provider=provider, timeouts=timeouts(stt=HUNG), elevenlabs_faults=Faults(hang_paths=(STT,))
    ) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "hello?")
            [sent] = await stack.wait_delivered(1)
            [report] = await stack.wait_reports(1)
    assert sent.text == TEXTS.not_understood
    assert stack.delivered() == [sent]
    assert report.outcome == "not_understood"
    names_the_timeout(report, "elevenlabs-stt")
    assert stack.agentforce.received == []


async def test_tts_timeout_leaves_the_text_answer_alone(provider: str) -> None:
    async with open_stack(
        provider=provider, timeouts=timeouts(tts=HUNG), elevenlabs_faults=Faults(hang_paths=(TTS,))
    ) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "What are your opening hours?")
            [text] = await stack.wait_delivered(1)
            [report] = await stack.wait_reports(1)
    assert text.type == "text" and text.text and "open" in text.text
    assert stack.delivered() == [text]  # no voice note, no apology
    assert report.outcome == "answered" and report.voice == "failed"
    assert ("elevenlabs-tts", "timeout") in report.failures


async def test_tts_timeout_is_named_in_the_turn_summary() -> None:
    async with open_stack(
        timeouts=timeouts(tts=HUNG),
        retries={"max_attempts": 1},  # one timeout is enough to name
        elevenlabs_faults=Faults(hang_paths=(TTS,)),
    ) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "What are your opening hours?")
            [report] = await stack.wait_reports(1)
    assert report.voice == "failed"
    assert "voice_error='elevenlabs-tts: no answer within" in report.summary()


@pytest.mark.parametrize(
    ("provider", "route"),
    [
        ("meta", "media"),  # GET /{media-id}: the lookup of the download URL
        ("meta", "media_bytes"),  # the bytes behind it
        ("twilio", "media"),  # MediaUrl0 on Twilio's API (Basic auth)
        ("twilio", "media_bytes"),  # the CDN it redirects to
    ],
)
async def test_media_download_timeout_asks_the_user_to_type(provider: str, route: str) -> None:
    async with open_stack(provider=provider, timeouts=timeouts(download=HUNG)) as stack:
        stack.hang_whatsapp(route)
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "hello?")
            [sent] = await stack.wait_delivered(1)
            [report] = await stack.wait_reports(1)
    assert sent.text == TEXTS.not_understood  # the apology still goes out: only media hangs
    assert stack.delivered() == [sent]
    assert report.outcome == "not_understood"
    names_the_timeout(report, "whatsapp")
    assert stack.elevenlabs.stt_requests == [] and stack.agentforce.received == []


async def test_whatsapp_send_timeout_sends_nothing_more(provider: str) -> None:
    async with open_stack(provider=provider, timeouts=timeouts(whatsapp=HUNG)) as stack:
        stack.hang_whatsapp("send")  # Meta: the read receipt hangs too (best effort)
        with trio.fail_after(10):
            await stack.send_text(ALICE, "hello?")
            [report] = await stack.wait_reports(1)
    # The answer may have been delivered: an apology on top would risk two messages.
    assert report.outcome == "send_unknown"
    names_the_timeout(report, "whatsapp")
    assert stack.delivered() == []
    assert len(stack.agentforce.received) == 1


@pytest.mark.parametrize(
    ("provider", "route"),
    [
        ("meta", "upload"),  # POST /{phone-number-id}/media with the voice note
        ("meta", "send"),  # the voice note's send, once uploaded
        ("twilio", "send"),  # the Messages API call that carries the voice note's URL
    ],
)
async def test_voice_note_timeout_leaves_the_text_answer_alone(provider: str, route: str) -> None:
    # The voice note's upload and send share one budget: [timeouts] upload + whatsapp.
    held = trio.Event()  # TTS answers once the text went out and the route hangs
    async with open_stack(
        provider=provider,
        voice={"reply": "always"},  # a text question, so speech-to-text is not held too
        timeouts=timeouts(upload=HUNG, whatsapp=1.0),
        elevenlabs_faults=Faults(hold=held),
    ) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "What are your opening hours?")
            [text] = await stack.wait_delivered(1)
            stack.hang_whatsapp(route)
            held.set()
            [report] = await stack.wait_reports(1)
    assert text.type == "text" and text.text and "open" in text.text
    assert stack.delivered() == [text]  # no voice note, no apology
    assert report.outcome == "answered" and report.voice == "failed"
    assert ("whatsapp", "timeout") in report.failures
    assert len(stack.elevenlabs.tts_requests) == 1
