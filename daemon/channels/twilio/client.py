"""Twilio REST I/O: send a WhatsApp message, download inbound media.

Thin on purpose: forms come from ``wire``, errors are mapped by ``wire.parse_error``, the
``httpx.AsyncClient`` is injected (the runtime owns it and its limits), and the per-call time
budget is the caller's cancel scope.

The account SID and auth token are HTTP Basic credentials. They go to the Messages API and,
for media, only to Twilio's API host itself (``api.twilio.com`` and the configured
``api_url``'s host): "Twilio enforces HTTP Basic Authentication for all media URLs", which
then redirect to a CDN that needs none (reference/whatsapp.md §6). Every hop must be on
``media_hosts``, so a tampered URL or redirect can neither leak the credentials nor make us
fetch from anywhere else.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from urllib.parse import quote, urlencode

import httpx
import trio

from daemon.channels.meta.client import host_allowed
from daemon.channels.twilio.wire import UPSTREAM, parse_error
from daemon.errors import UpstreamRejected, UpstreamUnavailable
from daemon.http import USER_AGENT

log = logging.getLogger(__name__)

TWILIO_API_HOST = "api.twilio.com"
MAX_REDIRECTS = 3
# Right after the webhook, Twilio may still be storing the media: its URL answers 404 for a
# moment. Waits before each retry; the caller's cancel scope bounds the whole download.
NOT_READY_RETRIES = (0.5, 1.0, 2.0)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ERROR_BODY_BYTES = 64 * 1024  # enough for any Twilio error JSON; the rest is not read
_FORM = "application/x-www-form-urlencoded"


class _NotReady(Exception):
    """The media URL answered 404 (maybe not stored yet)."""


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
        self._media_hosts = tuple(media_hosts)
        self._max_media_bytes = max_media_bytes
        api = httpx.URL(self._api_url)
        # Origins that may see the credentials: Twilio's API, and the configured one (the
        # simulator, or a regional edge such as api.dublin.ie1.twilio.com).
        self._credential_origins = {("https", TWILIO_API_HOST, 443), _origin(api)}
        # Plain http would expose the credentials on the wire; accepted only where the
        # operator already chose it for the API itself (a simulator).
        self._plain_http_ok = api.scheme == "http"

    # --- Messages API ------------------------------------------------------------------------

    async def send(self, form: Sequence[tuple[str, str]]) -> str:
        """POST .../Accounts/{sid}/Messages.json with ``form``; returns the new message SID."""
        url = f"{self._api_url}/2010-04-01/Accounts/{quote(self._account_sid, safe='')}"
        url += "/Messages.json"
        try:
            response = await self._http.post(
                url,
                content=urlencode(list(form)).encode("ascii"),
                headers={"Content-Type": _FORM, "Accept": "application/json"},
                auth=self._auth,
                follow_redirects=False,
            )
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(UPSTREAM, f"send failed: {type(exc).__name__}") from exc
        status = response.status_code
        if status >= 400:
            raise parse_error(status, response.content)
        if status not in (200, 201):
            raise UpstreamRejected(UPSTREAM, f"send answered {status}", status=status)
        try:
            doc = json.loads(response.content)
        except ValueError:
            doc = None
        sid = doc.get("sid") if isinstance(doc, dict) else None
        if not isinstance(sid, str) or not sid:
            raise UpstreamRejected(UPSTREAM, "send answered without a message sid", status=status)
        return sid

    # --- media download ----------------------------------------------------------------------

    def _check_hop(self, url: httpx.URL) -> None:
        if url.scheme not in ("https", "http") or url.userinfo:
            raise UpstreamRejected(UPSTREAM, "media URL refused: scheme or userinfo")
        if url.scheme == "http" and not self._plain_http_ok:
            raise UpstreamRejected(UPSTREAM, "media URL refused: plain http")
        if not host_allowed(url, self._media_hosts):
            raise UpstreamRejected(UPSTREAM, f"media host not allowed: {url.host}")

    def _auth_for(self, url: httpx.URL) -> httpx.BasicAuth | None:
        return self._auth if _origin(url) in self._credential_origins else None

    async def download(self, url: str) -> bytes:
        """GET an inbound media URL (``MediaUrl0``), at most ``max_media_bytes``.

        Redirects are followed by hand, every hop checked against ``media_hosts``, at most
        ``MAX_REDIRECTS``; credentials go only to Twilio's API origin. A 404 right after the
        webhook means "not stored yet": retried after the waits of ``NOT_READY_RETRIES``,
        then UpstreamRejected.
        """
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            raise UpstreamRejected(UPSTREAM, "media URL is not a URL") from None
        for wait in (*NOT_READY_RETRIES, None):
            try:
                return await self._download_once(target)
            except _NotReady:
                if wait is None:
                    break
                log.debug("media not ready yet; retrying in %gs", wait)
                await trio.sleep(wait)
        raise UpstreamRejected(UPSTREAM, "media not found", status=404)

    async def _download_once(self, target: httpx.URL) -> bytes:
        headers = {"User-Agent": USER_AGENT}
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                self._check_hop(target)
                async with self._http.stream(
                    "GET",
                    target,
                    headers=headers,
                    auth=self._auth_for(target),
                    follow_redirects=False,
                ) as response:
                    if response.status_code in _REDIRECTS:
                        location = response.headers.get("location")
                        if not location:
                            raise UpstreamRejected(
                                UPSTREAM, "redirect without Location", status=response.status_code
                            )
                        target = target.join(location)
                        log.debug("media download redirected to %s", target.host)
                        continue
                    return await self._read_media(response)
        except httpx.TransportError as exc:
            raise UpstreamUnavailable(UPSTREAM, f"media download: {type(exc).__name__}") from exc
        except httpx.InvalidURL:
            raise UpstreamRejected(UPSTREAM, "redirect to an invalid URL") from None
        raise UpstreamRejected(UPSTREAM, f"more than {MAX_REDIRECTS} redirects")

    async def _read_media(self, response: httpx.Response) -> bytes:
        status = response.status_code
        if status == 404:
            raise _NotReady
        if status >= 400:
            raise parse_error(status, await _read_capped(response, _ERROR_BODY_BYTES))
        if status != 200:
            raise UpstreamRejected(UPSTREAM, f"media download answered {status}", status=status)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_media_bytes:
            raise UpstreamRejected(UPSTREAM, "media too large", status=status)
        data = await _read_capped(response, self._max_media_bytes + 1)
        if len(data) > self._max_media_bytes:
            raise UpstreamRejected(UPSTREAM, "media too large", status=status)
        return data


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host.lower().rstrip("."), url.port or default


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    """At most ``cap`` bytes of the body; reading stops there, the rest is never fetched.

    Stopping early leaves httpx's inner async generators for trio to finalize, which warns
    (ResourceWarning, encode/httpx#3686); harmless, and the price of never buffering an
    oversized body.
    """
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= cap:
            break
    return bytes(data[:cap])
