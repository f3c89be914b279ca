"""End to end over loopback: signed webhooks in, what reached the simulated upstreams out."""

from __future__ import annotations

import trio

from daemon.config import TextsConfig
from daemon.sim import webhooks
from daemon.sim.audio import describe, listen
from daemon.sim.stack import PHONE_NUMBER_ID, Stack, open_stack

TEXTS = TextsConfig().for_language("en")
ALICE = "16505551234"
BOB = "447700900123"


async def test_text_turn(stack: Stack) -> None:
    with trio.fail_after(10):
        message_id, response = await stack.send_text(ALICE, "What are your opening hours?")
        assert response.status_code == 200
        [sent] = await stack.graph.wait_sent(1)
        reads = await stack.graph.wait_reads(1)
    assert sent.type == "text" and sent.to == "+" + ALICE
    assert sent.text and "**" not in sent.text  # markdown turned into WhatsApp formatting
    assert reads[0].message_id == message_id and reads[0].typing
    [received] = stack.agentforce.received
    assert received.text == "What are your opening hours?"
    assert stack.elevenlabs.tts_requests == []  # mirror: no voice answer to a text


async def test_voice_turn_text_first_then_a_real_voice_note(stack: Stack) -> None:
    with trio.fail_after(10):
        _, response = await stack.send_voice(ALICE, "Do you ship to Canada?")
        assert response.status_code == 200
        text, voice = await stack.graph.wait_sent(2)
    assert [text.type, voice.type] == ["text", "audio"]  # the text goes out first
    assert stack.agentforce.received[0].text == "Do you ship to Canada?"  # transcribed
    assert voice.voice and voice.renders_as_voice_note
    assert voice.audio is not None
    assert describe(voice.audio) == {
        "format": "ogg",
        "codec": "opus",
        "channels": 1,
        "sample_rate": 48000,
    }
    spoken, _, _ = listen(voice.audio)
    # The voice note says what the daemon asked ElevenLabs to speak: the answer, no markdown.
    [tts] = stack.elevenlabs.tts_requests
    assert spoken == tts.text
    assert text.text is not None and text.text.strip("*").split()[0] == spoken.split()[0]
    assert not {"*", "[", "]", "#", "•"} & set(spoken)
    assert tts.output_format == "opus_48000_32" and tts.model_id == "eleven_flash_v2_5"
    [stt] = stack.elevenlabs.stt_requests
    assert stt.model_id == "scribe_v1" and stt.content_type.startswith("audio/ogg")
    [upload] = stack.graph.uploads
    assert upload.mime_type == "audio/ogg; codecs=opus"


async def test_unsupported_message_gets_a_polite_reply(stack: Stack) -> None:
    media_id = stack.graph.add_user_media(b"\xff\xd8\xff jpeg", "image/jpeg")
    with trio.fail_after(10):
        response = await stack.deliver(webhooks.image_message(ALICE, media_id, sha256="eA=="))
        assert response.status_code == 200
        [sent] = await stack.graph.wait_sent(1)
    assert sent.text == TEXTS.unsupported
    assert stack.agentforce.received == []


async def test_batch_with_several_entries_and_messages_all_answered(stack: Stack) -> None:
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
        sent = await stack.graph.wait_sent(3)
    assert sorted(s.to for s in sent) == sorted(["+" + ALICE, "+" + BOB, "+15550009999"])
    assert stack.daemon.web.stats.statuses == {"delivered": 1}


async def test_duplicate_delivery_is_answered_once(stack: Stack) -> None:
    message = webhooks.text_message(ALICE, "hello")
    with trio.fail_after(10):
        for _ in range(3):  # Meta redelivers, sometimes while the first is still in flight
            assert (await stack.deliver(message)).status_code == 200
        await stack.graph.wait_sent(1)
        await stack.wait_reports(1)
        # A later redelivery, after the answer went out, is still a duplicate.
        assert (await stack.deliver(message)).status_code == 200
    assert len(stack.graph.sent) == 1
    assert len(stack.agentforce.received) == 1
    assert stack.daemon.web.stats.messages["duplicate"] == 3


async def test_burst_from_one_user_is_answered_in_order(stack: Stack) -> None:
    texts = [f"question number {n}" for n in range(5)]
    with trio.fail_after(10):
        for text in texts:
            await stack.send_text(ALICE, text)
        sent = await stack.graph.wait_sent(5)
    assert [r.text for r in stack.agentforce.received] == texts
    # one session, and the sequence ids of its messages increase
    assert len({r.session_id for r in stack.agentforce.received}) == 1
    seqs = [r.sequence_id for r in stack.agentforce.received]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert all(s.to == "+" + ALICE for s in sent)


async def test_two_users_are_answered_in_parallel() -> None:
    # The agent holds Alice's turn until Bob's has been answered: only parallel lanes pass.
    bob_answered = trio.Event()

    async def responder(session: object, text: str) -> list[dict[str, object]]:
        if text == "slow one":
            await bob_answered.wait()
        return [{"type": "Inform", "id": "x", "message": f"answer to {text}"}]

    async with open_stack(agentforce_options={"responder": responder}) as stack:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:

                async def alice() -> None:
                    await stack.send_text(ALICE, "slow one")

                nursery.start_soon(alice)
                await stack.send_text(BOB, "quick one")
                [first] = await stack.graph.wait_sent(1)
                assert first.to == "+" + BOB  # Bob was answered while Alice's turn waited
                bob_answered.set()
                sent = await stack.graph.wait_sent(2)
        assert [s.text for s in sent] == ["answer to quick one", "answer to slow one"]
        assert len({r.session_id for r in stack.agentforce.received}) == 2


async def test_expired_agent_session_is_replaced_and_the_message_resent(stack: Stack) -> None:
    with trio.fail_after(10):
        await stack.send_text(ALICE, "first")
        await stack.graph.wait_sent(1)
        stack.agentforce.expire_all_sessions()
        await stack.send_text(ALICE, "second")
        sent = await stack.graph.wait_sent(2)
    assert len(stack.agentforce.started) == 2
    assert [r.text for r in stack.agentforce.received] == ["first", "second"]
    assert "second" in (sent[1].text or "")


async def test_expired_token_is_fetched_anew(stack: Stack) -> None:
    with trio.fail_after(10):
        await stack.send_text(ALICE, "first")
        await stack.graph.wait_sent(1)
        stack.agentforce.expire_tokens()
        await stack.send_text(ALICE, "second")
        sent = await stack.graph.wait_sent(2)
    assert stack.agentforce.token_requests == 2
    assert "second" in (sent[1].text or "")
