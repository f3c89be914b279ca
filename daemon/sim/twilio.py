"""A strict fake of Twilio's WhatsApp API, and the webhooks Twilio posts to the daemon.

It answers like the Messages API does (reference/whatsapp.md §6), refuses what Twilio refuses
with Twilio's error JSON (``{"code", "message", "more_info", "status"}``, codes as documented
at twilio.com/docs/api/errors/<code>), and records every call so tests assert on what the
daemon really put on the wire. Where Twilio's documentation is silent the simulator is the
stricter side.

Routes (``<sid>`` = the account SID; Basic auth ``account_sid:auth_token`` where marked):

    POST /2010-04-01/Accounts/<sid>/Messages.json                    send (auth)
    GET  /2010-04-01/Accounts/<sid>/Messages/<MM..>/Media/<ME..>     user media (auth) -> 302
    GET  /cdn/<token>                                                the bytes (no auth)

The CDN answers under another host name than the API (``cdn_host``, "localhost" on the same
port by default), as Twilio redirects every media URL from api.twilio.com to its CDN
(mms.twiliocdn.com): a client must allow that host, and must not send it the credentials.
Every media GET is recorded with whether it carried an Authorization header.

A send with ``MediaUrl`` is answered 201 at once; the simulator then fetches the URL in its
own nursery, as Twilio does after accepting the message. The message lands in ``sent`` once
that fetch is done (with ``media_error`` set when it failed, where Twilio would later report
the message failed with 11200 / 63019 / 63021); a text-only message lands there at once.

The webhook side (``webhook_params``, ``status_params``, ``TwilioWebhookSender``) builds the
form bodies Twilio posts and signs them with an HMAC written here, independently of the
daemon's own ``channels.twilio.wire``, so each checks the other.
"""

from __future__ import annotations

import base64
import email.utils
import enum
import hashlib
import hmac
import json
import logging
import re
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from daemon.observe.logs import hashed
from daemon.sim import audio
from daemon.sim.base import Changes, Faults, start_app

log = logging.getLogger(__name__)

Json = dict[str, Any]
Form = list[tuple[str, str]]

API_VERSION = "2010-04-01"
SANDBOX_FROM = "whatsapp:+14155238886"  # Twilio's WhatsApp sandbox number (§6 captured body)
TEXT_LIMIT = 1600  # twilio.com/docs/api/errors/21617
MEDIA_LIMIT = 16 * 1024 * 1024  # §6 media limits: 16 MB per WhatsApp message
MAX_MEDIA_URLS = 10  # twilio.com/docs/api/errors/21623
CDN_URL_TTL = 300.0  # the CDN hop of a media GET is short-lived
CDN_HOST = "localhost"  # the CDN hop's host: the API's loopback, under another name
SIGNATURE_HEADER = "X-Twilio-Signature"
USER_AGENT = "TwilioProxy/1.1"  # what Twilio's webhook requests identify as

_WHATSAPP_ADDRESS = re.compile(r"whatsapp:\+[1-9]\d{6,14}")
_FORM = "application/x-www-form-urlencoded"
# What the Twilio API for WhatsApp takes as outbound media (twilio.com/docs/whatsapp/
# guidance-whatsapp-media-messages): images, audio (OGG, AMR, 3GP, AAC, MPEG), PDF, video.
_SENDABLE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/webp",
        "audio/ogg",
        "audio/amr",
        "audio/3gpp",
        "audio/aac",
        "audio/mpeg",
        "audio/mp4",
        "application/pdf",
        "video/mp4",
        "video/3gpp",
    }
)

# Twilio's messages for the codes the simulator answers or can be scripted to answer.
_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service unavailable",
    21211: "Invalid 'To' Phone Number",
    21212: "Invalid 'From' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21620: "Invalid media URL(s)",
    21623: "Number of media files exceeds allowed limit",
    63003: "Channel could not find To address",
    63007: "Twilio could not find a Channel with the specified From address",
    63016: (
        "Failed to send freeform message because you are outside the allowed window. If you "
        "are using WhatsApp, please use a Message Template."
    ),
    63018: "Rate limit exceeded for Channel",
}


