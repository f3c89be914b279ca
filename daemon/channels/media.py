"""Downloading inbound media, the same way for every provider.

A media URL comes from the provider (a Graph answer, a Twilio webhook) and the download
carries credentials (Meta's bearer token, Twilio's Basic auth). So: only http(s), no
user:password in the URL, plain http only where the operator chose it (a simulator) or on
loopback, every hop on the allowed hosts *and ports*, redirects followed by hand (at most
three), and the body read with a byte cap so an oversized file is never buffered.

The body is never decompressed: every hop asks for ``Accept-Encoding: identity`` and an
answer that is compressed all the same is refused. A voice note is Opus already, so nothing
is lost, and a 400 KB gzip bomb would otherwise inflate to hundreds of MiB inside one read,
before the byte cap ever sees a byte (bench/attack.py, "gzip").
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import httpx

from daemon.errors import UpstreamError, UpstreamRejected
from daemon.upstream import map_transport_errors, retry_after

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})
ERROR_BODY_BYTES = 64 * 1024  # enough for any error JSON; the rest is not read


DEFAULT_PORTS = {"https": 443, "http": 80}


class ParseError(Protocol):
    """The provider's parser of an error answer (wire.parse_graph_error, wire.parse_error)."""

    def __call__(
        self, status: int, body: bytes, *, retry_after: float | None = None
    ) -> UpstreamError: ...


def split_entry(entry: str) -> tuple[str, int | None]:
    """An allowed-hosts entry as (host, port): "example.com", "example.com:8443",
    "*.example.com", "[::1]:8080". No port: None (the URL's scheme's default port)."""
    entry = entry.strip().lower()
    if entry.startswith("["):  # an IPv6 literal, as a URL writes it
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    host, sep, port = entry.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host.rstrip("."), int(port)
    return entry.rstrip("."), None


def origin_entry(url: httpx.URL) -> str:
    """The allowed-hosts entry for exactly ``url``'s host and port (an API's own origin)."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}" if url.port is not None else host


def host_allowed(url: httpx.URL, hosts: Sequence[str]) -> bool:
    """True when ``url``'s host and port are one of ``hosts``.

    An entry matches its host exactly (case-insensitive, trailing dot ignored); "*.example.com"
    matches any subdomain of example.com but not example.com itself, and never
    "evilexample.com". An entry without a port allows only the scheme's default port (443
    for https): credentials must not reach another service on an allowed host, and the
    loopback hosts a simulator uses are exactly where other services listen.
    """
    host = url.host.lower().rstrip(".")
    if not host:
        return False
    default = DEFAULT_PORTS.get(url.scheme)
    port = url.port if url.port is not None else default
    for entry in hosts:
        allowed, allowed_port = split_entry(entry)
        if (allowed_port if allowed_port is not None else default) != port:
            continue
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
        where = origin_entry(url) if url.port is not None else url.host
        raise UpstreamRejected(upstream, f"media host not allowed: {where}")


def is_encoded(response: httpx.Response) -> bool:
    """True when the body comes compressed (any Content-Encoding but identity)."""
    codings = response.headers.get("content-encoding", "").lower().replace(" ", "")
    return codings not in ("", "identity")


async def read_capped(response: httpx.Response, cap: int) -> bytes:
    """At most ``cap`` bytes of the body as they came on the wire (never decompressed);
    reading stops there, the rest is never fetched.

    Stopping early leaves httpx's inner async generators for trio to finalize, which warns
    (ResourceWarning, encode/httpx#3686, fixes not released); harmless, and the price of
    never buffering an oversized body.
    """
    if response.is_stream_consumed:  # built in memory and read already (httpx.MockTransport)
        return response.content[:cap]
    data = bytearray()
    async for chunk in response.aiter_raw():
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
    parse_error: ParseError,
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
        with map_transport_errors(upstream, "media download"):
            for _hop in range(MAX_REDIRECTS + 1):
                check_media_url(target, hosts, upstream=upstream, plain_http=plain_http)
                options = dict(request(target))
                options["headers"] = {**options.get("headers", {}), "Accept-Encoding": "identity"}
                async with http.stream(
                    "GET", target, follow_redirects=False, **options
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
    except httpx.InvalidURL:
        raise UpstreamRejected(upstream, "redirect to an invalid URL") from None
    raise UpstreamRejected(upstream, f"more than {MAX_REDIRECTS} redirects")


async def _read_media(
    response: httpx.Response,
    upstream: str,
    max_bytes: int,
    parse_error: ParseError,
) -> bytes:
    status = response.status_code
    if status == 404:
        raise UpstreamRejected(upstream, "media not found", status=404)
    if status >= 400:
        # A compressed error body is not read: the status alone says what went wrong.
        body = b"" if is_encoded(response) else await read_capped(response, ERROR_BODY_BYTES)
        raise parse_error(status, body, retry_after=retry_after(response))
    if status != 200:
        raise UpstreamRejected(upstream, f"media download answered {status}", status=status)
    if is_encoded(response):
        raise UpstreamRejected(
            upstream,
            "media came compressed although identity was asked for: refused",
            status=status,
        )
    declared = response.headers.get("content-length", "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise UpstreamRejected(upstream, "media too large", status=status)
    data = await read_capped(response, max_bytes + 1)
    if len(data) > max_bytes:
        raise UpstreamRejected(upstream, "media too large", status=status)
    return data
