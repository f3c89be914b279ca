"""The chaos toolkit: fault proxies, counting fault knobs, simulated users, and the ledger
that checks what reached the simulated WhatsApp against what the users sent.

    daemon ──▶ FaultProxy("graph") ──▶ GraphSim        (one proxy per upstream; ``Chaos``
           ──▶ FaultProxy("agentforce") ──▶ AgentforceSim   decides, per request, to pass it
           ──▶ FaultProxy("elevenlabs") ──▶ ElevenLabsSim   or to break it)

The simulators inject what they can themselves (latency, error statuses: ``CountingFaults``);
the proxies add what they cannot: connection resets, truncated bodies, invalid JSON, HTML
error pages, 429 with Retry-After, hangs, media downloads that 404 — per route, so that the
one route where a broken answer would make an honest daemon answer twice (a WhatsApp send
that went through) only ever gets refusals that say "not sent".
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import socket
import struct
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import astuple, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import h11
import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import ENGLISH
from daemon.observe.logs import hashed
from daemon.sim import webhooks
from daemon.sim.audio import NotAudio, listen, speak
from daemon.sim.base import Changes, Faults
from daemon.sim.graph import GraphSim, SentMessage, graph_error_body
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS
from daemon.turn import TurnReport

Json = dict[str, Any]

# Canned texts a message may get in place of the agent's answer (daemon/texts.py ENGLISH).
CANNED = {
    getattr(ENGLISH, name): name
    for name in ("agent_down", "not_understood", "no_speech", "unsupported", "escalated")
}
# Every question carries a tag unique in the run; the sim's default brain quotes the question
# in its answer ('You asked: "..."') and TTS speaks it, so text and voice answers name it.
TAG = re.compile(r"\b(u\d+m\d+)\b")


def question(tag: str) -> str:
    # No FAQ keyword (hours, returns, shipping, hello ...): the echo answer quotes it.
    return f"Chaos check {tag}, please confirm."


# --------------------------------------------------------------------------- sim fault knobs


@dataclass
class CountingFaults(Faults):
    """A simulator's own fault knobs, counting what they inject. ``slow_rate`` of the requests
    take ``slow`` seconds instead of ``latency``: now and then a call outlives the daemon's
    timeout, while the rest stay quick."""

    slow_rate: float = 0.0
    slow: tuple[float, float] = (0.0, 0.0)
    injected: Counter[str] = field(default_factory=Counter)

    async def delay(self) -> None:
        if self.slow_rate and self.rng.random() < self.slow_rate:
            self.injected["slow"] += 1
            await trio.sleep(self.rng.uniform(*self.slow))
            return
        await super().delay()

    def should_fail(self) -> bool:
        failed = super().should_fail()
        if failed:
            self.injected[f"http_{self.error_status}"] += 1
        return failed

    def calm(self) -> None:
        self.error_rate = 0.0
        self.slow_rate = 0.0
        self.hang_rate = 0.0


# --------------------------------------------------------------------------- the fault proxy


@dataclass(frozen=True)
class Call:
    """One request the daemon made to an upstream, as the proxy read it."""

    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    def json(self) -> Json:
        try:
            doc = json.loads(self.body)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}


@dataclass(frozen=True)
class Fault:
    """What the proxy does with one call.

    ``pass``: forward it, relay the answer. Before forwarding (the upstream never sees the
    call): ``respond`` (a made-up answer: ``status``, ``body``, ``headers``), ``reset`` (TCP
    RST, no answer), ``hang`` (no answer until the daemon gives up). After forwarding (the
    upstream did the work): ``reset_after``, ``truncate`` (head and half the body, then RST),
    ``garbage`` (the body replaced by bytes that are not what was promised), ``swallow``
    (no answer until the daemon gives up), ``error_after`` (the made-up error answer of
    ``respond``, sent in place of the upstream's real one).
    """

    kind: str
    label: str = ""
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


PASS = Fault("pass")
_FORWARDED = frozenset({"pass", "reset_after", "truncate", "garbage", "swallow", "error_after"})
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te"}
    | {"trailer", "upgrade", "proxy-connection", "content-encoding"}
)
# Invalid JSON that starts like a real answer; for audio routes, bytes that are no audio.
GARBAGE_JSON = b'{"messages": [{"type": "Inform", "message": "cut he'
GARBAGE_AUDIO = b"OggS\x00\x02" + bytes(range(256)) * 4


class FaultProxy:
    """An HTTP/1.1 proxy on loopback in front of one simulator; ``decide`` breaks calls.

    ``sensitive`` calls (user-visible sends) can be paused and dropped around a kill -9:
    ``pause()``, ``await quiet()`` (none is between forwarded and answered), ``drop_paused()``
    (the paused ones belonged to the dead daemon: never forwarded), ``resume()``.
    """

    def __init__(
        self,
        name: str,
        decide: Callable[[Call], Fault] | None = None,
        *,
        sensitive: Callable[[Call], bool] = lambda _call: False,
    ) -> None:
        self.name = name
        self.decide: Callable[[Call], Fault] = decide or (lambda _call: PASS)
        self.sensitive = sensitive
        self.base_url = ""
        self.upstream = ""
        self.calls = 0
        self.injected: Counter[str] = Counter()
        self.dropped = 0
        self._targeted = trio.Event()
        self._http: httpx.AsyncClient | None = None
        self._paused = False
        self._resumed = trio.Event()
        self._generation = 0
        self._in_flight = 0  # sensitive calls forwarded and not yet answered to the daemon
        self._changes = Changes()

    async def start(self, nursery: trio.Nursery, http: httpx.AsyncClient) -> str:
        self._http = http
        listeners: list[trio.SocketListener] = await nursery.start(
            partial(trio.serve_tcp, self._serve, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    def target(self, upstream: str) -> None:
        """Forward to ``upstream`` (a simulator's base URL) from now on."""
        self.upstream = upstream.rstrip("/")
        self._targeted.set()

    # -- kill -9 support ------------------------------------------------------------------

    def pause(self) -> None:
        self._paused = True
        self._resumed = trio.Event()

    async def quiet(self) -> None:
        await self._changes.until(lambda: self._in_flight == 0)

    def drop_paused(self) -> None:
        self._generation += 1

    def resume(self) -> None:
        self._paused = False
        self._resumed.set()

    async def _gate(self, call: Call) -> bool:
        """False: the call was paused and then dropped."""
        if not self._paused or not self.sensitive(call):
            return True
        generation = self._generation
        await self._resumed.wait()
        if generation != self._generation:
            self.dropped += 1
            return False
        return True

    # -- serving --------------------------------------------------------------------------

    async def _serve(self, client: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                call = await _read_request(client, conn)
                if call is None or not await self._handle(client, conn, call):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError):
            return  # the daemon went away (timeout, kill): nothing to answer
        finally:
            with contextlib.suppress(trio.BrokenResourceError, OSError):
                await client.aclose()

    async def _handle(self, client: trio.SocketStream, conn: h11.Connection, call: Call) -> bool:
        """Serve one call; False when the connection must end."""
        await self._targeted.wait()
        self.calls += 1
        fault = self.decide(call)
        if fault.kind != "pass":
            self.injected[fault.label or fault.kind] += 1
        if fault.kind == "respond":
            await _respond(client, conn, fault.status, list(fault.headers), fault.body)
            return True
        if fault.kind == "reset":
            _arm_reset(client)
            return False
        if fault.kind == "hang":
            await _until_closed(client)
            return False
        assert fault.kind in _FORWARDED, fault
        if not await self._gate(call):
            _arm_reset(client)
            return False
        sensitive = self.sensitive(call)
        self._in_flight += sensitive
        try:
            try:
                status, headers, body = await self._forward(call)
            except httpx.HTTPError:
                _arm_reset(client)
                return False
            if fault.kind == "reset_after":
                _arm_reset(client)
                return False
            if fault.kind == "swallow":
                await _until_closed(client)
                return False
            if fault.kind == "truncate":
                head = conn.send(h11.Response(status_code=status, headers=_head(headers, body)))
                await client.send_all((head or b"") + body[: len(body) // 2])
                _arm_reset(client)
                return False
            if fault.kind == "garbage":
                audio = not _content_type(headers).startswith("application/json")
                body = GARBAGE_AUDIO if audio else GARBAGE_JSON
            if fault.kind == "error_after":
                status, headers, body = fault.status, list(fault.headers), fault.body
            await _respond(client, conn, status, headers, body)
            return True
        finally:
            self._in_flight -= sensitive
            self._changes.bump()

    async def _forward(self, call: Call) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self._http is not None
        headers = [(k, v) for k, v in call.headers if k.lower() not in _HOP_BY_HOP]
        response = await self._http.request(
            call.method, self.upstream + call.target, content=call.body, headers=headers
        )
        # Links in answers (Graph media URLs, Agentforce _links) lead back through the proxy,
        # so media downloads meet the faults too.
        body = response.content.replace(self.upstream.encode(), self.base_url.encode())
        return response.status_code, list(response.headers.multi_items()), body


async def _read_request(client: trio.SocketStream, conn: h11.Connection) -> Call | None:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await client.receive_some(65536))
        elif isinstance(event, h11.ConnectionClosed):
            return None
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            headers = tuple((k.decode(), v.decode()) for k, v in request.headers)
            return Call(request.method.decode(), request.target.decode(), headers, bytes(body))


def _head(headers: Sequence[tuple[str, str]], body: bytes) -> list[tuple[str, str]]:
    kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
    return [*kept, ("content-length", str(len(body)))]


def _content_type(headers: Sequence[tuple[str, str]]) -> str:
    return next((v.lower() for k, v in headers if k.lower() == "content-type"), "")


async def _respond(
    client: trio.SocketStream,
    conn: h11.Connection,
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
) -> None:
    data = conn.send(h11.Response(status_code=status, headers=_head(headers, body))) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await client.send_all(data)


def _arm_reset(client: trio.SocketStream) -> None:
    """Make the coming close a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox does."""
    with contextlib.suppress(OSError):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def _until_closed(client: trio.SocketStream) -> None:
    with trio.move_on_after(60), contextlib.suppress(trio.BrokenResourceError, OSError):
        while await client.receive_some(65536):
            pass


@dataclass
class Proxies:
    graph: FaultProxy
    agentforce: FaultProxy
    elevenlabs: FaultProxy

    def all(self) -> list[FaultProxy]:
        return [self.graph, self.agentforce, self.elevenlabs]

    def overrides(self) -> dict[str, Any]:
        """Config sections that point the daemon at the proxies instead of the sims."""
        af = self.agentforce.base_url
        return {
            "whatsapp": {"graph_url": f"{self.graph.base_url}/v23.0"},
            "agentforce": {
                "token_url": f"{af}/services/oauth2/token",
                "api_url": f"{af}/einstein/ai-agent/v1",
            },
            "elevenlabs": {"api_url": self.elevenlabs.base_url},
        }

    def target(self, graph: str, agentforce: str, elevenlabs: str) -> None:
        self.graph.target(graph)
        self.agentforce.target(agentforce)
        self.elevenlabs.target(elevenlabs)

    def injected(self) -> dict[str, dict[str, int]]:
        return {p.name: dict(sorted(p.injected.items())) for p in self.all()}


def is_user_send(call: Call) -> bool:
    """A text or voice note to a user (not a read receipt, not an upload)."""
    if call.method != "POST" or not call.path.endswith("/messages"):
        return False
    return call.json().get("type") in ("text", "audio")


@asynccontextmanager
async def open_proxies(chaos: Chaos | None = None) -> AsyncIterator[Proxies]:
    """Three fault proxies on loopback; ``chaos`` decides for each (None: they only relay)."""
    proxies = Proxies(
        graph=FaultProxy("graph", chaos.graph if chaos else None, sensitive=is_user_send),
        agentforce=FaultProxy("agentforce", chaos.agentforce if chaos else None),
        elevenlabs=FaultProxy("elevenlabs", chaos.elevenlabs if chaos else None),
    )
    async with httpx.AsyncClient(timeout=120) as http, trio.open_nursery() as nursery:
        for proxy in proxies.all():
            await proxy.start(nursery, http)
        yield proxies
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- the chaos policy


_HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
_RETRY_AFTER = (("Retry-After", "1"),)


class Chaos:
    """Decides, per call, whether and how to break it (``rate`` of the calls, while ``on``).

    Anything goes on reads, uploads, the agent and speech: the daemon either retries or says
    sorry, and a broken answer there can't make the user see two messages. A user-visible
    WhatsApp send gets refusals that mean "not sent" (throughput and pair-rate limits, the
    slow-down 503 and 429), never two in a row to the same user (the daemon retries, or defers
    the turn and tries again, and that try gets through), and 500 / 131000 — an unknown
    outcome, after which the daemon must send nothing more — only after the send went
    through: a 131000 that was not processed would leave the user with nothing by design,
    and "lost" would prove nothing. Hangs on sends have tests of their own.
    """

    def __init__(self, seed: int, rate: float, agent_rate: float | None = None) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        # One ask is up to three agent calls (token, session, message): a lower rate per call.
        self.agent_rate = rate if agent_rate is None else agent_rate
        self.on = False
        self._refused_last: set[str] = set()  # users whose last send was refused

    def _hit(self, rate: float | None = None) -> bool:
        return self.on and self.rng.random() < (self.rate if rate is None else rate)

    def _any(self, error: Callable[[int], Fault], *, json_api: bool = True) -> Fault:
        roll = self.rng.random()
        if roll < 0.22:
            return error(self.rng.choice((500, 502, 503)))
        if roll < 0.36:
            return error(429)
        if roll < 0.50:
            return Fault("reset", "reset")
        if roll < 0.60:
            return Fault("reset_after", "reset_after")
        if roll < 0.70:
            return Fault("truncate", "truncate")
        if roll < 0.80:
            return Fault("garbage", "invalid_json" if json_api else "invalid_body")
        if roll < 0.88:
            return Fault("respond", "html_502", 502, _HTML_502, (("Content-Type", "text/html"),))
        return Fault("hang", "hang")

    # -- per upstream -----------------------------------------------------------------------

    def graph(self, call: Call) -> Fault:
        if is_user_send(call):
            to = str(call.json().get("to"))
            if to in self._refused_last or not self._hit():
                self._refused_last.discard(to)
                return PASS
            self._refused_last.add(to)
            code, status = self.rng.choice(
                ((130429, 400), (131056, 400), (131000, 500), (2, 503), (4, 429))
            )
            fault = _graph_error(code, status)
            if code == 131000:  # processed, then reported as failed: the user has it
                return Fault("error_after", "graph_131000_after_send", *astuple(fault)[2:])
            return fault
        if not self._hit():
            return PASS
        if call.path.startswith("/whatsapp_business/attachments"):
            if self.rng.random() < 0.4:  # the media URL 404s: the daemon asks for a fresh one
                return Fault("respond", "media_404", 404, b"Not Found")
            return self._any(lambda s: _graph_error(1 if s != 503 else 2, s), json_api=False)
        return self._any(lambda s: _graph_error(1 if s != 503 else 2, s))

    def agentforce(self, call: Call) -> Fault:
        if not self._hit(self.agent_rate):
            return PASS
        return self._any(_agentforce_error)

    def elevenlabs(self, call: Call) -> Fault:
        if not self._hit():
            return PASS
        return self._any(_elevenlabs_error, json_api=call.path.endswith("/speech-to-text"))


def _graph_error(code: int, status: int) -> Fault:
    titles = {
        1: "API Unknown",
        2: "API Service",
        4: "API Too Many Calls",
        130429: "Rate limit hit",
        131000: "Something went wrong",
        131056: "(Business Account, Consumer Account) pair rate limit hit",
    }
    body = json.dumps(graph_error_body(code, titles[code], "injected by the chaos proxy"))
    label = f"graph_{code}" if code > 100 else f"http_{status}"
    headers: tuple[tuple[str, str], ...] = ()
    if status == 429:
        headers, label = _RETRY_AFTER, "http_429_retry_after"
    return Fault(
        "respond", label, status, body.encode(), (("Content-Type", "application/json"), *headers)
    )


def _agentforce_error(status: int) -> Fault:
    names = {429: "TooManyRequestsException", 503: "ServiceUnavailableException"}
    body = {
        "status": status,
        "error": names.get(status, "HttpServerErrorException"),
        "message": "injected by the chaos proxy",
        "expected": False,
    }
    headers = (("Content-Type", "application/json"), *(_RETRY_AFTER if status == 429 else ()))
    label = "http_429_retry_after" if status == 429 else f"http_{status}"
    return Fault("respond", label, status, json.dumps(body).encode(), headers)


def _elevenlabs_error(status: int) -> Fault:
    code = {429: "system_busy", 503: "service_unavailable"}.get(status, "internal_server_error")
    body = {"detail": {"status": code, "message": "injected by the chaos proxy"}}
    headers = (("Content-Type", "application/json"), *(_RETRY_AFTER if status == 429 else ()))
    label = "http_429_retry_after" if status == 429 else f"http_{status}"
    return Fault("respond", label, status, json.dumps(body).encode(), headers)


# --------------------------------------------------------------------------- users


@dataclass(frozen=True)
class Message:
    """One distinct message a user sent. ``kind``: text | voice | voice_gone (its media was
    deleted at Graph: fetching it fails like an expired media URL) | image (unsupported)."""

    user: str
    tag: str
    kind: str
    id: str

    @property
    def answerable(self) -> bool:
        return self.kind in ("text", "voice")


# The canned texts each kind of message may get in place of the agent's answer.
_ALLOWED_CANNED = {
    "text": {"agent_down"},
    "voice": {"agent_down", "not_understood", "no_speech"},
    "voice_gone": {"agent_down", "not_understood"},
    "image": {"agent_down", "unsupported"},
}


@dataclass
class Ledger:
    """What the users sent (in order, per user) and how the webhooks went."""

    by_user: dict[str, list[Message]] = field(default_factory=dict)
    posts: Counter[str] = field(default_factory=Counter)
    changes: Changes = field(default_factory=Changes)

    def add(self, message: Message) -> None:
        self.by_user.setdefault(message.user, []).append(message)
        self.changes.bump()

    def count(self) -> int:
        return sum(len(msgs) for msgs in self.by_user.values())


Post = Callable[[Json], Awaitable[None]]


class Crowd:
    """Users writing text and voice notes at their own pace (not waiting for answers), with
    Meta's habits: several messages in one POST (one change, or several entries), a status
    update now and then, and redeliveries of bodies already answered 200."""

    def __init__(self, graph: GraphSim, ledger: Ledger, seed: int) -> None:
        self.graph = graph
        self.ledger = ledger
        self.seed = seed
        self.deleted_media = 0

    async def warm_up(self, post: Post) -> str:
        """One text from a user of its own, before the faults start: production runs warm
        (a token, open connections), and a cold start under faults mostly tests the first
        token fetch. Returns the user's number."""
        wa_id = self.number(99)
        item = webhooks.text_message(wa_id, question("u99m0"))
        self.ledger.add(Message(wa_id, "u99m0", "text", item.id))
        await post(webhooks.envelope(item, phone_number_id=PHONE_NUMBER_ID))
        return wa_id

    @staticmethod
    def number(index: int) -> str:
        return f"1555010{index:04d}"

    async def user(self, index: int, count: int, post: Post) -> None:
        rng = random.Random(f"{self.seed}-user-{index}")
        wa_id = self.number(index)
        redeliver: list[Json] = []
        k = 0
        while k < count:
            size = 2 if k + 1 < count and rng.random() < 0.2 else 1
            items = [self._message(rng, index, wa_id, k + i) for i in range(size)]
            k += size
            body = self._body(rng, items)
            self.ledger.posts["batched_messages"] += size if size > 1 else 0
            await post(body)
            if redeliver:  # Meta delivers a body again, after newer ones
                self.ledger.posts["redelivered"] += 1
                await post(redeliver.pop())
            if rng.random() < 0.15:
                redeliver.append(body)
            await trio.sleep(rng.uniform(0.1, 0.8))  # the user's own pace, not a wait
        for body in redeliver:
            self.ledger.posts["redelivered"] += 1
            await post(body)

    def _message(self, rng: random.Random, index: int, wa_id: str, k: int) -> webhooks.UserMessage:
        tag = f"u{index}m{k}"
        roll = rng.random()
        kind = "text" if roll < 0.62 else "voice" if roll < 0.9 else "voice_gone"
        if roll >= 0.95:
            kind = "image"
        item: webhooks.UserMessage
        if kind == "text":
            item = webhooks.text_message(wa_id, question(tag))
        elif kind == "image":
            item = webhooks.image_message(wa_id, f"9{index:03d}{k:03d}", sha256="AAAA")
        else:
            audio = speak(question(tag))
            media_id = self.graph.add_user_media(audio, "audio/ogg; codecs=opus")
            if kind == "voice_gone":
                del self.graph.media[media_id]
                self.deleted_media += 1
            item = webhooks.voice_message(wa_id, media_id, sha256=webhooks.media_sha256(audio))
        self.ledger.add(Message(wa_id, tag, kind, item.id))
        return item

    @staticmethod
    def _body(rng: random.Random, items: list[webhooks.UserMessage]) -> Json:
        extra: list[webhooks.Item] = []
        if rng.random() < 0.1:  # a status of an earlier answer rides along: counted, not turned
            extra.append(
                webhooks.status(webhooks.new_wamid(), "delivered", items[0].message["from"])
            )
        if len(items) > 1 and rng.random() < 0.5:  # several entries in one delivery
            envelopes = [webhooks.envelope(i, phone_number_id=PHONE_NUMBER_ID) for i in items]
            if extra:
                envelopes.append(webhooks.envelope(*extra, phone_number_id=PHONE_NUMBER_ID))
            return webhooks.batch(*envelopes)
        return webhooks.envelope(*items, *extra, phone_number_id=PHONE_NUMBER_ID)


class Meta:
    """Meta's webhook delivery: signed POSTs to one URL, retried until answered 200. Meta
    retries any other answer, and a connection that fails, for days (reference/whatsapp.md
    §3): while the daemon is down, deliveries meet "connection refused" and come back."""

    def __init__(self, client: httpx.AsyncClient, ledger: Ledger, url: str) -> None:
        self._client = client
        self._ledger = ledger
        self._url = url
        self.bodies: list[Json] = []  # every body answered 200

    async def post(self, body: Json) -> None:
        raw = webhooks.encode(body)
        headers = {
            "Content-Type": "application/json",
            webhooks.SIGNATURE_HEADER: webhooks.sign(raw, SECRETS["WHATSAPP_APP_SECRET"]),
        }
        while True:
            self._ledger.posts["webhooks"] += 1
            try:
                response = await self._client.post(self._url, content=raw, headers=headers)
            except httpx.TransportError:
                self._ledger.posts["failed_connection"] += 1
            else:
                if response.status_code == 200:
                    self.bodies.append(body)
                    return
                self._ledger.posts[f"answered_{response.status_code}"] += 1
            await trio.sleep(0.1)  # Meta's backoff before the retry


# --------------------------------------------------------------------------- the verdict


@dataclass
class Verdict:
    """The invariants, measured at the simulated WhatsApp."""

    messages: int = 0
    answers: int = 0
    apologies: Counter[str] = field(default_factory=Counter)
    voice_notes: int = 0
    duplicates: int = 0
    lost: int = 0
    out_of_order: int = 0
    send_unknown: int = 0
    problems: list[str] = field(default_factory=list)

    def figures(self) -> Json:
        return {
            "messages": self.messages,
            "answers": self.answers,
            "apologies": dict(sorted(self.apologies.items())),
            "voice_notes": self.voice_notes,
            "duplicates": self.duplicates,
            "lost": self.lost,
            "out_of_order": self.out_of_order,
            "send_unknown_got_nothing": self.send_unknown,
        }


def _audio_tag(message: SentMessage) -> str:
    try:
        spoken, _, _ = listen(message.audio or b"")
    except NotAudio:
        return "<not audio>"
    match = TAG.search(spoken)
    return match.group(1) if match else f"<no tag: {spoken[:60]!r}>"


def finals_of(sent: Sequence[SentMessage]) -> list[tuple[str, str]]:
    """The final messages in ``sent`` (one user's, in order): ("answer", tag) for the agent's
    answer, ("canned", name) for a canned text, ("unexpected", text) for anything else."""
    finals: list[tuple[str, str]] = []
    for m in sent:
        if m.type != "text":
            continue
        text = m.text or ""
        match = TAG.search(text)
        if text in CANNED:
            finals.append(("canned", CANNED[text]))
        elif match:
            finals.append(("answer", match.group(1)))
        else:
            finals.append(("unexpected", text[:80]))
    return finals


def check(ledger: Ledger, sent: Sequence[SentMessage], unknown: Collection[str] = ()) -> Verdict:
    """Every message got exactly one final message (its answer, or one canned text that fits
    its kind), in the order the user sent them; at most one voice note per voice message,
    right after its answer; nothing to anyone who did not write.

    ``unknown``: tags of messages whose answer's send timed out (turn outcome send_unknown).
    It may or may not have reached the user, and the daemon rightly sends nothing more, so
    they may have no final message at all (counted apart, not as lost).
    """
    verdict = Verdict(messages=ledger.count())
    by_user: dict[str, list[SentMessage]] = defaultdict(list)
    for m in sent:
        by_user[m.to.lstrip("+")].append(m)
    for user, msgs in ledger.by_user.items():
        _check_user(verdict, user, msgs, by_user.pop(user, []), frozenset(unknown))
    for user, extra in by_user.items():
        verdict.problems.append(f"{len(extra)} messages to {user}, who never wrote")
    return verdict


def _check_user(
    verdict: Verdict,
    user: str,
    msgs: list[Message],
    sent: list[SentMessage],
    unknown: frozenset[str],
) -> None:
    finals = finals_of(sent)
    answered = Counter(tag for kind, tag in finals if kind == "answer")
    canned = [name for kind, name in finals if kind == "canned"]
    verdict.answers += sum(answered.values())
    verdict.apologies.update(canned)
    by_tag = {m.tag: m for m in msgs}
    silent = sum(1 for m in msgs if m.tag not in answered and m.tag in unknown)
    need_canned = sum(1 for m in msgs if m.tag not in answered and m.tag not in unknown)
    verdict.send_unknown += silent
    verdict.duplicates += sum(c - 1 for c in answered.values()) + max(0, len(canned) - need_canned)
    verdict.lost += max(0, need_canned - len(canned))
    order = [list(by_tag).index(tag) for kind, tag in finals if kind == "answer" and tag in by_tag]
    verdict.out_of_order += sum(1 for a, b in itertools.pairwise(order) if b <= a)

    def fits(final: tuple[str, str], message: Message) -> bool:
        kind, what = final
        if kind == "answer":
            return message.answerable and what == message.tag
        # After a send timed out the daemon sends nothing more: no apology either.
        allowed = _ALLOWED_CANNED[message.kind] if message.tag not in unknown else set()
        return kind == "canned" and what in allowed

    timeline = f"sent {[f'{m.tag}/{m.kind}' for m in msgs]}, got {finals}"
    position, problem = 0, ""
    for m in msgs:
        if position < len(finals) and fits(finals[position], m):
            position += 1
        elif m.tag not in unknown:
            problem = f"no fitting final message for {m.tag}"
            break
    if not problem and position != len(finals):
        problem = "more final messages than messages"
    if problem:
        verdict.problems.append(f"user {user}: {problem}; {timeline}")
    # Voice notes: each right after the text answer of the same voice message, one at most.
    position = 0
    spoken: Counter[str] = Counter()
    for out in sent:
        if out.type == "text":
            position += 1
            continue
        tag = _audio_tag(out)
        spoken[tag] += 1
        verdict.voice_notes += 1
        before = finals[position - 1] if position else ("", "")
        message = by_tag.get(tag)
        if message is None or message.kind != "voice" or before != ("answer", tag):
            verdict.problems.append(f"user {user}: voice note {tag} out of place; {timeline}")
    verdict.problems += [
        f"user {user}: {n} voice notes for {tag}" for tag, n in spoken.items() if n > 1
    ]


# A turn's summary line (daemon/turn.py TurnReport.summary).
_DONE = re.compile(r"turn=\w+ done user=(u:[0-9a-f]+) kind=\w+ outcome=(\w+)")


def outcomes_in_logs(*logs: str) -> dict[str, list[str]]:
    """Turn outcomes per hashed user, in order, from daemon logs (oldest log first)."""
    outcomes: dict[str, list[str]] = defaultdict(list)
    for log in logs:
        for user, outcome in _DONE.findall(log):
            outcomes[user].append(outcome)
    return outcomes


def outcomes_in_reports(reports: Sequence[TurnReport]) -> dict[str, list[str]]:
    outcomes: dict[str, list[str]] = defaultdict(list)
    for report in reports:
        outcomes[report.user].append(report.outcome)
    return outcomes


def send_unknown(
    ledger: Ledger,
    outcomes: Mapping[str, list[str]],
    user_hash: Callable[[str], str] = hashed,
) -> set[str]:
    """Tags of the messages whose turn ended ``send_unknown``. One user's turns run one at a
    time in the order the messages came, one turn per distinct message, so the n-th outcome
    of a user is the n-th message's. ``user_hash``: how the daemon that logged ``outcomes``
    hashes a user (a daemon in another process keys it with the salt in its state dir)."""
    tags: set[str] = set()
    for user, msgs in ledger.by_user.items():
        for message, outcome in zip(msgs, outcomes.get(user_hash(user), []), strict=False):
            if outcome == "send_unknown":
                tags.add(message.tag)
    return tags


async def wait_finals(graph: GraphSim, ledger: Ledger) -> None:
    """Until every user has at least as many final messages as messages sent."""
    for user, msgs in ledger.by_user.items():
        count = 1
        while True:
            sent = await graph.wait_sent(count, to=user)
            if len(finals_of(sent)) >= len(msgs):
                break
            count = len(sent) + 1


# --------------------------------------------------------------------------- figures


def upstream_calls(metrics: str) -> dict[str, dict[str, int]]:
    """``wa_agentd_upstream_calls_total`` by upstream and status, from a /metrics page."""
    calls: dict[str, dict[str, int]] = defaultdict(dict)
    for family in text_string_to_metric_families(metrics):
        if family.name != "wa_agentd_upstream_calls":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                calls[labels["upstream"]][labels["status"]] = int(sample.value)
    return {name: dict(sorted(statuses.items())) for name, statuses in sorted(calls.items())}


def merge_calls(*pages: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    merged: dict[str, Counter[str]] = defaultdict(Counter)
    for page in pages:
        for upstream, statuses in page.items():
            merged[upstream].update(statuses)
    return {k: dict(sorted(v.items())) for k, v in sorted(merged.items())}


def record(section: str, figures: Mapping[str, Any]) -> None:
    """Print the figures; also write them under ``section`` of $CHAOS_REPORT when set."""
    print(f"\nchaos {section}: {json.dumps(figures, sort_keys=True)}")
    path = os.environ.get("CHAOS_REPORT")
    if not path:
        return
    target = Path(path)
    data: Json = json.loads(target.read_text()) if target.exists() else {}
    data[section] = figures
    target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
