"""Webhook bodies before the signature is checked: what an unsigned client can make the
daemon buffer (issue 10).

A signature covers the whole body, so it can only be checked once the body is in. Before:
40 unsigned, stalled 3 MiB chunked bodies added ~140-190 MiB RSS, each held until the 15 s
body timeout (bench/attack.py, "bodies"). Now (daemon/web_body.py): no well-formed signature
header is 401 before the body is read; the rest reserve their size in a bounded budget, and
beyond it get 503 at once; Twilio's form posts have a small limit of their own.

The clients here send a request head and at most a few KiB of body, then wait for the answer
without sending more: an answer that comes is an answer given without the body.
"""

from __future__ import annotations

import urllib.parse
from functools import partial

import pytest
import trio

from daemon.channels.twilio.settings import TwilioConfig
from daemon.sim import twilio as twilio_sim
from daemon.sim.base import Changes
from daemon.sim.stack import Stack, open_stack
from tests.edge.test_abuse import (
    MARGIN,
    SERVE_TIMEOUT,
    Conn,
    _abuse,
    _address,
    _assert_serving,
    _wait_answered,
    _wait_closed,
)
from tests.edge.test_abuse import short_body_timeout as short_body_timeout  # a fixture

ATTACKERS = 40
# Answered without the body: well within the body timeout (15 s) that bounds the old way.
PROMPT = 3.0


