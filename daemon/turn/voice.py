"""The voice note: text-to-speech -> Ogg/Opus -> upload, then the send once the text went out.

``[voice] reply`` says who gets one (``mirror``: who sent a voice note; ``always``;
``never``), and only an answer gets one (``answered``): an escalation or an apology is text.
Whether a given answer is spoken is decided before its text goes out (``allowance``), so a
line about it can join the text ("voice replies are over for today"). A cached voice note
costs nothing and is always allowed; a new one needs today's TTS budget and the user's
allowance of characters (costs.py).

The voice note runs beside the text: it is rendered and uploaded while the text may still
be on its way, and sent only after the text went out (``TextGate``); if the text did not go
out, it is not sent either (a lone voice note would confuse). If the voice part fails, the
text answer stands alone: one answer, never two. A canned reply (an apology, a notice) is
spoken only when its voice note is pre-rendered ([cache] prerender_canned): a TTS call while
something is failing could only delay or break the apology.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from daemon import text as textfmt
from daemon.channels.base import Channel
from daemon.config import TimeoutsConfig, VoiceConfig
from daemon.errors import UpstreamError
from daemon.model import Inbound, Kind
from daemon.state.base import Stage
from daemon.turn.calls import Calls
from daemon.turn.costs import Costs
from daemon.turn.flow import Attempts, Flow, TextGate
from daemon.turn.report import Outcome, VoiceResult
from daemon.turn.upstreams import Speech

log = logging.getLogger("daemon.turn")


@dataclass(frozen=True, slots=True)
class Speaking:
    """What ``allowance`` decided: the text to speak ("" = no voice note), its audio when a
    cache holds it, and a line to add to the text answer about it ("" = none)."""

    spoken: str
    cached: bytes | None = None
    note: str = ""


class VoicePath:
    def __init__(
        self,
        channel: Channel,
        speech: Speech,
        calls: Calls,
        costs: Costs,
        voice: VoiceConfig,
        timeouts: TimeoutsConfig,
        clock: Callable[[], float],
    ) -> None:
        self._channel = channel
        self._speech = speech
        self._calls = calls
        self._costs = costs
        self._voice = voice
        self._timeouts = timeouts
        self._clock = clock

    def wanted(self, message: Inbound, outcome: Outcome) -> bool:
        """Whether an answer with ``outcome`` to ``message`` comes with a voice note."""
        return outcome == Outcome.ANSWERED and self.reply_for(message)

    def reply_for(self, message: Inbound) -> bool:
        """Whether ``[voice] reply`` gives this message's sender a voice note."""
        if self._voice.reply == "never":
            return False
        return self._voice.reply == "always" or message.kind is Kind.VOICE

    async def allowance(self, flow: Flow, answer: str) -> Speaking:
        """Whether ``answer`` may be spoken, decided before the text goes out."""
        spoken = textfmt.for_speech(answer)
        if not spoken or len(spoken) > self._voice.max_tts_chars:
            return Speaking("")
        # Looked up outside the guard: spoken while ElevenLabs' circuit is open, and not
        # counted by the breaker as a TTS call.
        cached = await self._speech.cached(spoken, language=flow.language)
        if cached is not None:
            return Speaking(spoken, cached)
        allowance = await self._costs.text_to_speech(flow, len(spoken))
        if not allowance.allowed:
            return Speaking("", note=allowance.note)
        return Speaking(spoken)

    async def send(self, flow: Flow, voice: Speaking, gate: TextGate) -> None:
        """Render (unless cached), upload, and send after the text: the report says how it
        went. Never raises an upstream error: the text answer stands regardless."""
        report, spoken = flow.report, voice.spoken
        attempts = Attempts()
        try:
            audio = voice.cached
            if audio is None:
                try:
                    audio = await self._calls.timed(
                        report,
                        "tts",
                        "elevenlabs-tts",
                        self._timeouts.tts,
                        lambda: self._speech.synthesize(spoken, language=flow.language),
                        idempotent=True,
                        on_attempt=attempts,
                    )
                finally:
                    self._costs.spoke(report, len(spoken) * attempts.count)
            else:
                report.cached.append("voice")
            key = self._speech.audio_key(spoken, language=flow.language)
            voice_id = await self._deliver(flow, audio, key, gate)
            if voice_id is None:
                report.voice = VoiceResult.SKIPPED  # no text went out: nothing to follow
                return
            report.voice = VoiceResult.SENT
            report.stages["to_voice"] = self._clock() - flow.started
            await flow.note(Stage.VOICE_SENT, voice_id=voice_id)
        except UpstreamError as exc:
            # The text answer stands; nothing more is sent (one answer, never two).
            report.voice = VoiceResult.FAILED
            report.voice_error = str(exc)
            log.warning("turn %s voice note failed: %s", report.turn_id, exc)

    async def speak_canned(self, flow: Flow, text: str) -> None:
        """A canned reply that went out as text, as a voice note too, for someone who wants
        voice — only when it is pre-rendered."""
        if not self.reply_for(flow.message):
            return
        language = flow.canned_language
        spoken = textfmt.for_speech(text)
        audio = await self._speech.cached(spoken, language=language)
        if audio is None:
            return
        try:
            key = self._speech.audio_key(spoken, language=language)
            await self._deliver(flow, audio, key, None)  # the text went out already
            flow.report.voice = VoiceResult.SENT
        except UpstreamError as exc:  # the text said it already
            flow.report.voice = VoiceResult.FAILED
            log.info("turn %s: spoken apology not sent: %s", flow.report.turn_id, exc)

    async def _deliver(
        self, flow: Flow, audio: bytes, audio_key: str, gate: TextGate | None
    ) -> str | None:
        """Upload (or otherwise prepare) the voice note while the text may still be on its
        way, then send it once the text went out: the message id, or None when the text
        did not go out (then nothing is sent). Each step has its own timeout."""
        note = await self._calls.timed(
            flow.report,
            "upload",
            "whatsapp",
            self._timeouts.upload,
            lambda: self._channel.prepare_voice(audio, audio_key=audio_key),
            idempotent=True,  # an upload nobody was sent is invisible
        )
        if gate is not None and not await gate.wait():
            return None
        await flow.may_send()
        voice_id = await self._calls.timed(
            flow.report,
            "voice_send",
            "whatsapp",
            self._timeouts.whatsapp,
            lambda: self._channel.send_voice(flow.message.user, note),
            idempotent=False,
        )
        self._costs.sent(flow.report, "voice", 1)
        return voice_id
