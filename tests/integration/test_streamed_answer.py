"""A streamed answer, end to end without the turn: the Agentforce simulator streams, the
real client reads it, the voice composer speaks it through the ElevenLabs simulator.

This is the path the turn integration (issue 12, part 2) wires: text from the final
reply once EndOfTurn came, the voice note from the composer right after. Also the faults
the turn must handle: the stream endpoint refused (fallback to sync, once), a connection
broken mid-stream (StreamBroken, never asked again), a retraction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import trio

from daemon.agentforce.client import AgentforceClient
from daemon.agentforce.sessions import SessionStore
from daemon.agentforce.stream import EndOfTurn
from daemon.agentforce.streaming import AgentStream, StreamBroken
from daemon.sim import agentforce
from daemon.sim.agentforce import AgentforceSim, StreamPacing
from daemon.sim.audio import describe
from daemon.sim.elevenlabs import ElevenLabsSim
from daemon.speech.client import ElevenLabs
from daemon.speech.composer import VoiceNote, compose_voice
from daemon.speech.sentence_voice import SentenceVoice
from daemon.text import for_speech

CLIENT_ID, CLIENT_SECRET = "3MVG9-stream", "stream-secret"
AGENT_ID = "0XxSTREAM00000001A"
ENDPOINT = "https://acme.my.salesforce.com"
EL_KEY, VOICE = "sk-stream", "stream-voice"
USER = "wa:+15550100"


@dataclass
class Upstreams:
    agent_sim: AgentforceSim
    speech_sim: ElevenLabsSim
    agent: AgentforceClient
    speech: ElevenLabs


class AskedVoice:
    """A PcmVoice that notes each sentence when it is asked for (not when it is done)."""

    def __init__(self, voice: SentenceVoice) -> None:
        self._voice = voice
        self.asked: list[str] = []
        self.pcm_rate = voice.pcm_rate

    def key(self, text: str) -> str:
        return self._voice.key(text)

    async def pcm(self, text: str, *, previous_text: str, next_text: str) -> bytes:
        self.asked.append(text)
        return await self._voice.pcm(text, previous_text=previous_text, next_text=next_text)


@dataclass
class Answered:
    stream: AgentStream
    voice_note: VoiceNote | None
    events: list[str]  # the kinds of event, in order
    asked_before_the_end: int  # sentences sent to speech before EndOfTurn


async def answer_with_voice(ups: Upstreams, nursery: trio.Nursery, question: str) -> Answered:
    """What the turn does with a streamed answer: speech ops to the composer as events
    come; the reply (the text to send) once EndOfTurn came; then the voice note."""
    voice = AskedVoice(SentenceVoice(ups.speech, language="en"))
    events: list[str] = []
    stream = await ups.agent.open_stream(USER, question)
    async with (
        stream,
        compose_voice(nursery, voice, concurrency=3, max_chars=1500) as note,
    ):
        async for step in stream:
            events.append(type(step.event).__name__)
            note.apply(step.speech)
        asked = len(voice.asked)
        return Answered(stream, await note.finish(stream.reply.text), events, asked)


@pytest.fixture
async def ups(nursery: trio.Nursery) -> AsyncIterator[Upstreams]:
    agent_sim = AgentforceSim(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        agent_id=AGENT_ID,
        instance_endpoint=ENDPOINT,
    )
    speech_sim = ElevenLabsSim(api_key=EL_KEY, voice_ids=(VOICE,))
    with trio.fail_after(10):
        await agent_sim.start(nursery)
        await speech_sim.start(nursery)
    async with httpx.AsyncClient(timeout=30) as http:
        agent = AgentforceClient(
            http,
            token_url=f"{agent_sim.base_url}/services/oauth2/token",
            api_url=f"{agent_sim.base_url}/einstein/ai-agent/v1",
            instance_endpoint=ENDPOINT,
            agent_id=AGENT_ID,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            sessions=SessionStore(100, 1200.0),
            stream_idle=10.0,
        )
        speech = ElevenLabs(
            http,
            api_url=speech_sim.base_url,
            api_key=EL_KEY,
            voice_id=VOICE,
            tts_model="eleven_flash_v2_5",
            stt_model="scribe_v1",
        )
        yield Upstreams(agent_sim, speech_sim, agent, speech)


async def test_text_from_the_final_reply_and_one_voice_note_right_behind(
    ups: Upstreams, nursery: trio.Nursery
) -> None:
    ups.agent_sim.stream_pacing = StreamPacing(chunk_interval=0.01, words=3)
    with trio.fail_after(30):
        answered = await answer_with_voice(ups, nursery, "What about returns?")
    reply = answered.stream.reply  # the text the turn sends, from Inform / EndOfTurn
    voice_note = answered.voice_note
    assert answered.events[0] == "ProgressIndicator" and answered.events[-1] == "EndOfTurn"
    assert reply.text == agentforce.FAQ_RETURNS
    assert answered.asked_before_the_end >= 3  # speech began while the agent still wrote
    assert voice_note is not None
    assert describe(voice_note.ogg)["codec"] == "opus"
    assert voice_note.text == for_speech(agentforce.FAQ_RETURNS)  # one note, all of it
    assert ups.agent_sim.received[0].stream


async def test_a_session_without_streaming_answers_from_the_sync_endpoint(
    ups: Upstreams,
) -> None:
    ups.agent_sim.stream_refusal = 501
    with trio.fail_after(30):
        first = await ups.agent.open_stream(USER, "What are your hours?")
        async with first:
            events = [step.event async for step in first]
        second = await ups.agent.open_stream(USER, "And shipping?")
        async with second:
            await second.__anext__()
    assert first.fell_back and second.fell_back
    assert first.reply.text == agentforce.FAQ_HOURS
    assert isinstance(events[-1], EndOfTurn)
    # The refused POST never reached the agent: two messages, both synchronous.
    assert [m.stream for m in ups.agent_sim.received] == [False, False]
    stream_posts = [r for r in ups.agent_sim.requests if r.path.endswith("/messages/stream")]
    assert [r.status for r in stream_posts] == [501]  # tried once, then remembered


async def test_a_stream_broken_midway_is_never_sent_again(ups: Upstreams) -> None:
    ups.agent_sim.stream_abort_after = 3
    with trio.fail_after(30):
        stream = await ups.agent.open_stream(USER, "What are your hours?")
        with pytest.raises(StreamBroken) as info:
            async with stream:
                async for _ in stream:
                    pass
        await ups.agent_sim.wait_idle()
    assert info.value.sent is True
    assert info.value.events == 3
    assert len(ups.agent_sim.received) == 1  # no second POST, no fallback
    # The session lives on: the next message goes to it.
    ups.agent_sim.stream_abort_after = None
    with trio.fail_after(30):
        after = await ups.agent.open_stream(USER, "hi")
        async with after:
            async for _ in after:
                pass
    assert len({m.session_id for m in ups.agent_sim.received}) == 1


async def test_a_withdrawn_draft_is_not_in_the_voice_note(
    ups: Upstreams, nursery: trio.Nursery
) -> None:
    ups.agent_sim.stream_retract = True
    with trio.fail_after(30):
        answered = await answer_with_voice(ups, nursery, "What are your hours?")
    voice_note = answered.voice_note
    assert "ValidationFailure" in answered.events
    assert voice_note is not None
    assert "Draft" not in voice_note.text
    assert voice_note.text == for_speech(agentforce.FAQ_HOURS)
