"""A thin trio-friendly ElevenLabs client: Scribe speech-to-text and text-to-speech.

Not the ``elevenlabs`` SDK: its retry path sleeps with ``asyncio.sleep`` and so fails under
trio with "no running event loop", and its realtime parts are asyncio-only
(reference/speech.md §3). Two plain HTTP calls on an injected ``httpx.AsyncClient`` are all
the daemon needs.

Deliberately absent: retries (the resilience layer owns them, keyed on the error class and
``reason`` set here) and timeouts (the caller's trio cancel scope from ``[timeouts]``; the
httpx client only bounds connect and pool waits).

Errors, all ``daemon.errors`` with upstream "elevenlabs-stt" / "elevenlabs-tts"::

    transport failure, 429, 408, 409, 5xx   UpstreamUnavailable   (retry later may help)
    any other non-2xx, malformed reply      UpstreamRejected      (retrying will not help)

with ``code`` = ``detail.status`` of the body (reference/speech.md §1.7), and
``reason`` = ``Reason.SLOW_DOWN`` for 429, 503, ``system_busy`` and
``too_many_concurrent_requests``: the request was not worked on, come back later.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from daemon import language
from daemon.cache.audio import audio_key
from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.model import Transcript
from daemon.resilience.retry import with_retry_after
from daemon.speech.audio import AudioError, ensure_ogg_opus, is_ogg

log = logging.getLogger(__name__)

STT = "elevenlabs-stt"
TTS = "elevenlabs-tts"

# Only these enforce language_code; other models answer it with an error (§1.4).
LANGUAGE_CODE_MODELS = frozenset({"eleven_flash_v2_5", "eleven_turbo_v2_5"})

# The 32 languages of Flash/Turbo v2.5, as ElevenLabs spells their codes (ISO 639-1, plus
# "fil"). Scribe reports ISO 639-3 codes ("eng"), and WhatsApp-side code may give "en-US":
# both are mapped here, because an unsupported code would cost the voice note a 4xx.
TTS_LANGUAGES = frozenset({
    "en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "fil", "pl",
    "sv", "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru", "hu",
    "no", "vi",
})  # fmt: skip


# Extensions for the multipart filename. Servers (OpenAI, §2.2) have been seen to decide the
# format by the name, so it must match the bytes; Ogg gets "voice.ogg" (not ".opus").
_EXTENSIONS = {
    "audio/ogg": "ogg",
    "audio/opus": "ogg",
    "audio/mpeg": "mp3",
    "audio/mp3": "mp3",
    "audio/mp4": "m4a",
    "audio/m4a": "m4a",
    "audio/x-m4a": "m4a",
    "audio/aac": "aac",
    "audio/amr": "amr",
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/webm": "webm",
    "audio/flac": "flac",
}

_RETRYABLE = frozenset({408, 409, 429})  # plus every 5xx; what the SDK's _should_retry covers
# "Busy, not done": over the plan's concurrency, server overload (§1.7; the docs say to retry
# with backoff), or 503. Other 5xx may have done the work; for speech that only costs credits.
_SLOW_DOWN_STATUSES = frozenset({429, 503})
_BUSY = frozenset({"system_busy", "too_many_concurrent_requests"})


# --------------------------------------------------------------------------- pure helpers


def tts_language(code: str | None) -> str | None:
    """The TTS ``language_code`` for a reported language, or None if TTS does not know it.

    None means "let the model detect it", which is better than a rejected request.
    """
    base = language.normalize(code)
    return base if base in TTS_LANGUAGES else None


def base_mime(mime_type: str) -> str:
    """``audio/ogg; codecs=opus`` -> ``audio/ogg``.

    Scribe's list of accepted inputs names base types (``audio/ogg``, ``audio/opus``; §2.1)
    and its curl example uploads ``type=audio/ogg``; the codec parameter tells a server that
    sniffs the bytes anyway nothing, and a strict one comparing types could refuse it.
    """
    return mime_type.split(";", 1)[0].strip().lower() or "application/octet-stream"


def upload_name(audio: bytes, mime_type: str) -> str:
    """The filename for the multipart ``file`` part: what the bytes are, by magic first."""
    if is_ogg(audio):
        return "voice.ogg"
    return f"voice.{_EXTENSIONS.get(base_mime(mime_type), 'bin')}"


def upload_type(audio: bytes, mime_type: str) -> str:
    """The part's Content-Type: the message's MIME type without parameters (see base_mime)."""
    mime = base_mime(mime_type)
    if mime == "application/octet-stream" and is_ogg(audio):
        return "audio/ogg"  # the channel lost the type; the bytes still say what they are
    return mime


def stt_fields(model_id: str, language: str | None) -> dict[str, str]:
    """The non-file form fields of ``POST /v1/speech-to-text`` (§2.1)."""
    fields = {
        "model_id": model_id,
        # Default true would put "(laughter)" and the like into the text sent to the agent.
        "tag_audio_events": "false",
        # We need the text only; "none" drops the per-word list from the reply.
        "timestamps_granularity": "none",
    }
    if language:
        fields["language_code"] = language  # else Scribe detects the language itself
    return fields


def tts_body(
    text: str,
    model_id: str,
    *,
    language: str | None,
    voice_settings: Mapping[str, float | bool] | None,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/text-to-speech/{voice_id}`` (§1.4)."""
    body: dict[str, Any] = {"text": text, "model_id": model_id}
    if model_id in LANGUAGE_CODE_MODELS:
        code = tts_language(language)
        if code:
            body["language_code"] = code
    if voice_settings:
        body["voice_settings"] = dict(voice_settings)
    return body


