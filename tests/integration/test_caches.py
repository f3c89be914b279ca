"""Caches end to end: answers in milliseconds without upstream calls, never another's answer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from daemon.config import TextsConfig
from daemon.sim import webhooks
from daemon.sim.agentforce import SimSession, escalate, failure, inform
from daemon.sim.audio import speak
from daemon.sim.stack import SECRETS, Stack, open_stack

HOURS = {"name": "opening hours", "pattern": "opening hours", "ttl": 86400}
FAQ = {"faq": [HOURS]}
QUESTION = "What are your opening hours?"


def users(n: int) -> list[str]:
    return [f"1555000{i:04d}" for i in range(n)]


async def metrics(stack: Stack) -> str:
    return (await stack.client.get(stack.daemon.admin_url + "/metrics")).text


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def lookups(text: str, result: str) -> float:
    return metric(text, "wa_agentd_cache_lookups_total", result=result)


async def test_second_identical_faq_makes_no_agent_tts_or_upload_call() -> None:
    async with open_stack(cache=FAQ) as stack:
        alice, bob = users(2)
        note = speak("What are your opening hours?")
        with trio.fail_after(10):
            # Alice asks by voice: the agent, STT, TTS and an upload are all needed.
            media = stack.graph.add_user_media(note, "audio/ogg; codecs=opus")
            sha = webhooks.media_sha256(note)
            await stack.deliver(webhooks.voice_message(alice, media, sha256=sha))
            first = await stack.wait_delivered(2, alice)
            # Bob forwards the same voice note (same sha256): everything comes from caches.
            media = stack.graph.add_user_media(note, "audio/ogg; codecs=opus")
            await stack.deliver(webhooks.voice_message(bob, media, sha256=sha))
            second = await stack.wait_delivered(2, bob)
            await stack.wait_reports(2)
            text = await metrics(stack)
    assert [m.text for m in second] == [m.text for m in first]
    assert len(stack.agentforce.received) == 1
    assert len(stack.elevenlabs.stt_requests) == 1
    assert len(stack.elevenlabs.tts_requests) == 1
    assert len(stack.graph.uploads) == 1  # Bob's voice note reused Alice's media id
    assert stack.reports[1].cached == ["transcript", "answer", "voice"]
    # Each cache says so in /metrics: Alice missed, Bob hit.
    for cache in ("transcript", "media_id", "audio", "response"):
        assert (lookups(text, f"{cache}_hit"), lookups(text, f"{cache}_miss")) == (1, 1), cache
    entries = {
        cache: metric(text, "wa_agentd_cache_entries", cache=cache)
        for cache in ("transcripts", "media_ids")
    }
    assert entries == {"transcripts": 1, "media_ids": 1}
    assert metric(text, "wa_agentd_cache_bytes", cache="transcripts") == len(QUESTION)


async def test_a_second_identical_text_question_makes_no_agentforce_call_at_all() -> None:
    async with open_stack(cache=FAQ) as stack:
        alice, bob = users(2)
        with trio.fail_after(10):
            await stack.send_text(alice, QUESTION)
            await stack.wait_reports(1)
            await stack.send_text(bob, QUESTION)
            await stack.wait_reports(2)
    assert stack.reports[1].cached == ["answer"]
    # Not even a session for Bob: the text path starts one only when it asks the agent.
    assert len(stack.agentforce.started) == 1
    assert len(stack.agentforce.received) == 1
    assert stack.elevenlabs.tts_requests == [] and stack.graph.uploads == []


async def test_an_opener_is_served_only_after_two_users_got_the_same_answer(
    stack: Stack,
) -> None:
    with trio.fail_after(10):
        for n, user in enumerate(users(3), start=1):
            await stack.send_text(user, "How do returns work?")
            await stack.wait_reports(n)
    assert len(stack.agentforce.received) == 2  # the third was answered from the cache
    assert len(stack.agentforce.started) == 2  # and had no agent session opened
    assert [r.cached for r in stack.reports] == [[], [], ["answer"]]


async def test_a_non_standalone_faq_rule_still_needs_two_users_before_serving() -> None:
    # standalone = false only sets an opener's TTL: the operator did not vouch that the
    # answer is the same for everybody, so one agent answer confirms nothing.
    shipping = {"name": "shipping", "pattern": "shipping", "ttl": 10800, "standalone": False}
    async with open_stack(cache={"faq": [shipping]}) as stack:
        with trio.fail_after(10):
            for n, user in enumerate(users(3), start=1):
                await stack.send_text(user, "How much is shipping?")
                await stack.wait_reports(n)
    assert len(stack.agentforce.received) == 2  # the second user still asked the agent
    assert [r.cached for r in stack.reports] == [[], [], ["answer"]]


async def test_a_personal_question_is_never_cached(stack: Stack) -> None:
    with trio.fail_after(10):
        for n, user in enumerate(users(4), start=1):
            await stack.send_text(user, "Where is my order 12345?")
            await stack.wait_reports(n)
    assert len(stack.agentforce.received) == 4
    assert all(r.cached == [] for r in stack.reports)


async def test_an_answer_that_differs_between_users_is_never_served_across_users() -> None:
    def personal_agent(session: object, text: str) -> list[dict[str, object]]:
        # The same words, a different answer per session: e.g. the agent knows who asks.
        who = getattr(session, "session_id", "?")
        return [{"type": "Inform", "id": "x", "message": f"Your plan ({who}) renews monthly."}]

    async with open_stack(agentforce_options={"responder": personal_agent}) as stack:
        with trio.fail_after(10):
            for n, user in enumerate(users(4), start=1):
                await stack.send_text(user, "When does the plan renew?")
                await stack.wait_reports(n)
            sent = await stack.wait_delivered(4)
    assert len(stack.agentforce.received) == 4  # every user asked the agent
    assert len({m.text for m in sent}) == 4  # and got their own answer


async def test_a_follow_up_after_a_cached_answer_reaches_the_agent_with_its_context() -> None:
    async with open_stack(cache=FAQ) as stack:
        alice, bob = users(2)
        with trio.fail_after(10):
            await stack.send_text(alice, "What are your opening hours?")
            await stack.wait_reports(1)
            await stack.send_text(bob, "What are your opening hours?")  # from the cache
            await stack.wait_reports(2)
            await stack.send_text(bob, "And on public holidays?")
            await stack.wait_reports(3)
    assert stack.reports[1].cached == ["answer"]
    follow_up = stack.agentforce.received[-1].text
    assert follow_up.startswith('Earlier I asked: "What are your opening hours?"')
    assert "And on public holidays?" in follow_up
    assert "Monday to Friday" in follow_up  # what Bob was told from the cache


async def test_fifty_concurrent_identical_questions_make_one_agent_call() -> None:
    arrived = trio.Event()

    async def slow(session: object, text: str) -> list[dict[str, object]]:
        await arrived.wait()  # hold the answer until every user has asked
        return [{"type": "Inform", "id": "x", "message": "We open at 9."}]

    async with open_stack(cache=FAQ, agentforce_options={"responder": slow}) as stack:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for user in users(50):
                    nursery.start_soon(stack.send_text, user, "What are your opening hours?")
            await stack.agentforce.wait_received(1)
            arrived.set()
            sent = await stack.wait_delivered(50)
            await stack.wait_reports(50)
    assert len(stack.agentforce.received) == 1
    assert {m.text for m in sent} == {"We open at 9."}
    assert sorted(r.cached for r in stack.reports).count(["answer"]) == 49


async def test_concurrent_askers_of_an_faq_the_agent_escalates_each_ask_the_agent() -> None:
    # Single flight shares only an answer the cache accepted. An escalation is the leader's
    # own: shared, nine users would be told a colleague will call and nobody would.
    arrived = trio.Event()

    async def escalating(session: SimSession, text: str) -> list[dict[str, object]]:
        await arrived.wait()  # hold the leader's answer until the others wait for it
        return [inform("Let me connect you with a member of our team."), escalate()]

    options = {"responder": escalating}
    async with open_stack(cache=FAQ, ux={"holding_after": 0}, agentforce_options=options) as stack:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for user in users(10):
                    nursery.start_soon(stack.send_text, user, QUESTION)
            await stack.agentforce.wait_received(1)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            arrived.set()
            sent = await stack.wait_delivered(10)
            await stack.wait_reports(10)
            text = await metrics(stack)
    received = stack.agentforce.received
    assert len(received) == 10  # the leader's call and each follower's own
    assert len({m.session_id for m in received}) == 10  # each in its own session
    assert all(r.outcome == "escalated" and r.cached == [] for r in stack.reports)
    assert sorted(m.to for m in sent) == sorted(users(10))  # one message each
    assert lookups(text, "response_shared") == 0
    assert lookups(text, "response_unshared") >= 1  # followers did wait for the leader


async def test_flush_empties_everything_and_needs_the_admin_token() -> None:
    async with open_stack(cache=FAQ) as stack:
        alice, bob = users(2)
        url = stack.daemon.admin_url + "/admin/cache/flush"
        with trio.fail_after(10):
            await stack.send_voice(alice, "What are your opening hours?")
            await stack.wait_reports(1)
            assert (await stack.client.post(url)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await stack.client.post(url, headers=wrong)).status_code == 401
            token = {"Authorization": f"Bearer {SECRETS['WA_AGENTD_ADMIN_TOKEN']}"}
            flushed = await stack.client.post(url, headers=token)
            assert flushed.status_code == 200
            counts = flushed.json()["flushed"]
            assert counts == {"responses": 1, "audio": 1, "media_ids": 1, "transcripts": 1}
            # The same voice note again (same sha256): every cache would have answered it.
            await stack.send_voice(bob, "What are your opening hours?")
            await stack.wait_reports(2)
    assert len(stack.agentforce.received) == 2  # asked again after the flush
    assert len(stack.elevenlabs.stt_requests) == 2  # transcripts flushed
    assert len(stack.elevenlabs.tts_requests) == 2  # audio flushed
    assert len(stack.graph.uploads) == 2  # media ids flushed: uploaded again
    assert stack.reports[1].cached == []


async def test_a_cached_media_id_graph_no_longer_knows_is_uploaded_again_once() -> None:
    async with open_stack(cache=FAQ) as stack:
        alice, bob, carol = users(3)
        with trio.fail_after(10):
            await stack.send_voice(alice, QUESTION)
            await stack.wait_reports(1)
            [first] = stack.graph.uploads
            del stack.graph.media[first.media_id]  # deleted (or expired) at WhatsApp
            await stack.send_voice(bob, QUESTION)
            await stack.wait_reports(2)
            await stack.send_voice(carol, QUESTION)  # the new id is remembered
            await stack.wait_reports(3)
            text = await metrics(stack)
    bobs = [m for m in stack.graph.sent if m.to.lstrip("+") == bob and m.type == "audio"]
    assert len(bobs) == 1 and bobs[0].renders_as_voice_note  # exactly one voice note
    assert [r.code for r in stack.graph.rejected] == [100]  # the send by the old id
    assert len(stack.graph.uploads) == 2
    assert bobs[0].media_id == stack.graph.uploads[1].media_id
    assert [r.voice for r in stack.reports] == ["sent", "sent", "sent"]
    assert len(stack.elevenlabs.tts_requests) == 1  # the audio itself came from the cache
    assert (lookups(text, "media_id_hit"), lookups(text, "media_id_gone")) == (2, 1)


class _Logged(logging.Handler):
    """Sets ``seen`` when a record containing ``needle`` is logged."""

    def __init__(self, needle: str) -> None:
        super().__init__(logging.INFO)
        self.needle = needle
        self.seen = trio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.seen.set()


async def test_configured_phrases_are_pre_rendered_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    phrases = ["We open at 9.", "Sorry, something went wrong."]

    def agent(session: SimSession, text: str) -> list[dict[str, object]]:
        return [inform("We open at 9.")]

    caplog.set_level(logging.INFO, logger="wa_agentd")
    cache = {"prerender": phrases, "prerender_language": "en", "dir": str(tmp_path)}
    for start in (1, 2):  # the second start finds them in the disk tier
        warmed = _Logged("pre-rendered")
        logging.getLogger("wa_agentd").addHandler(warmed)
        try:
            async with open_stack(cache=cache, agentforce_options={"responder": agent}) as stack:
                with trio.fail_after(10):
                    await warmed.seen.wait()  # _warm_caches is done
                    text = await metrics(stack)
                    rendered = len(stack.elevenlabs.tts_requests)
                    await stack.send_voice(users(1)[0], QUESTION)
                    await stack.wait_reports(1)
        finally:
            logging.getLogger("wa_agentd").removeHandler(warmed)
        assert metric(text, "wa_agentd_cache_entries", cache="audio_disk") == 2
        assert rendered == (2 if start == 1 else 0)
        assert {r.text for r in stack.elevenlabs.tts_requests} <= set(phrases)
        # The answer is a pre-rendered phrase: spoken without another TTS call.
        assert stack.reports[0].voice == "sent"
        assert len(stack.elevenlabs.tts_requests) == rendered


async def test_a_voice_note_hears_a_pre_rendered_apology_without_a_tts_call(
    tmp_path: Path,
) -> None:
    def agent(session: SimSession, text: str) -> list[dict[str, object]]:
        return [failure("Flow failed", ["boom"])]

    cache = {"prerender_canned": True, "dir": str(tmp_path)}
    # English and Arabic ship; each table's replies are rendered once at start-up.
    canned = sum(len(table.spoken()) for table in TextsConfig().tables.values())
    with trio.fail_after(15):
        async with open_stack(cache=cache, agentforce_options={"responder": agent}) as stack:
            await stack.elevenlabs.wait_tts(canned)
            await stack.send_voice(users(1)[0], QUESTION)
            (report,) = await stack.wait_reports(1)
            delivered = await stack.graph.wait_sent(2, to=users(1)[0])
    assert report.outcome == "agent_failure" and report.voice == "sent"
    assert [m.type for m in delivered] == ["text", "audio"]
    assert len(stack.elevenlabs.tts_requests) == canned  # the apology came from the cache
    assert {r.language_code for r in stack.elevenlabs.tts_requests} == {"en", "ar"}


async def test_cache_metrics_move(stack: Stack) -> None:
    with trio.fail_after(10):
        for n, user in enumerate(users(3), start=1):
            await stack.send_text(user, "How do returns work?")
            await stack.wait_reports(n)
        text = (await stack.client.get(stack.daemon.admin_url + "/metrics")).text
    assert 'wa_agentd_cache_lookups_total{result="response_hit"} 1.0' in text
    assert 'wa_agentd_cache_entries{cache="responses"} 1.0' in text


async def test_a_voice_note_that_opens_a_conversation_is_an_opener(stack: Stack) -> None:
    # The pre-warm opens the agent session while the voice note is transcribed; that must
    # not make the first question look like a follow-up (bench/faq.py found this).
    with trio.fail_after(10):
        for n, user in enumerate(users(3), start=1):
            await stack.send_voice(user, "How do returns work?")
            await stack.wait_reports(n)
    assert len(stack.agentforce.received) == 2
    assert "answer" in stack.reports[2].cached
