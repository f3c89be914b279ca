"""Downloading inbound media, the same way for every provider.

A media URL comes from the provider (a Graph answer, a Twilio webhook) and the download
carries credentials (Meta's bearer token, Twilio's Basic auth). So: only http(s), no
user:password in the URL, plain http only where the operator chose it (a simulator) or on
loopback, every hop on the allowed hosts, redirects followed by hand (at most three), and
the body read with a byte cap so an oversized file is never buffered.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from daemon.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_BYTES = 64 * 1024  # enough for any error JSON; the rest is not read


def host_allowed(url: httpx.URL, hosts: Sequence[str]) -> bool:
    """True when ``url``'s host is one of ``hosts``.

    An entry matches its host exactly (case-insensitive, trailing dot ignored); "*.example.com"
    matches any subdomain of example.com but not example.com itself, and never
    "evilexample.com". Ports are not compared.
    """
    host = url.host.lower().rstrip(".")
    if not host:
        return False
    for entry in hosts:
        allowed = entry.strip().lower().rstrip(".")
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]):  # the dot is kept: "evilexample.com" fails
                return True
        elif allowed and host == allowed:
            return True
    return False


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_media_url(
    url: httpx.URL, hosts: Sequence[str], *, upstream: str, plain_http: bool
) -> None:
    """Raise UpstreamRejected unless credentials may go to ``url``."""
    if url.scheme not in ("https", "http") or url.userinfo:
        raise UpstreamRejected(upstream, "media URL refused: scheme or userinfo")
    if url.scheme == "http" and not (plain_http or is_loopback(url.host)):
        raise UpstreamRejected(upstream, "media URL refused: plain http")
    if not host_allowed(url, hosts):
        raise UpstreamRejected(upstream, f"media host not allowed: {url.host}")


async def read_capped(response: httpx.Response, cap: int) -> bytes:
    """At most ``cap`` bytes of the body; reading stops there, the rest is never fetched.

    Stopping early leaves httpx's inner async generators for trio to finalize, which warns
    (ResourceWarning, encode/httpx#3686, fixes not released); harmless, and the price of
    never buffering an oversized body.
    """
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= cap:
            break
    return bytes(data[:cap])


async def download(
    http: httpx.AsyncClient,
    url: str,
    *,
    upstream: str,
    hosts: Sequence[str],
    plain_http: bool,
    max_bytes: int,
    parse_error: Callable[[int, bytes], UpstreamError],
    request: Callable[[httpx.URL], Mapping[str, Any]],
) -> bytes:
    """GET a media URL, at most ``max_bytes``. ``request(hop)`` gives the headers / auth for
    each hop (so credentials go only where they belong). A 404 is UpstreamRejected with
    status 404: the provider may say "expired" or "not ready yet", the caller knows which."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        raise UpstreamRejected(upstream, "media URL is not a URL") from None
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            check_media_url(target, hosts, upstream=upstream, plain_http=plain_http)
            async with http.stream(
                "GET", target, follow_redirects=False, **request(target)
            ) as response:
                if response.status_code in REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise UpstreamRejected(
                            upstream, "redirect without Location", status=response.status_code
                        )
                    target = target.join(location)
                    log.debug("media download redirected to %s", target.host)
                    continue
                return await _read_media(response, upstream, max_bytes, parse_error)
    except httpx.TransportError as exc:
        raise UpstreamUnavailable(upstream, f"media download: {type(exc).__name__}") from exc
    except httpx.InvalidURL:
        raise UpstreamRejected(upstream, "redirect to an invalid URL") from None
    raise UpstreamRejected(upstream, f"more than {MAX_REDIRECTS} redirects")


async def _read_media(
    response: httpx.Response,
    upstream: str,
    max_bytes: int,
    parse_error: Callable[[int, bytes], UpstreamError],
) -> bytes:
    status = response.status_code
    if status == 404:
        raise UpstreamRejected(upstream, "media not found", status=404)
    if status >= 400:
        raise parse_error(status, await read_capped(response, ERROR_BODY_BYTES))
    if status != 200:
        raise UpstreamRejected(upstream, f"media download answered {status}", status=status)
    declared = response.headers.get("content-length", "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise UpstreamRejected(upstream, "media too large", status=status)
    data = await read_capped(response, max_bytes + 1)
    if len(data) > max_bytes:
        raise UpstreamRejected(upstream, "media too large", status=status)
    return data