def pcm_rate(output_format: str) -> int | None:
    """The sample rate of a raw ``pcm_<rate>`` output format (headerless s16le mono)."""
    codec, _, rest = output_format.partition("_")
    rate = rest.split("_")[0]
    return int(rate) if codec == "pcm" and rate.isdigit() else None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError; deep nesting
        return None


def parse_error(status: int, body: bytes, upstream: str) -> UpstreamError:
    """The error for a non-2xx answer; never raises, whatever the body is.

    Bodies are ``{"detail": {"status": "<code>", "message": "..."}}``, or FastAPI's
    ``{"detail": [{"loc", "msg", "type"}, ...]}`` for 422 (§1.7).
    """
    code: str | None = None
    message = ""
    doc = _json(body)
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if isinstance(detail, dict):
        if isinstance(detail.get("status"), str):
            code = detail["status"]
        if isinstance(detail.get("message"), str):
            message = detail["message"]
    elif isinstance(detail, list):
        code = "validation_error"
        first = detail[0] if detail and isinstance(detail[0], dict) else {}
        message = str(first.get("msg", ""))[:200]
        loc = first.get("loc")
        if isinstance(loc, list) and loc:  # FastAPI's ["body", "model_id"]; anything else: none
            message = f"{'.'.join(str(part)[:50] for part in loc[:5])}: {message}"
    elif isinstance(detail, str):
        message = detail
    message = f"HTTP {status}" + (f": {message[:200]}" if message else "")
    cls = UpstreamUnavailable if status in _RETRYABLE or status >= 500 else UpstreamRejected
    reason = Reason.SLOW_DOWN if status in _SLOW_DOWN_STATUSES or code in _BUSY else None
    return cls(upstream, message, status=status, code=code, reason=reason)


def parse_transcript(body: bytes) -> Transcript:
    """``{"text": ..., "language_code": ...}`` -> Transcript; UpstreamRejected if malformed.

    Scribe reports ISO 639-3 ("eng", "ara"; §2.1, the SDK's "e.g. 'eng' for English"), the
    rest of the daemon (canned texts, TTS ``language_code``) speaks ISO 639-1: mapped here,
    once, so a code never reaches them in the other form.
    """
    doc = _json(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise UpstreamRejected(STT, "reply has no text", code="malformed_reply")
    reported = doc.get("language_code")
    return Transcript(
        text=doc["text"].strip(),
        language=language.normalize(reported if isinstance(reported, str) else None),
    )


# --------------------------------------------------------------------------- the client


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

    async def _post(self, upstream: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.post(url, **kwargs)
        except httpx.TransportError as exc:  # connect/read/write errors and httpx timeouts
            raise UpstreamUnavailable(upstream, f"{type(exc).__name__}: {exc}") from exc
        except httpx.DecodingError as exc:  # a body the content-encoding cannot undo
            raise UpstreamRejected(upstream, f"undecodable reply: {exc}") from exc
        if not response.is_success:
            error = with_retry_after(
                parse_error(response.status_code, response.content, upstream), response.headers
            )
            log.debug(
                "%s failed: %s, request-id=%s",
                upstream,
                error,
                response.headers.get("request-id"),
            )
            raise error
        return response
