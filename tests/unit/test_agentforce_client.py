"""daemon.agentforce.client against a tiny in-memory fake of the Agent API (httpx.MockTransport)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import trio
import trio.testing

from daemon.agentforce.client import AgentforceClient
from daemon.agentforce.sessions import AgentSession, SessionStore
from daemon.errors import Reason, UpstreamRejected, UpstreamUnavailable
from daemon.model import AgentMessage, AgentReply

TOKEN_URL = "https://acme.my.salesforce.com/services/oauth2/token"
API = "https://api.example.test/einstein/ai-agent/v1"
INSTANCE = "https://acme.my.salesforce.com"
AGENT = "0XxQZ0000000Ty50AE"
GREETING = "Hi, I'm an AI service assistant. How can I help you?"

Reply = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


def _envelope(status: int, error: str, message: str) -> httpx.Response:
    # §7.2
    return httpx.Response(
        status,
        json={"status": status, "path": "v6.0.0/x", "error": error, "message": message},
    )


def _inform(*texts: str) -> list[dict[str, Any]]:
    return [{"type": "Inform", "id": str(uuid.uuid4()), "message": t} for t in texts]


@dataclass
class Sent:
    session_id: str
    sequence_id: int
    text: str
    body: dict[str, Any]
    headers: httpx.Headers


@dataclass
class FakeAgentforce:
    """Just enough of the token endpoint and the Agent API to drive the client."""

    token_lifetime: float | None = None  # seconds of JWT exp; None: an opaque token
    tokens_issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    starts: list[httpx.Request] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    deletes: list[tuple[str, str | None]] = field(default_factory=list)
    # Scripted answers to the next sends, popped first to last; then the echo agent.
    scripted: list[Reply] = field(default_factory=list)
    token_delay: float = 0.0
    always_401: bool = False

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url == TOKEN_URL:
            return await self._token(request)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.always_401 or bearer not in self.valid_tokens:
            return _envelope(401, "UnauthorizedException", "invalid token")
        path = url.removeprefix(API)
        if request.method == "POST" and path == f"/agents/{AGENT}/sessions":
            self.starts.append(request)
            session_id = str(uuid.uuid4())
            self.sessions.add(session_id)
            return httpx.Response(
                200, json={"sessionId": session_id, "_links": {}, "messages": _inform(GREETING)}
            )
        parts = path.split("/")  # "", "sessions", sid[, "messages"]
        session_id = parts[2]
        if request.method == "DELETE":
            self.deletes.append((session_id, request.headers.get("x-session-end-reason")))
            if session_id not in self.sessions:
                return _envelope(404, "NotFoundException", f"V6Session not found: {session_id}")
            self.sessions.discard(session_id)
            return httpx.Response(200, json={"messages": [{"type": "SessionEnded"}]})
        body = json.loads(request.content)
        message = body["message"]
        self.sent.append(
            Sent(session_id, message["sequenceId"], message["text"], body, request.headers)
        )
        if self.scripted:
            answer = self.scripted.pop(0)(request)
            return answer if isinstance(answer, httpx.Response) else await answer
        if session_id not in self.sessions:
            return _envelope(404, "NotFoundException", f"V6Session not found: {session_id}")
        return httpx.Response(200, json={"messages": _inform(f"echo: {message['text']}")})

    async def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(parse_qs(request.content.decode()))
        await trio.sleep(self.token_delay)
        self.tokens_issued += 1
        now = trio.current_time()  # the fake's wall clock: the mock clock
        if self.token_lifetime is None:
            access = f"opaque-{self.tokens_issued}"
        else:
            claims = json.dumps({"exp": now + self.token_lifetime, "n": self.tokens_issued})
            payload = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=").decode()
            access = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2ln"
        self.valid_tokens.add(access)
        return httpx.Response(
            200,
            json={
                "access_token": access,
                "token_format": "jwt",
                "scope": "sfap_api chatbot_api api",
                "token_type": "Bearer",
                "issued_at": str(int(now * 1000)),
                "api_instance_url": "https://api.salesforce.com",
            },
        )

    def expire_sessions(self) -> None:
        self.sessions.clear()


@pytest.fixture
def fake() -> FakeAgentforce:
    return FakeAgentforce()


@pytest.fixture
async def http(fake: FakeAgentforce) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as client:
        yield client


def make_client(
    http: httpx.AsyncClient,
    *,
    max_sessions: int = 100,
    idle: float = 1200.0,
    forward_greeting: bool = False,
    bypass_user: bool = True,
) -> AgentforceClient:
    return AgentforceClient(
        http,
        token_url=TOKEN_URL,
        api_url=API,
        instance_endpoint=INSTANCE,
        agent_id=AGENT,
        client_id="the-key",
        client_secret="the-secret",
        sessions=SessionStore(max_sessions, idle),
        token_ttl=1500.0,
        forward_greeting=forward_greeting,
        bypass_user=bypass_user,
    )


async def test_an_employee_agent_session_starts_without_bypassing_the_user(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    # [agentforce] bypass_user = false: an employee agent runs as the token's user and
    # refuses bypassUser true (the choice @salesforce/agents makes by agent type).
    client = make_client(http, bypass_user=False)
    with trio.fail_after(10):
        await client.ask("+15550001", "hello")
    [start] = fake.starts
    assert json.loads(start.content)["bypassUser"] is False


async def test_first_ask_starts_a_session_with_the_documented_body(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        reply = await client.ask("+15550001", "hello")
    assert reply.messages == (AgentMessage("Inform", "echo: hello"),)  # greeting dropped
    assert fake.token_requests == [
        {
            "grant_type": ["client_credentials"],
            "client_id": ["the-key"],
            "client_secret": ["the-secret"],
        }
    ]
    [start] = fake.starts
    assert start.headers["content-type"] == "application/json"
    assert start.headers["authorization"] == "Bearer opaque-1"
    body = json.loads(start.content)
    key = body.pop("externalSessionKey")
    assert uuid.UUID(key).version == 4
    assert "15550001" not in key
    assert body == {
        "instanceConfig": {"endpoint": INSTANCE},
        "streamingCapabilities": {"chunkTypes": ["Text"]},
        "bypassUser": True,
    }
    [sent] = fake.sent
    assert sent.body == {
        "message": {"sequenceId": 1, "type": "Text", "text": "hello"},
        "variables": [],
    }
    assert sent.headers["accept"] == "application/json"
    assert sent.headers["content-type"] == "application/json"
    assert client.sessions_open == 1


async def test_sequence_ids_increase_and_token_and_session_are_reused(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        for text in ("one", "two", "three"):
            await client.ask("u1", text)
    assert [s.sequence_id for s in fake.sent] == [1, 2, 3]
    assert len({s.session_id for s in fake.sent}) == 1
    assert len(fake.starts) == 1
    assert fake.tokens_issued == 1


async def test_users_get_separate_sessions(fake: FakeAgentforce, http: httpx.AsyncClient) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await client.ask("u1", "a")
        await client.ask("u2", "b")
        await client.ask("u1", "c")
    assert [(s.sequence_id, s.text) for s in fake.sent] == [(1, "a"), (1, "b"), (2, "c")]
    assert fake.sent[0].session_id == fake.sent[2].session_id != fake.sent[1].session_id
    assert client.sessions_open == 2


async def test_expired_jwt_is_fetched_anew(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    fake.token_lifetime = 300.0  # used for 300 - 60 s
    client = make_client(http)
    with trio.fail_after(1000):
        await client.ask("u1", "a")
        autojump_clock.jump(200)
        await client.ask("u1", "b")
        assert fake.tokens_issued == 1
        autojump_clock.jump(41)
        await client.ask("u1", "c")
    assert fake.tokens_issued == 2


async def test_401_fetches_a_new_token_and_retries_once(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await client.ask("u1", "a")
        fake.valid_tokens.clear()  # the server revokes the token
        reply = await client.ask("u1", "b")
    assert reply.text == "echo: b"
    assert fake.tokens_issued == 2
    # The rejected try and the retry carry the same message with the same sequenceId.
    assert [(s.sequence_id, s.text) for s in fake.sent] == [(1, "a"), (2, "b")]
    assert fake.sent[-1].headers["authorization"] == "Bearer opaque-2"


async def test_second_401_raises(fake: FakeAgentforce, http: httpx.AsyncClient) -> None:
    client = make_client(http)
    fake.always_401 = True
    with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
        await client.ask("u1", "a")
    assert info.value.status == 401
    assert fake.tokens_issued == 2
    assert fake.starts == []


async def test_concurrent_callers_share_one_token_fetch(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    fake.token_delay = 1.0
    client = make_client(http)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for user in ("u1", "u2", "u3"):
                nursery.start_soon(client.ask, user, "hi")
    assert fake.tokens_issued == 1
    assert len(fake.sent) == 3


async def test_404_starts_a_new_session_and_resends_once(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await client.ask("u1", "first")
        fake.expire_sessions()
        reply = await client.ask("u1", "second")
    assert reply.text == "echo: second"
    assert len(fake.starts) == 2
    old, gone, resent = fake.sent
    assert gone.session_id == old.session_id
    assert resent.session_id != old.session_id
    assert (resent.text, resent.sequence_id) == ("second", 1)
    assert client.sessions_open == 1


async def test_404_twice_raises(fake: FakeAgentforce, http: httpx.AsyncClient) -> None:
    client = make_client(http)
    not_found = _envelope(404, "NotFoundException", "V6Session not found")
    fake.scripted = [lambda _: not_found, lambda _: not_found]
    with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
        await client.ask("u1", "hello")
    assert (info.value.status, info.value.code) == (404, "NotFoundException")
    assert len(fake.starts) == 2
    assert client.sessions_open == 0


async def test_session_ended_without_text_starts_a_new_session_and_resends(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    ended = httpx.Response(200, json={"messages": [{"type": "SessionEnded", "reason": "Error"}]})
    fake.scripted = [lambda _: ended]
    with trio.fail_after(10):
        reply = await client.ask("u1", "hello")
    assert reply.messages == (AgentMessage("Inform", "echo: hello"),)
    first, resent = fake.sent
    assert resent.text == "hello"
    assert resent.session_id != first.session_id
    assert len(fake.starts) == 2


async def test_session_ended_twice_without_text_raises(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    ended = httpx.Response(200, json={"messages": [{"type": "SessionEnded"}]})
    fake.scripted = [lambda _: ended, lambda _: ended]
    with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
        await client.ask("u1", "hello")
    assert info.value.code == "SessionEnded"
    assert client.sessions_open == 0


async def test_session_ended_with_text_returns_it_and_next_ask_starts_fresh(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    goodbye = httpx.Response(
        200,
        json={"messages": [*_inform("Goodbye!"), {"type": "SessionEnded", "reason": "Action"}]},
    )
    fake.scripted = [lambda _: goodbye]
    with trio.fail_after(10):
        reply = await client.ask("u1", "bye")
        assert reply.text == "Goodbye!"
        assert reply.has("SessionEnded")
        assert client.sessions_open == 0
        await client.ask("u1", "back again")
    assert len(fake.starts) == 2
    assert fake.sent[1].session_id != fake.sent[0].session_id


async def test_escalate_with_session_ended_is_returned_not_resent(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    escalate = httpx.Response(
        200, json={"messages": [{"type": "Escalate", "targets": []}, {"type": "SessionEnded"}]}
    )
    fake.scripted = [lambda _: escalate]
    with trio.fail_after(10):
        reply = await client.ask("u1", "a human please")
    assert reply.has("Escalate")
    assert len(fake.sent) == 1


async def test_423_is_not_retried_here_but_marked_user_busy(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    # The Guard is the one retry layer: a 423 retried here as well made up to 12 POSTs per
    # ask, ignoring Retry-After and the budget.
    client = make_client(http)
    locked = _envelope(423, "SessionLockedException", "Session Already Locked")
    locked.headers["Retry-After"] = "2"
    fake.scripted = [lambda _: locked] * 10
    start = trio.current_time()
    with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
        await client.ask("u1", "hello")
    assert info.value.status == 423
    assert info.value.reason == Reason.USER_BUSY  # one session, not Agentforce's health
    assert info.value.retry_after == 2.0
    assert len(fake.sent) == 1  # one POST, no waiting
    assert trio.current_time() == start
    assert client.sessions_open == 1  # a busy session is still ours
    fake.scripted = []
    with trio.fail_after(10):
        reply = await client.ask("u1", "hello")  # the caller's retry, in the same session
    assert reply.text == "echo: hello"
    assert len(fake.starts) == 1
    assert [s.sequence_id for s in fake.sent] == [1, 2]  # a fresh sequence id (§9)


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (429, "TooManyRequestsException", Reason.SLOW_DOWN),
        (503, "ServiceUnavailableException", Reason.SLOW_DOWN),
        # A 500 is also the server's own 120 s timeout (§7.1): maybe processed, no reason.
        (500, "HttpServerErrorException", None),
        (502, "BadGateway", None),
    ],
)
async def test_not_processed_statuses_say_slow_down(
    fake: FakeAgentforce, http: httpx.AsyncClient, status: int, error: str, reason: str | None
) -> None:
    client = make_client(http)
    fake.scripted = [lambda _: _envelope(status, error, "not now")]
    with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
        await client.ask("u1", "hello")
    assert (info.value.status, info.value.reason) == (status, reason)
    assert len(fake.sent) == 1


async def test_a_busy_token_endpoint_says_slow_down() -> None:
    def token_endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            429,
            json={"error": "rate_limited", "error_description": "slow down"},
            headers={"Retry-After": "3"},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as http:
        client = make_client(http)
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
            await client.ask("u1", "a")
    assert (info.value.reason, info.value.retry_after) == (Reason.SLOW_DOWN, 3.0)


async def test_server_error_is_unavailable_and_keeps_the_session(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    boom = _envelope(500, "HttpServerErrorException", "500 [...]")
    fake.scripted = [lambda _: boom]
    with trio.fail_after(10):
        with pytest.raises(UpstreamUnavailable) as info:
            await client.ask("u1", "a")
        assert info.value.code == "HttpServerErrorException"
        await client.ask("u1", "b")
    assert len(fake.starts) == 1


async def test_transport_error_is_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        client = make_client(http)
        with trio.fail_after(10), pytest.raises(UpstreamUnavailable) as info:
            await client.ask("u1", "a")
    assert info.value.upstream == "agentforce"


async def test_bad_credentials_are_rejected() -> None:
    def token_endpoint(request: httpx.Request) -> httpx.Response:
        body = {"error": "invalid_client", "error_description": "invalid client credentials"}
        return httpx.Response(400, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(token_endpoint)) as http:
        client = make_client(http)
        with trio.fail_after(10), pytest.raises(UpstreamRejected) as info:
            await client.ask("u1", "a")
    assert (info.value.status, info.value.code) == (400, "invalid_client")


async def test_greeting_is_forwarded_on_the_first_reply_when_asked(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http, forward_greeting=True)
    with trio.fail_after(10):
        first = await client.ask("u1", "a")
        second = await client.ask("u1", "b")
    assert first.messages == (AgentMessage("Inform", GREETING), AgentMessage("Inform", "echo: a"))
    assert second.messages == (AgentMessage("Inform", "echo: b"),)


async def test_prepare_and_ask_at_once_share_one_session(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    # A voice note pre-warms the session while STT runs; the ask may come before the start
    # answered. They must share one session, and the greeting still reaches the first reply.
    fake.token_delay = 0.05
    client = make_client(http, forward_greeting=True)
    replies: list[AgentReply] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.prepare, "u1")
            await trio.testing.wait_all_tasks_blocked()
            replies.append(await client.ask("u1", "a"))
        await client.prepare("u1")  # a session exists: nothing to do
    assert len(fake.starts) == 1
    assert client.sessions_open == 1
    assert replies[0].messages[0] == AgentMessage("Inform", GREETING)


async def test_cancelled_send_leaves_the_session_usable(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    client = make_client(http)

    async def hang(_: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    fake.scripted = [hang]
    with trio.fail_after(100):
        with trio.move_on_after(60) as scope:
            await client.ask("u1", "slow")
        assert scope.cancelled_caught
        reply = await client.ask("u1", "again")
    assert reply.text == "echo: again"
    assert [(s.sequence_id, s.text) for s in fake.sent] == [(1, "slow"), (2, "again")]
    assert len({s.session_id for s in fake.sent}) == 1


async def test_end_idle_sessions_deletes_with_expiration(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    client = make_client(http, idle=600.0)
    with trio.fail_after(10_000):
        await client.ask("u1", "a")
        autojump_clock.jump(300)
        await client.ask("u2", "b")
        autojump_clock.jump(301)  # u1 idle 601 s, u2 idle 301 s
        assert await client.end_idle_sessions() == 1
        assert fake.deletes == [(fake.sent[0].session_id, "Expiration")]
        assert client.sessions_open == 1
        autojump_clock.jump(300)
        assert await client.end_idle_sessions() == 1
        assert await client.end_idle_sessions() == 0
    assert [reason for _, reason in fake.deletes] == ["Expiration", "Expiration"]
    assert fake.sessions == set()
    assert client.sessions_open == 0


async def test_use_keeps_a_session_from_going_idle(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    client = make_client(http, idle=600.0)
    with trio.fail_after(10_000):
        for _ in range(3):
            await client.ask("u1", "a")
            autojump_clock.jump(500)
            assert await client.end_idle_sessions() == 0
    assert fake.deletes == []
    assert len(fake.starts) == 1


async def test_idle_delete_of_an_already_gone_session_counts_as_ended(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    client = make_client(http, idle=60.0)
    with trio.fail_after(1000):
        await client.ask("u1", "a")
        fake.expire_sessions()  # the server reaped it first: DELETE gets 404
        autojump_clock.jump(61)
        assert await client.end_idle_sessions() == 1
    assert len(fake.deletes) == 1


async def test_idle_delete_failures_are_logged_not_raised(
    fake: FakeAgentforce, http: httpx.AsyncClient, autojump_clock: trio.testing.MockClock
) -> None:
    client = make_client(http, idle=60.0)
    with trio.fail_after(1000):
        await client.ask("u1", "a")
        fake.always_401 = True
        autojump_clock.jump(61)
        assert await client.end_idle_sessions() == 0
    assert client.sessions_open == 0


async def test_eviction_at_max_sessions_ends_the_evicted_session(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http, max_sessions=2)
    with trio.fail_after(10):
        await client.ask("u1", "a")
        await client.ask("u2", "b")
        await client.ask("u1", "c")  # u2 is now the least recently used
        await client.ask("u3", "d")
        assert client.sessions_open == 2
        assert fake.deletes == []  # ask did not wait for someone else's cleanup
        assert await client.end_idle_sessions() == 1
        u2_session = fake.sent[1].session_id
        assert fake.deletes == [(u2_session, "Expiration")]
        await client.ask("u2", "e")
    assert fake.sent[-1].session_id != u2_session
    assert len(fake.starts) == 4


async def test_end_session_deletes_with_user_request(
    fake: FakeAgentforce, http: httpx.AsyncClient
) -> None:
    client = make_client(http)
    with trio.fail_after(10):
        await client.ask("u1", "a")
        assert await client.end_session("u1")
        assert await client.end_session("u1")  # nothing left to end
        with pytest.raises(ValueError):
            await client.end_session("u2", reason="Expired")
    assert fake.deletes == [(fake.sent[0].session_id, "UserRequest")]
    assert client.sessions_open == 0


# -- the session store on its own ------------------------------------------------------------


def test_store_evicts_the_least_recently_used_and_hands_it_back() -> None:
    now = [0.0]
    store = SessionStore(2, 60.0, clock=lambda: now[0])
    assert store.put("a", AgentSession("sa")) is None
    now[0] = 1.0
    assert store.put("b", AgentSession("sb")) is None
    now[0] = 2.0
    store.touch("a")
    evicted = store.put("c", AgentSession("sc"))
    assert evicted is not None
    assert (evicted[0], evicted[1].session_id) == ("b", "sb")
    assert len(store) == 2
    assert "b" not in store


def test_store_replacing_a_users_session_hands_back_the_old_one() -> None:
    store = SessionStore(2, 60.0, clock=lambda: 0.0)
    store.put("a", AgentSession("s1"))
    replaced = store.put("a", AgentSession("s2"))
    assert replaced is not None
    assert replaced[1].session_id == "s1"
    assert store.drop("a", "s1") is None  # not the current one: kept
    dropped = store.drop("a", "s2")
    assert dropped is not None
    assert dropped.session_id == "s2"
    assert len(store) == 0


def test_store_take_idle_removes_only_the_idle() -> None:
    now = [0.0]
    store = SessionStore(10, 60.0, clock=lambda: now[0])
    store.put("a", AgentSession("sa"))
    now[0] = 30.0
    store.put("b", AgentSession("sb"))
    assert store.take_idle(60.0) == []
    taken = store.take_idle(61.0)
    assert [(user, s.session_id) for user, s in taken] == [("a", "sa")]
    assert store.get("b") is not None
    assert store.get("a") is None
