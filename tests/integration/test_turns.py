"""End to end over loopback: signed webhooks in, what reached the simulated upstreams out.

Every turn behaviour runs on both WhatsApp providers (``either``); only Meta's batches of
several entries and statuses are Meta's alone.
"""

from __future__ import annotations

import trio

from daemon.config import TextsConfig
from daemon.sim import webhooks
from daemon.sim.audio import describe, listen
from daemon.sim.stack import PHONE_NUMBER_ID, Stack, open_stack

TEXTS = TextsConfig().for_language("en")
ALICE = "16505551234"
BOB = "447700900123"


async def test_text_turn(either: Stack) -> None:
    with trio.fail_after(10):
        message_id, response = await either.send_text(ALICE, "What are your opening hours?")
        assert response.status_code == 200
        [sent] = await either.wait_delivered(1)
        await either.wait_reports(1)
    assert sent.type == "text" and sent.to == ALICE
    assert sent.text and "**" not in sent.text  # markdown turned into WhatsApp formatting
    [received] = either.agentforce.received
    assert received.text == "What are your opening hours?"
    assert either.elevenlabs.tts_requests == []  # mirror: no voice answer to a text
    assert either.delivered() == [sent]
    if either.provider == "meta":  # Twilio has no read receipt to send
        [read] = either.graph.reads
        assert read.message_id == message_id and read.typing


async def test_voice_turn_text_first_then_a_real_voice_note(either: Stack) -> None:
    with trio.fail_after(10):
        _, response = await either.send_voice(ALICE, "Do you ship to Canada?")
        assert response.status_code == 200
        text, voice = await either.wait_delivered(2)
        [report] = await either.wait_reports(1)
    assert [text.type, voice.type] == ["text", "audio"]  # the text goes out first
    assert report.outcome == "answered" and report.voice == "sent"
    assert either.agentforce.received[0].text == "Do you ship to Canada?"  # transcribed
    assert voice.renders_as_voice_note
    assert voice.audio is not None
    assert describe(voice.audio) == {
        "format": "ogg",
        "codec": "opus",
        "channels": 1,
        "sample_rate": 48000,
    }
    spoken, _, _ = listen(voice.audio)
    # The voice note says what the daemon asked ElevenLabs to speak: the answer, no markdown.
    [tts] = either.elevenlabs.tts_requests
    assert spoken == tts.text
    assert text.text is not None and text.text.strip("*").split()[0] == spoken.split()[0]
    assert not {"*", "[", "]", "#", "•"} & set(spoken)
    assert tts.output_format == "opus_48000_32" and tts.model_id == "eleven_flash_v2_5"
    [stt] = either.elevenlabs.stt_requests
    assert stt.model_id == "scribe_v1" and stt.content_type.startswith("audio/ogg")
    assert either.delivered() == [text, voice]
    if either.provider == "meta":
        [upload] = either.graph.uploads
        assert upload.mime_type == "audio/ogg; codecs=opus"
        assert voice.audio == upload.data
    else:  # Twilio fetched the voice note from the daemon's public media URL
        [fetch] = either.twilio.media_fetches
        assert fetch.status == 200 and fetch.content_type.startswith("audio/ogg")


async def test_unsupported_message_gets_a_polite_reply(either: Stack) -> None:
    with trio.fail_after(10):
        _, response = await either.send_unsupported(ALICE)
        assert response.status_code == 200
        [sent] = await either.wait_delivered(1)
        [report] = await either.wait_reports(1)
    assert sent.text == TEXTS.unsupported
    assert report.outcome == "unsupported"
    assert either.agentforce.received == []
    assert either.delivered() == [sent]


async def test_batch_with_several_entries_and_messages_all_answered(stack: Stack) -> None:
    # Meta only: a Twilio webhook carries exactly one message.
    first = webhooks.envelope(
        webhooks.text_message(ALICE, "hello"),
        webhooks.text_message(BOB, "hi"),
        phone_number_id=PHONE_NUMBER_ID,
    )
    second = webhooks.envelope(
        webhooks.text_message("15550009999", "good morning"),
        webhooks.status("wamid.out1", "delivered", ALICE),
        phone_number_id=PHONE_NUMBER_ID,
    )
    with trio.fail_after(10):
        response = await stack.sender.post(webhooks.batch(first, second))
        assert response.status_code == 200
        await stack.graph.wait_sent(3)
        await stack.wait_reports(3)
    assert sorted(s.to for s in stack.graph.sent) == sorted(
        ["+" + ALICE, "+" + BOB, "+15550009999"]
    )
    assert stack.daemon.web.stats.statuses == {"delivered": 1}


