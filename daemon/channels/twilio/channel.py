"""Twilio's WhatsApp API behind the Channel protocol: ``wire`` for the format,
``TwilioClient`` for the calls, ``PublicMedia`` for the voice notes Twilio fetches from us."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from daemon.channels.base import BadWebhook, VoiceNote, WebhookRequest
from daemon.channels.twilio import wire
from daemon.channels.twilio.client import TwilioClient
from daemon.channels.twilio.public_media import PublicMedia
from daemon.errors import UpstreamError
from daemon.model import Batch, Inbound, Media, User
from daemon.text import split_message

log = logging.getLogger(__name__)

# Where the web layer serves PublicMedia: GET {PUBLIC_MEDIA_PATH}<token>.
PUBLIC_MEDIA_PATH = "/media/"
VOICE_MIME = "audio/ogg"


class TwilioChannel:
    name = "twilio"
    text_limit = wire.TEXT_LIMIT

    def __init__(
        self,
        client: TwilioClient,
        media: PublicMedia,
        *,
        auth_token: str,
        public_url: str,
        from_: str,
    ) -> None:
        self._client = client
        self._media = media
        self._auth_token = auth_token
        self._public_url = public_url.rstrip("/")
        self._from = from_

    def media_url_for(self, token: str) -> str:
        """The public URL Twilio fetches a PublicMedia entry from."""
        return f"{self._public_url}{PUBLIC_MEDIA_PATH}{token}"

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return None  # Twilio has no subscription handshake: a GET on the webhook is refused

    def _signed_base(self, request: WebhookRequest) -> str:
        # Twilio signs the URL it called, not the one we see behind a TLS proxy (§6). The
        # request target is appended to this as it came, never re-parsed (WebhookRequest).
        if not self._public_url:
            return request.origin
        return wire.public_base(self._public_url)

    def has_signature(self, headers: Mapping[str, str]) -> bool:
        return wire.signature_well_formed(headers.get(wire.SIGNATURE_HEADER))

    def verify(self, request: WebhookRequest) -> bool:
        # WhatsApp messaging webhooks are form posts: the form fields are signed. JSON bodies
        # (other Twilio products) are signed through a bodySHA256 query parameter instead,
        # with no params; no WhatsApp webhook uses that, so it is not implemented.
        header = request.headers.get(wire.SIGNATURE_HEADER)
        if not header:
            return False
        try:
            params = wire.parse_form(request.body)
        except BadWebhook:
            return False
        return wire.verify(
            self._auth_token, self._signed_base(request), request.target, params, header
        )

    def parse(self, request: WebhookRequest) -> Batch:
        return wire.parse_webhook(wire.parse_form(request.body))

    def accepted(self) -> tuple[bytes, str]:
        # Twilio expects TwiML in the synchronous answer; an empty <Response> says "no reply
        # here", the answer goes later through the Messages API (§6).
        return wire.EMPTY_TWIML, wire.TWIML_CONTENT_TYPE

    async def acknowledge(self, message: Inbound) -> None:
        # Nothing: Twilio has no read receipt call, and its WhatsApp typing indicator is a
        # public beta (§6). A beta endpoint failing or changing must not cost the user a turn.
        return None

    async def send_text(self, user: User, text: str) -> list[str]:
        # In order, one after the other: concurrent sends may arrive out of order.
        sids: list[str] = []
        for part in split_message(text, self.text_limit):
            form = wire.message_form(self._from, user.address, body=part)
            sids.append(await self._client.send(form))
        return sids

    async def prepare_voice(self, ogg_opus: bytes, *, audio_key: str = "") -> VoiceNote:
        # Twilio takes media only by URL and fetches it itself, right after the send: serve
        # the bytes from our own short-lived URL. No upload to reuse (audio_key unused).
        return VoiceNote(self._media.put(ogg_opus, VOICE_MIME), ogg_opus, audio_key)

    async def send_voice(self, user: User, note: VoiceNote) -> str:
        form = wire.message_form(self._from, user.address, media_url=self.media_url_for(note.ref))
        try:
            return await self._client.send(form)
        except UpstreamError as exc:
            # Twilio answered with an error: it queued nothing and will fetch nothing. After a
            # transport error or a cancellation it may have queued the message all the same,
            # so the entry stays and expires with its TTL.
            if exc.status is not None:
                self._media.discard(note.ref)
            raise

    async def fetch_media(self, media: Media) -> bytes:
        return await self._client.download(media.id)

    async def aclose(self) -> None:
        # The httpx client belongs to the runtime, which closes it.
        return None
