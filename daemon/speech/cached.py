"""Speech behind the TTS audio cache: common answers spoken without calling ElevenLabs.

``CachedSpeech`` implements the turn's ``Speech`` protocol around the ElevenLabs client. A
synthesis is looked up by its ``audio_key`` (voice, model, voice settings, output format,
language and the text) in the memory and disk tiers of ``AudioCache``; a miss renders once,
however many turns ask for the same audio at once (single flight inside the cache), and
stores the finished Ogg/Opus voice note. The same key lets the channel reuse an uploaded
media id (daemon/cache/media_ids.py). ``cached`` looks a text up without ever rendering it,
and ``prerender`` fills the cache with fixed phrases at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

from daemon.cache.audio import AudioCache
from daemon.model import Transcript
from daemon.speech.client import ElevenLabs


class CachedSpeech:
    def __init__(self, speech: ElevenLabs, audio: AudioCache) -> None:
        self._speech = speech
        self._audio = audio

    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None
    ) -> Transcript:
        return await self._speech.transcribe(audio, mime_type, language=language)

    def audio_key(self, text: str, *, language: str | None = None) -> str:
        return self._speech.audio_key(text, language=language)

    async def synthesize(self, text: str, *, language: str | None = None) -> bytes:
        return await self._audio.get_or_render(
            self.audio_key(text, language=language),
            lambda: self._speech.synthesize(text, language=language),
        )

    async def cached(self, text: str, *, language: str | None = None) -> bytes | None:
        """The voice note of ``text`` if the audio cache holds it, else None — never calls
        ElevenLabs. For canned replies spoken while something is failing: a pre-rendered
        phrase costs nothing, and a TTS call then could only add delay to the apology."""
        return await self._audio.get(self.audio_key(text, language=language), count_miss=False)

    async def prerender(self, phrases: Iterable[str], *, language: str | None = None) -> int:
        """Render fixed phrases at start-up, so their first use is already a hit."""
        return await self._audio.prerender(
            phrases,
            lambda text: self._speech.synthesize(text, language=language),
            lambda text: self.audio_key(text, language=language),
        )
