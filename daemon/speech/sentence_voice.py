"""ElevenLabs as the voice composer's ``PcmVoice``: one sentence, raw PCM, in one language.

``through`` is where the turn puts its guard (breaker, retries, the [timeouts] tts cancel
scope) around each request: a sentence is idempotent, so a lost one may be asked again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from daemon.speech.client import ElevenLabs
from daemon.speech.wire import SENTENCE_FORMAT, pcm_rate

Through = Callable[[Callable[[], Awaitable[bytes]]], Awaitable[bytes]]


async def _direct(call: Callable[[], Awaitable[bytes]]) -> bytes:
    return await call()


class SentenceVoice:
    def __init__(
        self, speech: ElevenLabs, *, language: str | None, through: Through = _direct
    ) -> None:
        self._speech = speech
        self._language = language
        self._through = through
        rate = pcm_rate(SENTENCE_FORMAT)
        assert rate is not None  # SENTENCE_FORMAT is a pcm_<rate> format
        self._rate = rate

    @property
    def pcm_rate(self) -> int:
        return self._rate

    def key(self, text: str) -> str:
        return self._speech.sentence_key(text, language=self._language)

    async def pcm(self, text: str, *, previous_text: str, next_text: str) -> bytes:
        return await self._through(
            lambda: self._speech.synthesize_pcm(
                text,
                language=self._language,
                previous_text=previous_text or None,
                next_text=next_text or None,
            )
        )
