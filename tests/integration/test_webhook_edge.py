"""The webhook edge: handshake, and every bad input gets its clear status, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from daemon.model import Kind
from daemon.sim import webhooks
from daemon.sim.audio import speak
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


async def test_missing_or_forged_signature_is_401(either: Stack) -> None:
    _, body = either.text_body(ALICE, "hi")
    forgeries: list[str | None] = [
        None,  # no signature header at all
        either.forged_signature,  # well-formed, wrong
        "garbage",
        "sha1=abc",
        either.sign(body, secret="not-the-secret"),  # signed, with another key
    ]
    with trio.fail_after(10):
        for signature in forgeries:
            response = await either.post_body(body, signature=signature)
            assert response.status_code == 401, signature
    assert either.agentforce.received == [] and either.delivered() == []
    assert either.daemon.web.stats.webhooks == {"bad_signature": len(forgeries)}


async def test_signature_over_other_bytes_is_401(either: Stack) -> None:
    _, body = either.text_body(ALICE, "hi")
    signature = either.sign(body)
    tampered = body.replace(b"hi", b"ho")
    assert tampered != body
    with trio.fail_after(10):
        response = await either.post_body(tampered, signature=signature)
    assert response.status_code == 401
    assert either.agentforce.received == []


async def _raw_post(stack: Stack, head: str, chunks: list[bytes]) -> bytes:
    """POST at the socket level and return the status line the daemon answered.

    The daemon may answer 413 and close before the body is all sent: that is the point, so
    a broken pipe while sending is expected. (httpx as a client warns about the unsent rest
    of its body, which is why these two tests talk to the socket directly.)
    """
    host, port = stack.daemon.url.removeprefix("http://").split(":")
    request = (
        f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Type: {stack.content_type}\r\n"
        f"{stack.signature_header}: {stack.forged_signature}\r\n{head}\r\n"
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


async def test_oversize_body_is_413(either: Stack) -> None:
    size = 4 << 20  # over the 3 MiB limit
    status = await _raw_post(either, f"Content-Length: {size}\r\n", [b"x" * 65536] * 64)
    assert status.startswith(b"HTTP/1.1 413")


async def test_oversize_chunked_body_is_413(either: Stack) -> None:
    # No Content-Length: the limit must hold while the body streams in.
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    # No terminating chunk: the answer must come while the body is still streaming, so the
    # daemon never holds more than the limit, whatever the client sends.
    status = await _raw_post(either, "Transfer-Encoding: chunked\r\n", [chunk] * 64)
    assert status.startswith(b"HTTP/1.1 413")


# Correctly signed, and still not a webhook the daemon can take: 400, never a 500.
MALFORMED = {
    "meta": [
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
    "twilio": [
        b"a=b",  # neither a message nor a status callback
        b"Body=hi&WaId=16505551234",  # no MessageSid, no From
        b"MessageSid=SM1&From=whatsapp%3A%2B16505551234&NumMedia=lots",
        b"MessageStatus=delivered&To=whatsapp%3A%2B16505551234",  # a status without its sid
        b"MessageSid=SM1&From=whatsapp%3A&Body=hi",  # From without a number
    ],
}
# Twilio signs the form's fields: a body that is no form (JSON, binary) carries no fields to
# check a signature over, so it is refused as unsigned.
NOT_A_FORM = [b"{not json", b'{"object":"whatsapp_business_account"}', b"\xff\xfe\x00 binary"]


async def test_malformed_or_wrong_shape_is_400(either: Stack) -> None:
    with trio.fail_after(10):
        for body in MALFORMED[either.provider]:
            response = await either.post_body(body)
            assert response.status_code == 400, body
        if either.provider == "twilio":
            for body in NOT_A_FORM:
                response = await either.post_body(body, signature=either.forged_signature)
                assert response.status_code == 401, body
    assert either.agentforce.received == [] and either.delivered() == []
    assert either.daemon.web.stats.webhooks["bad_request"] == len(MALFORMED[either.provider])


async def test_queue_full_is_503_and_the_retry_is_answered(provider: str) -> None:
    gate = trio.Event()

    async def held(session: object, text: str) -> list[dict[str, object]]:
        await gate.wait()  # the agent holds every answer until the test lets go
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    async with open_stack(
        provider=provider,
        server={"queue_size": 1},
        lanes={"max_concurrent_turns": 1},
        agentforce_options={"responder": held},
    ) as stack:
        _, refused = stack.text_body("15550000003", "three")
        with trio.fail_after(10):
            await stack.send_text(ALICE, "one")  # running
            await stack.agentforce.wait_received(1)
            await stack.send_text("15550000002", "two")  # queued (queue_size 1)
            assert (await stack.post_body(refused)).status_code == 503
            gate.set()
            await stack.wait_delivered(2)
            assert (await stack.post_body(refused)).status_code == 200  # the retry
            sent = await stack.wait_delivered(3)
            await stack.wait_reports(3)
        assert sorted(s.to for s in sent) == sorted([ALICE, "15550000002", "15550000003"])
        assert len(stack.delivered()) == 3  # each answered once, the refused one too
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


# What each fixture must come to (Meta only: the fixtures are Cloud API webhooks). A turn's
# outcome for the messages that owe an answer; for the rest what the web layer counts
# instead: "ignored_<reason>" (reactions, edits, deletions, system messages) or
# "status_<state>". A fixture added to the directory fails the test until it is listed here.
FIXTURE_OUTCOMES: dict[tuple[str, str], str] = {
    ("callback_button", "button"): "answered",
    ("callback_button", "quick_reply"): "answered",
    ("callback_button", "quick_reply_without_context"): "answered",
    ("callback_selection", "callback"): "answered",
    ("callback_selection", "description"): "answered",
    ("deleted_message", "revoke"): "ignored_revoke",
    ("edited_message", "image"): "ignored_edit",
    ("message", "text"): "answered",
    ("message", "image"): "unsupported",
    ("message", "media_with_url"): "unsupported",
    ("message", "video"): "unsupported",
    ("message", "document"): "unsupported",
    ("message", "audio"): "answered",  # an audio file is listened to like a voice note
    ("message", "voice"): "answered",
    ("message", "static_sticker"): "unsupported",
    ("message", "animated_sticker"): "unsupported",
    ("message", "reaction"): "ignored_reaction",
    ("message", "unreaction_empty"): "ignored_reaction",
    ("message", "unreaction_no_emoji"): "ignored_reaction",
    ("message", "current_location"): "unsupported",
    ("message", "chosen_location"): "unsupported",
    ("message", "contacts"): "unsupported",
    ("message", "order"): "unsupported",
    ("message", "unsupported"): "unsupported",
    ("message", "unsupported_with_type"): "unsupported",
    ("message", "reply"): "answered",
    ("message", "forwarded"): "answered",
    ("message", "forwarded_many_times"): "answered",
    ("message", "interactive_message_with_err"): "unsupported",
    ("message", "referral"): "answered",
    ("message_status", "sent"): "status_sent",
    ("message_status", "delivered"): "status_delivered",
    ("message_status", "read"): "status_read",
    ("message_status", "played"): "status_played",
    ("message_status", "failed"): "status_failed",
    ("message_status", "with_tracker"): "status_sent",
    ("message_status", "group"): "status_read",
    ("system", "phone_number_change"): "ignored_system",
    ("system", "identity_change"): "ignored_system",
}
SPOKEN = ["Do you ship to Canada?", "What are your opening hours?"]


def _messages(body: object) -> list[dict[str, object]]:
    """Every ``messages[]`` item of a webhook body."""
    return [
        m
        for entry in body["entry"]  # type: ignore[index]
        for change in entry["changes"]
        for m in change["value"].get("messages", [])
    ]


def _counts(stack: Stack) -> dict[str, int]:
    """The web layer's message counters ("accepted", "ignored_edit" ...) and its status
    counters as "status_<state>"."""
    stats = stack.daemon.web.stats
    return dict(stats.messages) | {f"status_{k}": v for k, v in stats.statuses.items()}


def _with_our_audio(stack: Stack, body: object, spoken: str) -> object:
    """The fixture's audio re-pointed at a voice note stored in the simulated Graph: its
    media ids are pywa's and exist nowhere, so the voice turn is heard end to end."""
    if isinstance(body, dict):
        out = {k: _with_our_audio(stack, v, spoken) for k, v in body.items()}
        audio = out.get("audio")
        if out.get("type") == "audio" and isinstance(audio, dict) and "id" in audio:
            data = speak(spoken)
            audio["id"] = stack.graph.add_user_media(data, "audio/ogg; codecs=opus")
            audio["sha256"] = webhooks.media_sha256(data)
            audio.pop("url", None)  # the sim's media URL comes from GET /{media-id}
        return out
    if isinstance(body, list):
        return [_with_our_audio(stack, v, spoken) for v in body]
    return body


