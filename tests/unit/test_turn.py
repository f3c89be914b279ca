"""The turn, with fakes of the channel, agent and speech: one answer or one apology, always."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from daemon.config import ARABIC, TextsConfig, TimeoutsConfig, UxConfig, VoiceConfig
from daemon.errors import UpstreamRejected, UpstreamUnavailable
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, Media, Transcript, User
from daemon.turn import Turn, TurnReport

TEXTS = TextsConfig().for_language("en")
USER = User("u1", "+15550001")


@dataclass
class FakeChannel:
    name: str = "fake"
    text_limit: int = 4096
    events: list[tuple[str, str]] = field(default_factory=list)
    fail_text: Exception | None = None
    text_delay: float = 0.0
    audio: bytes = b"OggS-voice-note"

    def handshake(self, query: object) -> str | None:
        return None

    def verify(self, request: object) -> bool:
        return True

    def parse(self, request: object) -> object:
        raise NotImplementedError

    def accepted(self) -> tuple[bytes, str]:
        return b"", "text/plain"

    async def acknowledge(self, message: Inbound) -> None:
        self.events.append(("ack", message.message_id))

    async def send_text(self, user: User, text: str) -> list[str]:
        await trio.sleep(self.text_delay)
        if self.fail_text is not None:
            raise self.fail_text
        self.events.append(("text", text))
        return ["wamid.1"]

    async def send_voice(self, user: User, ogg_opus: bytes, *, audio_key: str = "") -> str:
        self.events.append(("voice", ogg_opus.decode()))
        return "wamid.2"

    async def fetch_media(self, media: Media) -> bytes:
        self.events.append(("download", media.id))
        return self.audio

    async def aclose(self) -> None:
        pass

    def sent(self, kind: str) -> list[str]:
        return [v for k, v in self.events if k == kind]


@dataclass
class FakeAgent:
    reply: AgentReply = field(
        default_factory=lambda: AgentReply((AgentMessage("Inform", "We open at **9**."),))
    )
    error: Exception | None = None
    delay: float = 0.0
    asked: list[str] = field(default_factory=list)

    prepared: list[str] = field(default_factory=list)

    async def prepare(self, user_key: str) -> None:
        self.prepared.append(user_key)

    async def ask(self, user_key: str, text: str, *, language: str | None = None) -> AgentReply:
        self.asked.append(text)
        await trio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return self.reply


@dataclass
class FakeSpeech:
    transcript: Transcript = field(default_factory=lambda: Transcript("when do you open", "en"))
    stt_error: Exception | None = None
    tts_error: Exception | None = None
    tts_delay: float = 0.0
    spoken: list[tuple[str, str | None]] = field(default_factory=list)

    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None
    ) -> Transcript:
        if self.stt_error is not None:
            raise self.stt_error
        return self.transcript

    def audio_key(self, text: str, *, language: str | None = None) -> str:
        return f"{language}:{text}"

    async def synthesize(self, text: str, *, language: str | None = None) -> bytes:
        self.spoken.append((text, language))
        await trio.sleep(self.tts_delay)
        if self.tts_error is not None:
            raise self.tts_error
        return f"voice:{text}".encode()


def text_msg(text: str = "when do you open?") -> Inbound:
    return Inbound("wamid.in1", USER, Kind.TEXT, text=text)


def voice_msg() -> Inbound:
    return Inbound("wamid.in2", USER, Kind.VOICE, media=Media("m1", "audio/ogg", voice=True))


def make_turn(
    channel: FakeChannel,
    agent: FakeAgent | None = None,
    speech: FakeSpeech | None = None,
    *,
    reply: str = "mirror",
    timeouts: TimeoutsConfig | None = None,
    reports: list[TurnReport] | None = None,
    ux: UxConfig | None = None,
) -> Turn:
    on_report: Callable[[TurnReport], None] | None = reports.append if reports is not None else None
    return Turn(
        channel=channel,  # type: ignore[arg-type]
        agent=agent or FakeAgent(),
        speech=speech or FakeSpeech(),
        timeouts=timeouts or TimeoutsConfig(),
        voice=VoiceConfig(reply=reply),
        texts=TextsConfig(),
        ux=ux,
        on_report=on_report,
    )


async def test_text_turn_sends_the_answer_in_whatsapp_format() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await make_turn(channel, agent).run(text_msg())
    assert agent.asked == ["when do you open?"]
    assert channel.sent("text") == ["We open at *9*."]
    assert channel.sent("voice") == []
    assert channel.sent("ack") == ["wamid.in1"]
    assert report.outcome == "answered"
    assert {"agent", "send", "total"} <= set(report.stages)


async def test_voice_turn_sends_text_first_then_the_voice_note() -> None:
    channel, speech = FakeChannel(text_delay=0.5), FakeSpeech()
    # TTS is faster than the text send here, and the voice note must still come second.
    report = await make_turn(channel, speech=speech).run(voice_msg())
    kinds = [k for k, _ in channel.events if k in ("text", "voice")]
    assert kinds == ["text", "voice"]
    assert channel.sent("voice") == ["voice:We open at 9."]  # markdown stripped for speech
    assert speech.spoken == [("We open at 9.", "en")]
    assert report.outcome == "answered" and report.voice == "sent"
    assert {"download", "stt", "agent", "send", "tts", "voice_send"} <= set(report.stages)


@pytest.mark.parametrize(
    ("mode", "kind", "voice"),
    [
        ("mirror", Kind.TEXT, False),
        ("mirror", Kind.VOICE, True),
        ("always", Kind.TEXT, True),
        ("never", Kind.VOICE, False),
    ],
)
async def test_voice_reply_modes(mode: str, kind: Kind, voice: bool) -> None:
    channel = FakeChannel()
    message = text_msg() if kind is Kind.TEXT else voice_msg()
    await make_turn(channel, reply=mode).run(message)
    assert len(channel.sent("text")) == 1
    assert len(channel.sent("voice")) == (1 if voice else 0)


async def test_unsupported_message_gets_the_polite_reply_without_asking_the_agent() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await make_turn(channel, agent).run(
        Inbound("wamid.x", USER, Kind.UNSUPPORTED, original_type="image")
    )
    assert channel.sent("text") == [TEXTS.unsupported]
    assert agent.asked == []
    assert report.outcome == "unsupported"


async def test_agent_down_gives_one_apology() -> None:
    channel = FakeChannel()
    agent = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    report = await make_turn(channel, agent).run(voice_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert channel.sent("voice") == []
    assert report.outcome == "agent_down"


async def test_agent_timeout_is_a_cancel_scope(autojump_clock: trio.testing.MockClock) -> None:
    channel = FakeChannel()
    agent = FakeAgent(delay=1000)
    report = await make_turn(channel, agent).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "agent_down"
    assert report.stages["agent"] == pytest.approx(TimeoutsConfig().agent)


async def test_turn_deadline_gives_one_apology(autojump_clock: trio.testing.MockClock) -> None:
    channel = FakeChannel()
    timeouts = TimeoutsConfig(agent=100, turn=5)
    report = await make_turn(channel, FakeAgent(delay=50), timeouts=timeouts).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "timeout"


async def test_speech_to_text_failure_asks_the_user_to_type() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(stt_error=UpstreamRejected("elevenlabs-stt", "bad audio", status=400))
    agent = FakeAgent()
    report = await make_turn(channel, agent, speech).run(voice_msg())
    assert channel.sent("text") == [TEXTS.not_understood]
    assert agent.asked == []
    assert report.outcome == "not_understood"


async def test_empty_transcript_gets_the_no_speech_message() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await make_turn(channel, agent, FakeSpeech(transcript=Transcript("  "))).run(
        voice_msg()
    )
    assert channel.sent("text") == [TEXTS.no_speech]
    assert agent.asked == []
    assert report.outcome == "no_speech"


async def test_tts_failure_leaves_the_text_answer_alone() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(tts_error=UpstreamUnavailable("elevenlabs-tts", "429"))
    report = await make_turn(channel, speech=speech).run(voice_msg())
    assert channel.sent("text") == ["We open at *9*."]
    assert channel.sent("voice") == []
    assert report.outcome == "answered" and report.voice == "failed"


async def test_failed_text_send_means_no_voice_note() -> None:
    refused = UpstreamRejected("whatsapp", "131047", status=400, code="131047")
    channel = FakeChannel(fail_text=refused)
    report = await make_turn(channel).run(voice_msg())
    assert channel.sent("voice") == []
    assert report.outcome == "send_failed"
    assert report.voice == "skipped"


async def test_a_send_whose_answer_was_lost_gets_no_apology() -> None:
    # The connection dropped after the request went out (no HTTP status): WhatsApp may have
    # delivered it. An apology now could be a second message.
    lost = UpstreamUnavailable("whatsapp", "POST failed: ReadError")
    channel = FakeChannel(fail_text=lost)
    report = await make_turn(channel).run(text_msg())
    assert channel.sent("text") == []
    assert report.outcome == "send_unknown"


async def test_text_send_timeout_sends_nothing_more(autojump_clock: trio.testing.MockClock) -> None:
    channel = FakeChannel(text_delay=1000)
    report = await make_turn(channel).run(text_msg())
    assert channel.sent("text") == []  # no apology on top of an answer that may have arrived
    assert report.outcome == "send_unknown"


async def test_escalation_says_so() -> None:
    channel = FakeChannel()
    agent = FakeAgent(reply=AgentReply((AgentMessage("Escalate"),)))
    report = await make_turn(channel, agent).run(voice_msg())
    assert channel.sent("text") == [TEXTS.escalated]
    assert channel.sent("voice") == []
    assert report.outcome == "escalated"


@pytest.mark.parametrize(
    "messages",
    [
        (AgentMessage("Failure", "ACTION_FAILED: flow error 42"),),
        (AgentMessage("Error", "boom"),),
        (),
    ],
)
async def test_failure_error_or_empty_reply_is_an_apology(
    messages: tuple[AgentMessage, ...],
) -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(reply=AgentReply(messages))).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "agent_failure"


async def test_a_bug_costs_one_apology_not_the_daemon() -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(error=ZeroDivisionError())).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "error"


async def test_report_summary_carries_stage_timings_and_no_phone_number() -> None:
    reports: list[TurnReport] = []
    await make_turn(FakeChannel(), reports=reports).run(text_msg())
    line = reports[0].summary()
    assert "outcome=answered" in line and "agent=" in line and "send=" in line
    assert "+15550001" not in line and "u1" not in line.split()


# -- the seed's touches: holding message, transcript echo, language, pre-warm ----------------


async def test_holding_message_when_the_answer_is_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(delay=10), ux=UxConfig(holding_after=3)).run(
        text_msg()
    )
    assert channel.sent("text") == [TEXTS.holding, "We open at *9*."]
    assert report.extras == ["holding"]


async def test_no_holding_message_when_the_answer_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(delay=2.9), ux=UxConfig(holding_after=3)).run(
        text_msg()
    )
    assert channel.sent("text") == ["We open at *9*."]
    assert report.extras == []
    await trio.sleep(10)  # and not later either: the holding task ended with the turn
    assert channel.sent("text") == ["We open at *9*."]


async def test_holding_message_never_overtakes_an_answer_being_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The answer is ready at 2.5 s but its send takes 2 s: at 3 s the holding timer fires
    # while the answer is on its way, and must stay silent.
    channel = FakeChannel(text_delay=2)
    await make_turn(channel, FakeAgent(delay=2.5), ux=UxConfig(holding_after=3)).run(text_msg())
    assert channel.sent("text") == ["We open at *9*."]


async def test_transcript_echo_goes_first_and_replaces_the_holding_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    turn = make_turn(
        channel,
        FakeAgent(delay=10),
        ux=UxConfig(holding_after=3, echo_transcript=True),
    )
    report = await turn.run(voice_msg())
    texts = channel.sent("text")
    assert texts == ["I understood: “when do you open”", "We open at *9*."]
    assert report.extras == ["echo"]


async def test_arabic_voice_note_gets_arabic_texts_and_language_to_tts() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(transcript=Transcript("متى تفتحون؟", "ara"))
    agent = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    report = await make_turn(channel, agent, speech).run(voice_msg())
    assert channel.sent("text") == [ARABIC.agent_down]
    assert report.language == "ar"

    channel, speech = FakeChannel(), FakeSpeech(transcript=Transcript("متى تفتحون؟", "ara"))
    await make_turn(channel, FakeAgent(), speech).run(voice_msg())
    assert speech.spoken == [("We open at 9.", "ar")]


async def test_arabic_text_gets_arabic_canned_texts() -> None:
    channel = FakeChannel()
    report = await make_turn(
        channel, FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    ).run(text_msg("متى تفتحون؟"))
    assert channel.sent("text") == [ARABIC.agent_down]
    assert report.language == "ar"


async def test_voice_note_prewarms_the_agent_session() -> None:
    agent = FakeAgent()
    await make_turn(FakeChannel(), agent).run(voice_msg())
    assert agent.prepared == ["u1"]
    agent = FakeAgent()
    await make_turn(FakeChannel(), agent).run(text_msg())
    assert agent.prepared == []  # a text goes straight to ask, which opens the session
