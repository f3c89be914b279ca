"""The turn and what it costs (issue 10): voice notes measured before speech-to-text, STT never
repeated after a timeout, transcripts stored under what was downloaded, per-user allowances
and the daemon's budgets, and the cost of every turn counted in its report."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
import trio
import trio.testing

from daemon.cache.stt import TranscriptCache, audio_digest
from daemon.config import LimitsConfig, TextsConfig, TimeoutsConfig, VoiceConfig
from daemon.errors import UpstreamUnavailable
from daemon.limits import MemoryBudget, MemoryUserLimits, Upstream
from daemon.model import Inbound, Kind, Media, Transcript
from daemon.resilience.guard import Guard
from daemon.sim.audio import speak
from daemon.sim.hostile import one_byte_opus
from daemon.state.base import Stage
from daemon.state.sqlite import SqliteStore
from daemon.turn import Turn, TurnReport
from tests.unit.turn.fakes import (
    TEXTS,
    USER,
    FakeAgent,
    FakeChannel,
    FakeSpeech,
    measure_inline,
    text_msg,
)

ANSWER = "We open at *9*."  # the agent's "We open at **9**." as WhatsApp shows it
SPOKEN = "We open at 9."  # and as the voice note says it


def voice(n: int = 1, sha256: str | None = None) -> Inbound:
    return Inbound(
        f"wamid.v{n}", USER, Kind.VOICE, media=Media(f"m{n}", "audio/ogg", sha256, voice=True)
    )


def turn(
    channel: FakeChannel,
    *,
    agent: FakeAgent | None = None,
    speech: FakeSpeech | None = None,
    limits: LimitsConfig | None = None,
    budget: MemoryBudget | None = None,
    transcripts: TranscriptCache | None = None,
    guard: Guard | None = None,
    max_seconds: float = 300.0,
    **kw: Any,
) -> Turn:
    return Turn(
        channel=channel,  # type: ignore[arg-type]
        agent=agent or FakeAgent(),
        speech=speech or FakeSpeech(),
        timeouts=TimeoutsConfig(),
        voice=VoiceConfig(max_seconds=max_seconds),
        texts=TextsConfig(),
        transcripts=transcripts,
        guard=guard,
        limits=MemoryUserLimits(limits) if limits is not None else None,
        budget=budget,
        measure=measure_inline,
        **kw,
    )


# -- the voice note is measured before speech-to-text ----------------------------------------


async def test_a_voice_note_over_max_seconds_gets_a_reply_and_no_speech_to_text() -> None:
    channel = FakeChannel(audio=one_byte_opus())  # 300 KB that decode to 2.4 hours
    speech, agent = FakeSpeech(), FakeAgent()
    report = await turn(channel, speech=speech, agent=agent).run(voice())
    assert report.outcome == "too_long"
    assert channel.sent("text") == [TEXTS.voice_too_long]
    assert agent.asked == [] and speech.heard == []
    assert report.stt_seconds == 0


async def test_any_audio_is_measured_not_only_voice_notes() -> None:
    channel = FakeChannel(audio=speak("hello", seconds=20.0))
    audio_file = Inbound("wamid.a", USER, Kind.VOICE, media=Media("m", "audio/ogg", voice=False))
    report = await turn(channel, max_seconds=10).run(audio_file)
    assert report.outcome == "too_long" and channel.sent("text") == [TEXTS.voice_too_long]


async def test_a_voice_note_that_does_not_decode_is_not_sent_to_speech_to_text() -> None:
    channel, speech = FakeChannel(audio=b"OggS not really"), FakeSpeech()
    report = await turn(channel, speech=speech).run(voice())
    assert report.outcome == "undecodable"
    assert channel.sent("text") == [TEXTS.not_understood]
    assert speech.heard == []


async def test_a_speech_to_text_timeout_is_never_repeated(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A timed-out transcription may have been done, and billed: with the retry policy of the
    guard in place, it is tried once."""
    speech = FakeSpeech(stt_delay=1000)
    guard = Guard({}, new_budget=None, max_attempts=3)
    channel = FakeChannel()
    report = await turn(channel, speech=speech, guard=guard).run(voice())
    assert report.outcome == "not_understood"
    assert len(speech.heard) == 1
    assert report.stt_seconds == pytest.approx(2.0, abs=0.1)  # one attempt's audio


