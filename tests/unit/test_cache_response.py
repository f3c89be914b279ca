"""ResponseCache: served only after different users got the same answer; volatile keys; TTL;
PendingContext and with_context for the follow-up after a cached answer."""

from __future__ import annotations

import pytest
import trio

from daemon.cache.response import PendingContext, ResponseCache, with_context
from daemon.model import AgentMessage, AgentReply

HOURS = AgentReply((AgentMessage("Inform", "We are open 9-17, Monday to Saturday."),))
OTHER = AgentReply((AgentMessage("Inform", "Hello Jane, your store opens at 10."),))


def cache(**over: float) -> ResponseCache:
    kwargs: dict[str, float] = {"max_entries": 100, "default_ttl": 3600.0}
    kwargs.update(over)
    return ResponseCache(**kwargs)  # type: ignore[arg-type]


async def test_served_only_after_two_different_users_got_the_same_answer() -> None:
    rc = cache()
    assert rc.lookup("k") is None
    rc.record("k", "u:alice", HOURS, 3600)
    assert rc.lookup("k") is None  # a candidate is not served
    rc.record("k", "u:bob", HOURS, 3600)
    hit = rc.lookup("k")
    assert hit is not None
    assert hit.text == HOURS.text and hit.reply == HOURS and hit.hits == 1
    assert rc.lookup("k") is not None and rc.stats().hits == 2


async def test_the_same_user_twice_does_not_confirm() -> None:
    rc = cache()
    for _ in range(5):
        rc.record("k", "u:alice", HOURS, 3600)
    assert rc.lookup("k") is None
    assert rc.stats().candidates == 1 and rc.stats().entries == 0


async def test_more_confirmations_can_be_required() -> None:
    rc = cache(confirmations=3)
    rc.record("k", "u:a", HOURS)
    rc.record("k", "u:b", HOURS)
    assert rc.lookup("k") is None
    rc.record("k", "u:c", HOURS)
    assert rc.lookup("k") is not None


async def test_white_space_differences_are_the_same_answer() -> None:
    rc = cache()
    rc.record("k", "u:a", HOURS)
    rc.record("k", "u:b", AgentReply((AgentMessage("Inform", HOURS.text + "\n"),)))
    assert rc.lookup("k") is not None


async def test_different_answers_make_the_key_volatile_and_never_served() -> None:
    rc = cache()
    rc.record("k", "u:alice", HOURS, 3600)
    rc.record("k", "u:bob", OTHER, 3600)
    assert rc.lookup("k") is None
    # Even two more users agreeing afterwards do not make it servable while volatile.
    rc.record("k", "u:carol", HOURS, 3600)
    rc.record("k", "u:dave", HOURS, 3600)
    assert rc.lookup("k") is None
    assert rc.stats().volatile == 1 and rc.stats().volatile_total == 1


async def test_a_different_answer_after_confirmation_withdraws_it() -> None:
    rc = cache()
    rc.record("k", "u:a", HOURS)
    rc.record("k", "u:b", HOURS)
    assert rc.lookup("k") is not None
    rc.record("k", "u:c", OTHER)  # e.g. two users missed at once while it was confirmed
    assert rc.lookup("k") is None
    assert rc.stats().entries == 0


async def test_volatile_verdict_lasts_for_the_ttl(autojump_clock: trio.abc.Clock) -> None:
    rc = cache()
    rc.record("k", "u:a", HOURS, 3600)
    rc.record("k", "u:b", OTHER, 3600)
    await trio.sleep(3599)
    rc.record("k", "u:c", HOURS, 3600)
    rc.record("k", "u:d", HOURS, 3600)
    assert rc.lookup("k") is None
    await trio.sleep(2)  # the verdict has expired: evidence is collected afresh
    rc.record("k", "u:c", HOURS, 3600)
    rc.record("k", "u:d", HOURS, 3600)
    assert rc.lookup("k") is not None


@pytest.mark.parametrize(
    "reply",
    [
        AgentReply((AgentMessage("Failure", "Something went wrong"),)),
        AgentReply((AgentMessage("Error"),)),
        AgentReply((AgentMessage("Inform", "Bye"), AgentMessage("SessionEnded"))),
        AgentReply((AgentMessage("Inform", "   "),)),
        AgentReply(()),
    ],
)
async def test_trouble_replies_are_never_cached_and_prove_nothing(reply: AgentReply) -> None:
    rc = cache()
    rc.record("k", "u:a", reply)
    rc.record("k", "u:b", reply)
    assert rc.lookup("k") is None
    # ... and they don't spoil the key: real answers still confirm.
    rc.record("k", "u:c", HOURS)
    rc.record("k", "u:d", HOURS)
    assert rc.lookup("k") is not None


@pytest.mark.parametrize("kind", ["Escalate", "Inquire", "Confirm", "SomethingNew"])
async def test_replies_that_start_a_flow_make_the_key_volatile(kind: str) -> None:
    rc = cache()
    flow = AgentReply((AgentMessage(kind, "What is your order number?"),))
    rc.record("k", "u:a", flow)
    rc.record("k", "u:b", flow)
    assert rc.lookup("k") is None
    rc.record("k", "u:c", HOURS)
    rc.record("k", "u:d", HOURS)
    assert rc.lookup("k") is None
    assert rc.stats().volatile == 1


async def test_answers_expire_after_their_ttl(autojump_clock: trio.abc.Clock) -> None:
    rc = cache()
    rc.record("k", "u:a", HOURS, 3600)
    rc.record("k", "u:b", HOURS, 3600)
    assert rc.lookup("k") is not None
    await trio.sleep(3599)
    assert rc.lookup("k") is not None  # hits do not extend the TTL (absolute expiry) ...
    await trio.sleep(2)
    assert rc.lookup("k") is None  # ... so it is gone one hour after confirmation
    assert rc.stats().entries == 0


