"""Fakes of what a turn talks to (channel, agent, speech) and a turn built on them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import trio
import trio.testing

from daemon.cache.stt import TranscriptCache
from daemon.channels.base import VoiceNote
from daemon.config import TextsConfig, TimeoutsConfig, UxConfig, VoiceConfig
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, Media, Transcript, User
from daemon.resilience.guard import Guard
from daemon.sim.audio import speak
from daemon.speech import audio
from daemon.state.base import Journal
from daemon.turn import Turn, TurnReport

TEXTS = TextsConfig().for_language("en")
USER = User("u1", "+15550001")


@dataclass
class FakeChannel:
    name: str = "fake"
    text_limit: int = 4096
    events: list[tuple[str, str]] = field(default_factory=list)
    fail_text: Exception | None = None
    fail_sends: list[Exception] = field(default_factory=list)  # the next sends' errors, in turn
    text_delay: float = 0.0
    # A real voice note: the turn measures it by decoding it before speech-to-text.
    audio: bytes = field(default_factory=lambda: speak("when do you open", seconds=2.0))

    def handshake(self, query: object) -> str | None:
        return None

    def has_signature(self, headers: object) -> bool:
        return True

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
        if self.fail_sends:
            raise self.fail_sends.pop(0)
        if self.fail_text is not None:
            raise self.fail_text
        self.events.append(("text", text))
        return ["wamid.1"]

    async def prepare_voice(self, ogg_opus: bytes, *, audio_key: str = "") -> VoiceNote:
        self.events.append(("upload", audio_key))
        return VoiceNote(f"media-{len(self.events)}", ogg_opus, audio_key)

    async def send_voice(self, user: User, note: VoiceNote) -> str:
        self.events.append(("voice", note.audio.decode()))
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

    cache: dict[str, AgentReply] = field(default_factory=dict)

    async def prepare(self, user_key: str) -> None:
        self.prepared.append(user_key)

    async def cached(
        self, user_key: str, text: str, *, language: str | None = None
    ) -> AgentReply | None:
        return self.cache.get(text)

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
    stt_delay: float = 0.0
    spoken: list[tuple[str, str | None]] = field(default_factory=list)
    heard: list[bytes] = field(default_factory=list)  # the audio of every STT call
    stt_errors: list[Exception] = field(default_factory=list)  # the next calls' errors

    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None
    ) -> Transcript:
        self.heard.append(audio)
        await trio.sleep(self.stt_delay)
        if self.stt_errors:
            raise self.stt_errors.pop(0)
        if self.stt_error is not None:
            raise self.stt_error
        return self.transcript

    audio_cache: dict[tuple[str, str | None], bytes] = field(default_factory=dict)

    def audio_key(self, text: str, *, language: str | None = None) -> str:
        return f"{language}:{text}"

    async def cached(self, text: str, *, language: str | None = None) -> bytes | None:
        return self.audio_cache.get((text, language))

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


async def measure_inline(data: bytes, limit: float) -> float:
    """The real measurement, without the worker thread: MockClock's autojump counts a task
    waiting on a thread as idle and would jump past the turn's deadline meanwhile."""
    return audio.measure_seconds(data, limit=limit)


def make_turn(
    channel: FakeChannel,
    agent: FakeAgent | None = None,
    speech: FakeSpeech | None = None,
    *,
    reply: str = "mirror",
    timeouts: TimeoutsConfig | None = None,
    reports: list[TurnReport] | None = None,
    ux: UxConfig | None = None,
    journal: Journal | None = None,
    guard: Guard | None = None,
    transcripts: TranscriptCache | None = None,
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
        measure=measure_inline,
        journal=journal,
        guard=guard,
        transcripts=transcripts,
    )
