"""The Agentforce simulator answers like reference/agentforce.md says, over real HTTP."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from daemon.sim import agentforce
from daemon.sim.agentforce import AgentforceSim, SimSession, default_brain, inform
from daemon.sim.base import Faults

CLIENT_ID = "3MVG9-sim-client"
CLIENT_SECRET = "sim-secret"
AGENT_ID = "0XxSIM0000000001AA"
ENDPOINT = "https://acme.my.salesforce.com"
API = "/einstein/ai-agent/v1"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
ENVELOPE_KEYS = {"status", "path", "mode", "requestId", "error", "message", "timestamp", "expected"}


def start_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "externalSessionKey": str(uuid.uuid4()),
        "instanceConfig": {"endpoint": ENDPOINT},
        "streamingCapabilities": {"chunkTypes": ["Text"]},
        "bypassUser": True,
    }
    body.update(changes)
    return body


def message_body(text: str, sequence_id: int = 1) -> dict[str, Any]:
    return {"message": {"sequenceId": sequence_id, "type": "Text", "text": text}, "variables": []}


def assert_envelope(response: httpx.Response, status: int, error: str | None = None) -> str:
    """The §7.2 error envelope; returns its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["status"] == status
    assert body["path"].startswith("v6.0.0/")
    if error is not None:
        assert body["error"] == error
    return str(body["message"])


def jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    assert len(parts) == 3
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload))
    return claims


def make_sim(**options: Any) -> AgentforceSim:
    return AgentforceSim(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        agent_id=AGENT_ID,
        instance_endpoint=ENDPOINT,
        **options,
    )


@pytest.fixture
def sim() -> AgentforceSim:
    return make_sim()


@pytest.fixture
async def client(sim: AgentforceSim, nursery: trio.Nursery) -> AsyncIterator[httpx.AsyncClient]:
    with trio.fail_after(10):
        await sim.start(nursery)
    # No keep-alive: under the autojump clock hypercorn's keep-alive timer fires at once,
    # and a pooled connection closed by the server would make requests fail spuriously.
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=sim.base_url, limits=limits, timeout=None) as c:
        yield c


