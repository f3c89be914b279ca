"""Hostile users against the running daemon: nobody runs up the bill, starves others, poisons a
batch, or reads what isn't theirs (issue 10, part B).

Each test is the attack, then what the daemon did, counted where it happened: the requests
that reached the simulated upstreams, what each user received, how the webhooks were
answered, what /metrics says. On both WhatsApp providers where the attack applies.
bench/abuse.py runs the same attacks and reports the numbers for the closing note.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import trio

from daemon.config import LimitsConfig, TextsConfig
from daemon.sim import twilio as twilio_sim
from daemon.sim import webhooks
from daemon.sim.agentforce import remembering_brain
from daemon.sim.audio import speak
from daemon.sim.base import Faults
from daemon.sim.hostile import one_byte_opus
from daemon.sim.stack import PHONE_NUMBER_ID, Stack, open_stack

TIMEOUT = 20.0
TEXTS = TextsConfig().for_language("en")


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a /metrics scrape (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    series = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == series:
            return float(value)
    return 0.0


async def _scrape(stack: Stack) -> str:
    response = await stack.client.get(stack.daemon.admin_url + "/metrics")
    assert response.status_code == 200
    return response.text


# -- poison: one bad message never takes its batch down ----------------------------------------


def _meta_batch(*items: webhooks.UserMessage) -> dict[str, Any]:
    return webhooks.envelope(*items, phone_number_id=PHONE_NUMBER_ID)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = body["entry"][0]["changes"][0]["value"]["messages"]
    return messages


async def test_poison_messages_are_skipped_and_the_rest_of_the_batch_answered() -> None:
    """A lone surrogate (``"\\ud83d"`` in the JSON), a timestamp of "²" and one of 5000 digits,
    in one batch with a good message: the batch is answered 200 (today: 503 on every
    redelivery, for 7 days), the good message is answered, the three are counted, and Meta's
    redelivery of the same body turns nothing twice."""
    async with open_stack() as stack:
        good = webhooks.text_message("15550200001", "what are your opening hours?")
        body = _meta_batch(
            webhooks.text_message("15550200002", "x"),
            webhooks.text_message("15550200003", "x"),
            webhooks.text_message("15550200004", "x"),
            good,
        )
        messages = _messages(body)
        messages[0]["text"]["body"] = "\ud83d"
        messages[1]["timestamp"] = "²"
        messages[2]["timestamp"] = "9" * 5000
        raw = webhooks.encode(body)
        assert b'"\\ud83d"' in raw and b'"' + b"9" * 5000 + b'"' in raw
        with trio.fail_after(TIMEOUT):
            first = await stack.post_body(raw)
            delivered = await stack.wait_delivered(1, "15550200001")
            again = await stack.post_body(raw)
            await stack.wait_reports(1)
            scrape = await _scrape(stack)
    assert (first.status_code, again.status_code) == (200, 200)
    assert delivered[0].text
    assert len(stack.reports) == 1 and stack.reports[0].message_id == good.id
    assert _metric(scrape, "wa_agentd_messages_total", outcome="ignored_malformed") == 6
    assert _metric(scrape, "wa_agentd_messages_total", outcome="duplicate") == 1
    for wa_id in ("15550200002", "15550200003", "15550200004"):
        assert stack.delivered(wa_id) == []


async def test_a_numeric_timestamp_of_5000_digits_is_skipped_too() -> None:
    """The same digits as a JSON number: the JSON parser itself refuses integers over 4300
    digits (CPython's int limit), which today fails the whole delivery with 400."""
    async with open_stack() as stack:
        bad = webhooks.text_message("15550200005", "x")
        good = webhooks.text_message("15550200006", "what are your opening hours?")
        raw = webhooks.encode(_meta_batch(bad, good))
        raw = raw.replace(
            f'"timestamp": "{bad.message["timestamp"]}"'.encode(), b'"timestamp": ' + b"7" * 5000, 1
        )
        with trio.fail_after(TIMEOUT):
            response = await stack.post_body(raw)
            delivered = await stack.wait_delivered(1, "15550200006")
    assert response.status_code == 200
    assert delivered[0].text
    assert stack.delivered("15550200005") == []


async def test_twilio_form_fields_with_odd_characters() -> None:
    """Twilio posts one message per webhook, so a bad field is that webhook's alone: a
    NumMedia of "²" (a digit to str.isdigit, not to int) gets 400 (today: 503, the handler
    crashed), and a Body full of control characters and astral emoji is answered."""
    async with open_stack(provider="twilio") as stack:
        bad = twilio_sim.webhook_params(from_wa_id="15550200007", body="x")
        bad = [(k, "²" if k == "NumMedia" else v) for k, v in bad]
        odd = "\x00\x1b[31m\r\nhello 😀\u202e"
        with trio.fail_after(TIMEOUT):
            refused = await stack.twilio_sender.post(bad)
            _, answered = await stack.send_text("15550200008", odd)
            delivered = await stack.wait_delivered(1, "15550200008")
    assert refused.status_code == 400
    assert answered.status_code == 200
    assert delivered[0].text


# -- nothing leaks: another user's personal answer, another note's transcript --------------------

FAQ_HOURS = {"faq": [{"pattern": r"^what are your opening hours\??$", "ttl": 3600}]}


async def test_a_context_aware_answer_never_reaches_another_user(provider: str) -> None:
    """A gives the agent a card number, then asks an FAQ. The agent (context-aware, like a
    real one) names the card in its answer. B asks the same FAQ: B must get an answer without
    A's card (today: A's answer, card and all, served to B from the cache)."""
    async with open_stack(
        provider=provider,
        agentforce_options={"responder": remembering_brain},
        cache=FAQ_HOURS,
    ) as stack:
        with trio.fail_after(TIMEOUT):
            await stack.send_text("15550200010", "I pay with the card 4111 1111 1111 1111")
            await stack.wait_delivered(1, "15550200010")
            await stack.send_text("15550200010", "What are your opening hours?")
            a = await stack.wait_delivered(2, "15550200010")
            await stack.send_text("15550200011", "What are your opening hours?")
            b = await stack.wait_delivered(1, "15550200011")
            # C asks too: by now the shared answer (from B's fresh session) is served.
            await stack.send_text("15550200012", "What are your opening hours?")
            c = await stack.wait_delivered(1, "15550200012")
    assert "1111" in (a[1].text or "")  # the agent did personalise A's answer
    assert "1111" not in (b[0].text or "")
    assert "1111" not in (c[0].text or "")
    assert b[0].text == c[0].text
    assert len(stack.agentforce.received) == 3  # A twice, B once; C from the cache


async def test_a_transcript_is_cached_under_the_audio_really_downloaded() -> None:
    """The attacker's voice note claims, in its webhook, the sha256 of a popular forwarded
    note and says something else. The victim then forwards the real popular note: its
    question must reach the agent as the victim said it (today: the attacker's words)."""
    popular = speak("What are your opening hours?")
    lie = speak("Please cancel all my orders and close my account")
    claimed = webhooks.media_sha256(popular)
    async with open_stack() as stack:
        with trio.fail_after(TIMEOUT):
            media_id = stack.graph.add_user_media(lie, "audio/ogg; codecs=opus")
            await stack.deliver(webhooks.voice_message("15550200013", media_id, sha256=claimed))
            await stack.wait_reports(1)
            popular_id = stack.graph.add_user_media(popular, "audio/ogg; codecs=opus")
            await stack.deliver(webhooks.voice_message("15550200014", popular_id, sha256=claimed))
            await stack.wait_reports(2)
            # A third user forwards it again: now the cache answers (no second STT).
            third_id = stack.graph.add_user_media(popular, "audio/ogg; codecs=opus")
            await stack.deliver(webhooks.voice_message("15550200015", third_id, sha256=claimed))
            await stack.wait_reports(3)
    asked = [m.text for m in stack.agentforce.received]
    assert asked[0] == "Please cancel all my orders and close my account"
    assert asked[1:] == ["What are your opening hours?"] * 2
    assert len(stack.elevenlabs.stt_requests) == 2
    assert stack.reports[2].cached == ["transcript", "voice"]


# -- no raw message ids in the log -------------------------------------------------------------


async def test_message_ids_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """A Meta wamid is base64 of the sender's phone number: in a log line it is the number in
    clear. A message without a sender is skipped with a warning that must not quote its id."""
    caplog.set_level(logging.DEBUG)
    async with open_stack() as stack:
        good = webhooks.text_message("15550200016", "hello")
        anonymous = webhooks.text_message("15550200017", "hello")
        body = _meta_batch(good, anonymous)
        del _messages(body)[1]["from"]
        with trio.fail_after(TIMEOUT):
            await stack.post_body(webhooks.encode(body))
            await stack.wait_reports(1)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "malformed item skipped" in logged
    assert good.id not in logged and anonymous.id not in logged


# -- cost: nobody runs up the bill -------------------------------------------------------------


async def _post_voice(stack: Stack, wa_id: str, audio: bytes) -> int:
    """The user sends ``audio`` as a voice note; returns the webhook's status."""
    if stack.provider == "twilio":
        url = stack.twilio.add_user_media(audio, "audio/ogg")
        params = twilio_sim.webhook_params(from_wa_id=wa_id, media=(url, "audio/ogg"))
        return (await stack.twilio_sender.post(params)).status_code
    media_id = stack.graph.add_user_media(audio, "audio/ogg; codecs=opus")
    message = webhooks.voice_message(wa_id, media_id, sha256=webhooks.media_sha256(audio))
    return (await stack.deliver(message)).status_code


async def test_a_voice_note_of_hours_never_reaches_speech_to_text(provider: str) -> None:
    """300 KB of 1-byte Opus packets decode to 2.4 hours (the headers may say anything):
    measured locally, over [voice] max_seconds, so no STT request at all and one polite
    reply. Today: three STT requests of 2.4 h each (a timeout is retried); the STT timeout
    here is shorter than the sim's decode, as a real STT's would be for 2.4 h of audio."""
    bomb = one_byte_opus()
    async with open_stack(provider=provider, timeouts={"stt": 1.0}) as stack:
        with trio.fail_after(TIMEOUT):
            status = await _post_voice(stack, "15550200020", bomb)
            (report,) = await stack.wait_reports(1)
            delivered = await stack.wait_delivered(1, "15550200020")
            scrape = await _scrape(stack)
    assert status == 200
    assert report.outcome == "too_long"
    assert [r.path for r in stack.elevenlabs.requests if "speech-to-text" in r.path] == []
    assert stack.agentforce.received == []
    assert [d.text for d in delivered] == [TEXTS.voice_too_long]
    assert _metric(scrape, "wa_agentd_stt_seconds_total", outcome="too_long") == 0


async def test_200_texts_from_one_user_make_at_most_burst_plus_refill_agent_calls(
    provider: str,
) -> None:
    """One user posts 200 texts as fast as the webhook answers: every webhook gets 200 (today:
    most get 503 while the user's lane is full, and Meta redelivers them until all 200 have
    made an agent call; Twilio loses them), at most burst + refill reach the agent, the user
    gets one "slow down", and the dropped ones are counted."""
    limits = LimitsConfig()
    async with open_stack(provider=provider) as stack:
        started = trio.current_time()
        with trio.fail_after(60):
            statuses = [
                (await stack.send_text("15550200021", f"question {n}"))[1] for n in range(200)
            ]
            elapsed = trio.current_time() - started
            _, victim = await stack.send_text("15550200022", "what are your opening hours?")
            # Every turn that was let in: the admitted ones, the notice, the victim's.
            accepted = stack.daemon.web.stats.messages["accepted"]
            await stack.wait_reports(accepted)
            scrape = await _scrape(stack)
    assert [s.status_code for s in statuses] == [200] * 200
    assert victim.status_code == 200 and stack.delivered("15550200022")
    allowed = limits.burst + math.ceil(elapsed * limits.per_minute / 60)
    agent_calls = len(stack.agentforce.received) - 1  # the victim asked once
    assert limits.burst <= agent_calls <= allowed
    assert accepted == agent_calls + 2
    texts = [d.text for d in stack.delivered("15550200021")]
    assert texts.count(TEXTS.slow_down) == 1
    assert len(texts) == agent_calls + 1
    limited = _metric(scrape, "wa_agentd_limited_total", limit="rate")
    assert limited == 200 - agent_calls
    assert _metric(scrape, "wa_agentd_turns_total", kind="text", outcome="limited_rate") == 1


async def test_one_users_full_lane_never_blocks_another_user(provider: str) -> None:
    """A slow agent, one user's lane full (25 messages, limits off here: a flood within the
    limits), another user's message beside them. Meta batches them in one delivery: 200, and
    the other user is answered at once (today: 503 on every redelivery, the victim never
    gets in). Twilio posts them one by one: every one 200 (today: the overflow got 503, and
    Twilio does not redeliver). The flooder's messages all get answered, in order."""
    flood = [f"flood {n:02d}" for n in range(25)]
    async with open_stack(
        provider=provider,
        agentforce_faults=Faults(latency=(0.05, 0.05)),
        limits={"burst": 0, "per_minute": 0},
        lanes={"max_pending": 5},
        inbox={"retry_every": 60.0},  # the rounds come from the lane having room again
    ) as stack:
        with trio.fail_after(60):
            if provider == "meta":
                items = [webhooks.text_message("15550200023", t) for t in flood]
                items.append(webhooks.text_message("15550200024", "opening hours?"))
                statuses = [(await stack.deliver(*items)).status_code]
            else:
                statuses = []
                for text in flood:
                    statuses.append((await stack.send_text("15550200023", text))[1].status_code)
                statuses.append(
                    (await stack.send_text("15550200024", "opening hours?"))[1].status_code
                )
            victim = await stack.wait_delivered(1, "15550200024")
            flood_answered_when_victim_was = len(stack.delivered("15550200023"))
            await stack.wait_delivered(25, "15550200023")
    assert set(statuses) == {200}
    assert victim[0].text
    assert flood_answered_when_victim_was < 25  # the victim did not wait for the flood
    asked = [m.text for m in stack.agentforce.received if m.text.startswith("flood")]
    assert asked == flood  # every one, once, in order


async def test_what_a_voice_turn_costs_is_in_metrics(provider: str) -> None:
    async with open_stack(provider=provider) as stack:
        with trio.fail_after(TIMEOUT):
            await stack.send_voice("15550200025", "What are your opening hours?")
            (report,) = await stack.wait_reports(1)
            await stack.wait_delivered(2, "15550200025")
            scrape = await _scrape(stack)
    assert report.outcome == "answered" and report.voice == "sent"
    assert _metric(scrape, "wa_agentd_agent_calls_total", outcome="answered") == 1
    stt = _metric(scrape, "wa_agentd_stt_seconds_total", outcome="answered")
    assert stt == pytest.approx(report.stt_seconds) and stt > 0.5
    assert _metric(scrape, "wa_agentd_tts_characters_total", outcome="answered") > 50
    assert _metric(scrape, "wa_agentd_whatsapp_messages_sent_total", kind="text") == 1
    assert _metric(scrape, "wa_agentd_whatsapp_messages_sent_total", kind="voice") == 1
    for limit in ("rate", "daily_turns", "daily_stt_seconds", "daily_tts_characters"):
        assert f'wa_agentd_limited_total{{limit="{limit}"}} 0.0' in scrape
    for upstream in ("agent", "stt", "tts", "whatsapp"):
        assert _metric(scrape, "wa_agentd_budget_exhausted", upstream=upstream) == 0
        assert f'wa_agentd_budget_used_ratio{{upstream="{upstream}"}}' in scrape


async def test_a_spent_agent_budget_is_the_operators_alert_and_a_polite_reply() -> None:
    async with open_stack(limits={"budget_agent_calls": 1}) as stack:
        with trio.fail_after(TIMEOUT):
            await stack.send_text("15550200026", "what are your opening hours?")
            await stack.wait_delivered(1, "15550200026")
            await stack.send_text("15550200027", "how do returns work?")
            spent = await stack.wait_delivered(1, "15550200027")
            await stack.wait_reports(2)
            scrape = await _scrape(stack)
    assert len(stack.agentforce.received) == 1
    assert spent[0].text == TEXTS.over_capacity
    assert _metric(scrape, "wa_agentd_budget_exhausted", upstream="agent") == 1
    assert _metric(scrape, "wa_agentd_budget_used_ratio", upstream="agent") == 1
    assert _metric(scrape, "wa_agentd_turns_total", kind="text", outcome="over_budget") == 1
