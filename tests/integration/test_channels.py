"""The same behaviour on both WhatsApp providers: Meta's Cloud API and Twilio.

The turn, the lanes and the web layer never branch on the provider; these tests hold the
daemon to that from the outside, over real HTTP against both simulators.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import trio

from daemon.channels.twilio.settings import TwilioConfig
from daemon.config import ARABIC, ENGLISH
from daemon.sim import twilio as twilio_sim
from daemon.sim.audio import describe, listen
from daemon.sim.base import Faults
from daemon.sim.stack import SECRETS, Stack, open_stack

ALICE = "16505551234"
PROVIDERS = ["meta", "twilio"]


@pytest.fixture(params=PROVIDERS)
async def either(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    async with open_stack(provider=request.param) as stack:
        yield stack


async def test_text_turn(either: Stack) -> None:
    with trio.fail_after(10):
        _, response = await either.send_text(ALICE, "What are your opening hours?")
        assert response.status_code == 200
        [sent] = await either.wait_delivered(1, ALICE)
    assert sent.type == "text" and sent.text and "open" in sent.text
    assert "**" not in sent.text
    assert either.agentforce.received[0].text == "What are your opening hours?"
    if either.provider == "twilio":
        assert response.text.strip().endswith("<Response></Response>")  # empty TwiML


async def test_voice_turn_text_then_voice_note(either: Stack) -> None:
    with trio.fail_after(10):
        await either.send_voice(ALICE, "Do you ship to Canada?")
        text, voice = await either.wait_delivered(2, ALICE)
    assert [text.type, voice.type] == ["text", "audio"]
    assert voice.renders_as_voice_note and voice.audio is not None
    assert describe(voice.audio)["codec"] == "opus"
    assert listen(voice.audio)[0] == either.elevenlabs.tts_requests[0].text
    assert either.agentforce.received[0].text == "Do you ship to Canada?"


async def test_voice_note_media_comes_from_another_host_than_the_api(either: Stack) -> None:
    # The simulators serve media under "localhost", their API under 127.0.0.1 (as lookaside
    # is not graph.facebook.com, and Twilio's CDN is not api.twilio.com); the daemon allows
    # the API host by itself and the media host from [*] media_hosts. Twilio's credentials go
    # to the API hop only, never to the CDN it redirects to.
    with trio.fail_after(10):
        await either.send_voice(ALICE, "Do you ship to Canada?")
        await either.wait_delivered(2, ALICE)
    if either.provider == "twilio":
        hops = [(d.hop, d.status, d.authorized) for d in either.twilio.media_downloads]
        assert hops == [("api", 302, True), ("cdn", 200, False)]
    else:
        assert [(d.host, d.status) for d in either.graph.downloads] == [("localhost", 200)]


async def test_duplicate_delivery_is_answered_once(either: Stack) -> None:
    with trio.fail_after(10):
        if either.provider == "twilio":
            params = twilio_sim.webhook_params(from_wa_id=ALICE, body="hello")
            for _ in range(3):
                assert (await either.twilio_sender.post(params)).status_code == 200
        else:
            from daemon.sim import webhooks

            message = webhooks.text_message(ALICE, "hello")
            for _ in range(3):
                assert (await either.deliver(message)).status_code == 200
        await either.wait_reports(1)
    assert len(either.agentforce.received) == 1
    assert either.daemon.web.stats.messages["duplicate"] == 2


async def test_burst_is_answered_in_order(either: Stack) -> None:
    texts = [f"question number {n}" for n in range(4)]
    with trio.fail_after(10):
        for text in texts:
            await either.send_text(ALICE, text)
        sent = await either.wait_delivered(4, ALICE)
    assert [r.text for r in either.agentforce.received] == texts
    assert [s.text and s.text.split('"')[1] for s in sent] == texts


async def test_forged_signature_is_401(either: Stack) -> None:
    with trio.fail_after(10):
        if either.provider == "twilio":
            params = twilio_sim.webhook_params(from_wa_id=ALICE, body="hi")
            forged = await either.twilio_sender.post(params, signature="bm9wZQ==")
            missing = await either.twilio_sender.post(params, signature=None)
        else:
            from daemon.sim import webhooks

            body = webhooks.envelope(
                webhooks.text_message(ALICE, "hi"), phone_number_id="106540352242922"
            )
            forged = await either.sender.post(body, signature="sha256=" + "0" * 64)
            missing = await either.sender.post(body, signature=None)
    assert (forged.status_code, missing.status_code) == (401, 401)
    assert either.agentforce.received == []


async def test_arabic_voice_note_gets_arabic_texts_and_language_to_tts(either: Stack) -> None:
    with trio.fail_after(10):
        await either.send_voice(ALICE, "متى تفتحون؟", language="ar")
        await either.wait_delivered(2, ALICE)
        [tts] = either.elevenlabs.tts_requests
        assert tts.language_code == "ar"
        either.agentforce.faults.error_rate = 1.0  # the agent goes down
        await either.send_voice(ALICE, "هل أنتم هناك؟", language="ar")
        sent = await either.wait_delivered(3, ALICE)
    assert sent[2].text == ARABIC.agent_down


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_holding_message_only_for_a_slow_agent(provider: str) -> None:
    async with open_stack(
        provider=provider,
        ux={"holding_after": 0.2},
        agentforce_faults=Faults(latency=(0.4, 0.4)),  # token, session start, message
    ) as stack:
        with trio.fail_after(20):
            await stack.send_text(ALICE, "What are your opening hours?")
            holding, answer = await stack.wait_delivered(2, ALICE)
            assert holding.text == ENGLISH.holding and "open" in (answer.text or "")
            stack.agentforce.faults.latency = (0.0, 0.0)  # now the agent is quick
            await stack.send_text(ALICE, "And on Sundays?")
            await stack.wait_reports(2)
        assert [r.extras for r in stack.reports] == [["holding"], []]
        assert len(await stack.wait_delivered(3, ALICE)) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_transcript_echo(provider: str) -> None:
    async with open_stack(provider=provider, ux={"echo_transcript": True}) as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "Do you ship to Canada?")
            echo, text, voice = await stack.wait_delivered(3, ALICE)
    assert echo.text == "I understood: “Do you ship to Canada?”"
    assert (text.type, voice.type) == ("text", "audio")


# -- Meta specifics --------------------------------------------------------------------------


async def test_username_user_is_answered_by_bsuid() -> None:
    # §2.7: a user who hides their number behind a username arrives with wa_id and from ""
    # and only user_id / from_user_id. The answer goes to the BSUID in `recipient`, never
    # `to`; text and voice alike.
    from daemon.sim import webhooks

    bsuid = "US.13491208655302741918"
    async with open_stack(provider="meta") as stack:
        with trio.fail_after(10):
            message = webhooks.text_message("", "What are your opening hours?", user_id=bsuid)
            assert (message.contact["wa_id"], message.message["from"]) == ("", "")
            assert (await stack.deliver(message)).status_code == 200
            [answer] = await stack.graph.wait_sent(1, to=bsuid)
            await stack.send_voice("", "Do you ship to Canada?", user_id=bsuid)
            sent = await stack.graph.wait_sent(3, to=bsuid)
    assert answer.text and "open" in answer.text
    assert [m.type for m in sent] == ["text", "text", "audio"]
    for m in sent:
        assert m.addressed_by == "recipient"
        assert m.payload["recipient"] == bsuid and "to" not in m.payload
    assert sent[2].renders_as_voice_note
    assert [r.text for r in stack.agentforce.received] == [
        "What are your opening hours?",
        "Do you ship to Canada?",
    ]


async def test_one_bad_message_does_not_cost_the_others_their_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A batch with a good message, one without an id (unanswerable: skipped, counted, logged)
    # and one without a type (answered as unsupported). 200, so Meta does not redeliver the
    # batch for 7 days; both answerable messages get their answer.
    from daemon.sim import webhooks

    bob = "447700900123"
    good = webhooks.text_message(ALICE, "What are your opening hours?")
    no_id = webhooks.text_message("15550001111", "lost")
    del no_id.message["id"]
    no_type = webhooks.text_message(bob, "?")
    del no_type.message["type"]
    async with open_stack(provider="meta") as stack:
        with trio.fail_after(10):
            response = await stack.deliver(good, no_id, no_type)
            [answer] = await stack.wait_delivered(1, ALICE)
            [polite] = await stack.wait_delivered(1, bob)
            await stack.wait_reports(2)
        assert response.status_code == 200
        assert answer.text and "open" in answer.text
        assert polite.text == ENGLISH.unsupported
        assert stack.daemon.web.stats.messages["ignored_malformed"] == 1
        assert stack.daemon.web.stats.messages["accepted"] == 2
        assert [r.text for r in stack.agentforce.received] == ["What are your opening hours?"]
        assert len(stack.graph.sent) == 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("malformed item skipped: message without id" in w for w in warnings)
    assert any("without a type: answered as unsupported" in w for w in warnings)


# -- Twilio specifics ------------------------------------------------------------------------


async def test_twilio_media_url_serves_what_twilio_fetched_and_nothing_else() -> None:
    async with open_stack(provider="twilio") as stack:
        with trio.fail_after(10):
            await stack.send_voice(ALICE, "Do you ship to Canada?")
            await stack.wait_delivered(2, ALICE)
            [sent] = [m for m in stack.twilio.sent if m.media_urls]
            url = sent.media_urls[0]
            assert url.startswith(stack.daemon.url + "/media/")
            again = await stack.client.get(url)  # what Twilio fetched, still there for retries
            assert again.status_code == 200 and again.content == sent.media
            assert again.headers["content-type"].startswith("audio/ogg")
            unknown = await stack.client.get(stack.daemon.url + "/media/not-a-token")
            assert unknown.status_code == 404
            # (expiry is tested on the route with trio's MockClock: tests/unit/test_web.py)


async def test_twilio_signature_over_the_public_url_behind_a_proxy() -> None:
    # Behind a TLS proxy Twilio calls https://bot.example.com:8443/webhook?src=wa; the daemon
    # sees http://127.0.0.1:PORT/webhook?src=wa. It must check the signature over the URL
    # Twilio called, which is why [twilio] public_url exists.
    public = "https://bot.example.com:8443"
    async with open_stack(provider="twilio", twilio={"public_url": public}) as stack:
        params = twilio_sim.webhook_params(from_wa_id=ALICE, body="hello")
        through_proxy = twilio_sim.TwilioWebhookSender(
            stack.client,
            stack.daemon.webhook_url + "?src=wa",
            auth_token=SECRETS["TWILIO_AUTH_TOKEN"],
            signed_url=f"{public}/webhook?src=wa",
        )
        as_seen_locally = twilio_sim.TwilioWebhookSender(
            stack.client,
            stack.daemon.webhook_url + "?src=wa",
            auth_token=SECRETS["TWILIO_AUTH_TOKEN"],
        )
        with trio.fail_after(10):
            assert (await as_seen_locally.post(params)).status_code == 401
            assert (await through_proxy.post(params)).status_code == 200
            await stack.wait_reports(1)


@pytest.mark.parametrize("public", ["https://bot.example.com", None])
async def test_twilio_signature_over_a_percent_encoded_query(public: str | None) -> None:
    # Twilio signs the URL it called byte for byte, percent-encoding included; a framework
    # that decodes it (%2F -> /, %C3%A9 -> é) before checking would refuse every genuine
    # request to such a URL. With [twilio] public_url and with the URL as seen.
    query = "?k=a%2Fb&n=Jos%C3%A9"
    overrides = {"twilio": {"public_url": public}} if public else {}
    async with open_stack(provider="twilio", **overrides) as stack:
        origin = public or stack.settings.section(TwilioConfig).public_url
        params = twilio_sim.webhook_params(from_wa_id=ALICE, body="hello")

        def sender(signed_query: str) -> twilio_sim.TwilioWebhookSender:
            return twilio_sim.TwilioWebhookSender(
                stack.client,
                stack.daemon.webhook_url + query,
                auth_token=SECRETS["TWILIO_AUTH_TOKEN"],
                signed_url=f"{origin}/webhook{signed_query}",
            )

        with trio.fail_after(10):
            decoded = await sender("?k=a/b&n=José").post(params)
            genuine = await sender(query).post(params)
            await stack.wait_reports(1)
    assert (decoded.status_code, genuine.status_code) == (401, 200)


async def _post_with_host(stack: Stack, host: str, target: str, body: bytes, sig: str) -> bytes:
    """POST ``body`` at the socket level with a Host header of our choosing (httpx would
    refuse or rewrite it); return the daemon's status line."""
    address, port = stack.daemon.url.removeprefix("http://").split(":")
    request = (
        f"POST {target} HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {sig}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    reply = b""
    with trio.fail_after(10):
        conn = await trio.open_tcp_stream(address, int(port))
        async with conn:
            await conn.send_all(request)
            while b"\r\n" not in reply and (data := await conn.receive_some(4096)):
                reply += data
    return reply.split(b"\r\n", 1)[0]


async def test_twilio_signed_url_is_the_raw_target_whatever_the_host_says() -> None:
    # The Host header is the client's to write. The signed URL is [twilio] public_url plus
    # the raw path and query; a "/" or "?" in Host must not move what the signature covers.
    public = "https://bot.example.com"
    token = SECRETS["TWILIO_AUTH_TOKEN"]
    async with open_stack(provider="twilio", twilio={"public_url": public}) as stack:
        params = twilio_sim.webhook_params(from_wa_id=ALICE, body="hello")
        body = twilio_sim.encode_form(params)
        genuine = twilio_sim.sign(token, f"{public}/webhook?a=1", params)
        shifted = twilio_sim.sign(token, f"{public}/evil/webhook?a=1", params)
        bad_host = "bot.example.com/evil"
        assert await _post_with_host(stack, bad_host, "/webhook?a=1", body, shifted) == (
            b"HTTP/1.1 401 "
        )
        status = await _post_with_host(stack, bad_host, "/webhook?a=1", body, genuine)
        assert status == b"HTTP/1.1 200 "
        with trio.fail_after(10):
            await stack.wait_reports(1)