async def get_token(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def authed(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.headers["Authorization"] = f"Bearer {await get_token(client)}"
    return client


async def new_session(client: httpx.AsyncClient) -> str:
    response = await client.post(
        f"{API}/agents/{AGENT_ID}/sessions", json=start_body(), headers=JSON_HEADERS
    )
    assert response.status_code == 200, response.text
    session_id: str = response.json()["sessionId"]
    return session_id


async def say(
    client: httpx.AsyncClient, session_id: str, text: str, sequence_id: int = 1
) -> httpx.Response:
    return await client.post(
        f"{API}/sessions/{session_id}/messages",
        json=message_body(text, sequence_id),
        headers=JSON_HEADERS,
    )


def parse_sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# --- token endpoint (§1) ----------------------------------------------------------------------


async def test_token_has_the_documented_shape(
    sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    before = time.time()
    with trio.fail_after(10):
        response = await client.post(
            "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
    assert response.status_code == 200
    body = response.json()
    assert "expires_in" not in body and "refresh_token" not in body  # §1.3
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == ENDPOINT
    assert body["api_instance_url"] == sim.base_url
    assert set(body["scope"].split()) == {"sfap_api", "chatbot_api", "api"}
    issued_ms = int(body["issued_at"])
    assert isinstance(body["issued_at"], str) and before * 1000 - 1000 <= issued_ms
    claims = jwt_claims(body["access_token"])
    assert abs(claims["exp"] - (before + 1800)) < 5
    assert sim.token_requests == 1 and sim.tokens_issued == 1


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_id": CLIENT_ID, "client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "someone-else", "client_secret": CLIENT_SECRET}, "invalid_client"),
        ({"client_id": CLIENT_ID}, "invalid_request"),
        (
            {"grant_type": "password", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            "unsupported_grant_type",
        ),
    ],
)
async def test_token_errors_use_the_oauth_shape(
    client: httpx.AsyncClient, form: dict[str, str], error: str
) -> None:
    data = {"grant_type": "client_credentials"} | form
    with trio.fail_after(10):
        response = await client.post("/services/oauth2/token", data=data)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error
    assert set(body) == {"error", "error_description"}
    if error == "invalid_client":
        assert body["error_description"] == "invalid client credentials"


async def test_token_refuses_a_json_body(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        response = await client.post(
            "/services/oauth2/token",
            json={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            },
        )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc", "Bearer"])
async def test_agent_api_needs_an_issued_token(
    client: httpx.AsyncClient, header: str | None
) -> None:
    headers = dict(JSON_HEADERS)
    if header is not None:
        headers["Authorization"] = header
    with trio.fail_after(10):
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions", json=start_body(), headers=headers
        )
    assert_envelope(response, 401)


async def test_token_expires_after_its_lifetime(
    autojump_clock: trio.testing.MockClock, sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await authed(client)
        await new_session(client)
    await trio.sleep(1799)
    with trio.fail_after(10):
        await new_session(client)  # still valid just before the end
    await trio.sleep(2)
    with trio.fail_after(10):
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions", json=start_body(), headers=JSON_HEADERS
        )
        assert_envelope(response, 401)
        await authed(client)  # a fresh token works again
        await new_session(client)
    assert sim.tokens_issued == 2


async def test_expire_tokens_invalidates_every_issued_token(
    sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        sim.expire_tokens()
        assert_envelope(await say(client, session_id, "hello"), 401)
    assert sim.received == []


# --- start session (§2) -----------------------------------------------------------------------


async def test_start_session_returns_id_links_and_greeting(
    sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    body = start_body(
        tz="Europe/Paris",
        featureSupport="Streaming",
        variables=[{"name": "$Context.EndUserLanguage", "type": "Text", "value": "fr"}],
    )
    with trio.fail_after(10):
        await authed(client)
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions", json=body, headers=JSON_HEADERS
        )
    assert response.status_code == 200, response.text
    doc = response.json()
    session_id = doc["sessionId"]
    assert str(uuid.UUID(session_id)) == session_id  # lowercase UUID
    links = doc["_links"]
    assert links["self"] is None
    assert links["messages"]["href"] == f"{sim.base_url}{API}/sessions/{session_id}/messages"
    assert links["messagesStream"]["href"].endswith(f"/sessions/{session_id}/messages/stream")
    assert links["end"]["href"].endswith(f"/sessions/{session_id}")
    [greeting] = doc["messages"]
    assert greeting["type"] == "Inform"
    assert greeting["message"] == "Hi, I'm an AI service assistant. How can I help you?"
    assert greeting["result"] == [] and greeting["citedReferences"] == []
    [started] = sim.started
    assert started.session_id == session_id
    assert started.external_session_key == body["externalSessionKey"]
    assert started.body == body


async def test_start_session_needs_json_content_type(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions",
            content=json.dumps(start_body()),
            headers={"Content-Type": "text/plain"},
        )
    assert assert_envelope(response, 500) == "Unsupported Media Type"


async def test_start_session_rejects_an_unknown_agent(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        response = await client.post(
            f"{API}/agents/0XxOTHER000000001AA/sessions", json=start_body(), headers=JSON_HEADERS
        )
    assert assert_envelope(response, 400) == "0XxOTHER000000001AA is not a valid agent ID"


async def test_start_session_rejects_another_my_domain(client: httpx.AsyncClient) -> None:
    body = start_body(instanceConfig={"endpoint": "https://other.my.salesforce.com"})
    with trio.fail_after(10):
        await authed(client)
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions", json=body, headers=JSON_HEADERS
        )
    assert_envelope(response, 500, "EngineConfigLookupException")


@pytest.mark.parametrize(
    "body",
    [
        {k: v for k, v in start_body().items() if k != "externalSessionKey"},
        start_body(externalSessionKey=42),
        start_body(instanceConfig={}),
        start_body(instanceConfig="https://acme.my.salesforce.com"),
        {k: v for k, v in start_body().items() if k != "bypassUser"},
        start_body(bypassUser="true"),
        start_body(streamingCapabilities={"chunkTypes": ["LightningChunk"]}),
        start_body(variables=[{"name": "x", "type": "Banana", "value": 1}]),
        start_body(variables={"name": "x"}),
        start_body(tz=3),
        ["not", "an", "object"],
    ],
)
async def test_start_session_validates_the_body(client: httpx.AsyncClient, body: Any) -> None:
    with trio.fail_after(10):
        await authed(client)
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions", json=body, headers=JSON_HEADERS
        )
    assert_envelope(response, 400)


async def test_start_session_rejects_malformed_json(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        response = await client.post(
            f"{API}/agents/{AGENT_ID}/sessions", content=b"{not json", headers=JSON_HEADERS
        )
    assert_envelope(response, 400)


# --- send message (§3) ------------------------------------------------------------------------


async def test_send_message_answers_with_markdown_faq(
    sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        response = await say(client, session_id, "What is your refund policy?", 1736902935340)
    assert response.status_code == 200, response.text
    doc = response.json()
    assert set(doc) == {"messages", "_links"}
    [message] = doc["messages"]
    assert message["type"] == "Inform"
    assert "**30 days**" in message["message"]
    assert "[your account](https://example.com/account)" in message["message"]
    assert {"id", "feedbackId", "planId", "isContentSafe", "result", "citedReferences"} <= set(
        message
    )
    [received] = sim.received
    assert (received.session_id, received.sequence_id) == (session_id, 1736902935340)
    assert received.text == "What is your refund policy?"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello!", agentforce.FAQ_GREETING),
        ("hi, when are you open?", agentforce.FAQ_HOURS),
        ("how long does shipping take", agentforce.FAQ_SHIPPING),
        ("what is the meaning of life", agentforce.echo_answer("what is the meaning of life")),
    ],
)
def test_default_brain_is_deterministic(text: str, expected: str) -> None:
    session = SimSession("s", "k", 0.0, 0.0)
    [first] = default_brain(session, text)
    [again] = default_brain(session, text)
    assert first["message"] == again["message"] == expected


def test_echo_answer_quotes_the_question() -> None:
    assert agentforce.echo_answer("ping").startswith('You asked: "ping".')


@pytest.mark.parametrize(
    ("trigger", "types"),
    [
        ("[escalate]", ["Inform", "Escalate"]),
        ("[fail]", ["Failure"]),
        ("[error]", ["Error"]),
        ("[empty]", []),
        ("[long]", ["Inform"]),
        ("[multi]", ["Inform", "Inform"]),
        ("[end]", ["Inform", "SessionEnded"]),
    ],
)
async def test_triggers_script_the_reply(
    client: httpx.AsyncClient, trigger: str, types: list[str]
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        response = await say(client, session_id, f"please {trigger} now")
    assert response.status_code == 200
    messages = response.json()["messages"]
    assert [m["type"] for m in messages] == types
    by_type = {m["type"]: m for m in messages}
    if "Escalate" in by_type:
        assert by_type["Escalate"]["targets"][0]["type"].startswith("Salesforce:Core:")
    if "Failure" in by_type:
        assert by_type["Failure"]["code"] == "ACTION_FAILED" and by_type["Failure"]["errors"]
    if "SessionEnded" in by_type:
        assert by_type["SessionEnded"]["reason"] == "Action"
    if trigger == "[long]":
        assert len(messages[0]["message"]) >= 5000
        assert "\n\n" in messages[0]["message"]


async def test_end_trigger_ends_the_session(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        assert (await say(client, session_id, "[end]")).status_code == 200
        message = assert_envelope(await say(client, session_id, "hello", 2), 404)
    assert message == f"V6Session not found for sessionId: {session_id}"


async def test_context_trigger_quotes_the_previous_message_of_the_session(
    client: httpx.AsyncClient,
) -> None:
    with trio.fail_after(10):
        await authed(client)
        first = await new_session(client)
        other = await new_session(client)
        await say(client, first, "my order is 1234", 1)
        await say(client, other, "something else", 1)
        response = await say(client, first, "[context]", 2)
        fresh = await say(client, await new_session(client), "[context]", 1)
    assert response.json()["messages"][0]["message"] == (
        'Your previous message was: "my order is 1234".'
    )
    assert "first message" in fresh.json()["messages"][0]["message"]


async def test_responder_replaces_the_brain(nursery: trio.Nursery) -> None:
    seen: list[tuple[str, str]] = []

    def responder(session: SimSession, text: str) -> list[dict[str, Any]]:
        seen.append((session.session_id, text))
        return [inform(f"custom: {text}")]

    sim = make_sim(responder=responder)
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            await authed(client)
            session_id = await new_session(client)
            response = await say(client, session_id, "hi")
    assert response.json()["messages"][0]["message"] == "custom: hi"
    assert seen == [(session_id, "hi")]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": "hello"},
        {"message": {"sequenceId": 0, "type": "Text", "text": "hi"}},
        {"message": {"sequenceId": -3, "type": "Text", "text": "hi"}},
        {"message": {"sequenceId": "1", "type": "Text", "text": "hi"}},
        {"message": {"sequenceId": True, "type": "Text", "text": "hi"}},
        {"message": {"sequenceId": 2**63, "type": "Text", "text": "hi"}},
        {"message": {"type": "Text", "text": "hi"}},
        {"message": {"sequenceId": 1, "type": "Audio", "text": "hi"}},
        {"message": {"sequenceId": 1, "type": "Text"}},
        {"message": {"sequenceId": 1, "type": "Text", "text": "   "}},
        {"message": {"sequenceId": 1, "type": "Text", "text": 5}},
        {"message": {"sequenceId": 1, "type": "Text", "text": "hi"}, "variables": "x"},
        [1, 2],
    ],
)
async def test_send_message_validates_the_body(
    sim: AgentforceSim, client: httpx.AsyncClient, body: Any
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        response = await client.post(
            f"{API}/sessions/{session_id}/messages", json=body, headers=JSON_HEADERS
        )
    assert_envelope(response, 400)
    assert sim.received == []


async def test_send_message_needs_json_and_accepts_json(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        wrong_type = await client.post(
            f"{API}/sessions/{session_id}/messages",
            data={"text": "hi"},
        )
        wrong_accept = await client.post(
            f"{API}/sessions/{session_id}/messages",
            json=message_body("hi"),
            headers={"Accept": "text/html"},
        )
    assert assert_envelope(wrong_type, 500) == "Unsupported Media Type"
    assert_envelope(wrong_accept, 406)


async def test_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    ghost = str(uuid.uuid4())
    with trio.fail_after(10):
        await authed(client)
        response = await say(client, ghost, "hello")
    assert assert_envelope(response, 404, "NotFoundException") == (
        f"V6Session not found for sessionId: {ghost}"
    )


async def test_second_request_in_flight_gets_423(nursery: trio.Nursery) -> None:
    release = trio.Event()

    async def responder(session: SimSession, text: str) -> list[dict[str, Any]]:
        if text == "slow":
            await release.wait()
        return [inform(text)]

    sim = make_sim(responder=responder)
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            await authed(client)
            session_id = await new_session(client)
            other_session = await new_session(client)
            first: list[httpx.Response] = []
            async with trio.open_nursery() as inner:

                async def slow() -> None:
                    first.append(await say(client, session_id, "slow", 1))

                inner.start_soon(slow)
                await sim.wait_received(1)
                busy = await say(client, session_id, "fast", 2)
                other = await say(client, other_session, "parallel", 1)
                release.set()
            after = await say(client, session_id, "again", 3)
    assert_envelope(busy, 423, "SessionAlreadyLockedException")
    assert other.status_code == 200  # other sessions are not locked
    assert first[0].json()["messages"][0]["message"] == "slow"
    assert after.status_code == 200
    assert [r.text for r in sim.received] == ["slow", "parallel", "again"]


async def test_a_client_that_gives_up_leaves_the_session_locked(nursery: trio.Nursery) -> None:
    release = trio.Event()

    async def responder(session: SimSession, text: str) -> list[dict[str, Any]]:
        if text == "slow":
            await release.wait()
        return [inform(text)]

    sim = make_sim(responder=responder)
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            await authed(client)
            session_id = await new_session(client)
            async with trio.open_nursery() as inner:
                inner.start_soon(say, client, session_id, "slow", 1)
                await sim.wait_received(1)
                inner.cancel_scope.cancel()  # the client gives up
            locked = await say(client, session_id, "next", 2)
            release.set()
            await sim.wait_idle()
            unlocked = await say(client, session_id, "next", 3)
    assert_envelope(locked, 423)
    assert unlocked.json()["messages"][0]["message"] == "next"


async def test_strict_sequence_rejects_non_increasing_ids(nursery: trio.Nursery) -> None:
    sim = make_sim(strict_sequence=True)
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            await authed(client)
            session_id = await new_session(client)
            ok = await say(client, session_id, "a", 5)
            same = await say(client, session_id, "b", 5)
            lower = await say(client, session_id, "c", 4)
            higher = await say(client, session_id, "d", 9)
    assert ok.status_code == 200 and higher.status_code == 200
    assert_envelope(same, 400)
    assert_envelope(lower, 400)


async def test_lenient_sequence_by_default(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        first = await say(client, session_id, "a", 1)
        again = await say(client, session_id, "b", 1)  # §9: the a2a wrapper always sends 1
    assert first.status_code == again.status_code == 200


async def test_turn_longer_than_120_seconds_is_500(
    autojump_clock: trio.testing.MockClock, sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
    sim.faults.latency = (300.0, 300.0)
    started = trio.current_time()
    with trio.fail_after(400):  # virtual seconds: the latency drawn is 300 s
        response = await say(client, session_id, "hello")
    elapsed = trio.current_time() - started
    assert_envelope(response, 500, "HttpServerErrorException")
    assert 120 <= elapsed < 121
    sim.faults.latency = (0.0, 0.0)
    with trio.fail_after(10):
        assert (await say(client, session_id, "hello", 2)).status_code == 200  # unlocked


async def test_idle_sessions_expire(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    sim = make_sim(idle_timeout=600.0)
    with trio.fail_after(10):
        await sim.start(nursery)
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=sim.base_url, limits=limits, timeout=None) as client:
        with trio.fail_after(10):
            await authed(client)
            session_id = await new_session(client)
        await trio.sleep(599)
        with trio.fail_after(10):
            kept = await say(client, session_id, "still here", 1)  # resets the idle timer
        await trio.sleep(599)
        with trio.fail_after(10):
            kept_again = await say(client, session_id, "still here", 2)
        await trio.sleep(600)
        with trio.fail_after(10):
            gone = await say(client, session_id, "hello?", 3)
    assert kept.status_code == kept_again.status_code == 200
    assert_envelope(gone, 404, "NotFoundException")


async def test_expired_sessions_are_404(sim: AgentforceSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        one, two, three = [await new_session(client) for _ in range(3)]
        sim.expire_session(one)
        assert_envelope(await say(client, one, "hi"), 404)
        assert (await say(client, two, "hi")).status_code == 200
        sim.expire_all_sessions()
        assert_envelope(await say(client, two, "hi", 2), 404)
        assert_envelope(await say(client, three, "hi"), 404)
    assert sim.live_sessions() == []


async def test_fault_errors_use_the_envelope(nursery: trio.Nursery) -> None:
    sim = make_sim(faults=Faults(error_status=429))
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            await authed(client)
            session_id = await new_session(client)
            sim.faults.error_rate = 1.0
            response = await say(client, session_id, "hi")
    assert_envelope(response, 429, "TooManyRequestsException")
    assert sim.received == []


async def test_a_failing_responder_is_a_500_not_a_crash(nursery: trio.Nursery) -> None:
    def responder(session: SimSession, text: str) -> list[dict[str, Any]]:
        raise RuntimeError("bug in the test responder")

    sim = make_sim(responder=responder)
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url) as client:
            await authed(client)
            session_id = await new_session(client)
            response = await say(client, session_id, "hi")
            after = await say(client, session_id, "hi", 2)
    assert_envelope(response, 500, "HttpServerErrorException")
    assert_envelope(after, 500)  # the sim is still serving and the session unlocked


# --- streaming (§4) ---------------------------------------------------------------------------


async def stream(client: httpx.AsyncClient, session_id: str, text: str) -> httpx.Response:
    return await client.post(
        f"{API}/sessions/{session_id}/messages/stream",
        json=message_body(text),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )


async def test_stream_sends_progress_chunks_inform_and_end_of_turn(
    sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        response = await stream(client, session_id, "How does shipping work?")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [name for name, _ in events]
    assert names[0] == "PROGRESS_INDICATOR"
    assert names[-2:] == ["INFORM", "END_OF_TURN"]
    assert set(names[1:-2]) == {"TEXT_CHUNK"}
    for name, data in events:
        assert {"timestamp", "originEventId", "traceId", "offset", "message"} <= set(data)
        assert agentforce.event_name(data["message"]["type"]) == name
    assert len({data["traceId"] for _, data in events}) == 1
    chunks = "".join(d["message"]["message"] for n, d in events if n == "TEXT_CHUNK")
    assert chunks == events[-2][1]["message"]["message"] == agentforce.FAQ_SHIPPING
    assert sim.received[0].stream


async def test_stream_other_message_types_and_retraction(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        escalation = parse_sse((await stream(client, session_id, "[escalate]")).text)
        retracted = parse_sse((await stream(client, await new_session(client), "[retract]")).text)
    assert [n for n, _ in escalation][-2:] == ["ESCALATE", "END_OF_TURN"]
    names = [n for n, _ in retracted]
    assert names.index("VALIDATION_FAILURE_CHUNK") < names.index("INFORM")


async def test_stream_can_be_dropped_mid_turn(
    sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    sim.stream_drop_after = 2
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        events = parse_sse((await stream(client, session_id, "What are your hours?")).text)
    assert [n for n, _ in events] == ["PROGRESS_INDICATOR", "TEXT_CHUNK"]


async def test_stream_is_validated_like_sync(client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        ghost = await stream(client, str(uuid.uuid4()), "hi")
        session_id = await new_session(client)
        bad = await client.post(
            f"{API}/sessions/{session_id}/messages/stream",
            json={"message": {"type": "Text", "text": "hi"}},
            headers={"Accept": "text/event-stream"},
        )
    assert_envelope(ghost, 404)
    assert_envelope(bad, 400)


async def test_stream_turn_over_120_seconds_ends_with_an_error_event(
    autojump_clock: trio.testing.MockClock, sim: AgentforceSim, client: httpx.AsyncClient
) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
    sim.faults.latency = (300.0, 300.0)
    with trio.fail_after(400):  # virtual seconds
        events = parse_sse((await stream(client, session_id, "hi")).text)
    assert [n for n, _ in events] == ["PROGRESS_INDICATOR", "ERROR"]
    assert events[1][1]["message"]["httpStatus"] == 500


def test_text_chunks_rebuild_the_text() -> None:
    text = "  Hello there,\n\nthis is **bold** and a [link](https://example.com). "
    pieces = agentforce.text_chunks(text, words=2)
    assert len(pieces) > 1
    assert "".join(pieces) == text


# --- end session (§5) -------------------------------------------------------------------------


async def test_delete_ends_the_session(sim: AgentforceSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        response = await client.delete(
            f"{API}/sessions/{session_id}", headers={"x-session-end-reason": "UserRequest"}
        )
        after = await say(client, session_id, "hello")
        again = await client.delete(
            f"{API}/sessions/{session_id}", headers={"x-session-end-reason": "UserRequest"}
        )
    assert response.status_code == 200
    [ended] = response.json()["messages"]
    assert ended["type"] == "SessionEnded" and ended["reason"] == "ClientRequest"
    assert "end" in response.json()["_links"]
    assert_envelope(after, 404, "NotFoundException")
    assert_envelope(again, 404, "NotFoundException")
    assert sim.ended == [(session_id, "UserRequest")]


@pytest.mark.parametrize("reason", [None, "Expired", "userrequest", ""])
async def test_delete_needs_a_known_end_reason(
    sim: AgentforceSim, client: httpx.AsyncClient, reason: str | None
) -> None:
    headers = {} if reason is None else {"x-session-end-reason": reason}
    with trio.fail_after(10):
        await authed(client)
        session_id = await new_session(client)
        response = await client.delete(f"{API}/sessions/{session_id}", headers=headers)
        still_there = await say(client, session_id, "hello")
    assert_envelope(response, 400)
    assert still_there.status_code == 200
    assert sim.ended == []


async def test_wait_helpers_and_request_log(sim: AgentforceSim, client: httpx.AsyncClient) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:

            async def talk() -> None:
                await authed(client)
                session_id = await new_session(client)
                await say(client, session_id, "one", 1)
                await say(client, session_id, "two", 2)

            inner.start_soon(talk)
            received = await sim.wait_received(2)
        await sim.wait_requests(4)
    assert [r.text for r in received] == ["one", "two"]
    assert [(r.method, r.status) for r in sim.requests] == [
        ("POST", 200),
        ("POST", 200),
        ("POST", 200),
        ("POST", 200),
    ]
    assert sim.requests[0].path == "/services/oauth2/token"


async def test_an_employee_agent_refuses_to_bypass_the_user(nursery: trio.Nursery) -> None:
    # Employee agents run as the token's user: bypassUser true is refused "400 Invalid user
    # ID" (why @salesforce/agents sends false for AgentforceEmployeeAgent); false works.
    sim = make_sim(employee_agent=True)
    with trio.fail_after(10):
        await sim.start(nursery)
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=None) as client:
            await authed(client)
            url = f"{API}/agents/{AGENT_ID}/sessions"
            bypassing = await client.post(url, json=start_body(), headers=JSON_HEADERS)
            as_user = await client.post(
                url, json=start_body(bypassUser=False), headers=JSON_HEADERS
            )
    assert assert_envelope(bypassing, 400, "BadRequestException") == "Invalid user ID"
    assert as_user.status_code == 200, as_user.text
    assert [s.body["bypassUser"] for s in sim.started] == [False]
