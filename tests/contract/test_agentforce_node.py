"""Agentforce held to Salesforce's own Agent API client, @salesforce/agents (Node).

No official Python client exists; the library behind ``sf agent preview`` is the one
Salesforce ships. ``node/drive.cjs`` starts a session, sends a message and ends it against
the simulator (how it reaches the simulator without a real org is explained there), and
these tests check both sides: the client parses what the simulator answers, and the
simulator took what the client really sends (its headers and bodies) - which is also what
the daemon's own client must send (``daemon/agentforce/wire.py``).

Needs Node >= 20.18.1 (undici 7); without it the tests skip, saying so. The client is
installed by ``npm ci`` from the committed package-lock.json into node/node_modules (not in
git), once per change of the lock file: on a clean clone and in CI alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon.agentforce import wire
from daemon.sim.agentforce import GREETING, AgentforceSim

NODE_DIR = Path(__file__).parent / "node"
STAMP = NODE_DIR / "node_modules" / ".wa-agentd-lock-sha256"
MIN_NODE = (20, 18, 1)
CLIENT_ID = "contract-client"
CLIENT_SECRET = "contract-secret"
AGENT_ID = "0XxSIM0000000001AA"  # 18 characters from 0Xx: the client takes it as an id
INSTANCE = "https://sim.my.salesforce.com"


def _node_version(node: str) -> tuple[int, ...]:
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    match = re.match(r"v(\d+)\.(\d+)\.(\d+)", out.stdout.strip())
    return tuple(int(part) for part in match.groups()) if match else ()


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with @salesforce/agents installed from the lock file."""
    found = shutil.which("node")
    npm = shutil.which("npm")
    if found is None or npm is None:
        pytest.skip("node and npm are not installed: @salesforce/agents cannot run here")
    version = _node_version(found)
    if version < MIN_NODE:
        wanted = ".".join(map(str, MIN_NODE))
        pytest.skip(f"node {'.'.join(map(str, version))} is older than {wanted}")
    lock = hashlib.sha256((NODE_DIR / "package-lock.json").read_bytes()).hexdigest()
    if not STAMP.exists() or STAMP.read_text().strip() != lock:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"npm ci failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}")
        STAMP.write_text(lock + "\n")
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


async def drive(node: str, sim: AgentforceSim, home: Path, text: str) -> dict[str, Any]:
    """Run the official client against ``sim``; what it returned (or the error it raised)."""
    config = {
        "apiUrl": f"{sim.base_url}/einstein/ai-agent/v1",
        "tokenUrl": f"{sim.base_url}/services/oauth2/token",
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "instanceUrl": INSTANCE,
        "agentId": AGENT_ID,
        "text": text,
    }
    # The client keeps session history under the working directory and $HOME: a scratch one.
    env = {**os.environ, "HOME": str(home), "SF_DISABLE_TELEMETRY": "true", "SF_LOG_LEVEL": "fatal"}
    with trio.fail_after(60):
        done = await trio.run_process(
            [node, str(NODE_DIR / "drive.cjs"), json.dumps(config)],
            cwd=home,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


async def test_the_official_client_starts_sends_and_ends(
    node: str, sim: AgentforceSim, tmp_path: Path
) -> None:
    result = await drive(node, sim, tmp_path, "What are your opening hours?")
    assert "error" not in result, result.get("error")
    (started,) = sim.started
    # The client parsed our answers: the documented shapes (reference/agentforce.md §2-§5).
    assert result["started"]["sessionId"] == started.session_id
    assert [m["message"] for m in result["started"]["messages"]] == [GREETING]
    (inform,) = result["sent"]["messages"]
    assert inform["type"] == "Inform" and "open" in inform["message"].lower()
    assert inform["planId"]  # the client reads messages[0].planId for its traces
    (ended,) = result["ended"]["messages"]
    assert (ended["type"], ended["reason"]) == ("SessionEnded", "ClientRequest")
    assert sim.ended == [(started.session_id, "UserRequest")]
    assert not sim.live_sessions()


async def test_what_the_official_client_sends_is_what_the_daemon_sends(
    node: str, sim: AgentforceSim, tmp_path: Path
) -> None:
    await drive(node, sim, tmp_path, "Do you ship to Canada?")
    (started,) = sim.started
    (received,) = sim.received
    official_start = dict(started.body)
    assert official_start.pop("externalSessionKey")  # a random UUID, as ours
    ours = wire.start_session_body("key", INSTANCE)
    del ours["externalSessionKey"]
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
    assert end.headers["x-session-end-reason"] == "UserRequest"


async def test_the_official_client_reads_the_simulators_refusal(
    node: str, tmp_path: Path, nursery: trio.Nursery
) -> None:
    # An employee agent refuses bypassUser true; @salesforce/agents 1.11.7 sends true for
    # every agent (2.x asks the org for the agent type first). The error it raises carries
    # the message of our §7.2 envelope.
    sim = await started_sim(nursery, employee_agent=True)
    result = await drive(node, sim, tmp_path, "hello")
    assert "Invalid user ID" in result["error"]["message"]
    assert sim.started == []