async def test_speech_to_text_refused_for_capacity_is_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A 429/503 that says "not processed" may be repeated: nothing was done (or billed)."""
    busy = UpstreamUnavailable("elevenlabs-stt", "busy", status=429, reason="slow_down")
    speech = FakeSpeech(stt_errors=[busy])
    guard = Guard({}, new_budget=None, max_attempts=3)
    report = await turn(FakeChannel(), speech=speech, guard=guard).run(voice())
    assert report.outcome == "answered" and len(speech.heard) == 2
    assert report.stt_seconds == pytest.approx(4.0, abs=0.2)  # the audio went twice


# -- the transcript cache: written under what was downloaded ----------------------------------


async def test_a_transcript_is_stored_under_the_digest_of_the_downloaded_audio() -> None:
    popular, lie = speak("when do you open", seconds=2.0), speak("cancel everything", seconds=2.5)
    claimed = base64.b64encode(hashlib.sha256(popular).digest()).decode()
    transcripts = TranscriptCache(max_entries=10, ttl=3600)
    speech = FakeSpeech(transcript=Transcript("cancel everything", "en"))
    await turn(FakeChannel(audio=lie), speech=speech, transcripts=transcripts).run(
        voice(1, sha256=claimed)
    )
    assert transcripts.get(claimed) is None  # not under the claim
    assert transcripts.get(audio_digest(lie)) == Transcript("cancel everything", "en")


async def test_audio_without_a_stated_digest_is_looked_up_by_what_was_downloaded() -> None:
    clip = speak("when do you open", seconds=2.0)
    transcripts = TranscriptCache(max_entries=10, ttl=3600)
    transcripts.put(audio_digest(clip), Transcript("when do you open", "en"))
    speech, channel = FakeSpeech(), FakeChannel(audio=clip)
    report = await turn(channel, speech=speech, transcripts=transcripts).run(voice(1))
    assert report.cached[0] == "transcript" and speech.heard == []
    assert channel.sent("download")  # it had to be downloaded to be known


# -- what a turn costs -------------------------------------------------------------------------


async def test_the_report_counts_what_the_turn_cost() -> None:
    channel = FakeChannel()
    report = await turn(channel).run(voice())
    assert report.outcome == "answered"
    assert report.agent_calls == 1
    assert report.stt_seconds == pytest.approx(2.0, abs=0.1)
    assert report.tts_characters == len(SPOKEN)
    assert report.sent == {"text": 1, "voice": 1}  # two WhatsApp messages, two bills


async def test_cached_answers_and_apologies_cost_no_agent_call() -> None:
    cached = FakeAgent(cache={"when do you open?": FakeAgent().reply})
    report = await turn(FakeChannel(), agent=cached).run(text_msg())
    assert report.agent_calls == 0 and report.sent == {"text": 1}
    down = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    report = await turn(FakeChannel(), agent=down).run(text_msg())
    assert report.outcome == "agent_down"
    assert report.agent_calls == 1 and report.sent == {"canned": 1}


# -- per-user allowances -----------------------------------------------------------------------


async def test_over_the_daily_speech_to_text_allowance_one_reply_then_silence() -> None:
    channel, speech = FakeChannel(), FakeSpeech()
    t = turn(channel, speech=speech, limits=LimitsConfig(daily_stt_seconds=3.0))
    assert (await t.run(voice(1))).outcome == "answered"  # 2 s of 3
    second = await t.run(voice(2))
    third = await t.run(voice(3))
    assert second.outcome == third.outcome == "limited_daily_stt_seconds"
    assert channel.sent("text") == [ANSWER, TEXTS.voice_daily_limit]  # once, then nothing
    assert len(speech.heard) == 1
    assert (await t.run(text_msg())).outcome == "answered"  # typing still works


async def test_over_the_daily_speech_allowance_answers_go_as_text_with_one_line_about_it() -> None:
    channel, speech = FakeChannel(), FakeSpeech()
    t = turn(channel, speech=speech, limits=LimitsConfig(daily_tts_characters=20))
    first = await t.run(voice(1))
    second = await t.run(voice(2))
    third = await t.run(voice(3))
    assert (first.voice, second.voice, third.voice) == ("sent", "skipped", "skipped")
    assert channel.sent("text") == [ANSWER, f"{ANSWER}\n\n{TEXTS.text_only_today}", ANSWER]
    assert len(speech.spoken) == 1
    assert second.tts_characters == 0 and second.sent == {"text": 1}


async def test_a_cached_voice_note_costs_no_allowance() -> None:
    speech = FakeSpeech(audio_cache={(SPOKEN, "en"): b"cached-ogg"})
    channel = FakeChannel()
    t = turn(channel, speech=speech, limits=LimitsConfig(daily_tts_characters=1))
    reports = [await t.run(voice(n)) for n in range(3)]
    assert [r.voice for r in reports] == ["sent"] * 3 and speech.spoken == []


async def test_the_notice_of_a_limit_decided_at_intake_is_said_and_the_agent_not_asked(
    store: SqliteStore,
) -> None:
    message = text_msg()
    await store.accept([message])
    await store.progress(message.message_id, Stage.RECEIVED, outcome="limited_rate")
    channel, agent = FakeChannel(), FakeAgent()
    t = turn(channel, agent=agent, journal=store)
    report = await t.run(message)
    assert report.outcome == "limited_rate"
    assert channel.sent("text") == [TEXTS.slow_down] and agent.asked == []
    assert channel.sent("ack")  # the read receipt, as for any message
    record = await store.get(message.message_id)
    assert record is not None and record.stage is Stage.DONE


async def test_a_limit_notice_to_a_voice_note_is_one_message_not_two() -> None:
    speech = FakeSpeech(audio_cache={(TEXTS.voice_daily_limit, "en"): b"spoken-notice"})
    channel = FakeChannel()
    t = turn(channel, speech=speech, limits=LimitsConfig(daily_stt_seconds=1.0))
    await t.run(voice(1))
    assert channel.sent("text") == [TEXTS.voice_daily_limit] and channel.sent("voice") == []


# -- the daemon's budgets ----------------------------------------------------------------------


def spent(**budgets: float) -> MemoryBudget:
    """A budget with each named upstream's day already spent."""
    budget = MemoryBudget(LimitsConfig(**{f"budget_{k}": v for k, v in budgets.items()}))  # type: ignore[arg-type]
    names = {"agent_calls": Upstream.AGENT, "stt_seconds": Upstream.STT}
    names |= {"tts_characters": Upstream.TTS, "whatsapp_messages": Upstream.WHATSAPP}
    for key, value in budgets.items():
        budget.charge(names[key], value)
    return budget


