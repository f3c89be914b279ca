"""Graph API I/O for the WhatsApp Cloud API: send, mark read, media URL, download, upload.

Thin on purpose: payloads come from ``wire``, error answers are mapped by
``wire.parse_graph_error`` and transport errors by ``daemon.upstream``, and the
``httpx.AsyncClient`` is injected (the runtime owns it and its limits). The per-call
time budget is the caller's cancel scope.

The access token is a bearer secret. It goes to ``graph_url`` and, for media downloads, only
to the hosts and ports in ``media_hosts`` and to ``graph_url``'s own host and port (which
sees the token on every call anyway): a media URL comes from a Graph answer, and a redirect
or a tampered URL must not be able to carry the token anywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from daemon import USER_AGENT, upstream
from daemon.channels import media
from daemon.channels.meta.wire import (
    UPSTREAM,
    VOICE_MIME,
    loads,
    names_media,
    parse_graph_error,
)
from daemon.errors import UpstreamRejected

log = logging.getLogger(__name__)


class GraphClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        graph_url: str,
        phone_number_id: str,
        access_token: str,
        media_hosts: Sequence[str],
        max_media_bytes: int,
    ) -> None:
        self._http = http
        self._graph_url = graph_url.rstrip("/")
        self._phone_number_id = phone_number_id
        self._auth = {"Authorization": f"Bearer {access_token}"}
        # Graph's own host and port: it sees the token on every call anyway.
        graph = httpx.URL(self._graph_url)
        self._media_hosts = (
            (*media_hosts, media.origin_entry(graph)) if graph.host else tuple(media_hosts)
        )
        self._max_media_bytes = max_media_bytes
        # Plain http would expose the token on the wire. It is accepted for media only where
        # the operator already chose it for Graph itself (a simulator) or on loopback.
        self._plain_http_ok = httpx.URL(self._graph_url).scheme == "http"

    # --- Graph calls ---------------------------------------------------------------------------

    async def post_message(self, payload: Mapping[str, Any]) -> str:
        """POST /{phone_number_id}/messages (§5). The new wamid; "" for read receipts."""
        doc = await self._call(
            "POST",
            f"/{self._phone_number_id}/messages",
            media_call=names_media(payload),
            json=dict(payload),
        )
        messages = doc.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            wamid = messages[0].get("id")
            if isinstance(wamid, str) and wamid:
                return wamid
        if doc.get("success") is True:  # mark-read and typing answer {"success": true}
            return ""
        raise UpstreamRejected(UPSTREAM, "send answered without a message id", status=200)

    async def media_url(self, media_id: str) -> tuple[str, str]:
        """GET /{media_id}: a download URL (valid about 5 minutes) and its MIME type (§4).

        Never with ``phone_number_id``: Graph processes a lookup that names one only for
        media *uploaded on* that number, and refuses it for every medium a user sent ("(#100)
        Param phone_number_id is not a valid whatsapp business phone number id ID", §4;
        chatwoot/chatwoot#13319). Which number a message came to is the webhook's business
        (``[whatsapp] only_own_number``), decided before any media is looked up.
        """
        doc = await self._call("GET", f"/{quote(media_id, safe='')}", media_call=True)
        url, mime_type = doc.get("url"), doc.get("mime_type")
        if not isinstance(url, str) or not url:
            raise UpstreamRejected(UPSTREAM, "media answer without a url", status=200)
        return url, mime_type if isinstance(mime_type, str) else ""

    async def upload(
        self, data: bytes, mime_type: str = VOICE_MIME, filename: str = "voice.ogg"
    ) -> str:
        """POST /{phone_number_id}/media as multipart (§4). The new media id.

        ``mime_type`` goes both in the ``type`` field and on the file part, the same string:
        Graph checks the type it is told against the file (131053 on a mismatch, §4.1).
        """
        doc = await self._call(
            "POST",
            f"/{self._phone_number_id}/media",
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
        )
        media_id = doc.get("id")
        if not isinstance(media_id, str) or not media_id:
            raise UpstreamRejected(UPSTREAM, "upload answered without an id", status=200)
        return media_id

    async def _call(
        self, method: str, path: str, *, media_call: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        """One Graph call. ``media_call``: it names a media id, so Graph's "no such object"
        means that media is gone (Reason.MEDIA_GONE, wire.parse_graph_error)."""
        with upstream.map_transport_errors(UPSTREAM, method):
            response = await self._http.request(
                method, self._graph_url + path, headers=self._auth, follow_redirects=False, **kwargs
            )
        if response.status_code >= 400:
            raise parse_graph_error(
                response.status_code,
                response.content,
                media_call=media_call,
                retry_after=upstream.retry_after(response),
            )
        try:
            doc = loads(response.content)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            doc = None
        if not isinstance(doc, dict):
            raise UpstreamRejected(
                UPSTREAM, "answer is not a JSON object", status=response.status_code
            )
        return doc

    # --- media download ------------------------------------------------------------------------

    async def download(self, url: str) -> bytes:
        """GET a media URL with the bearer token (§4), at most ``max_media_bytes``.

        The token is sent only to allowed hosts; redirects are followed by hand, each hop
        checked again (daemon/channels/media.py). 404 means the URL expired: the caller may
        ask ``media_url`` for a fresh one.
        """
        # Some CDNs refuse clients without a User-Agent (§4 gotchas), so it is set here too.
        headers = {**self._auth, "User-Agent": USER_AGENT}
        return await media.download(
            self._http,
            url,
            upstream=UPSTREAM,
            hosts=self._media_hosts,
            plain_http=self._plain_http_ok,
            max_bytes=self._max_media_bytes,
            parse_error=parse_graph_error,
            request=lambda _hop: {"headers": headers},
        )
