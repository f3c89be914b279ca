"""A strict fake of the WhatsApp Cloud API (Graph): messages, media upload and download.

It answers like Graph does (reference/whatsapp.md §4, §5), refuses what Graph refuses (with
the error body of §5.1), and records every accepted call so tests assert on what the daemon
really put on the wire. Where Meta's documentation is silent the simulator is the stricter
side: a daemon that passes here should not be surprised by the real API.

Routes (all API routes under ``/<version>/``, ``version`` like ``v23.0``, Bearer token needed):

    POST   /<v>/<phone_number_id>/messages   send text / audio, mark read, typing indicator
    POST   /<v>/<phone_number_id>/media      multipart upload (audio only)
    GET    /<v>/<media_id>                   media URL + metadata
    DELETE /<v>/<media_id>                   delete media
    GET    /whatsapp_business/attachments/?mid=..&ext=..&hash=..   the bytes (URL from GET)

The bytes are served under another host name than the API (``media_host``, "localhost" on
the same port by default), as lookaside.fbsbx.com is not graph.facebook.com: a daemon that
pins the media host to the API's, or rewrites the URL it was given, fails here (§4).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from daemon.observe.logs import hashed
from daemon.sim import audio
from daemon.sim.base import Changes, Faults, start_app
from daemon.sim.webhooks import new_wamid

log = logging.getLogger(__name__)

Json = dict[str, Any]

_VERSION = re.compile(r"v\d+\.\d+")
# §5: `to` is a phone number with its country code, '+' or not: Graph takes both (without
# '+' it may prepend the business number's country code, §5, which is the sender's problem,
# not a refusal), and pywa replies to the bare `wa_id` digits a webhook carries. The daemon
# sends '+'. BSUIDs look like "US.1349..." (§2.7).
_PHONE = re.compile(r"\+?[1-9]\d{6,14}")
_BSUID = re.compile(r"[A-Za-z]{2,}(?:\.[A-Za-z0-9]+)+")
_HTTP_LINK = re.compile(r"https?://\S+")

TEXT_LIMIT = 4096  # §5: text.body is at most 4096 characters
UPLOAD_LIMIT = 16 * 1024 * 1024  # §4.1: 16 MB for every audio type
VOICE_NOTE_LIMIT = 512 * 1024  # §4.2: above 512 KB the play icon becomes a download icon
URL_TTL = 5 * 60.0  # §4: media URLs expire after 5 minutes
MEDIA_HOST = "localhost"  # the media URLs' host: the API's loopback, under another name
UPLOAD_TTL = 30 * 86400.0  # §4: media ids of uploads live 30 days
USER_MEDIA_TTL = 7 * 86400.0  # §4: media ids from webhooks live 7 days
# §4: what Graph answers a media lookup that names a phone_number_id for media a user sent.
USER_MEDIA_NUMBER_ERROR = (
    "Param phone_number_id is not a valid whatsapp business phone number id ID"
)

# §4.1: the audio types Graph takes. Ogg is "OPUS codecs only; base audio/ogg not supported",
# so the type must say `audio/ogg; codecs=opus` and the bytes must be Ogg/Opus (checked
# below). `audio/opus` is refused: chatwoot #9432 saw Graph answer "Unsupported Audio mime
# type audio/opus. Please use one of audio/ogg; codecs=opus, ..." (2024), newer than the
# laravel-whatsapp report listing it, and absent from §4.1.
_AUDIO_FORMATS: dict[str, frozenset[str]] = {  # MIME -> FFmpeg demuxer names that fit it
    "audio/ogg": frozenset({"ogg"}),
    "audio/mpeg": frozenset({"mp3"}),
    "audio/aac": frozenset({"aac"}),
    "audio/amr": frozenset({"amr"}),
    "audio/mp4": frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"}),
}
# The accepted types as Graph's error text lists them (chatwoot #9432).
_AUDIO_TYPES_TEXT = "audio/ogg; codecs=opus, audio/mpeg, audio/amr, audio/mp4, audio/aac"

# §5.1: (title, details) per code, so scripted failures look like Graph's.
_ERRORS: dict[int, tuple[str, str]] = {
    0: ("AuthException", "Unable to authenticate the app user"),
    1: ("API Unknown", "Invalid request or possible server error"),
    2: ("API Service", "Temporary issue due to downtime"),
    4: ("API Too Many Calls", "The app has reached its API call rate limit"),
    100: ("Invalid parameter", "Invalid parameter"),
    190: ("Access token has expired", "The access token has expired or is invalid"),
    130429: ("Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
    131016: ("Service unavailable", "A service is temporarily unavailable."),
    131026: ("Message Undeliverable", "Unable to deliver message."),
    131047: (
        "Re-engagement message",
        "More than 24 hours have passed since the recipient last replied to the sender number.",
    ),
    131048: ("Spam rate limit hit", "Message failed to send because of quality restrictions."),
    131053: ("Media upload error", "Unable to upload the media used in the message."),
    131056: (
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone number"
        " in a short period of time.",
    ),
    131057: ("Account in maintenance mode", "Business Account is in maintenance mode."),
}


class GraphError(Exception):
    """An error Graph answers with; turned into the §5.1 body by the app."""

    def __init__(
        self, code: int, details: str | None = None, *, http_status: int = 400, title: str = ""
    ) -> None:
        known_title, known_details = _ERRORS.get(code, ("Error", "Error"))
        self.code = code
        self.title = title or known_title
        self.details = details or known_details
        self.http_status = http_status
        super().__init__(f"({code}) {self.details}")


def graph_error_body(code: int, title: str, details: str) -> Json:
    """The error body of §5.1 (no ``error_subcode``: deprecated since v16)."""
    return {
        "error": {
            "message": f"(#{code}) {title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": secrets.token_urlsafe(17)[:23],
        }
    }


def _invalid(details: str) -> NoReturn:
    raise GraphError(100, details)


def _no_object(object_id: str, verb: str) -> NoReturn:
    # Graph's wording for an id it does not know (or that the token may not touch).
    _invalid(
        f"Unsupported {verb} request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation."
    )


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One send Graph accepted (HTTP 200 with a wamid)."""

    wamid: str
    to: str
    type: str  # "text" | "audio"
    at: float  # sim clock
    payload: Json  # the JSON body as received
    text: str | None = None
    preview_url: bool = False
    media_id: str | None = None
    link: str | None = None
    voice: bool = False
    audio: bytes | None = None  # the uploaded bytes behind media_id
    mime_type: str | None = None
    # §4.2: Ogg container + Opus + mono + <= 512 KB, sent with voice:true. A hosted `link`
    # is never fetched, so it never counts.
    renders_as_voice_note: bool = False
    context_message_id: str | None = None
    # The payload field that named the user: "to" (phone, or a BSUID the old way) or
    # "recipient" (a BSUID, §2.7).
    addressed_by: str = "to"


