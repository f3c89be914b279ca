"""The Agent API's HTTP: every call with a bearer token, and a new token after a 401.

Section numbers (§) refer to reference/agentforce.md; bodies are built and parsed in ``wire``.
Each method sends one request (two after a 401) and returns the response whatever its status:
what a status means is the caller's to decide (a 404 is a gone session to one caller, a
refused stream to another).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from daemon.agentforce import wire
from daemon.agentforce.auth import TokenSource
from daemon.agentforce.sessions import AgentSession
from daemon.upstream import map_transport_errors

log = logging.getLogger(__name__)

UPSTREAM = wire.UPSTREAM

_JSON = "application/json"
_EVENT_STREAM = "text/event-stream"


class AgentApi:
    def __init__(
        self, http: httpx.AsyncClient, tokens: TokenSource, *, api_url: str, agent_id: str
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._api_url = api_url.rstrip("/")
        self._agent_id = agent_id

    async def start_session(self, body: Mapping[str, Any]) -> httpx.Response:
        """POST .../agents/{agent_id}/sessions (§2)."""
        return await self.request(
            "POST",
            f"{self._api_url}/agents/{self._agent_id}/sessions",
            json=body,
            headers={"Content-Type": _JSON},
        )

    async def post_message(
        self, session: AgentSession, text: str, *, stream: bool = False
    ) -> httpx.Response:
        """The user's text to the session's synchronous (§3) or stream (§4) endpoint, under
        the session's next sequenceId."""
        sequence_id = session.next_sequence
        # Before the await: a cancelled send must not leave its number to the next one (§9).
        session.next_sequence += 1
        log.debug(
            "agentforce %s %s seq %d (%d chars)",
            "stream" if stream else "send",
            session.session_id,
            sequence_id,
            len(text),
        )
        return await self.request(
            "POST",
            f"{self._api_url}/sessions/{session.session_id}/messages"
            + ("/stream" if stream else ""),
            json=wire.message_body(sequence_id, text),
            headers={"Accept": _EVENT_STREAM if stream else _JSON, "Content-Type": _JSON},
            stream=stream,
        )

    async def end_session(self, session_id: str, reason: str) -> httpx.Response:
        """DELETE .../sessions/{session_id} with ``x-session-end-reason`` (§5)."""
        return await self.request(
            "DELETE",
            f"{self._api_url}/sessions/{session_id}",
            headers={"x-session-end-reason": reason},
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str],
        stream: bool = False,
    ) -> httpx.Response:
        """One Agent API call with a bearer token; on 401 a new token and one more try.

        Returns the response whatever its status (a second 401 included): the caller
        decides what the status means. ``stream``: the body is not read yet; the caller
        reads or closes it.
        """
        for attempt in (1, 2):
            token = await self._tokens.get()
            with map_transport_errors(UPSTREAM, method):
                request = self._http.build_request(
                    method,
                    url,
                    json=json,
                    headers={**headers, "Authorization": f"Bearer {token}"},
                )
                response = await self._http.send(request, stream=stream)
            if response.status_code == 401 and attempt == 1:
                log.info("agentforce answered 401, fetching a new token")
                if stream:
                    await response.aclose()
                self._tokens.forget(token)
                continue
            return response
        raise AssertionError("unreachable: the second attempt returns")
