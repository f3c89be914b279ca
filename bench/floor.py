"""The floor: the least a quart-trio webhook on hypercorn can do per turn, as its own process.

    .venv/bin/python -m bench.floor CONFIG.json

What the daemon does for a text turn, minus everything the daemon adds (durable inbox,
lanes, caches, breakers, retries, metrics, logs): answer Meta's webhook after checking its
``X-Hub-Signature-256`` over the raw body and parsing the envelope, then, in a nursery of its
own, mark the message read (with the typing indicator) while asking the agent, and send the
agent's answer back as text: the same three outbound calls (mark-read, agent, send) with the
same bodies, through the same httpx (one pooled ``AsyncClient`` per upstream, each call in a
trio cancel scope) to the same simulators. Statuses are counted. An agent session per user
is started on the user's first message and reused, as the daemon does; the OAuth token is
fetched once at start-up.

Its CPU per turn is what the stack itself costs: ``bench.lean`` reports the daemon's CPU per
turn divided by this one's, measured in the same run under the same load. The pools keep as
many idle connections as they may open, for a little less long than the simulators keep
them (hypercorn closes idle connections after 5 s), so a turn never pays a handshake.

Like the daemon it logs ``listening on URL`` on stderr and sends ``READY=1`` to
``$NOTIFY_SOCKET`` once it listens, so its start-up is measured the same way.

CONFIG.json: ``bind``, ``webhook_path``, ``graph_url`` (with the version),
``phone_number_id``, ``token_url``, ``api_url``, ``instance_endpoint``, ``agent_id``; the
secrets come from the environment (``WHATSAPP_APP_SECRET``, ``WHATSAPP_ACCESS_TOKEN``,
``AGENTFORCE_CLIENT_ID``, ``AGENTFORCE_CLIENT_SECRET``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import sys
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

CALL_TIMEOUT = 10.0  # seconds: each upstream call in its own cancel scope, as the daemon does
POOL = httpx.Limits(max_connections=256, max_keepalive_connections=256, keepalive_expiry=4.0)
JSON = "application/json"


@dataclass
class Session:
    session_id: str
    sequence_id: int = 0


@dataclass
class Floor:
    cfg: dict[str, Any]
    graph: httpx.AsyncClient
    agent: httpx.AsyncClient
    turns: trio.Nursery
    token: str = ""
    sessions: dict[str, Session] = field(default_factory=dict)
    statuses: int = 0

    @property
    def secret(self) -> bytes:
        return os.environ["WHATSAPP_APP_SECRET"].encode()

    async def fetch_token(self) -> None:
        response = await self.agent.post(
            self.cfg["token_url"],
            data={
                "grant_type": "client_credentials",
                "client_id": os.environ["AGENTFORCE_CLIENT_ID"],
                "client_secret": os.environ["AGENTFORCE_CLIENT_SECRET"],
            },
            headers={"Accept": JSON},
        )
        response.raise_for_status()
        self.token = response.json()["access_token"]

    def verified(self, body: bytes, signature: str) -> bool:
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, signature)

    def take(self, payload: dict[str, Any]) -> None:
        """Start a turn per text message of the envelope; count the statuses."""
        for entry in payload.get("entry", []):
            for change in entry.get("changes", []):
                value = change.get("value", {})
                self.statuses += len(value.get("statuses", []))
                for message in value.get("messages", []):
                    if message.get("type") == "text":
                        text = message["text"]["body"]
                        self.turns.start_soon(self.turn, message["from"], message["id"], text)

    async def turn(self, user: str, message_id: str, text: str) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.mark_read, message_id)
                answer = await self.ask(user, text)
            await self.send(user, answer)
        except* (httpx.HTTPError, trio.TooSlowError, KeyError, ValueError) as failed:
            # A failed turn is reported, never the end of the server (the nursery of turns
            # would take it down with the whole process).
            for exc in failed.exceptions:
                detail = exc.response.text if isinstance(exc, httpx.HTTPStatusError) else ""
                print(f"floor: turn failed: {exc!r} {detail}", file=sys.stderr)

    async def mark_read(self, message_id: str) -> None:
        payload = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": message_id,
            "typing_indicator": {"type": "text"},
        }
        with trio.fail_after(CALL_TIMEOUT):
            response = await self.graph.post(self._messages_url, json=payload)
        response.raise_for_status()

    async def ask(self, user: str, text: str) -> str:
        session = self.sessions.get(user) or await self.start_session(user)
        session.sequence_id += 1
        body = {
            "message": {"sequenceId": session.sequence_id, "type": "Text", "text": text},
            "variables": [],
        }
        with trio.fail_after(CALL_TIMEOUT):
            response = await self.agent.post(
                f"{self.cfg['api_url']}/sessions/{session.session_id}/messages",
                json=body,
                headers={"Accept": JSON, "Authorization": f"Bearer {self.token}"},
            )
        response.raise_for_status()
        messages = response.json().get("messages", [])
        return "\n\n".join(m["message"] for m in messages if m.get("type") == "Inform")

    async def start_session(self, user: str) -> Session:
        body = {
            "externalSessionKey": str(uuid.uuid4()),
            "instanceConfig": {"endpoint": self.cfg["instance_endpoint"]},
            "streamingCapabilities": {"chunkTypes": ["Text"]},
            "bypassUser": True,
        }
        with trio.fail_after(CALL_TIMEOUT):
            response = await self.agent.post(
                f"{self.cfg['api_url']}/agents/{self.cfg['agent_id']}/sessions",
                json=body,
                headers={"Authorization": f"Bearer {self.token}"},
            )
        response.raise_for_status()
        session = self.sessions[user] = Session(response.json()["sessionId"])
        return session

    async def send(self, user: str, text: str) -> None:
        payload = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": "+" + user,  # the Cloud API wants the country code with its "+"
            "type": "text",
            "text": {"preview_url": False, "body": text},
        }
        with trio.fail_after(CALL_TIMEOUT):
            response = await self.graph.post(self._messages_url, json=payload)
        response.raise_for_status()

    @property
    def _messages_url(self) -> str:
        return f"{self.cfg['graph_url']}/{self.cfg['phone_number_id']}/messages"


def create_app(floor: Floor) -> QuartTrio:
    app = QuartTrio("floor")

    @app.post(floor.cfg["webhook_path"])
    async def webhook() -> Response:
        body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        if not floor.verified(body, request.headers.get("X-Hub-Signature-256", "")):
            return Response("bad signature", status=401)
        try:
            payload = json.loads(body)
        except ValueError:
            return Response("bad webhook", status=400)
        floor.take(payload)
        return Response("", status=200, content_type="text/plain")

    return app


def notify_ready() -> None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


async def main(cfg: dict[str, Any]) -> None:
    auth = {"Authorization": f"Bearer {os.environ['WHATSAPP_ACCESS_TOKEN']}"}
    hypercorn = Config()
    hypercorn.bind = [cfg["bind"]]
    hypercorn.accesslog = None
    hypercorn.errorlog = logging.getLogger("floor.hypercorn")
    hypercorn.backlog = 1024  # the daemon's; hypercorn's 100 drops connections in a burst
    async with (
        httpx.AsyncClient(limits=POOL, headers=auth) as graph,
        httpx.AsyncClient(limits=POOL) as agent,
        trio.open_nursery() as nursery,
    ):
        floor = Floor(cfg, graph, agent, nursery)
        await floor.fetch_token()
        binds: list[str] = await nursery.start(partial(serve, create_app(floor), hypercorn))
        print(f"listening on {binds[0]}", file=sys.stderr, flush=True)
        notify_ready()


if __name__ == "__main__":
    trio.run(main, json.loads(Path(sys.argv[1]).read_text()))
