"""The voice path's promises, from config.toml to the wire, on both providers.

- Pre-warm: for a voice note the user's Agentforce session is opened while the audio is
  downloaded and transcribed, not after (issue 6).
- Voice settings: the TTS model, stability, similarity boost, style and speaker boost of
  ``[elevenlabs]`` are what the TTS request carries.
- Language: an Arabic voice note is spoken back in Arabic (``language_code`` to TTS) and
  gets the Arabic canned texts; the language is the message's, not the user's last one.
"""

from __future__ import annotations

import trio

from daemon.config import ARABIC, ENGLISH
from daemon.sim.base import Faults
from daemon.sim.stack import VOICE_ID, open_stack

ALICE = "16505551234"


async def test_voice_note_opens_the_agent_session_while_it_is_transcribed(provider: str) -> None:
    # Speech-to-text answers only once the agent session exists. With the pre-warm the
    # session start reaches the agent while the transcription is held; without it the
    # session would wait for the transcript, the transcript for the session, and the turn
    # would end in [timeouts] stt with no session at all.
    session_open = trio.Event()
    async with open_stack(
        provider=provider,
        timeouts={"stt": 2.0},
        elevenlabs_faults=Faults(hold=session_open),
    ) as stack:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def release_once_the_session_started() -> None:
                    await stack.agentforce.wait_started(1)
                    session_open.set()

                nursery.start_soon(release_once_the_session_started)
                await stack.send_voice(ALICE, "Do you ship to Canada?")
                [report] = await stack.wait_reports(1)
                nursery.cancel_scope.cancel()
            await stack.wait_delivered(2)
        assert report.outcome == "answered", report.summary()
        [started] = stack.agentforce.started
        [stt] = stack.elevenlabs.stt_requests
        [asked] = stack.agentforce.received
        # On the simulators' shared clock: session start, then the transcript, then the ask.
        assert started.time < stt.time < asked.time
        assert asked.text == "Do you ship to Canada?"


async def test_voice_settings_from_config_reach_the_tts_request(provider: str) -> None:
    configured = {
        "tts_model": "eleven_turbo_v2_5",
        "stt_model": "scribe_v2",
        "stability": 0.3,
        "similarity_boost": 0.9,
        "style": 0.2,
        "speaker_boost": False,
    }
    async with open_stack(provider=provider, elevenlabs=configured) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "Do you ship to Canada?")
            _, voice = await stack.wait_delivered(2)
    assert voice.type == "audio" and voice.renders_as_voice_note
    [stt] = stack.elevenlabs.stt_requests
    assert stt.model_id == "scribe_v2"
    [tts] = stack.elevenlabs.tts_requests
    assert tts.voice_id == VOICE_ID
    assert tts.model_id == "eleven_turbo_v2_5"
    assert tts.output_format == "opus_48000_32"
    assert tts.voice_settings == {
        "stability": 0.3,
        "similarity_boost": 0.9,
        "style": 0.2,
        "use_speaker_boost": False,
    }
    assert tts.language_code == "en"  # Turbo v2.5 takes the language the user spoke


async def test_arabic_voice_note_gets_arabic_speech_and_arabic_texts(provider: str) -> None:
    async with open_stack(provider=provider, ux={"echo_transcript": True}) as stack:
        with trio.fail_after(20):
            # An Arabic question: the echo in Arabic, the answer, a voice note in Arabic.
            await stack.send_voice(ALICE, "متى تفتحون؟", language="ar")
            echo, answer, voice = await stack.wait_delivered(3, ALICE)
            [report] = await stack.wait_reports(1)
            assert echo.text == ARABIC.transcript_echo.replace("{transcript}", "متى تفتحون؟")
            assert (answer.type, voice.type) == ("text", "audio")
            assert report.language == "ar" and report.voice == "sent"
            [stt] = stack.elevenlabs.stt_requests
            assert stt.language_code is None  # speech-to-text finds the language itself
            [tts] = stack.elevenlabs.tts_requests
            assert tts.language_code == "ar" and tts.model_id == "eleven_flash_v2_5"

            # Silence recorded by an Arabic speaker: the Arabic "speak louder, or type".
            await stack.send_voice(ALICE, "", language="ar")
            [report] = (await stack.wait_reports(2))[1:]
            assert report.outcome == "no_speech"
            assert (await stack.wait_delivered(4, ALICE))[3].text == ARABIC.no_speech

            # The agent goes down: the apology in the language of each message.
            stack.agentforce.faults.error_rate = 1.0
            stack.agentforce.faults.error_status = 500
            await stack.send_voice(ALICE, "هل أنتم هناك؟", language="ar")
            await stack.wait_reports(3)
            await stack.send_text(ALICE, "هل أنتم هناك؟")  # Arabic script, typed
            await stack.wait_reports(4)
            await stack.send_text(ALICE, "Are you there?")  # the same user, now in English
            reports = await stack.wait_reports(5)
            sent = await stack.wait_delivered(8, ALICE)
    assert [r.outcome for r in reports[2:]] == ["agent_down"] * 3
    assert [r.language for r in reports[2:]] == ["ar", "ar", ""]  # "": the default language
    assert [s.text for s in sent[4:]] == [
        ARABIC.transcript_echo.replace("{transcript}", "هل أنتم هناك؟"),
        ARABIC.agent_down,
        ARABIC.agent_down,
        ENGLISH.agent_down,
    ]
    assert len(stack.delivered(ALICE)) == 8  # one message per turn, and the echo
    assert len(stack.elevenlabs.tts_requests) == 1  # no voice note for apologies
