"""Twilio REST I/O: send a WhatsApp message, download inbound media.

Thin on purpose: forms come from ``wire``, error answers are mapped by ``wire.parse_error``
and transport errors by ``daemon.upstream``, the ``httpx.AsyncClient`` is injected (the
runtime owns it and its limits), and the per-call time budget is the caller's cancel scope.

The account SID and auth token are HTTP Basic credentials. They go to the Messages API and,
for media, only to that same API origin (``api_url``; plus ``api.twilio.com`` when
``api_url`` is a Twilio edge such as api.dublin.ie1.twilio.com): "Twilio enforces HTTP Basic
Authentication for all media URLs", which then redirect to a CDN (mms.twiliocdn.com, ...)
whose pre-signed URLs need none, and get none (reference/whatsapp.md §6). Every hop must be
on ``media_hosts`` or ``api_url``'s host, so a tampered URL or redirect can neither leak the
credentials nor make us fetch from anywhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import trio

from daemon import USER_AGENT, upstream
from daemon.channels import media
from daemon.channels.twilio.wire import UPSTREAM, parse_error
from daemon.errors import UpstreamRejected

log = logging.getLogger(__name__)

TWILIO_API_HOST = "api.twilio.com"
# Right after the webhook, Twilio may still be storing the media: its URL answers 404 for a
# moment. Waits before each retry; the caller's cancel scope bounds the whole download.
NOT_READY_RETRIES = (0.5, 1.0, 2.0)
_FORM = "application/x-www-form-urlencoded"


class TwilioClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        api_url: str,
        account_sid: str,
        auth_token: str,
        media_hosts: Sequence[str],
        max_media_bytes: int,
    ) -> None:
        self._http = http
        self._api_url = api_url.rstrip("/")
        self._account_sid = account_sid
        self._auth = httpx.BasicAuth(account_sid, auth_token)
        api = httpx.URL(self._api_url)
        # The API host may serve media (Twilio's MediaUrl is on it), and already sees the
        # credentials on every send.
        self._media_hosts = (
            (*media_hosts, media.origin_entry(api)) if api.host else tuple(media_hosts)
        )
        self._max_media_bytes = max_media_bytes
        # Origins that may see the credentials: the configured API only (Twilio's, a regional
        # edge, or a simulator). A regional edge still gets media URLs on api.twilio.com, the
        # same account's API, so that one too; never a non-Twilio host on a Twilio config.
        self._credential_origins = {_origin(api)}
        if _is_twilio(api.host):
            self._credential_origins.add(("https", TWILIO_API_HOST, 443))
        # Plain http would expose the credentials on the wire; accepted only where the
        # operator already chose it for the API itself (a simulator).
        self._plain_http_ok = api.scheme == "http"

    # --- Messages API ------------------------------------------------------------------------

    async def send(self, form: Sequence[tuple[str, str]]) -> str:
        """POST .../Accounts/{sid}/Messages.json with ``form``; returns the new message SID."""
        url = f"{self._api_url}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}"
        url += "/Messages.json"
        with upstream.map_transport_errors(UPSTREAM, "send"):
            response = await self._http.post(
                url,
                content=urlencode(list(form)).encode("ascii"),
                headers={"Content-Type": _FORM, "Accept": "application/json"},
                auth=self._auth,
                follow_redirects=False,
            )
        status = response.status_code
        if status >= 400:
            raise parse_error(status, response.content, retry_after=upstream.retry_after(response))
        if status not in (200, 201):
            raise UpstreamRejected(UPSTREAM, f"send answered {status}", status=status)
        try:
            doc = json.loads(response.content)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            doc = None
        sid = doc.get("sid") if isinstance(doc, dict) else None
        if not isinstance(sid, str) or not sid:
            raise UpstreamRejected(UPSTREAM, "send answered without a message sid", status=status)
        return sid

    # --- media download ----------------------------------------------------------------------

    def _request_for(self, hop: httpx.URL) -> dict[str, Any]:
        # Credentials only to Twilio's API origin; a CDN hop gets none.
        auth = self._auth if _origin(hop) in self._credential_origins else None
        return {"headers": {"User-Agent": USER_AGENT}, "auth": auth}

    async def download(self, url: str) -> bytes:
        """GET an inbound media URL (``MediaUrl0``), at most ``max_media_bytes``.

        Redirects are followed by hand, every hop checked against ``media_hosts``
        (daemon/channels/media.py); credentials go only to Twilio's API origin. A 404 right
        after the webhook means "not stored yet": retried after the waits of
        ``NOT_READY_RETRIES``, then UpstreamRejected.
        """
        for wait in (*NOT_READY_RETRIES, None):
            try:
                return await media.download(
                    self._http,
                    url,
                    upstream=UPSTREAM,
                    hosts=self._media_hosts,
                    plain_http=self._plain_http_ok,
                    max_bytes=self._max_media_bytes,
                    parse_error=parse_error,
                    request=self._request_for,
                )
            except UpstreamRejected as exc:
                if exc.status != 404 or wait is None:
                    raise
                log.debug("media not ready yet; retrying in %gs", wait)
                await trio.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _is_twilio(host: str) -> bool:
    host = host.lower().rstrip(".")
    return host == "twilio.com" or host.endswith(".twilio.com")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host.lower().rstrip("."), url.port or default