async def test_every_fixture_gets_exactly_its_answer_or_is_counted() -> None:
    # One user sends every fixture in a row, far over [limits] burst: the limits are off here
    # (tests/edge/test_cost.py tests them).
    async with open_stack(limits={"burst": 0, "per_minute": 0}) as stack:
        stats = stack.daemon.web.stats
        seen: set[tuple[str, str]] = set()
        turns = 0
        voices = 0
        with trio.fail_after(30):
            for n, path in enumerate(sorted(FIXTURES.glob("*.json"))):
                for m, (name, raw) in enumerate(json.loads(path.read_text()).items()):
                    key = (path.stem, name)
                    expected = FIXTURE_OUTCOMES[key]
                    seen.add(key)
                    body = _as_ours(raw, n * 100 + m)
                    if expected == "answered" and _messages(body)[0]["type"] == "audio":
                        body = _with_our_audio(stack, body, SPOKEN[voices])
                        voices += 1
                    accepted = stats.messages.get("accepted", 0)
                    counted = _counts(stack)
                    sent = len(stack.graph.sent)

                    response = await stack.sender.post(body)  # type: ignore[arg-type]
                    assert response.status_code == 200, (key, response.text)

                    if expected.startswith(("ignored_", "status_")):
                        # no turn at all, so no answer can come later: counted, and that is all
                        assert stats.messages.get("accepted", 0) == accepted, key
                        assert _counts(stack).get(expected, 0) == counted.get(expected, 0) + 1, key
                        assert len(stack.graph.sent) == sent, key
                        continue
                    assert stats.messages["accepted"] == accepted + 1, key
                    turns += 1
                    report = (await stack.wait_reports(turns))[-1]
                    assert report.outcome == expected, (key, report.summary())
                    # One answer, to the sender; a voice note gets its text and its voice note.
                    [message] = _messages(body)
                    answer = stack.graph.sent[sent:]
                    voice = report.kind == Kind.VOICE.value and expected == "answered"
                    kinds = ["text", "audio"] if voice else ["text"]
                    assert [a.type for a in answer] == kinds, key
                    assert {a.to for a in answer} == {f"+{message['from']}"}, key
        assert seen == set(FIXTURE_OUTCOMES)  # every fixture listed was found and posted
        assert voices == 2
        assert stats.messages.get("duplicate", 0) == 0
        assert len(stack.graph.sent) == turns + voices  # nothing more came after the checks