async def test_unconfirmed_candidates_expire(autojump_clock: trio.abc.Clock) -> None:
    rc = cache()
    rc.record("k", "u:a", HOURS, 3600)
    await trio.sleep(3601)
    rc.record("k", "u:b", HOURS, 3600)  # a new candidate, not a confirmation
    assert rc.lookup("k") is None


async def test_default_ttl_applies_when_none_given(autojump_clock: trio.abc.Clock) -> None:
    rc = cache(default_ttl=7200.0)
    rc.record("k", "u:a", HOURS)
    rc.record("k", "u:b", HOURS)
    await trio.sleep(7000)
    assert rc.lookup("k") is not None
    await trio.sleep(201)
    assert rc.lookup("k") is None


async def test_bounded_lru() -> None:
    rc = cache(max_entries=3)
    for i in range(3):
        rc.record(f"k{i}", "u:a", HOURS)
        rc.record(f"k{i}", "u:b", HOURS)
    assert rc.lookup("k0") is not None  # k0 is now the most recently used
    rc.record("k3", "u:a", HOURS)
    rc.record("k3", "u:b", HOURS)
    assert rc.stats().entries == 3
    assert rc.lookup("k1") is None  # the least recently used went
    assert all(rc.lookup(k) is not None for k in ("k0", "k2", "k3"))


async def test_one_off_questions_do_not_evict_confirmed_answers() -> None:
    rc = cache(max_entries=3)
    rc.record("faq", "u:a", HOURS)
    rc.record("faq", "u:b", HOURS)
    for i in range(100):
        rc.record(f"once-{i}", f"u:{i}", HOURS)
    assert rc.lookup("faq") is not None
    assert rc.stats().candidates == 3


async def test_flush_forget_and_stats() -> None:
    rc = cache()
    rc.record("a", "u:1", HOURS)
    rc.record("a", "u:2", HOURS)
    rc.record("b", "u:1", HOURS)
    rc.record("c", "u:1", HOURS)
    rc.record("c", "u:2", OTHER)
    s = rc.stats()
    assert (s.entries, s.candidates, s.volatile) == (1, 1, 1)
    assert s.bytes == 2 * len(HOURS.text.encode())
    assert len(rc) == 1
    assert rc.forget("a") and not rc.forget("a")
    rc.record("a", "u:1", HOURS)
    rc.record("a", "u:2", HOURS)
    assert rc.flush() == 3
    assert rc.lookup("a") is None
    s = rc.stats()
    assert (s.entries, s.candidates, s.volatile, s.bytes) == (0, 0, 0, 0)


async def test_user_keys_are_never_stored_in_clear() -> None:
    rc = cache()
    rc.record("k", "+447700900123", HOURS)
    stored = repr(vars(rc)) + repr(list(rc._candidates.values()))
    assert "447700900123" not in stored


async def test_confirmations_must_be_positive() -> None:
    with pytest.raises(ValueError):
        cache(confirmations=0)


# --------------------------------------------------------------------------- follow-ups


async def test_pending_context_is_taken_once(autojump_clock: trio.abc.Clock) -> None:
    pending = PendingContext(max_users=10, ttl=1200)
    assert not pending.has("u:a") and pending.take("u:a") is None
    pending.remember("u:a", "opening hours?", HOURS.text)
    assert pending.has("u:a") and not pending.has("u:b")
    assert pending.take("u:a") == ("opening hours?", HOURS.text)
    assert pending.take("u:a") is None
    pending.remember("u:a", "q", "a")
    await trio.sleep(1201)
    assert not pending.has("u:a") and pending.take("u:a") is None


async def test_pending_context_is_bounded() -> None:
    pending = PendingContext(max_users=2, ttl=1200)
    for user in ("u:a", "u:b", "u:c"):
        pending.remember(user, "q", "a")
    assert len(pending) == 2 and not pending.has("u:a")


def test_with_context_prepends_one_line() -> None:
    out = with_context("and on Sundays?", "opening hours?", "We are open\n9-17.")
    assert out == (
        'Earlier I asked: "opening hours?" and you answered: "We are open 9-17.".'
        "\n\nand on Sundays?"
    )


def test_with_context_clips_to_max_chars_answer_first() -> None:
    out = with_context("next?", "q" * 50, "a" * 5000, max_chars=300)
    context, question = out.split("\n\n")
    assert question == "next?"
    assert len(context) <= 300
    assert "q" * 50 in context and "…" in context


def test_with_context_keeps_a_share_for_a_long_question() -> None:
    out = with_context("next?", "q" * 5000, "a" * 5000, max_chars=300)
    context = out.split("\n\n")[0]
    assert len(context) <= 300
    assert context.count("q") >= 80 and context.count("a") >= 80


def test_with_context_without_room_returns_the_question() -> None:
    assert with_context("next?", "q", "a", max_chars=30) == "next?"


async def test_holds_tells_whether_a_reply_is_the_confirmed_answer_without_counting() -> None:
    rc = cache()
    rc.record("k", "u:a", HOURS)
    assert not rc.holds("k", HOURS)  # a candidate: not what a lookup would serve
    rc.record("k", "u:b", HOURS)
    assert rc.holds("k", HOURS)
    assert rc.holds("k", AgentReply(HOURS.messages, origin="shared"))  # the words, not origin
    assert not rc.holds("k", OTHER) and not rc.holds("other", HOURS)
    escalate = AgentReply(
        (AgentMessage("Inform", "A colleague will call."), AgentMessage("Escalate"))
    )
    rc.record("e", "u:a", escalate, trusted=True)
    assert not rc.holds("e", escalate)  # never cached, so never shared
    assert rc.stats().hits == 0 and rc.stats().misses == 0
