"""A strict fake of ElevenLabs: Scribe speech-to-text and text-to-speech over REST.

Wire formats follow reference/speech.md (cited as §n below):

- ``POST /v1/speech-to-text``                   multipart upload -> transcript JSON (§2.1)
- ``POST /v1/text-to-speech/{voice_id}``         JSON -> whole audio file (§1.1-§1.9)
- ``POST /v1/text-to-speech/{voice_id}/stream``  the same audio, sent in chunks (§1.1)

Errors have the two shapes of the real API (§1.7): FastAPI validation errors are 422
``{"detail":[{"loc":[...],"msg":"...","type":"..."}]}``; everything else is
``{"detail":{"status":"<code>","message":"<text>"}}``. The sim never "hears" real speech: the
transcript is the text that ``daemon.sim.audio.speak`` hid in the clip's tags, and spoken
answers carry their text the same way (MP3 in ID3 tags too), so tests can follow a voice
note through the whole daemon.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import av
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.datastructures import FileStorage

from daemon.sim import audio
from daemon.sim.base import Changes, Faults, start_app

log = logging.getLogger(__name__)

JsonDict = dict[str, Any]

# §2.1 and the models the API lists (elevenlabs.io/docs/overview/models; the 2.78 SDK's
# docstrings add scribe_v2_medical and scribe_v3). scribe_v2_realtime is WebSocket-only.
STT_MODELS = (
    "scribe_v1",
    "scribe_v1_experimental",
    "scribe_v2",
    "scribe_v2_medical",
    "scribe_v3",
)
# Characters per request for every text-to-speech model the API lists (§1.9 and the models
# overview; the 2.78 SDK's TtsConversationalModel names v4 and v4 turbo). The English-only
# v2 models take 30 000 characters; the deprecated v1 models, still accepted, 10 000.
TTS_MODELS = {
    "eleven_flash_v2_5": 40_000,
    "eleven_turbo_v2_5": 40_000,
    "eleven_flash_v2": 30_000,
    "eleven_turbo_v2": 30_000,
    "eleven_multilingual_v2": 10_000,
    "eleven_v3": 5_000,
    "eleven_v3_conversational": 5_000,
    "eleven_v4": 10_000,
    "eleven_v4_turbo": 10_000,
    "eleven_monolingual_v1": 10_000,
    "eleven_multilingual_v1": 10_000,
}
DEFAULT_TTS_MODEL = "eleven_multilingual_v2"  # §1.4
DEFAULT_OUTPUT_FORMAT = "mp3_44100_128"  # §1.3
# §1.4: only these enforce language_code; send it only with them.
LANGUAGE_CODE_MODELS = frozenset({"eleven_flash_v2_5", "eleven_turbo_v2_5"})
# The 32 languages of Flash / Turbo v2.5 (ISO 639-1, Filipino as "fil").
V25_LANGUAGES = frozenset(
    {"en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "it", "es", "id", "nl", "tr", "fil", "pl"}
    | {"sv", "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "ru", "hu"}
    | {"no", "vi"}
)
# §1.3: the 2025 spec plus the 2026 SDK additions.
OUTPUT_FORMATS = frozenset(
    ["mp3_22050_32", "mp3_24000_48"]
    + [f"mp3_44100_{kbps}" for kbps in (32, 64, 96, 128, 192)]
    + [f"pcm_{rate}" for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)]
    + ["ulaw_8000", "alaw_8000"]
    + [f"opus_48000_{kbps}" for kbps in (32, 64, 96, 128, 192)]
    + [f"wav_{rate}" for rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000)]
)
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "ulaw": "audio/basic",
    "alaw": "audio/x-alaw-basic",
}
# Scribe reports the language as ISO 639-3 ("eng"; the SDK's SpeechToTextChunkResponseModel:
# "The detected language code (e.g. 'eng' for English)"), whatever form it was given in.
ISO_639_3 = {
    "en": "eng", "ja": "jpn", "zh": "cmn", "de": "deu", "hi": "hin", "fr": "fra", "ko": "kor",
    "pt": "por", "it": "ita", "es": "spa", "id": "ind", "nl": "nld", "tr": "tur", "fil": "fil",
    "tl": "fil", "pl": "pol", "sv": "swe", "bg": "bul", "ro": "ron", "ar": "ara", "cs": "ces",
    "el": "ell", "fi": "fin", "hr": "hrv", "ms": "msa", "sk": "slk", "da": "dan", "ta": "tam",
    "uk": "ukr", "ru": "rus", "hu": "hun", "no": "nor", "nb": "nor", "vi": "vie", "he": "heb",
    "th": "tha", "fa": "fas", "ur": "urd", "bn": "ben", "sw": "swa",
}  # fmt: skip
# What an untagged clip "says", as daemon.sim.audio.listen hears it.
UNTAGGED_TEXT = "Hello, this is a voice note."
_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})  # pydantic's lax booleans
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})
_STREAM_CHUNK = 4096


# --- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SttRequest:
    """A transcription the sim answered with 200."""

    model_id: str
    language_code: str | None  # as sent; None when the client let Scribe detect it
    file_name: str
    content_type: str
    size: int
    fields: dict[str, str]  # every form field as sent, file excluded
    text: str  # the transcript returned
    time: float


@dataclass(frozen=True)
class TtsRequest:
    """A synthesis the sim answered with 200."""

    voice_id: str
    text: str
    model_id: str
    language_code: str | None
    output_format: str
    voice_settings: JsonDict | None
    body: JsonDict
    time: float
    stream: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int
    time: float


# --- pure helpers ----------------------------------------------------------------------------


@dataclass
class _Problems:
    """FastAPI collects every validation error of a request before answering 422."""

    items: list[JsonDict] = field(default_factory=list)

    def add(self, loc: list[str | int], msg: str, kind: str) -> None:
        self.items.append({"loc": loc, "msg": msg, "type": kind})


def _literal_msg(allowed: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{a}'" for a in allowed]
    if len(quoted) == 1:
        return f"Input should be {quoted[0]}"
    return f"Input should be {', '.join(quoted[:-1])} or {quoted[-1]}"


def _form_bool(value: str) -> bool | None:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _check_number(
    problems: _Problems,
    loc: list[str | int],
    value: Any,
    low: float | None,
    high: float | None,
    integer: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "int_type" if integer else "float_type"
        name = "integer" if integer else "number"
        problems.add(loc, f"Input should be a valid {name}", kind)
        return
    if integer and not float(value).is_integer():
        problems.add(loc, "Input should be a valid integer", "int_from_float")
        return
    if low is not None and value < low:
        problems.add(loc, f"Input should be greater than or equal to {low:g}", "greater_than_equal")
    if high is not None and value > high:
        problems.add(loc, f"Input should be less than or equal to {high:g}", "less_than_equal")


def parse_output_format(output_format: str) -> tuple[str, int, int]:
    """``mp3_44100_128`` -> ("mp3", 44100, 128); bitrate 0 when the format has none."""
    parts = output_format.split("_")
    return parts[0], int(parts[1]), int(parts[2]) if len(parts) > 2 else 0


def spoken_seconds(text: str) -> float:
    """The same length rule as ``daemon.sim.audio.speak``: ~60 ms a character, 0.5-20 s."""
    return min(20.0, max(0.5, 0.06 * len(text)))


@cache
def _tone_period(rate: int) -> bytes:
    """One period of a ~200 Hz tone as s16le; repeating it is much cheaper than sin() per
    sample for 20 s of audio."""
    period = max(2, rate // 200)
    return b"".join(
        int(3000 * math.sin(2 * math.pi * k / period)).to_bytes(2, "little", signed=True)
        for k in range(period)
    )


def tone_pcm(rate: int, seconds: float) -> bytes:
    samples = int(rate * seconds)
    period = _tone_period(rate)
    return (period * (2 * samples // len(period) + 1))[: 2 * samples]


def _encode(
    container: str, codec: str, rate: int, bit_rate: int, pcm: bytes, tags: dict[str, str]
) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        for key, value in tags.items():
            out.metadata[key] = value
        stream = out.add_stream(codec, rate=rate, layout="mono")
        assert isinstance(stream, av.AudioStream)
        if bit_rate:
            stream.bit_rate = bit_rate
        step = 1152 * 2
        for start in range(0, len(pcm), step):
            piece = pcm[start : start + step]
            frame = av.AudioFrame(format="s16", layout="mono", samples=len(piece) // 2)
            frame.planes[0].update(piece)
            frame.sample_rate = rate
            frame.pts = start // 2
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def synthesize(text: str, language: str, output_format: str) -> bytes:
    """Real audio bytes in ``output_format`` for ``text`` (CPU-bound: run it in a thread).

    Opus comes from ``daemon.sim.audio.speak`` (Ogg container, §1.5); MP3 carries the text in
    its ID3 tags (title and the sim's own tags) so ``audio.listen`` reads it back; PCM, WAV
    and G.711 are a tone of the same length.
    """
    codec, rate, kbps = parse_output_format(output_format)
    if codec == "opus":
        return audio.speak(text, language)
    pcm = tone_pcm(rate, spoken_seconds(text))
    if codec == "pcm":
        return pcm
    if codec == "mp3":
        tags = {"title": text[:200], audio.TEXT_TAG: text, audio.LANG_TAG: language}
        return _encode("mp3", "libmp3lame", rate, kbps * 1000, pcm, tags)
    if codec == "wav":
        return _encode("wav", "pcm_s16le", rate, 0, pcm, {})
    if codec == "ulaw":
        return _encode("mulaw", "pcm_mulaw", rate, 0, pcm, {})
    return _encode("alaw", "pcm_alaw", rate, 0, pcm, {})


def transcribe(data: bytes, file_format: str) -> tuple[str, str, float]:
    """(text, language, seconds) of an upload; raises ``audio.NotAudio`` when undecodable.

    ``pcm_s16le_16`` (§2.1) is headerless, so it carries no tag: it is heard as the fixed
    sentence any untagged recording gets.
    """
    if file_format == "pcm_s16le_16":
        if not data or len(data) % 2:
            raise audio.NotAudio("not 16-bit PCM")
        return UNTAGGED_TEXT, "en", len(data) / 32_000
    return audio.listen(data)


def words_for(text: str, seconds: float, granularity: str) -> list[JsonDict]:
    """Scribe's ``words`` list (§2.1): words and spacings spread evenly over the clip."""
    if granularity == "none" or not text:
        return []
    tokens = re.findall(r"\S+|\s+", text)
    per_char = seconds / max(1, len(text))
    words: list[JsonDict] = []
    at = 0.0
    for token in tokens:
        end = at + per_char * len(token)
        entry: JsonDict = {
            "text": token,
            "start": round(at, 3),
            "end": round(end, 3),
            "type": "spacing" if token.isspace() else "word",
            "speaker_id": "speaker_0",
            "logprob": 0.0,
        }
        if granularity == "character" and not token.isspace():
            entry["characters"] = [
                {
                    "text": char,
                    "start": round(at + per_char * i, 3),
                    "end": round(at + per_char * (i + 1), 3),
                }
                for i, char in enumerate(token)
            ]
        words.append(entry)
        at = end
    return words


# --- the sim --------------------------------------------------------------------------------


class ElevenLabsSim:
    """Serve with ``await sim.start(nursery)``; point ``[elevenlabs] api_url`` at ``base_url``.

    ``threads``: decode and encode audio in worker threads (default) so a 20 s clip does not
    stall the event loop; pass False in tests that run on trio's MockClock with autojump,
    where time would jump while a thread works.
    """

    def __init__(
        self,
        *,
        api_key: str,
        voice_ids: tuple[str, ...] | list[str] = ("sim-voice",),
        faults: Faults | None = None,
        clock: Callable[[], float] = trio.current_time,
        threads: bool = True,
    ) -> None:
        self.api_key = api_key
        self.voice_ids = set(voice_ids)
        self.faults = faults or Faults()
        # Faults for text-to-speech alone, in place of ``faults`` (None: ``faults`` applies):
        # one upstream of the daemon (its own breaker) can fail while speech-to-text works.
        self.tts_faults: Faults | None = None
        self.clock = clock
        self.threads = threads
        # §1.5: Opus is reported unavailable on the free tier; then the sim answers opus
        # requests with MP3 bytes, and the daemon must notice (no "OggS") and transcode.
        self.opus_unavailable = False
        self.base_url = ""

        self.stt_requests: list[SttRequest] = []
        self.tts_requests: list[TtsRequest] = []
        self.requests: list[LoggedRequest] = []
        self._changes = Changes()
        self.app = self._build_app()

    async def start(self, nursery: trio.Nursery) -> str:
        self.base_url = await start_app(nursery, self.app)
        return self.base_url

    # -- waiting ------------------------------------------------------------------------

    async def wait_stt(self, count: int) -> list[SttRequest]:
        """Until at least ``count`` transcriptions were answered."""
        await self._changes.until(lambda: len(self.stt_requests) >= count)
        return self.stt_requests

    async def wait_tts(self, count: int) -> list[TtsRequest]:
        """Until at least ``count`` syntheses were answered."""
        await self._changes.until(lambda: len(self.tts_requests) >= count)
        return self.tts_requests

    async def wait_requests(self, count: int) -> list[LoggedRequest]:
        await self._changes.until(lambda: len(self.requests) >= count)
        return self.requests

    # -- responses ----------------------------------------------------------------------

    @staticmethod
    def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body), status=status, content_type="application/json", headers=headers
        )

    def _detail(self, status: int, code: str, message: str) -> Response:
        return self._json({"detail": {"status": code, "message": message}}, status)

    def _unprocessable(self, problems: _Problems) -> Response:
        return self._json({"detail": problems.items}, 422)

    async def _gate(self, faults: Faults | None = None) -> Response | None:
        """Faults (``self.faults`` unless given), then the API key (§1.2)."""
        faults = faults or self.faults
        await faults.delay()
        if faults.should_fail():
            status = faults.error_status
            code = "too_many_concurrent_requests" if status == 429 else "internal_server_error"
            return self._detail(status, code, "Injected fault")
        key = request.headers.get("xi-api-key")
        if key is None:
            return self._detail(
                401,
                "needs_authorization",
                "Neither authorization header nor xi-api-key received, please provide one.",
            )
        if key != self.api_key:
            return self._detail(401, "invalid_api_key", "Invalid API key")
        return None

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.threads:
            return await trio.to_thread.run_sync(fn, *args)
        return fn(*args)

    # -- routes -------------------------------------------------------------------------

    def _build_app(self) -> Any:
        app = QuartTrio("elevenlabs-sim")
        app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024
        app.add_url_rule("/v1/speech-to-text", view_func=self._stt, methods=["POST"])
        app.add_url_rule("/v1/text-to-speech/<voice_id>", view_func=self._tts, methods=["POST"])
        app.add_url_rule(
            "/v1/text-to-speech/<voice_id>/stream",
            view_func=self._tts_stream,
            methods=["POST"],
        )
        app.after_request(self._log_request)
        return app

    async def _log_request(self, response: Response) -> Response:
        self.requests.append(
            LoggedRequest(request.method, request.path, response.status_code, self.clock())
        )
        self._changes.bump()
        return response

    async def _stt(self) -> Response:
        if problem := await self._gate():
            return problem
        problems = _Problems()
        enable_logging = request.args.get("enable_logging")
        if enable_logging is not None and _form_bool(enable_logging) is None:
            problems.add(
                ["query", "enable_logging"],
                "Input should be a valid boolean, unable to interpret input",
                "bool_parsing",
            )
        # Starlette reads any form body (multipart or urlencoded); other bodies give an empty
        # form, so FastAPI reports the required fields as missing.
        fields: dict[str, str] = {}
        upload: FileStorage | None = None
        try:
            fields = dict((await request.form).items())
            upload = (await request.files).get("file")
        except ValueError:
            pass  # a broken multipart body reads as an empty form, like Starlette's
        model_id = fields.get("model_id")
        if model_id is None:
            problems.add(["body", "model_id"], "Field required", "missing")
        elif model_id not in STT_MODELS:
            problems.add(["body", "model_id"], _literal_msg(STT_MODELS), "literal_error")
        if "file" in fields:
            problems.add(
                ["body", "file"],
                "Value error, Expected UploadFile, received: <class 'str'>",
                "value_error",
            )
        cloud_url = fields.get("cloud_storage_url") or None
        if (upload is None) == (cloud_url is None) and "file" not in fields:
            problems.add(
                ["body"],
                "Value error, Exactly one of file or cloud_storage_url must be provided",
                "value_error",
            )
        for name in ("tag_audio_events", "diarize", "use_multi_channel", "webhook"):
            if name in fields and _form_bool(fields[name]) is None:
                problems.add(
                    ["body", name],
                    "Input should be a valid boolean, unable to interpret input",
                    "bool_parsing",
                )
        granularity = fields.get("timestamps_granularity", "word")
        choices: tuple[str, ...] = ("none", "word", "character")
        if granularity not in choices:
            problems.add(["body", "timestamps_granularity"], _literal_msg(choices), "literal_error")
        file_format = fields.get("file_format", "other")
        if file_format not in ("pcm_s16le_16", "other"):
            problems.add(
                ["body", "file_format"], _literal_msg(("pcm_s16le_16", "other")), "literal_error"
            )
        numeric = {
            "num_speakers": (1, 32, True),
            "temperature": (0, 2, False),
            "seed": (0, 2_147_483_647, True),
            "diarization_threshold": (0.1, 0.4, False),
        }
        for name, (low, high, integer) in numeric.items():
            if name in fields:
                try:
                    value: float = float(fields[name])
                except ValueError:
                    kind = "int_parsing" if integer else "float_parsing"
                    what = "an integer" if integer else "a number"
                    problems.add(
                        ["body", name],
                        f"Input should be a valid {what}, unable to parse string as {what}",
                        kind,
                    )
                    continue
                _check_number(problems, ["body", name], value, low, high, integer)
        if problems.items:
            return self._unprocessable(problems)
        if cloud_url is not None or upload is None:
            # The sim has no network to fetch from; fail loudly rather than pretend.
            return self._detail(
                400,
                "invalid_cloud_storage_url",
                "The simulator cannot fetch cloud_storage_url; upload the file instead.",
            )
        data = upload.read()
        try:
            text, language, seconds = await self._run(transcribe, data, file_format)
        except audio.NotAudio:
            # The real status name for undecodable uploads is undocumented (speech.md §1.7).
            return self._detail(
                400,
                "invalid_content",
                "The uploaded file could not be decoded as audio. Please upload a valid "
                "audio or video file.",
            )
        language_code = fields.get("language_code") or None
        heard = (language_code or language).strip().lower()
        body = {
            "language_code": ISO_639_3.get(heard, heard),
            "language_probability": 1.0 if language_code else 0.98,
            "text": text,
            "words": words_for(text, seconds, granularity),
        }
        assert model_id is not None
        self.stt_requests.append(
            SttRequest(
                model_id=model_id,
                language_code=language_code,
                file_name=upload.filename or "",
                content_type=upload.content_type or "",
                size=len(data),
                fields=fields,
                text=text,
                time=self.clock(),
            )
        )
        self._changes.bump()
        return self._json(body, headers={"request-id": uuid.uuid4().hex})

    async def _tts(self, voice_id: str) -> Response:
        return await self._speak(voice_id, stream=False)

    async def _tts_stream(self, voice_id: str) -> Response:
        return await self._speak(voice_id, stream=True)

    async def _json_body(self, problems: _Problems) -> Any:
        """FastAPI's rule: JSON when Content-Type is absent or */json or */*+json; any other
        type leaves the raw bytes, which then fail as "not an object"."""
        raw = await request.get_data()
        content_type = request.headers.get("Content-Type")
        mimetype = request.mimetype
        is_json = not content_type or (
            mimetype.startswith("application/")
            and (mimetype == "application/json" or mimetype.endswith("+json"))
        )
        if not is_json:
            return raw
        try:
            return json.loads(raw)
        except ValueError as exc:
            position = getattr(exc, "pos", 0)
            problems.add(["body", position], "JSON decode error", "json_invalid")
            return None

    async def _speak(self, voice_id: str, *, stream: bool) -> Response:
        if problem := await self._gate(self.tts_faults):
            return problem
        problems = _Problems()
        output_format = request.args.get("output_format", DEFAULT_OUTPUT_FORMAT)
        if output_format not in OUTPUT_FORMATS:
            problems.add(
                ["query", "output_format"],
                _literal_msg(sorted(OUTPUT_FORMATS)),
                "literal_error",
            )
        enable_logging = request.args.get("enable_logging")
        if enable_logging is not None and _form_bool(enable_logging) is None:
            problems.add(
                ["query", "enable_logging"],
                "Input should be a valid boolean, unable to interpret input",
                "bool_parsing",
            )
        latency = request.args.get("optimize_streaming_latency")
        if latency is not None and latency not in ("0", "1", "2", "3", "4"):
            problems.add(
                ["query", "optimize_streaming_latency"],
                "Input should be 0, 1, 2, 3 or 4",
                "literal_error",
            )
        body = await self._json_body(problems)
        if body is not None and not isinstance(body, dict):
            problems.add(
                ["body"],
                "Input should be a valid dictionary or object to extract fields from",
                "model_attributes_type",
            )
        if isinstance(body, dict):
            self._check_tts_body(body, problems)
        if problems.items:
            return self._unprocessable(problems)
        assert isinstance(body, dict)
        text: str = body["text"]
        model_id: str = body.get("model_id") or DEFAULT_TTS_MODEL
        language_code: str | None = body.get("language_code") or None
        if voice_id not in self.voice_ids:
            return self._detail(
                400, "voice_not_found", f"A voice for the voice_id {voice_id} was not found."
            )
        if model_id not in TTS_MODELS:
            return self._detail(
                400, "model_not_found", f"A model with model ID {model_id} does not exist."
            )
        if language_code is not None and (
            model_id not in LANGUAGE_CODE_MODELS or language_code not in V25_LANGUAGES
        ):
            # §1.4; message as observed from the live API (pipecat#5395).
            return self._detail(
                400,
                "unsupported_language",
                f"Model '{model_id}' does not support language_code '{language_code}'.",
            )
        limit = TTS_MODELS[model_id]
        if len(text) > limit:
            return self._detail(
                400,
                "max_character_limit_exceeded",
                f"You are sending {len(text)} characters, but the maximum for {model_id} "
                f"is {limit} characters.",
            )
        codec, _, _ = parse_output_format(output_format)
        produced = output_format
        if codec == "opus" and self.opus_unavailable:
            produced = DEFAULT_OUTPUT_FORMAT
        data: bytes = await self._run(synthesize, text, language_code or "en", produced)
        self.tts_requests.append(
            TtsRequest(
                voice_id=voice_id,
                text=text,
                model_id=model_id,
                language_code=language_code,
                output_format=output_format,
                voice_settings=body.get("voice_settings"),
                body=body,
                time=self.clock(),
                stream=stream,
            )
        )
        self._changes.bump()
        headers = {
            "request-id": uuid.uuid4().hex,
            "character-cost": str(len(text)),  # §1.6
        }
        content_type = CONTENT_TYPES[parse_output_format(produced)[0]]
        if not stream:
            return Response(data, content_type=content_type, headers=headers)
        return Response(_chunks(data), content_type=content_type, headers=headers)

    @staticmethod
    def _check_tts_body(body: JsonDict, problems: _Problems) -> None:
        """The §1.4 body, as FastAPI/pydantic would validate it (unknown keys are ignored)."""
        if "text" not in body:
            problems.add(["body", "text"], "Field required", "missing")
        elif not isinstance(body["text"], str):
            problems.add(["body", "text"], "Input should be a valid string", "string_type")
        elif not body["text"].strip():
            # Stricter than a plain str field: silence for blank text is never what the
            # client meant.
            problems.add(
                ["body", "text"], "String should have at least 1 character", "string_too_short"
            )
        for name in ("model_id", "language_code", "previous_text", "next_text"):
            if body.get(name) is not None and not isinstance(body[name], str):
                problems.add(["body", name], "Input should be a valid string", "string_type")
        settings = body.get("voice_settings")
        if settings is not None:
            if not isinstance(settings, dict):
                problems.add(
                    ["body", "voice_settings"],
                    "Input should be a valid dictionary or object to extract fields from",
                    "model_attributes_type",
                )
            else:
                for name in ("stability", "similarity_boost", "style"):
                    if settings.get(name) is not None:
                        loc: list[str | int] = ["body", "voice_settings", name]
                        _check_number(problems, loc, settings[name], 0.0, 1.0)
                boost = settings.get("use_speaker_boost")
                if boost is not None and not isinstance(boost, bool):
                    problems.add(
                        ["body", "voice_settings", "use_speaker_boost"],
                        "Input should be a valid boolean",
                        "bool_type",
                    )
                if settings.get("speed") is not None:
                    _check_number(
                        problems, ["body", "voice_settings", "speed"], settings["speed"], 0.7, 1.2
                    )
        if body.get("seed") is not None:
            _check_number(problems, ["body", "seed"], body["seed"], 0, 4_294_967_295, True)
        normalization = body.get("apply_text_normalization")
        if normalization is not None and normalization not in ("auto", "on", "off"):
            problems.add(
                ["body", "apply_text_normalization"],
                _literal_msg(("auto", "on", "off")),
                "literal_error",
            )
        for name in ("previous_request_ids", "next_request_ids"):
            ids = body.get(name)
            if ids is None:
                continue
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                problems.add(["body", name], "Input should be a valid list", "list_type")
            elif len(ids) > 3:  # §1.4: at most 3 ids each
                problems.add(
                    ["body", name],
                    f"List should have at most 3 items after validation, not {len(ids)}",
                    "too_long",
                )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), _STREAM_CHUNK):
        yield data[start : start + _STREAM_CHUNK]