@dataclass(frozen=True, slots=True)
class ReadMark:
    """A mark-as-read, with or without the typing indicator (§5)."""

    message_id: str
    typing: bool
    at: float


@dataclass(frozen=True, slots=True)
class Upload:
    """One accepted media upload."""

    media_id: str
    mime_type: str  # the `type` form field
    file_content_type: str  # the file part's own Content-Type
    filename: str
    data: bytes
    at: float


@dataclass(frozen=True, slots=True)
class RejectedSend:
    """A send answered with an error (validation or scripted)."""

    code: int
    http_status: int
    payload: Json
    at: float


@dataclass(frozen=True, slots=True)
class MediaDownload:
    """One GET of a media URL (the bytes, not the lookup) that passed the token check."""

    host: str  # the Host the client asked for
    status: int
    at: float


@dataclass(slots=True)
class StoredMedia:
    id: str
    data: bytes
    mime_type: str
    created_at: float
    expires_at: float
    from_user: bool  # True: a user sent it (webhook media); False: a business upload

    @property
    def sha256_hex(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(slots=True)
class _IssuedUrl:
    media_id: str
    mid: str
    expires_at: float


@dataclass(slots=True)
class _Failure:
    code: int
    http_status: int


# --------------------------------------------------------------------------- validation


def _mime_parts(mime: str) -> tuple[str, dict[str, str]]:
    base, *params = (p.strip() for p in mime.split(";"))
    parsed: dict[str, str] = {}
    for param in params:
        key, _, value = param.partition("=")
        parsed[key.strip().lower()] = value.strip().strip('"').lower()
    return base.lower(), parsed


def _supported_audio_type(mime: str) -> str | None:
    """The base MIME if Graph takes ``mime`` for audio uploads (§4.1), else None."""
    base, params = _mime_parts(mime)
    if base not in _AUDIO_FORMATS:
        return None
    if base == "audio/ogg":
        # Base audio/ogg (no codecs) is "not supported" (§4.1): Opus must be named.
        return base if params == {"codecs": "opus"} else None
    return base if not params else None


def _audio_matches(data: bytes, base: str) -> bool:
    """The bytes really are ``base`` audio; for Ogg: Opus, mono, fully decodable (§4.1)."""
    try:
        info = audio.describe(data)
    except Exception:  # PyAV raises FFmpeg errors, IndexError without an audio stream, ...
        return False
    formats = set(str(info["format"]).split(","))
    if not formats & _AUDIO_FORMATS[base]:
        return False
    if base != "audio/ogg":
        return True
    if info["codec"] != "opus" or info["channels"] != 1:
        return False
    try:
        audio.listen(data)
    except audio.NotAudio:
        return False
    return True


def _renders_as_voice_note(data: bytes) -> bool:
    if len(data) > VOICE_NOTE_LIMIT:
        return False
    try:
        info = audio.describe(data)
    except Exception:  # anything PyAV cannot open does not render as a voice note
        return False
    return info["format"] == "ogg" and info["codec"] == "opus" and info["channels"] == 1


def _only_keys(obj: Json, allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            _invalid(f'Unexpected key "{key}" on param "{where}".')


def _object(body: Json, key: str) -> Json:
    value = body.get(key)
    if value is None:
        _invalid(f"The parameter {key} is required.")
    if not isinstance(value, dict):
        _invalid(f"Param {key} must be a JSON object.")
    return value


def _optional_bool(obj: Json, key: str, where: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        _invalid(f"Param {where}['{key}'] must be a boolean.")
    return value


# --------------------------------------------------------------------------- the simulator


class GraphSim:
    """The Cloud API for one business phone number, as a QuartTrio app (``self.app``)."""

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        faults: Faults | None = None,
        clock: Callable[[], float] = trio.current_time,
        media_host: str = MEDIA_HOST,
    ) -> None:
        self.access_token = access_token
        self.phone_number_id = phone_number_id
        self.media_host = media_host
        self.faults = faults or Faults()
        self.clock = clock
        self.base_url: str | None = None  # set by start(), or by the test after start_app
        self.sent: list[SentMessage] = []
        self.reads: list[ReadMark] = []
        self.uploads: list[Upload] = []
        self.rejected: list[RejectedSend] = []
        self.downloads: list[MediaDownload] = []
        self.media: dict[str, StoredMedia] = {}
        self._urls: dict[str, _IssuedUrl] = {}
        self._failures: deque[_Failure] = deque()
        self._ids = itertools.count(1_000_000_000_000_000 + secrets.randbelow(10**15))
        self._changes = Changes()
        self.app = self._make_app()

    async def start(self, nursery: trio.Nursery) -> str:
        """Serve on a loopback port in ``nursery``; returns and remembers the base URL."""
        self.base_url = await start_app(nursery, self.app)
        return self.base_url

    # ------------------------------------------------------------------ test controls

    def fail_sends(self, code: int, count: int = 1, http_status: int = 400) -> None:
        """The next ``count`` valid sends fail with Graph error ``code`` (e.g. 131056)."""
        self._failures.extend(_Failure(code, http_status) for _ in range(count))

    def add_user_media(self, data: bytes, mime_type: str, *, media_id: str = "") -> str:
        """Store media a user "sent" (it then arrives by webhook); returns its media id
        (``media_id`` when given: the id a recorded webhook already names)."""
        now = self.clock()
        media = StoredMedia(
            media_id or self._new_id(), data, mime_type, now, now + USER_MEDIA_TTL, from_user=True
        )
        self.media[media.id] = media
        return media.id

    def reset(self) -> None:
        """Forget the records and pending scripted failures; stored media stay."""
        self.sent.clear()
        self.reads.clear()
        self.uploads.clear()
        self.rejected.clear()
        self.downloads.clear()
        self._failures.clear()

    async def wait_sent(self, count: int, *, to: str | None = None) -> list[SentMessage]:
        """Return once ``count`` accepted sends (to ``to``, with or without '+') exist."""
        want = to.lstrip("+") if to is not None else None

        def found() -> list[SentMessage]:
            return [m for m in self.sent if want is None or m.to.lstrip("+") == want]

        await self._changes.until(lambda: len(found()) >= count)
        return found()

    async def wait_reads(self, count: int) -> list[ReadMark]:
        """Return once ``count`` mark-as-read calls (typing or not) exist."""
        await self._changes.until(lambda: len(self.reads) >= count)
        return list(self.reads)

    def _new_id(self) -> str:
        return str(next(self._ids))

    # ------------------------------------------------------------------ app

    def _make_app(self) -> Any:
        app = QuartTrio(__name__)
        # Large enough that a 16 MB + 1 upload reaches our own check and gets Graph's error,
        # not Quart's bare 413.
        app.config["MAX_CONTENT_LENGTH"] = 2 * UPLOAD_LIMIT

        app.before_request(self._before)
        app.register_error_handler(GraphError, self._graph_error)
        app.register_error_handler(HTTPException, self._http_error)
        app.add_url_rule(
            "/<version>/<phone_number_id>/messages", view_func=self._messages, methods=["POST"]
        )
        app.add_url_rule(
            "/<version>/<phone_number_id>/media", view_func=self._upload, methods=["POST"]
        )
        app.add_url_rule("/<version>/<media_id>", view_func=self._media_get, methods=["GET"])
        app.add_url_rule("/<version>/<media_id>", view_func=self._media_delete, methods=["DELETE"])
        app.add_url_rule(
            "/whatsapp_business/attachments/", view_func=self._download, methods=["GET"]
        )
        return app

    async def _before(self) -> Response | None:
        await self.faults.delay()
        if self.faults.should_fail():
            status = self.faults.error_status
            code = 2 if status == 503 else 1  # §5.1: 1 and 2 are the retryable server errors
            return self._json(graph_error_body(code, *_ERRORS[code]), status)
        version = (request.view_args or {}).get("version")
        if version is not None and not _VERSION.fullmatch(version):
            _invalid(f"Unknown API version '{version}'.")
        self._check_token()
        return None

    def _check_token(self) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        valid = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.access_token.encode()
        )
        if not valid:
            raise GraphError(
                190,
                "Invalid OAuth access token - Cannot parse access token",
                http_status=401,
                title="Invalid OAuth access token",
            )

    @staticmethod
    def _json(body: Json, status: int = 200) -> Response:
        return Response(
            json.dumps(body), status=status, content_type="application/json; charset=UTF-8"
        )

    async def _graph_error(self, error: GraphError) -> Response:
        return self._json(
            graph_error_body(error.code, error.title, error.details), error.http_status
        )

    async def _http_error(self, error: HTTPException) -> Response:
        # Unknown paths and methods: Graph answers these with code 100 too, never HTML.
        status = error.code or 400
        details = f"Unsupported {request.method.lower()} request."
        if status == 413:
            return self._json(graph_error_body(131053, _ERRORS[131053][0], "File too large."), 400)
        return self._json(graph_error_body(100, "Invalid parameter", details), 400)

    def _check_phone_number(self, phone_number_id: str) -> None:
        if phone_number_id != self.phone_number_id:
            _no_object(phone_number_id, "post")

    # ------------------------------------------------------------------ POST messages

    async def _messages(self, version: str, phone_number_id: str) -> Response:
        self._check_phone_number(phone_number_id)
        if request.mimetype != "application/json":
            _invalid("Content-Type must be application/json.")
        raw = await request.get_data(as_text=False)
        try:
            body = json.loads(raw)
        except ValueError:
            _invalid("Request body is not valid JSON.")
        if not isinstance(body, dict):
            _invalid("Request body must be a JSON object.")
        if body.get("messaging_product") != "whatsapp":
            _invalid("The parameter messaging_product is required and must be 'whatsapp'.")
        if "status" in body:
            return self._mark_read(body)
        try:
            return self._send(body)
        except GraphError as error:
            self.rejected.append(RejectedSend(error.code, error.http_status, body, self.clock()))
            self._changes.bump()
            raise

    def _mark_read(self, body: Json) -> Response:
        _only_keys(body, {"messaging_product", "status", "message_id", "typing_indicator"}, "")
        if body["status"] != "read":
            _invalid("Param status must be 'read'.")
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            _invalid("The parameter message_id is required.")
        typing = "typing_indicator" in body
        if typing and body["typing_indicator"] != {"type": "text"}:
            _invalid('Param typing_indicator must be {"type": "text"}.')
        self.reads.append(ReadMark(message_id, typing, self.clock()))
        self._changes.bump()
        return self._json({"success": True})

    def _send(self, body: Json) -> Response:
        kind = body.get("type")
        if not isinstance(kind, str):
            _invalid("The parameter type is required.")
        if kind not in ("text", "audio"):
            _invalid(f"Param type '{kind}' is not supported by this simulator.")
        common = {"messaging_product", "recipient_type", "to", "recipient", "type", "context"}
        _only_keys(body, common | {"biz_opaque_callback_data", kind}, "")
        if body.get("recipient_type", "individual") != "individual":
            _invalid("Param recipient_type must be 'individual'.")
        to, addressed_by, bsuid = self._addressee(body)
        context_id = self._context(body)
        callback = body.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
            _invalid("Param biz_opaque_callback_data must be a string of at most 512 characters.")

        now = self.clock()
        fields: dict[str, Any] = {"context_message_id": context_id}
        if kind == "text":
            fields.update(self._text(_object(body, "text")))
        else:
            fields.update(self._audio(_object(body, "audio"), now))

        if self._failures:  # scripted failures hit sends that would otherwise succeed
            failure = self._failures.popleft()
            raise GraphError(failure.code, http_status=failure.http_status)

        wamid = new_wamid()
        fields["addressed_by"] = addressed_by
        self.sent.append(SentMessage(wamid=wamid, to=to, type=kind, at=now, payload=body, **fields))
        self._changes.bump()
        log.debug("sim graph: %s to %s as %s", kind, hashed(to), wamid)
        contact = {"input": to, "user_id": to} if bsuid else {"input": to, "wa_id": to.lstrip("+")}
        return self._json(
            {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
        )

    @staticmethod
    def _addressee(body: Json) -> tuple[str, str, bool]:
        """(address, the field it came in, is it a BSUID) of a send.

        Exactly one of ``to`` and ``recipient`` (§2.7): a phone number in ``to`` (with its
        country code, '+' or not, §5); a business-scoped user id in ``recipient`` with ``to``
        left out (pywa 4.x), or in ``to`` as the Dec 2025 doc allowed.
        """
        if ("to" in body) == ("recipient" in body):
            _invalid("Exactly one of the parameters to and recipient is required.")
        if "recipient" in body:
            recipient = body["recipient"]
            if not isinstance(recipient, str) or not _BSUID.fullmatch(recipient):
                _invalid("Param recipient must be a business-scoped user ID.")
            return recipient, "recipient", True
        to = body["to"]
        if not isinstance(to, str) or not to:
            _invalid("The parameter to is required.")
        bsuid = bool(_BSUID.fullmatch(to))
        if not (_PHONE.fullmatch(to) or bsuid):
            _invalid(f"Param to must be a phone number with its country code, got '{to}'.")
        return to, "to", bsuid

    @staticmethod
    def _context(body: Json) -> str | None:
        if "context" not in body:
            return None
        context = _object(body, "context")
        _only_keys(context, {"message_id"}, "context")
        message_id = context.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            _invalid("The parameter context['message_id'] is required.")
        return message_id

    @staticmethod
    def _text(text: Json) -> dict[str, Any]:
        _only_keys(text, {"body", "preview_url"}, "text")
        body = text.get("body")
        if not isinstance(body, str) or not body:
            _invalid("The parameter text['body'] is required.")
        if len(body) > TEXT_LIMIT:
            _invalid(f"Param text['body'] must be at most {TEXT_LIMIT} characters long.")
        return {"text": body, "preview_url": _optional_bool(text, "preview_url", "text")}

    def _audio(self, spec: Json, now: float) -> dict[str, Any]:
        _only_keys(spec, {"id", "link", "voice"}, "audio")
        voice = _optional_bool(spec, "voice", "audio")
        if ("id" in spec) == ("link" in spec):
            _invalid("Param audio must have exactly one of 'id' or 'link'.")
        if "link" in spec:
            link = spec["link"]
            if not isinstance(link, str) or not _HTTP_LINK.fullmatch(link):
                _invalid("Param audio['link'] must be a valid http(s) URL.")
            return {"link": link, "voice": voice}
        media_id = spec["id"]
        media = self.media.get(media_id) if isinstance(media_id, str) else None
        # An unknown, deleted or expired id is a bad parameter (100, "do not retry"), not
        # 131053: that code is for media Graph could not take in (wrong MIME or codec, §5.1).
        # Media a user sent is not the business's to re-send.
        if media is None or media.from_user or media.expires_at <= now:
            _invalid(
                f"Param audio['id'] is not a valid WhatsApp Business Account media ID: {media_id}"
            )
        return {
            "media_id": media.id,
            "voice": voice,
            "audio": media.data,
            "mime_type": media.mime_type,
            "renders_as_voice_note": voice and _renders_as_voice_note(media.data),
        }

    # ------------------------------------------------------------------ media

    async def _upload(self, version: str, phone_number_id: str) -> Response:
        self._check_phone_number(phone_number_id)
        if request.mimetype != "multipart/form-data":
            _invalid("Media upload must be multipart/form-data.")
        form = await request.form
        files = await request.files
        if form.get("messaging_product") != "whatsapp":
            _invalid("The parameter messaging_product is required and must be 'whatsapp'.")
        mime = form.get("type")
        if not mime:
            _invalid("The parameter type is required.")
        upload = files.get("file")
        if upload is None:
            _invalid("The parameter file is required.")
        data: bytes = upload.stream.read()
        base = _supported_audio_type(mime)
        if base is None:
            raise GraphError(
                131053, f"Unsupported Audio mime type {mime}. Please use one of {_AUDIO_TYPES_TEXT}"
            )
        if not data:
            raise GraphError(131053, "The uploaded file is empty.")
        if len(data) > UPLOAD_LIMIT:
            raise GraphError(131053, f"File too large: {len(data)} bytes, limit {UPLOAD_LIMIT}.")
        # The file part's own Content-Type must name the same type, parameters included: a
        # part saying base audio/ogg is as unsupported as the field saying it.
        part_type = upload.content_type or ""
        if part_type and _mime_parts(part_type) != _mime_parts(mime):
            raise GraphError(131053, f"File type {part_type} does not match type {mime}.")
        if not _audio_matches(data, base):
            raise GraphError(131053, f"The file is not valid {mime} audio.")

        now = self.clock()
        media = StoredMedia(self._new_id(), data, mime, now, now + UPLOAD_TTL, from_user=False)
        self.media[media.id] = media
        self.uploads.append(
            Upload(media.id, mime, upload.content_type or "", upload.filename or "", data, now)
        )
        self._changes.bump()
        return self._json({"id": media.id})

    def _live_media(self, media_id: str, verb: str) -> StoredMedia:
        media = self.media.get(media_id)
        if media is None or media.expires_at <= self.clock():
            _no_object(media_id, verb)
        # §4: phone_number_id is optional; with it the request is processed only if it names
        # the number the media was *uploaded on*. A user's media was uploaded by the user,
        # on no business number, so naming ours is refused with Graph's own words
        # (chatwoot/chatwoot#13319); naming another number than ours refuses our uploads.
        owner = request.args.get("phone_number_id")
        if owner is not None and media.from_user:
            raise GraphError(100, USER_MEDIA_NUMBER_ERROR, title=USER_MEDIA_NUMBER_ERROR)
        if owner is not None and owner != self.phone_number_id:
            _no_object(media_id, verb)
        return media

    async def _media_get(self, version: str, media_id: str) -> Response:
        media = self._live_media(media_id, "get")
        now = self.clock()
        token = secrets.token_urlsafe(16)
        mid = self._new_id()
        self._urls[token] = _IssuedUrl(media.id, mid, now + URL_TTL)
        base = self.media_base_url()
        url = f"{base}/whatsapp_business/attachments/?mid={mid}&ext={int(now)}&hash={token}"
        return self._json(
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": media.mime_type,
                "sha256": media.sha256_hex,
                "file_size": len(media.data),
                "id": media.id,
            }
        )

    async def _media_delete(self, version: str, media_id: str) -> Response:
        media = self._live_media(media_id, "delete")
        del self.media[media.id]
        return self._json({"success": True})

    def media_base_url(self) -> str:
        """``scheme://media_host:port``: where the media URLs point (the API's port)."""
        parts = urlsplit(self.base_url or request.host_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{self.media_host}{port}"

    async def _download(self) -> Response:
        # The token check ran in _before (401 code 190 without it, §4). Any other failure
        # is a bare 404, as lookaside answers: the client should fetch a fresh URL. The bytes
        # are only on the media host: the same path on the API's host name is not found.
        host = urlsplit(f"//{request.host}").hostname or ""
        issued = self._urls.get(request.args.get("hash", ""))
        media = self.media.get(issued.media_id) if issued else None
        found = not (
            host != self.media_host.lower()
            or issued is None
            or media is None
            or issued.mid != request.args.get("mid")
            or issued.expires_at <= self.clock()
            or media.expires_at <= self.clock()
        )
        self.downloads.append(MediaDownload(host, 200 if found else 404, self.clock()))
        self._changes.bump()
        if not found or media is None:
            return Response("Not Found", status=404, content_type="text/plain")
        return Response(media.data, status=200, content_type=media.mime_type)
