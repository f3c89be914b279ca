"""What the webhook route reads off a request: the target as sent, and the body, bounded."""

from __future__ import annotations

from urllib.parse import quote

import trio
from quart import request
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

# A body that trickles in slower than this is cut off (408), so it can't hold a slot.
BODY_TIMEOUT = 15.0


def raw_target() -> str:
    """The request target as the client sent it: the path and the query exactly as they came
    on the request line, never rebuilt from a string that includes the Host header.

    Werkzeug's ``request.url`` is rebuilt from the percent-decoded path and query, so
    ``?k=a%2Fb`` comes back as ``?k=a/b``; a signature over the URL the sender really called
    (Twilio signs it byte for byte, whatsapp.md §6) would then never match. The ASGI scope
    keeps the raw bytes: ``raw_path`` (hypercorn: the path alone; split at "?" all the same)
    and ``query_string``. The origin (scheme and Host) is kept apart in WebhookRequest; the
    Host value is Werkzeug's ``request.host``, which from 3.1.8 is "" when the header has
    characters no host can have (the floor pinned in pyproject.toml).
    """
    raw_path = request.scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path:
        path = raw_path.partition(b"?")[0].decode("ascii", "replace")
    else:  # a server without raw_path: the decoded path, quoted back as best we can
        path = quote(request.path, safe="/:@!$&'()*+,;=-._~%")
    query = request.query_string.decode("ascii", "replace")
    return path + (f"?{query}" if query else "")


async def read_body(limit: int) -> bytes:
    """The raw request body, at most ``limit`` bytes, read as it streams in.

    Quart's own MAX_CONTENT_LENGTH check is not enough: on Quart 0.23 (quart-trio 0.13, the
    versions Python 3.13 gets) a chunked body is queued whole before its size is checked, so
    a client could make the daemon buffer any amount. Counting while reading bounds memory
    on every version.
    """
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    # Chunks kept as they came and joined once: a growing bytearray reallocates as it goes
    # and leaves the allocator holding about twice the body (bench/attack.py).
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(BODY_TIMEOUT) as scope:
        async for chunk in request.body:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise RequestEntityTooLarge()
    if scope.cancelled_caught:
        raise RequestTimeout()
    return b"".join(chunks)
