"""The turn, with fakes of the channel, agent and speech (fakes.py): one answer or one apology,
always."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from daemon.cache.stt import TranscriptCache
from daemon.config import ARABIC, TimeoutsConfig, UxConfig
from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.lanes import Deferrals
from daemon.model import AgentMessage, AgentReply, Inbound, Kind, Media, Transcript
from daemon.resilience.breaker import CircuitOpen
from daemon.resilience.guard import Guard
from daemon.state.base import Stage
from daemon.state.memory import MemoryDeferred
from daemon.state.sqlite import SqliteStore
from daemon.turn import MAX_ATTEMPTS, Turn, TurnReport
from tests.unit.turn.fakes import (
    TEXTS,
    USER,
    FakeAgent,
    FakeChannel,
    FakeSpeech,
    make_turn,
    text_msg,
    voice_msg,
)


async def test_text_turn_sends_the_answer_in_whatsapp_format() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await make_turn(channel, agent).run(text_msg())
    assert agent.asked == ["when do you open?"]
    assert channel.sent("text") == ["We open at *9*."]
    assert channel.sent("voice") == []
    assert channel.sent("ack") == ["wamid.in1"]
    assert report.outcome == "answered"
    assert {"agent", "send", "total"} <= set(report.stages)


async def test_voice_turn_sends_text_first_then_the_voice_note(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel, speech = FakeChannel(text_delay=0.5), FakeSpeech()
    # TTS is faster than the text send here, and the voice note must still come second;
    # its upload does not wait for the text.
    report = await make_turn(channel, speech=speech).run(voice_msg())
    kinds = [k for k, _ in channel.events if k in ("upload", "text", "voice")]
    assert kinds == ["upload", "text", "voice"]
    assert channel.sent("voice") == ["voice:We open at 9."]  # markdown stripped for speech
    assert speech.spoken == [("We open at 9.", "en")]
    assert report.outcome == "answered" and report.voice == "sent"
    assert {"download", "stt", "agent", "send", "tts", "upload", "voice_send"} <= set(report.stages)
    # What the user waited, from the turn's start: the text at 0.5 s (its send's delay), the
    # voice note right after it (the fakes take no time otherwise).
    assert report.stages["to_text"] == pytest.approx(0.5)
    assert report.stages["to_voice"] == pytest.approx(0.5)
    assert report.stages["total"] >= report.stages["to_voice"]


async def test_an_apology_is_not_timed_as_the_answer() -> None:
    channel = FakeChannel()
    agent = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    report = await make_turn(channel, agent).run(text_msg())
    assert report.outcome == "agent_down" and channel.sent("text")  # the apology went out
    assert "to_text" not in report.stages and "to_voice" not in report.stages


@pytest.mark.parametrize(
    ("mode", "kind", "voice"),
    [
        ("mirror", Kind.TEXT, False),
        ("mirror", Kind.VOICE, True),
        ("always", Kind.TEXT, True),
        ("never", Kind.VOICE, False),
    ],
)
async def test_voice_reply_modes(mode: str, kind: Kind, voice: bool) -> None:
    channel = FakeChannel()
    message = text_msg() if kind is Kind.TEXT else voice_msg()
    await make_turn(channel, reply=mode).run(message)
    assert len(channel.sent("text")) == 1
    assert len(channel.sent("voice")) == (1 if voice else 0)


async def test_unsupported_message_gets_the_polite_reply_without_asking_the_agent() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await make_turn(channel, agent).run(
        Inbound("wamid.x", USER, Kind.UNSUPPORTED, original_type="image")
    )
    assert channel.sent("text") == [TEXTS.unsupported]
    assert agent.asked == []
    assert report.outcome == "unsupported"


async def test_agent_down_gives_one_apology() -> None:
    channel = FakeChannel()
    agent = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    report = await make_turn(channel, agent).run(voice_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert channel.sent("voice") == []
    assert report.outcome == "agent_down"


async def test_agent_timeout_is_a_cancel_scope(autojump_clock: trio.testing.MockClock) -> None:
    channel = FakeChannel()
    agent = FakeAgent(delay=1000)
    report = await make_turn(channel, agent).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "agent_down"
    assert report.stages["agent"] == pytest.approx(TimeoutsConfig().agent)


async def test_turn_deadline_gives_one_apology(autojump_clock: trio.testing.MockClock) -> None:
    channel = FakeChannel()
    timeouts = TimeoutsConfig(agent=100, turn=5)
    report = await make_turn(channel, FakeAgent(delay=50), timeouts=timeouts).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "timeout"


async def test_speech_to_text_failure_asks_the_user_to_type() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(stt_error=UpstreamRejected("elevenlabs-stt", "bad audio", status=400))
    agent = FakeAgent()
    report = await make_turn(channel, agent, speech).run(voice_msg())
    assert channel.sent("text") == [TEXTS.not_understood]
    assert agent.asked == []
    assert report.outcome == "not_understood"


async def test_empty_transcript_gets_the_no_speech_message() -> None:
    channel, agent = FakeChannel(), FakeAgent()
    report = await make_turn(channel, agent, FakeSpeech(transcript=Transcript("  "))).run(
        voice_msg()
    )
    assert channel.sent("text") == [TEXTS.no_speech]
    assert agent.asked == []
    assert report.outcome == "no_speech"


async def test_tts_failure_leaves_the_text_answer_alone() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(tts_error=UpstreamUnavailable("elevenlabs-tts", "429"))
    report = await make_turn(channel, speech=speech).run(voice_msg())
    assert channel.sent("text") == ["We open at *9*."]
    assert channel.sent("voice") == []
    assert report.outcome == "answered" and report.voice == "failed"


async def test_failed_text_send_means_no_voice_note() -> None:
    refused = UpstreamRejected("whatsapp", "131047", status=400, code="131047")
    channel = FakeChannel(fail_text=refused)
    report = await make_turn(channel).run(voice_msg())
    assert channel.sent("voice") == []
    assert report.outcome == "send_failed"
    assert report.voice == "skipped"


async def test_a_send_whose_answer_was_lost_gets_no_apology() -> None:
    # The connection dropped after the request went out (no HTTP status): WhatsApp may have
    # delivered it. An apology now could be a second message.
    lost = UpstreamUnavailable("whatsapp", "POST failed: ReadError")
    channel = FakeChannel(fail_text=lost)
    report = await make_turn(channel).run(text_msg())
    assert channel.sent("text") == []
    assert report.outcome == "send_unknown"


async def test_text_send_timeout_sends_nothing_more(autojump_clock: trio.testing.MockClock) -> None:
    channel = FakeChannel(text_delay=1000)
    report = await make_turn(channel).run(text_msg())
    assert channel.sent("text") == []  # no apology on top of an answer that may have arrived
    assert report.outcome == "send_unknown"


async def test_escalation_says_so() -> None:
    channel = FakeChannel()
    agent = FakeAgent(reply=AgentReply((AgentMessage("Escalate"),)))
    report = await make_turn(channel, agent).run(voice_msg())
    assert channel.sent("text") == [TEXTS.escalated]
    assert channel.sent("voice") == []
    assert report.outcome == "escalated"


@pytest.mark.parametrize(
    "messages",
    [
        (AgentMessage("Failure", "ACTION_FAILED: flow error 42"),),
        (AgentMessage("Error", "boom"),),
        (),
    ],
)
async def test_failure_error_or_empty_reply_is_an_apology(
    messages: tuple[AgentMessage, ...],
) -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(reply=AgentReply(messages))).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "agent_failure"


async def test_a_bug_costs_one_apology_not_the_daemon() -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(error=ZeroDivisionError())).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "error"


async def test_report_summary_carries_stage_timings_and_no_phone_number() -> None:
    reports: list[TurnReport] = []
    await make_turn(FakeChannel(), reports=reports).run(text_msg())
    line = reports[0].summary()
    assert "outcome=answered" in line and "agent=" in line and "send=" in line
    assert "+15550001" not in line and "u1" not in line.split()


# -- the seed's touches: holding message, transcript echo, language, pre-warm ----------------


async def test_holding_message_when_the_answer_is_slow(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(delay=10), ux=UxConfig(holding_after=3)).run(
        text_msg()
    )
    assert channel.sent("text") == [TEXTS.holding, "We open at *9*."]
    assert report.extras == ["holding"]


async def test_no_holding_message_when_the_answer_comes_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(delay=2.9), ux=UxConfig(holding_after=3)).run(
        text_msg()
    )
    assert channel.sent("text") == ["We open at *9*."]
    assert report.extras == []
    await trio.sleep(10)  # and not later either: the holding task ended with the turn
    assert channel.sent("text") == ["We open at *9*."]


async def test_holding_message_never_overtakes_an_answer_being_sent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The answer is ready at 2.5 s but its send takes 2 s: at 3 s the holding timer fires
    # while the answer is on its way, and must stay silent.
    channel = FakeChannel(text_delay=2)
    await make_turn(channel, FakeAgent(delay=2.5), ux=UxConfig(holding_after=3)).run(text_msg())
    assert channel.sent("text") == ["We open at *9*."]


async def test_transcript_echo_goes_first_and_replaces_the_holding_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    turn = make_turn(
        channel,
        FakeAgent(delay=10),
        ux=UxConfig(holding_after=3, echo_transcript=True),
    )
    report = await turn.run(voice_msg())
    texts = channel.sent("text")
    assert texts == ["I understood: “when do you open”", "We open at *9*."]
    assert report.extras == ["echo"]


async def test_arabic_voice_note_gets_arabic_texts_and_language_to_tts() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(transcript=Transcript("متى تفتحون؟", "ara"))
    agent = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    report = await make_turn(channel, agent, speech).run(voice_msg())
    assert channel.sent("text") == [ARABIC.agent_down]
    assert report.language == "ar"

    channel, speech = FakeChannel(), FakeSpeech(transcript=Transcript("متى تفتحون؟", "ara"))
    await make_turn(channel, FakeAgent(), speech).run(voice_msg())
    assert speech.spoken == [("We open at 9.", "ar")]


async def test_arabic_text_gets_arabic_canned_texts() -> None:
    channel = FakeChannel()
    report = await make_turn(
        channel, FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    ).run(text_msg("متى تفتحون؟"))
    assert channel.sent("text") == [ARABIC.agent_down]
    assert report.language == "ar"


async def test_voice_note_prewarms_the_agent_session() -> None:
    agent = FakeAgent()
    await make_turn(FakeChannel(), agent).run(voice_msg())
    assert agent.prepared == ["u1"]
    agent = FakeAgent()
    await make_turn(FakeChannel(), agent).run(text_msg())
    assert agent.prepared == []  # a text goes straight to ask, which opens the session


# -- delivery: what a refused send means, deferral, the journal ------------------------------


def journaled_turn(channel: FakeChannel, store: SqliteStore, **kw: Any) -> Turn:
    return make_turn(channel, journal=store, **kw)  # the real SQLite journal: what a restart finds


async def accepted(store: SqliteStore, *messages: Inbound) -> None:
    assert await store.accept(messages) == list(messages)


@pytest.mark.parametrize(
    "error",
    [
        UpstreamRejected("whatsapp", "(#130429) throughput", status=400, reason=Reason.SLOW_DOWN),
        UpstreamRejected("whatsapp", "(#131056) pair rate", status=400, reason=Reason.USER_BUSY),
        CircuitOpen("whatsapp", retry_after=30),
        UpstreamUnavailable("whatsapp", "HTTP 503", status=503, reason=Reason.SLOW_DOWN),
        UpstreamRejected("whatsapp", "(#190) token expired", status=401, code="190"),
    ],
    ids=["slow_down", "user_busy", "circuit_open", "503", "token"],
)
async def test_a_send_refused_for_now_defers_the_turn_without_an_apology(
    store: SqliteStore, error: UpstreamError
) -> None:
    channel = FakeChannel(fail_sends=[error])
    message = text_msg()
    await accepted(store, message)
    report = await journaled_turn(channel, store).run(message)
    assert report.outcome == "deferred"
    assert channel.sent("text") == []  # no apology: the answer itself goes out later
    record = await store.get(message.message_id)
    assert record is not None and not record.finished
    assert record.answer == "We open at **9**." and record.attempts == 0

    # The retry: the answer comes from the journal, the agent is not asked again.
    agent = FakeAgent()
    report = await journaled_turn(channel, store, agent=agent).run(message)
    assert channel.sent("text") == ["We open at *9*."]
    assert agent.asked == [] and report.outcome == "answered" and report.resumed == "answered"
    record = await store.get(message.message_id)
    assert record is not None and record.finished


async def test_a_user_who_cannot_be_messaged_gets_no_apology_attempt(store: SqliteStore) -> None:
    window_closed = UpstreamRejected(
        "whatsapp", "(#131047) re-engagement", status=400, reason=Reason.RECIPIENT
    )
    channel = FakeChannel(fail_text=window_closed)
    message = text_msg()
    await accepted(store, message)
    report = await journaled_turn(channel, store).run(message)
    assert report.outcome == "unreachable"
    record = await store.get(message.message_id)
    assert record is not None and record.finished  # nothing to try again


@pytest.mark.parametrize("status", [500, 503])
async def test_a_5xx_on_the_answer_is_an_unknown_outcome_and_nothing_follows(status: int) -> None:
    # Graph's 500 (or 503) with 131000 may have been processed: the client gives no reason,
    # and an apology or a retry could be a second message.
    error = UpstreamUnavailable("whatsapp", "(#131000) Something went wrong", status=status)
    channel = FakeChannel(fail_sends=[error])
    report = await make_turn(channel).run(text_msg())
    assert report.outcome == "send_unknown"
    assert channel.sent("text") == []


async def test_an_answer_refused_for_its_content_is_replaced_by_one_apology() -> None:
    bad = UpstreamRejected("whatsapp", "(#100) Invalid parameter", status=400, code="100")
    channel = FakeChannel(fail_sends=[bad])
    report = await make_turn(channel).run(text_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert report.outcome == "send_failed"


async def test_an_apology_refused_for_now_is_deferred_and_resumed_with_the_apology(
    store: SqliteStore,
) -> None:
    bad = UpstreamRejected("whatsapp", "(#100) Invalid parameter", status=400, code="100")
    busy = CircuitOpen("whatsapp", retry_after=30)
    channel = FakeChannel(fail_sends=[bad, busy])
    message = text_msg()
    await accepted(store, message)
    assert (await journaled_turn(channel, store).run(message)).outcome == "deferred"
    agent = FakeAgent()
    report = await journaled_turn(channel, store, agent=agent).run(message)
    assert channel.sent("text") == [TEXTS.agent_down]  # the apology, not the refused answer
    assert agent.asked == [] and report.outcome == "send_failed"


async def test_a_deferred_agent_apology_asks_the_agent_again_when_resumed(
    store: SqliteStore,
) -> None:
    channel = FakeChannel(fail_sends=[CircuitOpen("whatsapp", retry_after=30)])
    message = text_msg()
    await accepted(store, message)
    down = FakeAgent(error=UpstreamUnavailable("agentforce", "503"))
    assert (await journaled_turn(channel, store, agent=down).run(message)).outcome == "deferred"
    # By the retry the agent is back: the user gets the answer, not a stale apology.
    report = await journaled_turn(channel, store).run(message)
    assert channel.sent("text") == ["We open at *9*."]
    assert report.outcome == "answered"


async def test_later_messages_wait_behind_a_deferred_one_to_keep_the_order(
    store: SqliteStore,
) -> None:
    first = text_msg("first?")
    second = Inbound("wamid.in9", USER, Kind.TEXT, text="second?")
    await accepted(store, first, second)
    channel = FakeChannel(fail_sends=[CircuitOpen("whatsapp", retry_after=30)])
    agent, reports = FakeAgent(), list[TurnReport]()
    turn = journaled_turn(channel, store, agent=agent, reports=reports)
    order = Deferrals(MemoryDeferred(), store, turn.held_back)  # the lanes' rule 3

    async def run(message: Inbound) -> TurnReport:
        await order.run(message, turn.handle)
        return reports[-1]

    assert (await run(first)).outcome == "deferred"
    assert (await run(second)).outcome == "deferred"  # WhatsApp is back, but in order
    assert agent.asked == ["first?"] and channel.sent("text") == []
    # The retry loop resubmits both, oldest first.
    assert (await run(first)).outcome == "answered"
    assert (await run(second)).outcome == "answered"
    assert agent.asked == ["first?", "second?"]
    assert len(channel.sent("text")) == 2


async def test_a_turn_that_keeps_crashing_the_daemon_is_given_up_with_one_apology(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    message = text_msg()
    await accepted(store, message)
    for _ in range(MAX_ATTEMPTS):  # runs that never ended: the daemon died each time
        await store.attempt(message.message_id)
    channel, agent = FakeChannel(), FakeAgent()
    report = await journaled_turn(channel, store, agent=agent).run(message)
    assert report.outcome == "gave_up"
    assert agent.asked == [] and channel.sent("text") == [TEXTS.agent_down]
    record = await store.get(message.message_id)
    assert record is not None and record.stage is Stage.FAILED
    (line,) = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
    assert message.message_id not in line  # hashed: a wamid is base64 of the phone number


async def test_runs_that_end_or_are_cancelled_do_not_count_towards_giving_up(
    store: SqliteStore, autojump_clock: trio.testing.MockClock
) -> None:
    message = text_msg()
    await accepted(store, message)
    turn = journaled_turn(FakeChannel(), store, agent=FakeAgent(delay=100))
    for _ in range(MAX_ATTEMPTS + 1):  # drains that cancelled it mid-turn
        with trio.move_on_after(1):
            await turn.run(message)
    record = await store.get(message.message_id)
    assert record is not None and record.attempts == 0 and not record.finished


async def test_a_cached_answer_skips_the_guard_even_with_the_agent_circuit_open() -> None:
    channel = FakeChannel()
    agent = FakeAgent(cache={"when do you open?": AgentReply((AgentMessage("Inform", "At 9."),))})
    guard = Guard({"agentforce": AlwaysOpen()}, new_budget=None)  # type: ignore[dict-item]
    report = await make_turn(channel, agent, guard=guard).run(text_msg())
    assert channel.sent("text") == ["At 9."] and agent.asked == []
    assert report.outcome == "answered"


async def test_no_prewarm_when_the_transcript_comes_from_the_cache() -> None:
    transcripts = TranscriptCache(max_entries=10, ttl=3600)
    transcripts.put("ab" * 32, Transcript("when do you open", "en"))
    agent = FakeAgent()
    turn = make_turn(FakeChannel(), agent, transcripts=transcripts)
    message = Inbound(
        "wamid.in3", USER, Kind.VOICE, media=Media("m1", "audio/ogg", sha256="ab" * 32)
    )
    report = await turn.run(message)
    assert report.cached == ["transcript"] and agent.prepared == []


async def test_a_voice_note_after_an_arabic_one_gets_its_holding_message_in_arabic(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    speech = FakeSpeech(transcript=Transcript("متى تفتحون؟", "ara"))
    turn = make_turn(channel, FakeAgent(delay=10), speech, ux=UxConfig(holding_after=3))
    await turn.run(voice_msg())
    # The holding message comes before speech-to-text says which language this one is in.
    speech.stt_delay = 5
    channel.events.clear()
    await turn.run(Inbound("wamid.in4", USER, Kind.VOICE, media=Media("m2", "audio/ogg")))
    assert channel.sent("text")[0] == ARABIC.holding


class AlwaysOpen:
    """A breaker whose circuit is open: every call fails fast, untried."""

    def __init__(self, name: str = "agentforce") -> None:
        self.name = name

    async def call(self, fn: Callable[[], Any]) -> Any:
        raise CircuitOpen(self.name, retry_after=30)


async def test_a_cached_voice_note_is_sent_while_the_tts_circuit_is_open() -> None:
    channel = FakeChannel()
    speech = FakeSpeech(audio_cache={("We open at 9.", "en"): b"cached-ogg"})
    guard = Guard({"elevenlabs-tts": AlwaysOpen("elevenlabs-tts")}, new_budget=None)  # type: ignore[dict-item]
    report = await make_turn(channel, speech=speech, guard=guard).run(voice_msg())
    assert channel.sent("voice") == ["cached-ogg"] and speech.spoken == []
    assert report.voice == "sent" and "voice" in report.cached


async def test_a_voice_note_hears_its_apology_when_the_apology_is_pre_rendered() -> None:
    down = UpstreamUnavailable("agentforce", "503")
    speech = FakeSpeech(audio_cache={(TEXTS.agent_down, "en"): b"sorry-ogg"})
    channel = FakeChannel()
    report = await make_turn(channel, FakeAgent(error=down), speech).run(voice_msg())
    assert channel.sent("text") == [TEXTS.agent_down]
    assert channel.sent("voice") == ["sorry-ogg"]
    assert report.outcome == "agent_down" and report.voice == "sent"
    assert speech.spoken == []  # never a TTS call for an apology

    # A typed message gets the text only (mirror), and nothing pre-rendered means text only.
    channel = FakeChannel()
    await make_turn(channel, FakeAgent(error=down), speech).run(text_msg())
    assert channel.sent("voice") == []
    channel = FakeChannel()
    await make_turn(channel, FakeAgent(error=down), FakeSpeech()).run(voice_msg())
    assert channel.sent("text") == [TEXTS.agent_down] and channel.sent("voice") == []


# -- the fence: may this host still send for the user (several hosts, issue 13) -------------


class CountingFence:
    """Allows every send and counts the questions; ``refuse`` makes it refuse from then on."""

    def __init__(self, channel: FakeChannel) -> None:
        self.channel = channel
        self.asked_before: list[int] = []  # how many messages had gone out at each question
        self.refuse = False

    async def __call__(self) -> None:
        self.asked_before.append(len([k for k, _ in self.channel.events if k in SENDS]))
        if self.refuse:
            raise LeaseTaken("another host holds this user")


class LeaseTaken(Exception):
    pass


SENDS = ("text", "voice")


async def test_every_message_of_a_turn_asks_the_fence_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    channel = FakeChannel()
    fence = CountingFence(channel)
    turn = make_turn(channel, FakeAgent(delay=10), ux=UxConfig(holding_after=3))
    report = await turn.run(text_msg(), fence=fence)
    assert report.extras == ["holding"] and len(channel.sent("text")) == 2
    assert fence.asked_before == [0, 1]  # before the holding message, before the answer

    channel = FakeChannel()
    fence = CountingFence(channel)
    turn = make_turn(channel, ux=UxConfig(holding_after=0, echo_transcript=True))
    report = await turn.run(voice_msg(), fence=fence)
    assert report.extras == ["echo"] and report.voice == "sent"
    assert len(channel.sent("text")) == 2 and len(channel.sent("voice")) == 1
    assert fence.asked_before == [0, 1, 2]  # the echo, the answer, its voice note


async def test_a_refusing_fence_means_nothing_is_sent_not_even_an_apology() -> None:
    channel = FakeChannel()
    fence = CountingFence(channel)
    fence.refuse = True
    report = await make_turn(channel).run(voice_msg(), fence=fence)
    assert channel.sent("text") == [] and channel.sent("voice") == []
    assert fence.asked_before == [0]  # asked once, for the answer: no apology tried after it
    assert report.outcome == "error"  # what issue 13's lease holder will have to map


async def test_a_run_writes_to_the_journal_it_is_given(store: SqliteStore) -> None:
    """With several hosts the journal is that of the user's lease, one per run."""
    message = text_msg()
    await accepted(store, message)
    turn = make_turn(FakeChannel())  # its own journal: an empty in-memory one
    report = await turn.run(message, journal=store)
    record = await store.get(message.message_id)
    assert report.outcome == "answered"
    assert record is not None and record.stage is Stage.DONE and record.text_ids == ("wamid.1",)
    assert record.attempts == 0  # counted, then released
