"""ElevenLabs on the wire: request fields and bodies to build, answers to parse. Pure, no I/O.

Section numbers (§) refer to reference/speech.md. The client (``client.py``) does the HTTP;
everything here is tested without a socket.

Errors, all ``daemon.errors`` with upstream "elevenlabs-stt" / "elevenlabs-tts"::

    transport failure, 429, 408, 409, 5xx   UpstreamUnavailable   (retry later may help)
    any other non-2xx, malformed reply      UpstreamRejected      (retrying will not help)

with ``code`` = ``detail.status`` of the body (§1.7), and ``reason`` = ``Reason.SLOW_DOWN``
for 429, 503, ``system_busy`` and ``too_many_concurrent_requests``: the request was not
worked on, come back later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from daemon import language, upstream
from daemon.errors import Reason, UpstreamError, UpstreamRejected
from daemon.model import Transcript
from daemon.speech.audio import is_ogg

STT = "elevenlabs-stt"
TTS = "elevenlabs-tts"

# Only these enforce language_code; other models answer it with an error (§1.4).
LANGUAGE_CODE_MODELS = frozenset({"eleven_flash_v2_5", "eleven_turbo_v2_5"})

# Request stitching (previous_text / next_text, §1.4) "is not available for the eleven_v3
# model" (ElevenLabs' request-stitching guide); a third-party report has the API answer
# those fields with 400 unsupported_model there. Models named so get no neighbouring text.
NO_STITCHING_PREFIX = "eleven_v3"

# Raw PCM for the parts of a voice note spoken sentence by sentence: joined and encoded
# once into one Ogg/Opus note (§6.4). 24 kHz is offered on every plan (44.1 kHz needs Pro,
# §1.3) and Opus takes it as it is.
SENTENCE_FORMAT = "pcm_24000"

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

# "Busy, not done": over the plan's concurrency, or server overload (§1.7; the docs say to
# retry with backoff), whatever the status. Without one of these the status decides
# (daemon.upstream.ELEVENLABS: 408, 409, 429 and 5xx may pass, as the SDK's _should_retry has
# it; 429 and 503 are SLOW_DOWN). Other 5xx may have done the work; for speech that only
# costs credits.
_CODES = upstream.Codes(
    reasons={"system_busy": Reason.SLOW_DOWN, "too_many_concurrent_requests": Reason.SLOW_DOWN}
)


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
    previous_text: str | None = None,
    next_text: str | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/text-to-speech/{voice_id}`` (§1.4).

    ``previous_text`` / ``next_text``: what is spoken before and after this text in the same
    voice note, so the prosody joins (request stitching); left out for models without it.
    """
    body: dict[str, Any] = {"text": text, "model_id": model_id}
    if model_id in LANGUAGE_CODE_MODELS:
        code = tts_language(language)
        if code:
            body["language_code"] = code
    if voice_settings:
        body["voice_settings"] = dict(voice_settings)
    if stitches(model_id):
        if previous_text:
            body["previous_text"] = previous_text
        if next_text:
            body["next_text"] = next_text
    return body


def stitches(model_id: str) -> bool:
    """Whether the model takes neighbouring text (request stitching, §1.4)."""
    return not model_id.startswith(NO_STITCHING_PREFIX)


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


def parse_error(
    status: int, body: bytes, upstream_name: str, *, retry_after: float | None = None
) -> UpstreamError:
    """The error for a non-2xx answer; never raises, whatever the body is.

    Bodies are ``{"detail": {"status": "<code>", "message": "..."}}``, or FastAPI's
    ``{"detail": [{"loc", "msg", "type"}, ...]}`` for 422 (§1.7). ``retry_after``: the
    answer's Retry-After, carried by the error.
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
    return _CODES.error(
        upstream_name,
        message,
        status=status,
        code=code,
        statuses=upstream.ELEVENLABS,
        retry_after=retry_after,
    )


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