def error_body(code: int, status: int, message: str | None = None) -> Json:
    """Twilio's REST error JSON."""
    return {
        "code": code,
        "message": message or _MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class TwilioError(Exception):
    """An error the API answers with; turned into ``error_body`` by the app."""

    def __init__(self, code: int, http_status: int = 400, message: str | None = None) -> None:
        self.code = code
        self.http_status = http_status
        self.message = message or _MESSAGES.get(code, "Error")
        super().__init__(f"{code} {self.message}")


def _refuse(code: int, message: str | None = None, http_status: int = 400) -> NoReturn:
    raise TwilioError(code, http_status, message)


def new_sid(prefix: str) -> str:
    """A Twilio SID: two letters and 32 hex digits (SM/MM message, ME media, AC account)."""
    return prefix + secrets.token_hex(16)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class MediaFetch:
    """One GET the simulator made of a ``MediaUrl`` the daemon sent."""

    url: str
    status: int | None  # None: no HTTP answer at all
    content_type: str
    data: bytes
    error: str | None
    at: float


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One send Twilio accepted (201), once it is done with it (its media fetched)."""

    sid: str
    to: str
    from_: str
    body: str | None
    media_urls: tuple[str, ...]
    form: Form  # the form fields as received
    at: float  # sim clock, when accepted
    media: bytes | None = None
    media_content_type: str | None = None
    media_error: str | None = None  # Twilio would report the message failed
    # The media is Ogg/Opus mono: WhatsApp shows it as a voice note.
    renders_as_voice_note: bool = False

    @property
    def failed(self) -> bool:
        return self.media_error is not None


@dataclass(frozen=True, slots=True)
class RejectedSend:
    """A send answered with an error (validation or scripted)."""

    code: int
    http_status: int
    form: Form
    at: float


@dataclass(frozen=True, slots=True)
class MediaDownload:
    """One GET of user media: the API hop (Basic auth) or the CDN hop it redirects to."""

    hop: str  # "api" | "cdn"
    path: str
    authorized: bool  # an Authorization header was sent (the CDN hop needs none)
    status: int
    at: float


@dataclass(slots=True)
class _UserMedia:
    message_sid: str
    data: bytes
    mime_type: str


@dataclass(slots=True)
class _CdnEntry:
    data: bytes
    mime_type: str
    expires_at: float


@dataclass(slots=True)
class _Failure:
    code: int
    http_status: int


@dataclass(frozen=True, slots=True)
class _FetchJob:
    sid: str
    to: str
    from_: str
    body: str | None
    media_urls: tuple[str, ...]
    form: Form
    at: float


# --------------------------------------------------------------------------- media checks


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_voice_note(data: bytes) -> bool:
    try:
        info = audio.describe(data)
    except Exception:  # anything PyAV cannot open is not a voice note
        return False
    return info["format"] == "ogg" and info["codec"] == "opus" and info["channels"] == 1


def _media_problem(status: int, content_type: str, data: bytes) -> str | None:
    """Why Twilio would fail the message after fetching its media, or None."""
    if status != 200:
        return f"11200 HTTP retrieval failure: media URL answered {status}"
    if len(data) > MEDIA_LIMIT:
        return "11751 Media exceeds messaging provider size limit"
    if not data:
        return "63019 Media failed to download: empty body"
    base = _base_type(content_type)
    if base not in _SENDABLE_TYPES:
        return f"63021 Channel invalid content error: unsupported content type {base!r}"
    # "If the content-type header does not match that of the media file, Twilio rejects the
    # request" (guidance-whatsapp-media-messages): for Ogg, the bytes must be Ogg.
    if base == "audio/ogg":
        try:
            formats = str(audio.describe(data)["format"]).split(",")
        except Exception:  # not audio PyAV can open
            formats = []
        if "ogg" not in formats:
            return "63021 Channel invalid content error: content is not audio/ogg"
    return None


# --------------------------------------------------------------------------- the simulator


class TwilioSim:
    """Twilio's Messages API and media for one account, as a QuartTrio app (``self.app``)."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        whatsapp_from: str = SANDBOX_FROM,
        faults: Faults | None = None,
        clock: Callable[[], float] = trio.current_time,
        media_fetch_timeout: float = 15.0,
        cdn_host: str = CDN_HOST,
    ) -> None:
        self.account_sid = account_sid
        self.cdn_host = cdn_host
        self.auth_token = auth_token
        self.whatsapp_from = whatsapp_from
        self.faults = faults or Faults()
        self.clock = clock
        self.media_fetch_timeout = media_fetch_timeout
        self.base_url: str | None = None  # set by start()
        # The next N user-media GETs answer 404: Twilio has not stored the media yet.
        self.media_not_ready = 0
        self.sent: list[SentMessage] = []
        self.media_fetches: list[MediaFetch] = []
        self.rejected: list[RejectedSend] = []
        self.media_downloads: list[MediaDownload] = []
        self._user_media: dict[str, _UserMedia] = {}
        self._cdn: dict[str, _CdnEntry] = {}
        self._failures: deque[_Failure] = deque()
        self._jobs: trio.MemorySendChannel[_FetchJob] | None = None
        self._changes = Changes()
        self.app = self._make_app()

    async def start(self, nursery: trio.Nursery) -> str:
        """Serve on a loopback port in ``nursery``, with the media fetcher beside it."""
        await nursery.start(self._fetcher)
        self.base_url = await start_app(nursery, self.app)
        return self.base_url

    # ------------------------------------------------------------------ test controls

    def fail_sends(self, code: int, count: int = 1, http_status: int = 400) -> None:
        """The next ``count`` valid sends fail with Twilio error ``code`` (63016, 20429 ...)."""
        self._failures.extend(_Failure(code, http_status) for _ in range(count))

    def add_user_media(self, data: bytes, mime_type: str) -> str:
        """Store media a user "sent"; returns its ``MediaUrl0`` for ``webhook_params``."""
        if self.base_url is None:
            raise RuntimeError("start() the simulator first: the media URL names its host")
        message_sid, media_sid = new_sid("MM"), new_sid("ME")
        self._user_media[media_sid] = _UserMedia(message_sid, data, mime_type)
        return (
            f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/"
            f"{message_sid}/Media/{media_sid}"
        )

    def reset(self) -> None:
        """Forget the records and pending scripted failures; stored media stay."""
        self.sent.clear()
        self.media_fetches.clear()
        self.rejected.clear()
        self.media_downloads.clear()
        self._failures.clear()
        self.media_not_ready = 0

    async def wait_sent(self, count: int, *, to: str | None = None) -> list[SentMessage]:
        """Return once ``count`` finished sends (to ``to``: "whatsapp:+1..", "+1.." or
        digits) exist."""
        want = _digits(to) if to is not None else None

        def found() -> list[SentMessage]:
            return [m for m in self.sent if want is None or _digits(m.to) == want]

        await self._changes.until(lambda: len(found()) >= count)
        return found()

    async def wait_rejected(self, count: int) -> list[RejectedSend]:
        await self._changes.until(lambda: len(self.rejected) >= count)
        return list(self.rejected)

    # ------------------------------------------------------------------ app

    def _make_app(self) -> Any:
        app = QuartTrio(__name__)
        app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
        app.before_request(self._before)
        app.register_error_handler(TwilioError, self._twilio_error)
        app.register_error_handler(HTTPException, self._http_error)
        base = f"/{API_VERSION}/Accounts/<account_sid>"
        app.add_url_rule(f"{base}/Messages.json", view_func=self._messages, methods=["POST"])
        app.add_url_rule(
            f"{base}/Messages/<message_sid>/Media/<media_sid>",
            view_func=self._user_media_get,
            methods=["GET"],
        )
        app.add_url_rule("/cdn/<token>", view_func=self._cdn_get, methods=["GET"])
        return app

    @staticmethod
    def _json(body: Json, status: int, headers: Mapping[str, str] | None = None) -> Response:
        return Response(
            json.dumps(body),
            status=status,
            content_type="application/json; charset=utf-8",
            headers=dict(headers or {}),
        )

    async def _twilio_error(self, error: TwilioError) -> Response:
        headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if error.code == 20003 else {}
        body = error_body(error.code, error.http_status, error.message)
        return self._json(body, error.http_status, headers)

    async def _http_error(self, error: HTTPException) -> Response:
        # Unknown paths and methods: Twilio answers 20404 JSON, never HTML.
        status = error.code or 404
        if status == 405:
            return self._json(error_body(20004, 405, "Method not allowed"), 405)
        message = f"The requested resource {request.path} was not found"
        return self._json(error_body(20404, 404, message), 404)

    async def _before(self) -> Response | None:
        await self.faults.delay()
        if self.faults.should_fail():
            status = self.faults.error_status
            code = {503: 20503, 429: 20429}.get(status, 20500)
            return self._json(error_body(code, status), status)
        return None

    def _authorized(self) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            return False
        expected = f"{self.account_sid}:{self.auth_token}".encode()
        return hmac.compare_digest(given, expected)

    def _check_account(self, account_sid: str) -> None:
        if not self._authorized():
            _refuse(20003, "Authenticate", 401)
        if account_sid != self.account_sid:
            _refuse(20404, f"The requested resource {request.path} was not found", 404)

    # ------------------------------------------------------------------ POST Messages.json

    async def _messages(self, account_sid: str) -> Response:
        self._check_account(account_sid)
        raw = await request.get_data(as_text=False)
        form: Form = []
        # Twilio reads form fields only: any other body reaches validation as no fields.
        if request.mimetype == _FORM:
            try:
                text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                form = parse_qsl(text, keep_blank_values=True, errors="strict")
            except ValueError:
                form = []
        try:
            return self._send(form)
        except TwilioError as error:
            self.rejected.append(RejectedSend(error.code, error.http_status, form, self.clock()))
            self._changes.bump()
            raise

    def _send(self, form: Form) -> Response:
        fields: dict[str, list[str]] = {}
        for name, value in form:
            fields.setdefault(name, []).append(value)
        to = fields.get("To", [""])[0]
        from_ = fields.get("From", [""])[0]
        if not to:
            _refuse(21604)
        if not _WHATSAPP_ADDRESS.fullmatch(to):
            _refuse(21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            _refuse(21603)
        if not _WHATSAPP_ADDRESS.fullmatch(from_):
            _refuse(21212, f"Invalid 'From' Phone Number: {from_}")
        if from_ != self.whatsapp_from:
            # A well-formed WhatsApp address that is not this account's sender.
            _refuse(63007)
        body = fields["Body"][0] if "Body" in fields else None
        media_urls = tuple(fields.get("MediaUrl", []))
        if not body and not media_urls:
            _refuse(21602)
        if body is not None and len(body) > TEXT_LIMIT:
            _refuse(21617)
        if len(media_urls) > MAX_MEDIA_URLS:
            _refuse(21623)
        for url in media_urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                _refuse(21620)

        if self._failures:  # scripted failures hit sends that would otherwise succeed
            failure = self._failures.popleft()
            _refuse(failure.code, http_status=failure.http_status)

        now = self.clock()
        sid = new_sid("MM" if media_urls else "SM")
        log.debug("sim twilio: message to %s as %s", hashed(to), sid)
        if media_urls:
            if self._jobs is None:
                raise RuntimeError("media sends need the fetcher: start the simulator with start()")
            job = _FetchJob(sid, to, from_, body, media_urls, form, now)
            try:
                self._jobs.send_nowait(job)
            except trio.WouldBlock:
                error = "sim: fetch queue full"
                self._record(job, MediaFetch(media_urls[0], None, "", b"", error, now))
        else:
            self._record(_FetchJob(sid, to, from_, body, media_urls, form, now), None)
        return self._json(self._resource(sid, to, from_, body or "", len(media_urls)), 201)

    def _resource(self, sid: str, to: str, from_: str, body: str, num_media: int) -> Json:
        """The Message resource as the create call returns it."""
        # RFC 2822 in UTC, e.g. "Thu, 24 Aug 2023 05:01:45 +0000"; wall time, not the sim clock.
        date = email.utils.format_datetime(datetime.now(UTC))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": date,
            "date_sent": None,
            "date_updated": date,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": None,
            "num_media": str(num_media),
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }

    def _record(self, job: _FetchJob, fetch: MediaFetch | None) -> None:
        self.sent.append(
            SentMessage(
                sid=job.sid,
                to=job.to,
                from_=job.from_,
                body=job.body,
                media_urls=job.media_urls,
                form=job.form,
                at=job.at,
                media=fetch.data if fetch and fetch.error is None else None,
                media_content_type=fetch.content_type if fetch else None,
                media_error=fetch.error if fetch else None,
                renders_as_voice_note=bool(
                    fetch and fetch.error is None and _is_voice_note(fetch.data)
                ),
            )
        )
        self._changes.bump()

    # ------------------------------------------------------------------ media fetches

    async def _fetcher(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        send, receive = trio.open_memory_channel[_FetchJob](1000)
        # No auth, like Twilio fetching a public MediaUrl; redirects followed.
        async with (
            # One connection per fetch, closed after it, so an idle keep-alive connection to
            # the daemon never holds up the daemon's own graceful shutdown in tests.
            httpx.AsyncClient(
                follow_redirects=True,
                max_redirects=3,
                timeout=None,
                limits=httpx.Limits(max_keepalive_connections=0),
            ) as client,
            trio.open_nursery() as nursery,
        ):
            self._jobs = send
            task_status.started()
            try:
                async for job in receive:
                    nursery.start_soon(self._fetch_all, client, job)
            finally:
                self._jobs = None

    async def _fetch_all(self, client: httpx.AsyncClient, job: _FetchJob) -> None:
        fetches = [await self._fetch(client, url) for url in job.media_urls]
        failed = next((f for f in fetches if f.error is not None), None)
        self._record(job, failed or fetches[0])

    async def _fetch(self, client: httpx.AsyncClient, url: str) -> MediaFetch:
        status: int | None = None
        content_type = ""
        data = bytearray()
        error: str | None = None
        with trio.move_on_after(self.media_fetch_timeout) as scope:
            try:
                async with client.stream("GET", url) as response:
                    status = response.status_code
                    content_type = response.headers.get("content-type", "")
                    async for chunk in response.aiter_bytes():
                        data += chunk
                        if len(data) > MEDIA_LIMIT:
                            break
            except httpx.HTTPError as exc:
                error = f"11200 HTTP retrieval failure: {type(exc).__name__}"
        if scope.cancelled_caught:
            error = "11205 HTTP connection failure: no answer in time"
        if error is None and status is not None:
            error = _media_problem(status, content_type, bytes(data))
        fetch = MediaFetch(url, status, content_type, bytes(data), error, self.clock())
        self.media_fetches.append(fetch)
        self._changes.bump()
        return fetch

    # ------------------------------------------------------------------ user media

    async def _user_media_get(self, account_sid: str, message_sid: str, media_sid: str) -> Response:
        authorized = "Authorization" in request.headers
        now = self.clock()
        try:
            # "Twilio enforces HTTP Basic Authentication for all media URLs" (§6).
            self._check_account(account_sid)
            media = self._user_media.get(media_sid)
            if media is None or media.message_sid != message_sid:
                _refuse(20404, f"The requested resource {request.path} was not found", 404)
            if self.media_not_ready > 0:
                self.media_not_ready -= 1
                _refuse(20404, f"The requested resource {request.path} was not found", 404)
        except TwilioError as error:
            self._download(MediaDownload("api", request.path, authorized, error.http_status, now))
            raise
        token = secrets.token_urlsafe(24)
        self._cdn[token] = _CdnEntry(media.data, media.mime_type, now + CDN_URL_TTL)
        self._download(MediaDownload("api", request.path, authorized, 302, now))
        return Response("", status=302, headers={"Location": f"{self.cdn_base_url()}/cdn/{token}"})

    def cdn_base_url(self) -> str:
        """``scheme://cdn_host:port``: where media GETs are redirected (the API's port)."""
        parts = urlsplit(self.base_url or request.host_url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{self.cdn_host}{port}"

    async def _cdn_get(self, token: str) -> Response:
        now = self.clock()
        entry = self._cdn.get(token)
        # Pre-signed: the token in the path is the only key. Credentials sent here are not
        # needed, only recorded (a client that sends them leaks them to the CDN).
        authorized = "Authorization" in request.headers
        # Only on the CDN's host name: the same path on the API's is not found.
        on_cdn = (urlsplit(f"//{request.host}").hostname or "") == self.cdn_host.lower()
        if not on_cdn or entry is None or entry.expires_at <= now:
            self._download(MediaDownload("cdn", request.path, authorized, 404, now))
            return Response("Not Found", status=404, content_type="text/plain")
        self._download(MediaDownload("cdn", request.path, authorized, 200, now))
        return Response(entry.data, status=200, content_type=entry.mime_type)

    def _download(self, record: MediaDownload) -> None:
        self.media_downloads.append(record)
        self._changes.bump()


def _digits(address: str) -> str:
    return address.removeprefix("whatsapp:").lstrip("+")


# --------------------------------------------------------------------------- webhooks


def sign(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL plus name+value for every name
    sorted and every distinct value of it sorted, a repeated value once (§6; twilio-python
    and twilio-node both deduplicate the values)."""
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    message = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    digest = hmac.new(auth_token.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def encode_form(params: Sequence[tuple[str, str]]) -> bytes:
    """The body Twilio posts: ``application/x-www-form-urlencoded``, UTF-8 (§6 example)."""
    return urlencode(list(params)).encode("ascii")


def webhook_params(
    *,
    from_wa_id: str,
    body: str | None = None,
    media: tuple[str, str] | None = None,
    message_sid: str | None = None,
    profile_name: str = "Test User",
    to: str = SANDBOX_FROM,
    account_sid: str | None = None,
    button: tuple[str, str] | None = None,
    location: tuple[float, float] | None = None,
    extra: Sequence[tuple[str, str]] = (),
) -> Form:
    """What Twilio posts for one inbound WhatsApp message (§6 captured sandbox body).

    ``from_wa_id`` is the user's number, bare digits. ``media`` is ``(MediaUrl0,
    MediaContentType0)`` (see ``TwilioSim.add_user_media``); ``button`` a quick reply's
    ``(ButtonText, ButtonPayload)``; ``location`` ``(Latitude, Longitude)``. ``extra`` is
    appended as is, e.g. fields Twilio may add without notice.
    """
    if from_wa_id.startswith(("+", "whatsapp:")):
        raise ValueError("from_wa_id is bare digits, as in WaId")
    sid = message_sid or new_sid("MM" if media else "SM")
    if button is not None:
        kind, text = "button", button[0]
    elif location is not None:
        kind, text = "location", ""
    elif media is not None:
        kind, text = media[1].split("/", 1)[0], ""
    else:
        kind, text = "text", ""
    params: Form = []
    if media is not None:
        params.append(("MediaContentType0", media[1]))
    params += [
        ("SmsMessageSid", sid),
        ("NumMedia", "1" if media else "0"),
        ("ProfileName", profile_name),
        ("MessageType", kind),
        ("SmsSid", sid),
        ("WaId", from_wa_id),
        ("SmsStatus", "received"),
        ("Body", body if body is not None else text),
        ("To", to),
    ]
    if button is not None:
        params += [("ButtonText", button[0]), ("ButtonPayload", button[1])]
    if location is not None:
        params += [("Latitude", repr(location[0])), ("Longitude", repr(location[1]))]
    params += [
        ("NumSegments", "1"),
        ("ReferralNumMedia", "0"),
        ("MessageSid", sid),
        ("AccountSid", account_sid or "AC" + "0" * 32),
        ("From", f"whatsapp:+{from_wa_id}"),
    ]
    if media is not None:
        params.append(("MediaUrl0", media[0]))
    params.append(("ApiVersion", API_VERSION))
    params += list(extra)
    return params


def status_params(
    message_sid: str,
    status: str,
    *,
    to_wa_id: str,
    from_: str = SANDBOX_FROM,
    account_sid: str | None = None,
    error_code: str | None = None,
) -> Form:
    """A status callback about a message we sent: a subset of the message fields plus
    ``MessageStatus`` (and ``ErrorCode`` when it failed). The WhatsApp ``Channel*`` fields
    follow what integrations log; Twilio may add or drop such fields without notice."""
    params: Form = [
        ("ChannelPrefix", "whatsapp"),
        ("ApiVersion", API_VERSION),
        ("MessageStatus", status),
        ("SmsSid", message_sid),
        ("SmsStatus", status),
        ("ChannelToAddress", f"+{to_wa_id}"),
        ("To", f"whatsapp:+{to_wa_id}"),
        ("MessageSid", message_sid),
        ("AccountSid", account_sid or "AC" + "0" * 32),
        ("From", from_),
    ]
    if error_code is not None:
        params.append(("ErrorCode", error_code))
    return params


class _Auto(enum.Enum):
    SIGN = enum.auto()


SIGN = _Auto.SIGN  # default for TwilioWebhookSender.post: sign correctly


class TwilioWebhookSender:
    """Posts webhook forms to the daemon the way Twilio does.

    ``signed_url`` is the URL Twilio believes it calls (the public URL behind a TLS proxy);
    it defaults to ``url``, where the post really goes.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        auth_token: str,
        signed_url: str | None = None,
    ) -> None:
        self._client = client
        self._url = url
        self._auth_token = auth_token
        self._signed_url = signed_url or url

    async def post(
        self,
        params: Sequence[tuple[str, str]] | bytes,
        *,
        signature: str | _Auto | None = SIGN,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``params`` form-encoded (bytes go as they are, and are signed as parsed).

        ``signature``: ``SIGN`` signs correctly, a string is sent as the header value (to
        forge one), ``None`` leaves the header out.
        """
        if isinstance(params, bytes):
            body = params
            signed: Sequence[tuple[str, str]] = parse_qsl(params.decode(), keep_blank_values=True)
        else:
            body, signed = encode_form(params), params
        sent = {
            "Content-Type": f"{_FORM}; charset=utf-8",
            "User-Agent": USER_AGENT,
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
        }
        if signature is SIGN:
            sent[SIGNATURE_HEADER] = sign(self._auth_token, self._signed_url, signed)
        elif isinstance(signature, str):
            sent[SIGNATURE_HEADER] = signature
        if headers:
            sent.update(headers)
        return await self._client.post(self._url, content=body, headers=sent)
