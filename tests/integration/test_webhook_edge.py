"""The webhook edge: handshake, and every bad input gets its clear status, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from daemon.model import Kind
from daemon.sim import webhooks
from daemon.sim.stack import PHONE_NUMBER_ID, SECRETS, Stack, open_stack

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "whatsapp-updates"
ALICE = "16505551234"


async def test_handshake(stack: Stack) -> None:
    with trio.fail_after(10):
        ok = await stack.sender.handshake(SECRETS["WHATSAPP_VERIFY_TOKEN"], "1158201444")
        wrong = await stack.sender.handshake("guess", "1158201444")
        no_mode = await stack.sender.handshake(SECRETS["WHATSAPP_VERIFY_TOKEN"], "1", mode=None)
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert wrong.status_code == 403
    assert no_mode.status_code == 403


@pytest.mark.parametrize(
    ("signature", "status"),
    [(None, 401), ("sha256=" + "0" * 64, 401), ("garbage", 401), ("sha1=abc", 401)],
)
async def test_missing_or_forged_signature_is_401(
    stack: Stack, signature: str | None, status: int
) -> None:
    body = webhooks.envelope(webhooks.text_message(ALICE, "hi"), phone_number_id=PHONE_NUMBER_ID)
    with trio.fail_after(10):
        response = await stack.sender.post(body, signature=signature)
    assert response.status_code == status
    assert stack.agentforce.received == [] and stack.graph.sent == []


async def test_signature_over_other_bytes_is_401(stack: Stack) -> None:
    body = webhooks.encode(
        webhooks.envelope(webhooks.text_message(ALICE, "hi"), phone_number_id=PHONE_NUMBER_ID)
    )
    signature = webhooks.sign(body, SECRETS["WHATSAPP_APP_SECRET"])
    tampered = body.replace(b'"hi"', b'"ho"')
    with trio.fail_after(10):
        response = await stack.sender.post(tampered, signature=signature)
    assert response.status_code == 401


async def _raw_post(stack: Stack, head: str, chunks: list[bytes]) -> bytes:
    """POST at the socket level and return the status line the daemon answered.

    The daemon may answer 413 and close before the body is all sent: that is the point, so
    a broken pipe while sending is expected. (httpx as a client warns about the unsent rest
    of its body, which is why these two tests talk to the socket directly.)
    """
    host, port = stack.daemon.url.removeprefix("http://").split(":")
    request = (
        f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: sha256=00\r\n{head}\r\n"
    ).encode()
    reply = b""
    with trio.fail_after(10):
        conn = await trio.open_tcp_stream(host, int(port))
        async with conn:
            await conn.send_all(request)
            try:
                for chunk in chunks:
                    await conn.send_all(chunk)
            except trio.BrokenResourceError:
                pass
            while b"\r\n" not in reply:
                data = await conn.receive_some(4096)
                if not data:
                    break
                reply += data
    return reply.split(b"\r\n", 1)[0]


async def test_oversize_body_is_413(stack: Stack) -> None:
    size = 4 << 20  # over the 3 MiB limit
    status = await _raw_post(stack, f"Content-Length: {size}\r\n", [b"x" * 65536] * 64)
    assert status.startswith(b"HTTP/1.1 413")


async def test_oversize_chunked_body_is_413(stack: Stack) -> None:
    # No Content-Length: the limit must hold while the body streams in.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    # No terminating chunk: the answer must come while the body is still streaming, so the
    # daemon never holds more than the limit, whatever the client sends.
    status = await _raw_post(stack, "Transfer-Encoding: chunked\r\n", [chunk] * 64)
    assert status.startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'"a string"',
        b'{"object":"page","entry":[]}',
        b'{"object":"whatsapp_business_account"}',
        b'{"object":"whatsapp_business_account","entry":{"id":"1"}}',
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":'
        b'"messages","value":{"messages":{"type":"text"}}}]}]}',
        b"\xff\xfe\x00 binary",
    ],
)
async def test_malformed_or_wrong_shape_is_400(stack: Stack, body: bytes) -> None:
    with trio.fail_after(10):
        response = await stack.sender.post(body)
    assert response.status_code == 400


async def test_queue_full_is_503_and_the_retry_is_answered() -> None:
    gate = trio.Event()

    async def held(session: object, text: str) -> list[dict[str, object]]:
        await gate.wait()  # the agent holds every answer until the test lets go
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    async with open_stack(
        server={"queue_size": 1},
        lanes={"max_concurrent_turns": 1},
        agentforce_options={"responder": held},
    ) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "one")  # running
            await stack.agentforce.wait_received(1)
            await stack.send_text("15550000002", "two")  # queued (queue_size 1)
            refused = webhooks.text_message("15550000003", "three")
            assert (await stack.deliver(refused)).status_code == 503
            gate.set()
            await stack.graph.wait_sent(2)
            assert (await stack.deliver(refused)).status_code == 200  # Meta's retry
            sent = await stack.graph.wait_sent(3)
        assert {s.to for s in sent} == {"+" + ALICE, "+15550000002", "+15550000003"}
        assert stack.daemon.web.stats.webhooks["overloaded"] == 1


def _as_ours(body: object, n: int) -> object:
    """A fixture re-addressed to the simulated number, with unique message ids (the pywa
    fixtures reuse one wamid, and the daemon would rightly dedupe them)."""
    if isinstance(body, dict):
        out = {k: _as_ours(v, n) for k, v in body.items()}
        if "phone_number_id" in out:
            out["phone_number_id"] = PHONE_NUMBER_ID
        if isinstance(out.get("id"), str) and out["id"].startswith("wamid."):
            out["id"] = f"{out['id']}.{n}"
        return out
    if isinstance(body, list):
        return [_as_ours(v, n) for v in body]
    return body


async def test_every_fixture_is_accepted_and_answered_or_counted(stack: Stack) -> None:
    expected_answers = 0
    with trio.fail_after(20):
        for n, path in enumerate(sorted(FIXTURES.glob("*.json"))):
            for m, (name, body) in enumerate(json.loads(path.read_text()).items()):
                response = await stack.sender.post(_as_ours(body, n * 100 + m))  # type: ignore[arg-type]
                assert response.status_code == 200, (path.name, name, response.text)
        # every message the parser turned into a turn got exactly one answer
        accepted = stack.daemon.web.stats.messages.get("accepted", 0)
        expected_answers = accepted
        await stack.wait_reports(accepted)
    assert expected_answers > 10
    answered_turns = [r for r in stack.reports]
    assert all(r.outcome != "error" for r in answered_turns)
    assert len(stack.graph.sent) >= len(answered_turns)
    assert Kind.VOICE.value in {r.kind for r in answered_turns}