async def test_duplicate_delivery_is_answered_once(either: Stack) -> None:
    _, body = either.text_body(ALICE, "hello")
    with trio.fail_after(10):
        for _ in range(3):  # redelivered, sometimes while the first is still in flight
            assert (await either.post_body(body)).status_code == 200
        await either.wait_delivered(1)
        await either.wait_reports(1)
        # A later redelivery, after the answer went out, is still a duplicate.
        assert (await either.post_body(body)).status_code == 200
    assert len(either.delivered()) == 1
    assert len(either.agentforce.received) == 1
    assert len(either.reports) == 1
    assert either.daemon.web.stats.messages["duplicate"] == 3


async def test_burst_from_one_user_is_answered_in_order(either: Stack) -> None:
    texts = [f"question number {n}" for n in range(5)]
    with trio.fail_after(10):
        for text in texts:
            await either.send_text(ALICE, text)
        sent = await either.wait_delivered(5)
        await either.wait_reports(5)
    assert [r.text for r in either.agentforce.received] == texts
    # one session, and the sequence ids of its messages increase
    assert len({r.session_id for r in either.agentforce.received}) == 1
    seqs = [r.sequence_id for r in either.agentforce.received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert all(s.to == ALICE for s in sent)
    # each answer quotes its question: answered in the order asked
    assert [s.text and s.text.split('"')[1] for s in sent] == texts
    assert len(either.delivered()) == 5


async def test_two_users_are_answered_in_parallel(provider: str) -> None:
    # The agent holds Alice's turn until Bob's has been answered: only parallel lanes pass.
    bob_answered = trio.Event()

    async def responder(session: object, text: str) -> list[dict[str, object]]:
        if text == "slow one":
            await bob_answered.wait()
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    async with open_stack(provider=provider, agentforce_options={"responder": responder}) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "slow one")
            await stack.agentforce.wait_received(1)  # Alice's turn is in the agent now
            await stack.send_text(BOB, "quick one")
            [first] = await stack.wait_delivered(1)
            assert first.to == BOB  # Bob was answered while Alice's turn waited
            bob_answered.set()
            sent = await stack.wait_delivered(2)
        assert [(s.to, s.text) for s in sent] == [
            (BOB, "answer to quick one"),
            (ALICE, "answer to slow one"),
        ]
        assert len({r.session_id for r in stack.agentforce.received}) == 2


async def test_expired_agent_session_is_replaced_and_the_message_resent(either: Stack) -> None:
    with trio.fail_after(10):
        await either.send_text(ALICE, "first")
        await either.wait_delivered(1)
        either.agentforce.expire_all_sessions()
        await either.send_text(ALICE, "second")
        sent = await either.wait_delivered(2)
        reports = await either.wait_reports(2)
    assert len(either.agentforce.started) == 2
    assert [r.text for r in either.agentforce.received] == ["first", "second"]
    assert "second" in (sent[1].text or "")
    assert [r.outcome for r in reports] == ["answered", "answered"]
    assert len(either.delivered()) == 2  # the resent message was answered once


async def test_expired_token_is_fetched_anew(either: Stack) -> None:
    with trio.fail_after(10):
        await either.send_text(ALICE, "first")
        await either.wait_delivered(1)
        either.agentforce.expire_tokens()
        await either.send_text(ALICE, "second")
        sent = await either.wait_delivered(2)
        reports = await either.wait_reports(2)
    assert either.agentforce.token_requests == 2
    assert "second" in (sent[1].text or "")
    assert [r.outcome for r in reports] == ["answered", "answered"]
    assert len(either.delivered()) == 2


async def test_the_agent_token_is_fetched_at_start_up_not_by_the_first_user(stack: Stack) -> None:
    with trio.fail_after(10):
        [request] = await stack.agentforce.wait_requests(1)  # before anyone wrote
        assert request.path.endswith("/services/oauth2/token") and request.status == 200
        await stack.send_text(ALICE, "hello")
        await stack.wait_reports(1)
    assert stack.agentforce.token_requests == 1  # the first turn used it


async def test_an_employee_agent_is_asked_without_bypassing_the_user() -> None:
    # [agentforce] bypass_user = false: the session starts as the token's user, which an
    # Agentforce Employee Agent requires (it refuses bypassUser true with 400).
    async with open_stack(
        agentforce_options={"employee_agent": True}, agentforce={"bypass_user": False}
    ) as stack:
        with trio.fail_after(10):
            await stack.send_text(ALICE, "What are your opening hours?")
            [sent] = await stack.wait_delivered(1, ALICE)
    assert sent.text and "open" in sent.text
    assert [s.body["bypassUser"] for s in stack.agentforce.started] == [False]
