"""The Agentforce OAuth token source: client credentials, cached until shortly before expiry.

Section numbers (§) refer to reference/agentforce.md; the token request's form and the
response's parsing (lifetime from the JWT, §1.3-§1.4) live in ``wire``.

One fetch at a time: callers that waited for the lock find the fresh token (checked again).
A cancelled fetch leaves the cached token untouched and the lock released. A token the API
refused (401) is forgotten by the caller (``forget``), and the next ``get`` fetches a new one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx
import trio

from daemon import upstream
from daemon.agentforce import wire

log = logging.getLogger(__name__)

UPSTREAM = wire.UPSTREAM

_JSON = "application/json"


class TokenSource:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        ttl: float = 1500.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._http = http
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        # Kept this long when the token's own lifetime cannot be read (wire.parse_token).
        self._ttl = ttl
        self._clock = clock
        self._token: wire.Token | None = None
        self._lock = trio.Lock()

    async def get(self) -> str:
        """A valid access token: the cached one, or a new one fetched now."""
        token = self._token
        if token is not None and token.expires_at > self._clock():
            return token.access_token
        async with self._lock:
            token = self._token  # another task may have fetched it while we waited
            if token is None or token.expires_at <= self._clock():
                token = await self._fetch()
                self._token = token
            return token.access_token

    def forget(self, rejected: str) -> None:
        """Drop ``rejected`` (the API answered 401 to it), so the next ``get`` fetches anew."""
        # Only if it is still the cached one: a concurrent caller may have replaced it.
        if self._token is not None and self._token.access_token == rejected:
            self._token = None

    async def _fetch(self) -> wire.Token:
        with upstream.map_transport_errors(UPSTREAM, "token request"):
            response = await self._http.post(
                self._token_url,
                data=wire.token_form(self._client_id, self._client_secret),
                headers={"Accept": _JSON},
            )
        if not response.is_success:
            raise wire.parse_error(
                response.status_code, response.content, retry_after=upstream.retry_after(response)
            )
        token = wire.parse_token(
            response.content,
            self._clock(),
            fallback_ttl=self._ttl,
            wall_now=time.time(),
        )
        if token.missing_scopes:
            log.warning(
                "agentforce token lacks the scopes %s (reference §1.1)",
                " ".join(token.missing_scopes),
            )
        log.info("agentforce token fetched, used for %.0f s", token.expires_at - self._clock())
        return token
