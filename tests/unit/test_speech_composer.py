"""daemon.speech.composer with a fake synthesizer: order, concurrency, context, retraction,
the final-text check, the length cut, failures, cancellation and the part cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

from daemon.agentforce.stream import Commit, Retract, Speak
from daemon.cache.sentences import SentenceAudioCache
from daemon.errors import UpstreamError, UpstreamUnavailable
from daemon.speech.composer import MAX_VOICE_BYTES, VoiceComposer, compose_voice

NOTICE = "The rest of my answer is in the text message."


def pcm_of(text: str) -> bytes:
    """PCM that says which sentence it is: the text as UTF-16 (even length, like s16)."""
    return f"{text}|".encode("utf-16-le")


def said(pcm: bytes) -> list[str]:
    return pcm.decode("utf-16-le").split("|")[:-1]


@dataclass
class Request:
    text: str
    previous_text: str
    next_text: str


@dataclass
class FakeVoice:
    pcm_rate: int = 16_000
    requests: list[Request] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    failing: dict[str, Exception] = field(default_factory=dict)
    hold: trio.Event | None = None  # every request waits for it
    reverse: bool = False  # finish later requests first
    in_flight: int = 0
    most_in_flight: int = 0
    finished: list[str] = field(default_factory=list)

    def key(self, text: str) -> str:
        return f"key:{text}"

    async def pcm(self, text: str, *, previous_text: str, next_text: str) -> bytes:
        self.requests.append(Request(text, previous_text, next_text))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.reverse:
                await trio.sleep(10.0 - len(self.requests))
            if text in self.failing:
                raise self.failing[text]
            self.finished.append(text)
            return pcm_of(text)
        except trio.Cancelled:
            self.cancelled.append(text)
            raise
        finally:
            self.in_flight -= 1


@dataclass
class Encoder:
    calls: list[tuple[bytes, int]] = field(default_factory=list)
    size: int | None = None  # pretend the Ogg came out this big

    async def __call__(self, pcm: bytes, rate: int) -> bytes:
        self.calls.append((pcm, rate))
        return b"OggS" + (b"\0" * self.size if self.size is not None else pcm)


@asynccontextmanager
async def composer(
    voice: FakeVoice,
    encoder: Encoder,
    *,
    concurrency: int = 3,
    max_chars: int = 1500,
    cache: SentenceAudioCache | None = None,
) -> AsyncIterator[VoiceComposer]:
    async with (
        trio.open_nursery() as nursery,
        compose_voice(
            nursery,
            voice,
            concurrency=concurrency,
            max_chars=max_chars,
            cut_notice=NOTICE,
            cache=cache,
            encode=encoder,
        ) as note,
    ):
        yield note


ANSWER = (
    "Your parcel left our warehouse this morning. It should reach you by Friday. "
    "You can follow it at [our tracking page](https://example.com/track). "
    "Is there anything else I can help you with?"
)
SPOKEN = [
    "Your parcel left our warehouse this morning.",
    "It should reach you by Friday.",
    "You can follow it at our tracking page.",
    "Is there anything else I can help you with?",
]


def words(text: str) -> list[str]:
    out, start = [], 0
    for n, char in enumerate(text):
        if char == " ":
            out.append(text[start : n + 1])
            start = n + 1
    return [*out, text[start:]]


async def test_each_sentence_goes_to_speech_as_soon_as_it_closes() -> None:
    voice, encoder = FakeVoice(), Encoder()
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            seen_when_fed: list[list[str]] = []
            for piece in words(ANSWER):
                note.feed(piece)
                await trio.testing.wait_all_tasks_blocked()
                seen_when_fed.append([r.text for r in voice.requests])
            result = await note.finish(ANSWER)
    # The first sentence was asked for while the rest was still being written.
    first_asked = next(n for n, seen in enumerate(seen_when_fed) if seen)
    assert first_asked < len(seen_when_fed) - 10
    assert seen_when_fed[first_asked] == [SPOKEN[0]]
    assert [r.text for r in voice.requests] == SPOKEN
    assert result is not None
    assert result.text == " ".join(SPOKEN)
    assert result.parts == 4 and not result.cut


async def test_parts_are_joined_in_order_and_encoded_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    voice, encoder = FakeVoice(reverse=True), Encoder()
    with trio.fail_after(100):
        async with composer(voice, encoder, concurrency=4) as note:
            note.feed(ANSWER)
            result = await note.finish(ANSWER)
    assert voice.finished[0] != SPOKEN[0]  # they finished out of order ...
    [(pcm, rate)] = encoder.calls  # ... and were encoded once, in order
    assert said(pcm) == SPOKEN
    assert rate == 16_000
    assert result is not None
    assert result.ogg.startswith(b"OggS")
    assert result.seconds == pytest.approx(len(pcm) / 32_000)


async def test_no_more_than_concurrency_requests_at_once() -> None:
    voice, encoder = FakeVoice(hold=trio.Event()), Encoder()
    with trio.fail_after(10):
        async with composer(voice, encoder, concurrency=2) as note:
            note.feed(ANSWER)
            note.feed(" ")
            await trio.testing.wait_all_tasks_blocked()
            assert voice.in_flight == 2
            assert voice.hold is not None
            voice.hold.set()
            await note.finish(ANSWER)
    assert voice.most_in_flight == 2
    assert len(voice.requests) == 4


async def test_each_request_carries_its_neighbours() -> None:
    voice, encoder = FakeVoice(), Encoder()
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed("Your parcel left our warehouse this morning. It should rea")
            await trio.testing.wait_all_tasks_blocked()
            first = voice.requests[0]
            note.feed("ch you by Friday. Bye now, and thanks for writing!")
            await note.finish(
                "Your parcel left our warehouse this morning. It should reach you by "
                "Friday. Bye now, and thanks for writing!"
            )
    # The next sentence's start, as far as it was written (its cut-off word left out).
    assert first == Request("Your parcel left our warehouse this morning.", "", "It should")
    second, third = voice.requests[1:]
    assert second.previous_text == "Your parcel left our warehouse this morning."
    assert second.next_text == "Bye now, and thanks for"  # "writing!" may not be whole
    assert third.previous_text == (
        "Your parcel left our warehouse this morning. It should reach you by Friday."
    )
    assert third.next_text == ""


async def test_markdown_is_stripped_for_speech() -> None:
    voice, encoder = FakeVoice(), Encoder()
    text = "**Shipping options:**\n\n- Standard: 3–5 business days, free over $50\n"
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(text)
            await note.finish(text)
    assert [r.text for r in voice.requests] == [
        "Shipping options:",
        "Standard: 3–5 business days, free over $50.",
    ]


async def test_a_retraction_drops_what_was_spoken_of_the_withdrawn_text() -> None:
    voice, encoder = FakeVoice(hold=trio.Event()), Encoder()
    final = "Here is the checked answer for you. It is correct this time."
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.apply([Speak("This draft is about to be withdrawn. Another draft line ")])
            await trio.testing.wait_all_tasks_blocked()
            assert [r.text for r in voice.requests] == ["This draft is about to be withdrawn."]
            note.apply([Retract(), Speak(final), Commit()])
            await trio.testing.wait_all_tasks_blocked()
            assert voice.hold is not None
            voice.hold.set()
            result = await note.finish(final)
    assert voice.cancelled == ["This draft is about to be withdrawn."]
    assert result is not None
    assert result.text == final
    assert said(encoder.calls[0][0]) == [
        "Here is the checked answer for you.",
        "It is correct this time.",
    ]


async def test_a_retraction_keeps_the_complete_messages_before_it() -> None:
    voice, encoder = FakeVoice(), Encoder()
    final = "Thanks for waiting on the line.\n\nYour order number is 12345."
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.apply([Speak("Thanks for waiting on the line."), Commit()])
            note.apply([Speak("\n\nA draft that fails validation.\n")])
            await trio.testing.wait_all_tasks_blocked()  # both closed and went to speech
            note.apply([Retract()])
            note.apply([Speak("\n\nYour order number is 12345."), Commit()])
            result = await note.finish(final)
    assert result is not None
    assert result.text == "Thanks for waiting on the line. Your order number is 12345."
    assert said(encoder.calls[0][0]) == [
        "Thanks for waiting on the line.",
        "Your order number is 12345.",
    ]
    # The committed message's last sentence had closed only with the withdrawn text after
    # it, so it went with it and was said again: the one repeat a retraction can cost.
    assert [r.text for r in voice.requests] == [
        "Thanks for waiting on the line.",
        "A draft that fails validation.",
        "Thanks for waiting on the line.",
        "Your order number is 12345.",
    ]


async def test_the_final_answer_decides_and_only_the_differing_tail_is_spoken_again() -> None:
    voice, encoder = FakeVoice(), Encoder()
    streamed = "First we check the order. Then we call the courier. Then we refund your card.\n"
    final = "First we check the order. Then we call the courier. Then we email you a label."
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(streamed)
            await trio.testing.wait_all_tasks_blocked()
            result = await note.finish(final)
    assert [r.text for r in voice.requests] == [
        "First we check the order.",
        "Then we call the courier.",
        "Then we refund your card.",
        "Then we email you a label.",
    ]
    assert result is not None
    assert said(encoder.calls[0][0]) == [
        "First we check the order.",
        "Then we call the courier.",
        "Then we email you a label.",
    ]
    assert voice.requests[3].previous_text == "First we check the order. Then we call the courier."


async def test_a_final_answer_that_matches_costs_nothing_more() -> None:
    voice, encoder = FakeVoice(), Encoder()
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(ANSWER)
            await note.finish(ANSWER)
    assert len(voice.requests) == 4


async def test_an_answer_too_long_is_cut_at_a_sentence_and_says_so() -> None:
    voice, encoder = FakeVoice(), Encoder()
    text = " ".join(f"This is sentence number {n} of a long answer." for n in range(1, 9))
    with trio.fail_after(10):
        async with composer(voice, encoder, max_chars=100) as note:
            note.feed(text)
            await trio.testing.wait_all_tasks_blocked()
            assert len(voice.requests) == 2  # nothing past the limit is ever asked for
            result = await note.finish(text)
    assert result is not None
    assert result.cut
    assert said(encoder.calls[0][0]) == [
        "This is sentence number 1 of a long answer.",
        "This is sentence number 2 of a long answer.",
        NOTICE,
    ]
    assert voice.requests[-1].previous_text.endswith("number 2 of a long answer.")


async def test_a_failed_part_fails_the_voice_note_not_the_caller() -> None:
    voice, encoder = FakeVoice(), Encoder()
    broken = UpstreamUnavailable("elevenlabs-tts", "HTTP 503")
    voice.failing["It should reach you by Friday."] = broken
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(ANSWER)
            await trio.testing.wait_all_tasks_blocked()  # the failure happened: no raise
            with pytest.raises(UpstreamUnavailable) as info:
                await note.finish(ANSWER)
    assert info.value is broken
    assert encoder.calls == []


async def test_a_bug_in_the_synthesizer_is_an_upstream_error() -> None:
    voice, encoder = FakeVoice(), Encoder()
    voice.failing["It should reach you by Friday."] = KeyError("oops")
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(ANSWER)
            with pytest.raises(UpstreamError, match="unexpected error"):
                await note.finish(ANSWER)


async def test_leaving_without_finishing_cancels_what_is_running() -> None:
    voice, encoder = FakeVoice(hold=trio.Event()), Encoder()
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(ANSWER + " ")
            await trio.testing.wait_all_tasks_blocked()
            assert voice.in_flight == 3
    assert sorted(voice.cancelled) == sorted(SPOKEN[:3])
    assert encoder.calls == []


async def test_the_callers_own_exception_comes_out_unwrapped() -> None:
    voice = FakeVoice(hold=trio.Event())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.raises(ValueError, match="the turn's own"):
                async with compose_voice(nursery, voice, concurrency=2, max_chars=500) as note:
                    note.feed(ANSWER)
                    await trio.testing.wait_all_tasks_blocked()
                    raise ValueError("the turn's own")
    assert voice.cancelled  # and the parts were cancelled on the way out


async def test_nothing_to_say_is_no_voice_note() -> None:
    voice, encoder = FakeVoice(), Encoder()
    code = "```\nprint('hi')\n```"
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(code)
            assert await note.finish(code) is None
    assert voice.requests == []


async def test_a_note_over_whatsapps_play_button_limit_is_not_sent() -> None:
    voice, encoder = FakeVoice(), Encoder(size=MAX_VOICE_BYTES + 1)
    with trio.fail_after(10):
        async with composer(voice, encoder) as note:
            note.feed(ANSWER)
            assert await note.finish(ANSWER) is None


async def test_closing_lines_said_again_come_from_the_part_cache() -> None:
    voice, encoder = FakeVoice(), Encoder()
    cache = SentenceAudioCache(max_bytes=1 << 20)
    closing = "Is there anything else I can help you with?"
    results = []
    with trio.fail_after(10):
        for n in range(3):
            answer = f"Answer number {n} is about your order status. {closing}"
            async with composer(voice, encoder, cache=cache) as note:
                note.feed(answer)
                results.append(await note.finish(answer))
    asked = [r.text for r in voice.requests]
    assert asked.count(closing) == 2  # seen once: not kept; twice: kept; third: a hit
    assert [r.cached for r in results if r is not None] == [0, 0, 1]
    assert said(encoder.calls[2][0])[-1] == closing
    assert cache.stats().hits == 1
