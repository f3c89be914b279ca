"""The Meta WhatsApp Cloud API behind the Channel protocol: ``wire`` for the format,
``GraphClient`` for the calls."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from daemon.cache.media_ids import MediaIds
from daemon.cache.singleflight import SingleFlight
from daemon.channels.base import VoiceNote, WebhookRequest
from daemon.channels.meta import wire
from daemon.channels.meta.client import GraphClient
from daemon.errors import Reason, UpstreamRejected
from daemon.model import Batch, Inbound, Media, User
from daemon.text import split_message

log = logging.getLogger(__name__)


class MetaChannel:
    name = "meta"
    text_limit = wire.TEXT_LIMIT

    def __init__(
        self,
        graph: GraphClient,
        *,
        app_secret: str,
        verify_token: str,
        phone_number_id: str,
        only_own_number: bool = True,
        media_ids: MediaIds | None = None,
    ) -> None:
        self._graph = graph
        self._app_secret = app_secret
        self._verify_token = verify_token
        self._phone_number_id = phone_number_id
        self._only_own_number = only_own_number
        self._media_ids = media_ids
        self._uploads: SingleFlight[str, str] = SingleFlight()

    def handshake(self, query: Mapping[str, str]) -> str | None:
        return wire.handshake(query, self._verify_token)

    def has_signature(self, headers: Mapping[str, str]) -> bool:
        return wire.signature_well_formed(headers.get(wire.SIGNATURE_HEADER))

    def verify(self, request: WebhookRequest) -> bool:
        header = request.headers.get(wire.SIGNATURE_HEADER)
        return wire.verify_signature(self._app_secret, request.body, header)

    def parse(self, request: WebhookRequest) -> Batch:
        own = self._phone_number_id if self._only_own_number else None
        return wire.parse_webhook(request.body, phone_number_id=own)

    def accepted(self) -> tuple[bytes, str]:
        # Meta only looks at the status: 200 and an empty body (§3).
        return b"", "text/plain"

    async def acknowledge(self, message: Inbound) -> None:
        # One call does both: the typing indicator also marks the message read (§5).
        await self._graph.post_message(wire.read_payload(message.message_id, typing=True))

    async def send_text(self, user: User, text: str) -> list[str]:
        # In order, one after the other: Meta does not promise to deliver concurrent sends in
        # the order they were made (§3, outbound order).
        ids: list[str] = []
        for part in split_message(text, self.text_limit):
            ids.append(await self._graph.post_message(wire.text_payload(user.address, part)))
        return ids

    async def prepare_voice(self, ogg_opus: bytes, *, audio_key: str = "") -> VoiceNote:
        ids, number = self._media_ids, self._phone_number_id
        if ids is not None and audio_key:
            media_id = ids.get(audio_key, number)
            if media_id is None:
                # Users asking the same thing at once share one upload of the same answer.
                media_id = await self._uploads.run(
                    audio_key, lambda: self._upload_and_remember(ogg_opus, audio_key, ids)
                )
        else:
            media_id = await self._graph.upload(ogg_opus, wire.VOICE_MIME, "voice.ogg")
        return VoiceNote(media_id, ogg_opus, audio_key)

    async def send_voice(self, user: User, note: VoiceNote) -> str:
        try:
            return await self._graph.post_message(wire.voice_payload(user.address, note.ref))
        except UpstreamRejected as exc:
            # Graph no longer has that upload (an id reused from the cache expired or was
            # deleted): upload again, once. Anything else is not about the media, and a new
            # upload would not help.
            if exc.reason != Reason.MEDIA_GONE:
                raise
            log.info("media id refused (%s): uploading again", exc.code)
        if self._media_ids is not None and note.audio_key:
            self._media_ids.forget(note.audio_key, self._phone_number_id)
        fresh = await self.prepare_voice(note.audio, audio_key=note.audio_key)
        return await self._graph.post_message(wire.voice_payload(user.address, fresh.ref))

    async def _upload_and_remember(self, ogg_opus: bytes, audio_key: str, ids: MediaIds) -> str:
        media_id = await self._graph.upload(ogg_opus, wire.VOICE_MIME, "voice.ogg")
        ids.put(audio_key, self._phone_number_id, media_id)
        return media_id

    async def fetch_media(self, media: Media) -> bytes:
        url, _ = await self._graph.media_url(media.id)
        try:
            return await self._graph.download(url)
        except UpstreamRejected as exc:
            if exc.status != 404:
                raise
        # Media URLs live about 5 minutes (§4): one fresh URL, one more try.
        log.info("media URL expired between lookup and download; fetching a fresh one")
        url, _ = await self._graph.media_url(media.id)
        return await self._graph.download(url)

    async def aclose(self) -> None:
        # The httpx client belongs to the runtime, which closes it.
        return None
