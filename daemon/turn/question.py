"""The user's question: a text as it came, a voice note's words from speech-to-text.

    voice note:  transcript cache (by the digest the webhook states)
                 -> download (the agent session opened meanwhile: pre-warm)
                 -> transcript cache (by the digest of what was downloaded)
                 -> measured (PyAV): not too long, within today's budget and allowance
                 -> speech-to-text -> the echo ([ux] echo_transcript)

A resumed turn whose journal holds the transcript starts from it (plan.py). What cannot
become a question ends the answer path with the ``Canned`` reply that says why: a kind the
daemon does not read, a download or a transcription that failed, audio that does not
decode or is too long, silence, a spent budget or allowance.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from daemon import language as languages
from daemon.cache.stt import TranscriptCache, audio_digest
from daemon.channels.base import Channel
from daemon.config import TimeoutsConfig, VoiceConfig
from daemon.errors import UpstreamError
from daemon.model import Kind, Media, Transcript
from daemon.speech import audio as audio_files
from daemon.state.base import Stage
from daemon.turn.calls import Calls
from daemon.turn.costs import Costs
from daemon.turn.extras import Extras
from daemon.turn.flow import Attempts, Canned, Flow
from daemon.turn.report import Outcome
from daemon.turn.upstreams import Agent, Speech

log = logging.getLogger("daemon.turn")

Measure = Callable[[bytes, float], Awaitable[float]]


class Questions:
    def __init__(
        self,
        *,
        channel: Channel,
        agent: Agent,
        speech: Speech,
        calls: Calls,
        costs: Costs,
        extras: Extras,
        transcripts: TranscriptCache | None,
        timeouts: TimeoutsConfig,
        voice: VoiceConfig,
        measure: Measure,
    ) -> None:
        self._channel = channel
        self._agent = agent
        self._speech = speech
        self._calls = calls
        self._costs = costs
        self._extras = extras
        self._transcripts = transcripts
        self._timeouts = timeouts
        self._voice = voice
        self._measure = measure

    async def question(self, flow: Flow, background: trio.Nursery) -> str | Canned:
        message = flow.message
        if message.kind is Kind.UNSUPPORTED:
            return Canned(Outcome.UNSUPPORTED, flow.texts.unsupported)
        if message.kind is Kind.TEXT:
            return message.text
        assert message.media is not None  # the parser sets media on every VOICE message
        transcript = await self._transcribe(flow, message.media, background)
        if isinstance(transcript, Canned):
            return transcript
        flow.language = languages.normalize(transcript.language) or flow.language
        if not transcript.text.strip():
            return Canned(Outcome.NO_SPEECH, flow.texts.no_speech)
        await self._extras.echo(flow, transcript.text)
        return transcript.text

    async def _transcribe(
        self, flow: Flow, media: Media, background: trio.Nursery
    ) -> Transcript | Canned:
        """The voice note's words. Pre-warmed only when there is a download and a
        transcription to overlap it with: a cached transcript's answer may come from the
        response cache, and then no session is needed at all."""
        if flow.plan.transcript is not None:
            return flow.plan.transcript  # heard before a restart
        cache, report = self._transcripts, flow.report
        # Looked up by the digest the webhook states (a forwarded note skips the download),
        # stored only under the digest of what was downloaded (daemon/cache/stt.py says why).
        if cache is not None and (known := cache.get(media.sha256 or "")) is not None:
            report.cached.append("transcript")
            return known
        background.start_soon(self._prewarm, flow.message.user.key)
        try:
            audio = await self._calls.timed(
                report,
                "download",
                "whatsapp",
                self._timeouts.download,
                lambda: self._channel.fetch_media(media),
                idempotent=True,
            )
        except UpstreamError as exc:
            report.error = str(exc)
            return Canned(Outcome.NOT_UNDERSTOOD, flow.texts.not_understood)
        digest = audio_digest(audio)
        known = None if cache is None else cache.get_downloaded(digest, claimed=media.sha256)
        if known is not None:
            report.cached.append("transcript")  # the same file under another claimed digest
            return known
        seconds = await self._listenable(flow, audio)
        if isinstance(seconds, Canned):
            return seconds
        attempts = Attempts()
        try:
            # Billed per second of audio, so never repeated when it may have been done (a
            # timeout, a 5xx): only what the upstream certainly refused (429, not sent).
            transcript = await self._calls.timed(
                report,
                "stt",
                "elevenlabs-stt",
                self._timeouts.stt,
                lambda: self._speech.transcribe(audio, media.mime_type),
                idempotent=False,
                on_attempt=attempts,
            )
        except UpstreamError as exc:
            report.error = str(exc)
            return Canned(Outcome.NOT_UNDERSTOOD, flow.texts.not_understood)
        finally:
            self._costs.heard(report, seconds * attempts.count)
        if cache is not None:
            cache.put(digest, transcript)  # ignores an empty transcript
        await flow.note(Stage.TRANSCRIBED, transcript=transcript)
        return transcript

    async def _listenable(self, flow: Flow, audio: bytes) -> float | Canned:
        """The voice note's length in seconds, measured by decoding it, when it may go to
        speech-to-text: not too long, within today's budget and the user's allowance."""
        texts, limit = flow.texts, self._voice.max_seconds
        try:
            seconds = await self._measure(audio, limit)
        except audio_files.AudioError as exc:
            # Not audio we can decode: speech-to-text would fail the same way, and bill it.
            flow.report.error = f"audio not measurable: {exc}"
            return Canned(Outcome.UNDECODABLE, texts.not_understood)
        if seconds > limit:
            flow.report.error = f"voice note over {limit:g} s"
            return Canned(Outcome.TOO_LONG, texts.voice_too_long)
        refused = await self._costs.speech_to_text(flow, seconds)
        return seconds if refused is None else refused

    async def _prewarm(self, user_key: str) -> None:
        """Open the agent session while the voice note is fetched and transcribed."""
        try:
            with trio.move_on_after(self._timeouts.agent):
                await self._agent.prepare(user_key)
        except UpstreamError as exc:  # the ask that follows meets the same problem, and says so
            log.info("agent session pre-warm failed: %s", exc)