def _head(stack: Stack, signature: str | None, framing: str) -> bytes:
    lines = [
        "POST /webhook HTTP/1.1",
        "Host: daemon",
        f"Content-Type: {stack.content_type}",
        framing,
    ]
    if signature is not None:
        lines.append(f"{stack.signature_header}: {signature}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


CHUNKED = "Transfer-Encoding: chunked"
FIRST_CHUNK = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"  # 4 KiB, then nothing more


@pytest.mark.parametrize(
    "signature", [None, "", "sha1=abc", "garbage"], ids=["none", "empty", "sha1", "garbage"]
)
async def test_unsigned_bodies_are_refused_before_they_are_read(
    provider: str, signature: str | None
) -> None:
    """40 POSTs with a 3 MiB chunked body announced, 4 KiB sent, and no (or a malformed)
    signature header: each gets 401 at once and its connection is closed; the daemon held
    none of them and still serves a signed webhook."""
    async with open_stack(provider=provider) as stack:
        address, board = _address(stack), Changes()
        conns = [Conn(board) for _ in range(ATTACKERS)]
        head = _head(stack, signature, CHUNKED)
        with trio.fail_after(PROMPT + SERVE_TIMEOUT + MARGIN):
            async with trio.open_nursery() as clients:
                for conn in conns:
                    clients.start_soon(partial(_abuse, address, conn, head + FIRST_CHUNK))
                await _wait_answered(conns, PROMPT)
                held = stack.daemon.web.bodies.held_reads
                await _wait_closed(conns, trio.current_time() + MARGIN)
                clients.cancel_scope.cancel()
            await _assert_serving(stack, "15550000101")
    assert [c.status for c in conns] == [401] * ATTACKERS
    assert all(c.closed for c in conns)
    assert held == 0
    assert stack.daemon.web.stats.webhooks["unsigned"] == ATTACKERS


BUDGET_BODIES = 4
MAX_BODY = 256 * 1024


async def test_forged_bodies_beyond_the_budget_get_503_at_once(short_body_timeout: float) -> None:
    """40 stalled chunked bodies with a well-formed, wrong signature: the signature can only
    be checked once the body is in, so some are read. As many as fit the budget (each
    chunked body reserves the whole limit) are held until the body timeout; every other one
    gets 503 at once and is closed. Once the held ones time out (408), the budget is free
    and a signed webhook is accepted."""
    async with open_stack(
        server={"max_body_bytes": MAX_BODY, "body_memory_bytes": BUDGET_BODIES * MAX_BODY}
    ) as stack:
        address, board = _address(stack), Changes()
        conns = [Conn(board) for _ in range(ATTACKERS)]
        head = _head(stack, stack.forged_signature, CHUNKED)
        with trio.fail_after(PROMPT + short_body_timeout + SERVE_TIMEOUT + 2 * MARGIN):
            async with trio.open_nursery() as clients:
                for conn in conns:
                    clients.start_soon(partial(_abuse, address, conn, head + FIRST_CHUNK))
                with trio.move_on_after(PROMPT):
                    await board.until(
                        lambda: (
                            sum(c.answered_at is not None for c in conns)
                            >= ATTACKERS - BUDGET_BODIES
                        )
                    )
                refused_at_once = [c.status for c in conns if c.answered_at is not None]
                held = stack.daemon.web.bodies.held_reads, stack.daemon.web.bodies.held_bytes
                await _wait_answered(conns, short_body_timeout + MARGIN)  # the held: 408
                clients.cancel_scope.cancel()
            await _assert_serving(stack, "15550000102")
    assert refused_at_once == [503] * (ATTACKERS - BUDGET_BODIES)
    assert held == (BUDGET_BODIES, BUDGET_BODIES * MAX_BODY)
    assert sorted(c.status or 0 for c in conns) == [408] * BUDGET_BODIES + [503] * (
        ATTACKERS - BUDGET_BODIES
    )
    assert stack.daemon.web.stats.webhooks["bodies_full"] == ATTACKERS - BUDGET_BODIES
    assert stack.daemon.web.bodies.held_bytes == 0


async def test_bodies_reserve_their_declared_length_and_the_count_is_capped() -> None:
    """Small declared bodies fit the byte budget many times over; the count cap
    ([server] max_body_reads) bounds them all the same."""
    reads = 8
    async with open_stack(server={"max_body_reads": reads}) as stack:
        address, board = _address(stack), Changes()
        conns = [Conn(board) for _ in range(reads + 5)]
        head = _head(stack, stack.forged_signature, "Content-Length: 100000")
        with trio.fail_after(PROMPT + SERVE_TIMEOUT + MARGIN):
            async with trio.open_nursery() as clients:
                for conn in conns:
                    clients.start_soon(partial(_abuse, address, conn, head + b"{"))
                with trio.move_on_after(PROMPT):
                    await board.until(lambda: sum(c.answered_at is not None for c in conns) >= 5)
                held = stack.daemon.web.bodies.held_reads, stack.daemon.web.bodies.held_bytes
                clients.cancel_scope.cancel()
    assert sorted(c.status or 0 for c in conns) == [0] * reads + [503] * 5
    assert held == (reads, reads * 100000)


async def test_twilio_posts_have_a_small_body_limit() -> None:
    """Twilio's webhooks are small form posts ([twilio] max_body_bytes, 64 KiB): a larger
    one is 413 before it is read, while the longest real message (4096 emoji, ~48 KiB
    percent-encoded) is accepted and answered."""
    async with open_stack(provider="twilio") as stack:
        address, board = _address(stack), Changes()
        big = Conn(board)
        head = _head(stack, stack.forged_signature, "Content-Length: 1048576")
        with trio.fail_after(PROMPT + 2 * SERVE_TIMEOUT):
            async with trio.open_nursery() as clients:
                clients.start_soon(partial(_abuse, address, big, head + b"Body="))
                await _wait_answered([big], PROMPT)
                await _wait_closed([big], trio.current_time() + MARGIN)
                clients.cancel_scope.cancel()
            longest = "😀" * 4096
            params = twilio_sim.webhook_params(from_wa_id="15550000103", body=longest)
            size = len(twilio_sim.encode_form(params))
            response = await stack.twilio_sender.post(params)
            delivered = await stack.wait_delivered(1, "15550000103")
    assert big.status == 413 and big.closed
    assert stack.settings.section(TwilioConfig).max_body_bytes == 64 * 1024
    assert 48 * 1024 < size < stack.settings.section(TwilioConfig).max_body_bytes
    assert response.status_code == 200 and delivered[0].text
    assert urllib.parse.unquote(twilio_sim.encode_form(params).decode()).count("😀") == 4096
