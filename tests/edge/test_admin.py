"""What the public listener shows: the admin routes live on their own loopback port (issue 10).

Before: /metrics (every counter, cache sizes, upstream failures), /admin/* and a /readyz that
names internal errors ("state store not writable (OperationalError: ...)", "agentforce
circuit open") were served next to the webhook unless the operator set [admin] bind. Now
[admin] bind defaults to 127.0.0.1:9464 (DESIGN.md's config contract); the public listener
keeps the webhook, Twilio's media, /healthz and a /readyz that says only "ready" or "not
ready", even when [admin] bind = "" puts everything on one listener.
"""

from __future__ import annotations

import trio

from daemon.config import AdminConfig, Settings
from daemon.sim.base import Faults
from daemon.sim.stack import Stack, open_stack

ALICE = "16505551234"


def test_the_admin_listener_is_on_loopback_by_default() -> None:
    assert AdminConfig().bind == "127.0.0.1:9464"
    assert Settings().admin.bind == "127.0.0.1:9464"


async def _open_the_agent_circuit(stack: Stack) -> None:
    """Fail the agent until its circuit opens: /readyz has a reason to give then."""
    n = 0
    while "circuit open" not in (await stack.client.get(stack.daemon.admin_url + "/readyz")).text:
        n += 1
        await stack.send_text(f"1555000{n:04d}", "hello?")
        await stack.wait_reports(n)
        assert n < 10, "the circuit never opened"


AGENT_DOWN = Faults(error_rate=1.0, error_status=503)
QUICK_BREAKER = {"window": 4, "min_calls": 4, "open_seconds": 600}


async def test_public_listener_serves_no_admin_routes_and_a_bare_readyz() -> None:
    async with open_stack(agentforce_faults=AGENT_DOWN, breakers=QUICK_BREAKER) as stack:
        public, admin = stack.daemon.url, stack.daemon.admin_url
        with trio.fail_after(30):
            await _open_the_agent_circuit(stack)
            seen = {
                path: await stack.client.request(method, public + path)
                for method, path in (
                    ("GET", "/metrics"),
                    ("POST", "/admin/cache/flush"),
                    ("GET", "/readyz"),
                    ("GET", "/healthz"),
                )
            }
            inside = await stack.client.get(admin + "/readyz")
            metrics = await stack.client.get(admin + "/metrics")
    assert public != admin and admin.startswith("http://127.0.0.1:")
    assert seen["/metrics"].status_code == 404
    assert seen["/admin/cache/flush"].status_code in (404, 405)
    assert (seen["/readyz"].status_code, seen["/readyz"].text) == (503, "not ready\n")
    assert (seen["/healthz"].status_code, seen["/healthz"].text) == (200, "ok\n")
    # the admin listener says why, and has the metrics
    assert inside.status_code == 503 and "agentforce circuit open" in inside.text
    assert metrics.status_code == 200 and "wa_agentd_webhooks_total" in metrics.text


async def test_on_one_listener_readyz_still_names_no_internals() -> None:
    """[admin] bind = "": /metrics and /admin/* on the webhook's listener (the operator's
    choice), but /readyz there is public all the same."""
    async with open_stack(
        admin={"bind": ""}, agentforce_faults=AGENT_DOWN, breakers=QUICK_BREAKER
    ) as stack:
        assert stack.daemon.admin_url == stack.daemon.url
        with trio.fail_after(30):
            n = 0
            while (await stack.client.get(stack.daemon.url + "/metrics")).text.find(
                'wa_agentd_circuit_state{upstream="agentforce"} 2.0'
            ) < 0:
                n += 1
                await stack.send_text(f"1555000{n:04d}", "hello?")
                await stack.wait_reports(n)
                assert n < 10, "the circuit never opened"
            ready = await stack.client.get(stack.daemon.url + "/readyz")
    assert (ready.status_code, ready.text) == (503, "not ready\n")