async def test_with_the_agent_budget_spent_one_busy_reply_per_user_then_silence() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    t = turn(channel, agent=agent, budget=spent(agent_calls=5))
    reports = [await t.run(text_msg()) for _ in range(3)]
    assert [r.outcome for r in reports] == ["over_budget"] * 3
    assert channel.sent("text") == [TEXTS.over_capacity] and agent.asked == []


async def test_with_the_agent_budget_spent_cached_answers_are_still_served() -> None:
    cached = FakeAgent(cache={"when do you open?": FakeAgent().reply})
    channel = FakeChannel()
    report = await turn(channel, agent=cached, budget=spent(agent_calls=5)).run(text_msg())
    assert report.outcome == "answered" and channel.sent("text") == [ANSWER]


async def test_with_the_stt_budget_spent_voice_notes_are_asked_to_be_typed() -> None:
    channel, speech = FakeChannel(), FakeSpeech()
    report = await turn(channel, speech=speech, budget=spent(stt_seconds=60)).run(voice())
    assert report.outcome == "over_budget"
    assert channel.sent("text") == [TEXTS.voice_unavailable] and speech.heard == []


async def test_with_the_tts_budget_spent_answers_go_as_text_only() -> None:
    channel, speech = FakeChannel(), FakeSpeech()
    report = await turn(channel, speech=speech, budget=spent(tts_characters=100)).run(voice())
    assert report.outcome == "answered" and report.voice == "skipped"
    assert channel.sent("text") == [ANSWER] and speech.spoken == []


async def test_with_the_whatsapp_budget_spent_nothing_is_sent_nor_asked() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await turn(channel, agent=agent, budget=spent(whatsapp_messages=10)).run(text_msg())
    assert report.outcome == "over_budget"
    assert channel.events == [] and agent.asked == []


async def test_a_turn_charges_the_budget_with_what_it_spent() -> None:
    budget = MemoryBudget(
        LimitsConfig(
            budget_agent_calls=10,
            budget_stt_seconds=100.0,
            budget_tts_characters=130,
            budget_whatsapp_messages=20,
        )
    )
    reports: list[TurnReport] = []
    await turn(FakeChannel(), budget=budget, on_report=reports.append).run(voice())
    ratios = budget.used_ratios()
    assert ratios["agent"] == pytest.approx(0.1)
    assert ratios["stt"] == pytest.approx(0.02, abs=0.002)
    assert ratios["tts"] == pytest.approx(len(SPOKEN) / 130)
    assert ratios["whatsapp"] == pytest.approx(0.1)
