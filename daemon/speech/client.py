"""A thin trio-friendly ElevenLabs client: Scribe speech-to-text and text-to-speech.

Not the ``elevenlabs`` SDK: its retry path sleeps with ``asyncio.sleep`` and so fails under
trio with "no running event loop", and its realtime parts are asyncio-only
(reference/speech.md §3). Two plain HTTP calls on an injected ``httpx.AsyncClient`` are all
the daemon needs; what goes on the wire is built and parsed by ``wire``.

Deliberately absent: retries (the resilience layer owns them, keyed on the error class and
``reason`` set by ``wire.parse_error``) and timeouts (the caller's trio cancel scope from
``[timeouts]``; the httpx client only bounds connect and pool waits).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from daemon import upstream
from daemon.cache.audio import audio_key
from daemon.errors import UpstreamRejected
from daemon.model import Transcript
from daemon.speech.audio import AudioError, ensure_ogg_opus, is_ogg
from daemon.speech.wire import (
    SENTENCE_FORMAT,
    STT,
    TTS,
    parse_error,
    parse_transcript,
    pcm_rate,
    stitches,
    stt_fields,
    tts_body,
    upload_name,
    upload_type,
)

log = logging.getLogger(__name__)


class ElevenLabs:
    """Speech-to-text and text-to-speech over an injected, caller-owned httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        api_key: str,
        voice_id: str,
        tts_model: str,
        stt_model: str,
        output_format: str = "opus_48000_32",
        voice_settings: Mapping[str, float | bool] | None = None,
    ) -> None:
        self._http = http
        self._api_url = api_url.rstrip("/")
        self._api_key = api_key
        self._voice_id = voice_id
        self._tts_model = tts_model
        self._stt_model = stt_model
        self._output_format = output_format
        self._voice_settings = dict(voice_settings) if voice_settings else None

    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None
    ) -> Transcript:
        """The text of a voice note, uploaded as it came: Scribe takes Ogg/Opus (§2.1, §4.1)."""
        response = await self._post(
            STT,
            f"{self._api_url}/v1/speech-to-text",
            headers={"xi-api-key": self._api_key, "Accept": "application/json"},
            data=stt_fields(self._stt_model, language),
            files={"file": (upload_name(audio, mime_type), audio, upload_type(audio, mime_type))},
        )
        transcript = parse_transcript(response.content)
        log.debug(
            "stt done: %d bytes in, %d chars out, language=%s, request-id=%s",
            len(audio),
            len(transcript.text),
            transcript.language,
            response.headers.get("request-id"),
        )
        return transcript

    def audio_key(self, text: str, *, language: str | None = None) -> str:
        """Everything the audio of ``synthesize(text, language=...)`` depends on, hashed."""
        return audio_key(
            voice_id=self._voice_id,
            model_id=self._tts_model,
            voice_settings=self._voice_settings,
            output_format=self._output_format,
            text=text,
            # The one request field besides those that changes the sound.
            extra={
                "language_code": tts_body(
                    text, self._tts_model, language=language, voice_settings=None
                ).get("language_code")
            },
        )

    async def synthesize(self, text: str, *, language: str | None = None) -> bytes:
        """``text`` spoken with the configured voice, as Ogg/Opus ready for a voice note.

        ``opus_48000_*`` comes back as Ogg already (§1.5); anything else (mp3 where Opus is
        not offered, pcm_/wav_ formats) is transcoded off the event loop.
        """
        response = await self._post(
            TTS,
            f"{self._api_url}/v1/text-to-speech/{quote(self._voice_id, safe='')}",
            params={"output_format": self._output_format},
            # No Accept of our own: the audio comes as output_format says, and the errors come
            # as JSON (§1.7), so "audio/*" refused the very bodies we parse. The official SDK
            # sends none either (httpx's "*/*"), which is what the real API is used to.
            headers={"xi-api-key": self._api_key},
            json=tts_body(
                text,
                self._tts_model,
                language=language,
                voice_settings=self._voice_settings,
            ),
        )
        audio = response.content
        log.debug(
            "tts done: %d chars in, %d bytes out (%s), request-id=%s, character-cost=%s, "
            "x-trace-id=%s",
            len(text),
            len(audio),
            response.headers.get("content-type"),
            response.headers.get("request-id"),
            response.headers.get("character-cost"),
            response.headers.get("x-trace-id"),
        )
        if not audio:
            raise UpstreamRejected(
                TTS, "empty audio", status=response.status_code, code="malformed_reply"
            )
        rate = pcm_rate(self._output_format)
        if rate is None and is_ogg(audio):
            return audio
        if self._output_format.startswith("opus_"):
            # Asked for Opus, got something else: the free tier may fall back to mp3 (§1.5).
            log.info(
                "tts answered %s instead of Ogg/Opus; transcoding",
                response.headers.get("content-type", "?"),
            )
        try:
            return await ensure_ogg_opus(audio, pcm_rate=rate)
        except AudioError as exc:
            raise UpstreamRejected(
                TTS, f"undecodable audio: {exc}", status=response.status_code, code="bad_audio"
            ) from exc

    @property
    def stitches(self) -> bool:
        """Whether neighbouring text reaches the model (see ``stitches``)."""
        return stitches(self._tts_model)

    def sentence_key(self, text: str, *, language: str | None = None) -> str:
        """The cache key of ``synthesize_pcm(text)``'s audio. The neighbouring text is not
        in it: a sentence said again in another answer may reuse its audio (a slightly
        less seamless join, for one request less)."""
        return audio_key(
            voice_id=self._voice_id,
            model_id=self._tts_model,
            voice_settings=self._voice_settings,
            output_format=SENTENCE_FORMAT,
            text=text,
            extra={
                "language_code": tts_body(
                    text, self._tts_model, language=language, voice_settings=None
                ).get("language_code")
            },
        )

    async def synthesize_pcm(
        self,
        text: str,
        *,
        language: str | None = None,
        previous_text: str | None = None,
        next_text: str | None = None,
    ) -> bytes:
        """``text`` spoken as raw PCM (``SENTENCE_FORMAT``: signed 16-bit little-endian
        mono at 24 kHz, no header), one part of a voice note; the neighbouring text of the
        note goes along so the parts join (§1.4, §6.4)."""
        response = await self._post(
            TTS,
            f"{self._api_url}/v1/text-to-speech/{quote(self._voice_id, safe='')}",
            params={"output_format": SENTENCE_FORMAT},
            headers={"xi-api-key": self._api_key},  # no Accept: see synthesize
            json=tts_body(
                text,
                self._tts_model,
                language=language,
                voice_settings=self._voice_settings,
                previous_text=previous_text,
                next_text=next_text,
            ),
        )
        audio = response.content
        log.debug(
            "tts sentence: %d chars in, %d bytes of PCM out, request-id=%s",
            len(text),
            len(audio),
            response.headers.get("request-id"),
        )
        if not audio or len(audio) % 2:
            raise UpstreamRejected(
                TTS,
                f"not 16-bit PCM ({len(audio)} bytes)",
                status=response.status_code,
                code="malformed_reply",
            )
        return audio

    async def _post(self, upstream_name: str, url: str, **kwargs: Any) -> httpx.Response:
        with upstream.map_transport_errors(upstream_name, "POST"):
            response = await self._http.post(url, **kwargs)
        if not response.is_success:
            error = parse_error(
                response.status_code,
                response.content,
                upstream_name,
                retry_after=upstream.retry_after(response),
            )
            log.debug(
                "%s failed: %s, request-id=%s",
                upstream_name,
                error,
                response.headers.get("request-id"),
            )
            raise error
        return response
