"""Rules.decide: safe by default — openers and standalone FAQs only, never personal or denied."""

from __future__ import annotations

import pytest

from daemon.cache.normalize import normalize_question
from daemon.cache.rules import CacheRule, DenyRule, Rules

PERSONAL = [
    "Where is my order?",
    "I want to cancel",
    "Can you send me the invoice",
    "Is this mine?",
    "I'm locked out",
    "I’m locked out",  # typographic apostrophe
    "im locked out",
    "status of order 00001116",
    "status of #12345",
    "what about #AB-77",
    "ticket 4411 please",
    "order no. 123",
    "tracking number ab123",
    "call +44 20 7946 0958",
    "is 0612345678 the right number",
    "555-123-4567 is that yours",
    "contact jane.doe@example.com",
    "see https://example.com/t/abc",
    "where is our parcel",
    "أين طلبي؟",  # where is my order
    "ما هو رقمي",  # what is my number
    "حسابي مقفل",  # my account is locked
    "وطلبي متى يصل",  # and my order, when does it arrive
    "أنا لا أستطيع الدخول",  # I can't log in
    "أريد إلغاء الاشتراك",  # I want to cancel the subscription
    "رقم الطلب ١٢٣٤٥٦",  # Arabic-Indic digits
    "où est ma commande",
    "wo ist meine Bestellung",
    "dónde está mi pedido",
]

GENERAL = [
    "What are your opening hours?",
    "Do you deliver to Dubai?",
    "How much is shipping?",
    "what is the return policy",
    "Are you open on Sunday?",
    "ما هي ساعات العمل؟",  # what are the working hours
    "هل توصلون إلى دبي؟",  # do you deliver to Dubai
    "is the store open in 2025",
]


@pytest.mark.parametrize("text", PERSONAL)
def test_personal_questions_are_never_cacheable(text: str) -> None:
    # Not even with an FAQ rule that matches everything, nor as an opener.
    rules = Rules(faq=[CacheRule(".", ttl=86400)])
    decision = rules.decide(normalize_question(text), opens_conversation=True)
    assert not decision.cacheable
    assert decision.reason == "personal"
    assert decision.ttl == 0


@pytest.mark.parametrize("text", GENERAL)
def test_general_openers_are_cacheable_for_an_hour(text: str) -> None:
    decision = Rules().decide(normalize_question(text), opens_conversation=True)
    assert decision.cacheable, decision
    assert decision.reason == "opener"
    assert decision.ttl == 3600


@pytest.mark.parametrize("text", GENERAL)
def test_follow_ups_are_not_cacheable_by_default(text: str) -> None:
    decision = Rules().decide(normalize_question(text), opens_conversation=False)
    assert not decision.cacheable and decision.reason == "follow_up"


def test_standalone_faq_rule_is_cacheable_mid_conversation_with_its_ttl() -> None:
    rules = Rules(faq=[CacheRule(r"^what are your opening hours$", ttl=7200, name="hours")])
    q = normalize_question("What are your OPENING hours??")
    decision = rules.decide(q, opens_conversation=False)
    assert (decision.cacheable, decision.reason, decision.ttl, decision.rule) == (
        True,
        "faq",
        7200,
        "hours",
    )


def test_faq_rule_not_standalone_only_sets_an_openers_ttl() -> None:
    rules = Rules(faq=[CacheRule(r"shipping", ttl=10800, standalone=False, name="ship")])
    q = normalize_question("How much is shipping?")
    opener = rules.decide(q, opens_conversation=True)
    # An opener, not an FAQ: its answer is not trusted on first sight (answers.CachedAgent
    # trusts "faq" only), so different users must still confirm it.
    assert (opener.cacheable, opener.reason, opener.ttl, opener.rule) == (
        True,
        "opener",
        10800,
        "ship",
    )
    follow_up = rules.decide(q, opens_conversation=False)
    assert not follow_up.cacheable and follow_up.reason == "follow_up"


def test_faq_patterns_are_case_insensitive() -> None:
    rules = Rules(faq=[CacheRule(r"OPENING HOURS", ttl=3600)])
    assert rules.decide("opening hours", opens_conversation=False).cacheable


def test_deny_rules_win_over_faq_and_openers() -> None:
    rules = Rules(
        faq=[CacheRule(r"price", ttl=3600)],
        deny=[DenyRule(r"\bprice\b", name="prices change hourly")],
    )
    decision = rules.decide("what is the price of gold", opens_conversation=True)
    assert (decision.cacheable, decision.reason, decision.rule) == (
        False,
        "denied",
        "prices change hourly",
    )


def test_personal_list_is_replaceable() -> None:
    rules = Rules(personal=[r"\bsecret\b"])
    assert rules.decide("can i pay by card", opens_conversation=True).cacheable
    assert rules.decide("tell the secret", opens_conversation=True).reason == "personal"


def test_empty_and_overlong_questions_are_not_cacheable() -> None:
    rules = Rules(max_chars=20)
    assert rules.decide("", opens_conversation=True).reason == "empty"
    long = rules.decide("what are your opening hours", opens_conversation=True)
    assert not long.cacheable and long.reason == "too_long"


@pytest.mark.parametrize("ttl", [0, 3599, 86401, -1])
def test_rule_ttl_out_of_range_names_the_rule(ttl: float) -> None:
    with pytest.raises(ValueError, match=r"cache rule 'hours'.*ttl"):
        CacheRule("opening", ttl=ttl, name="hours")
    with pytest.raises(ValueError, match=r"cache rule 'opening'"):
        CacheRule("opening", ttl=ttl)


def test_bad_patterns_are_reported_with_their_rule() -> None:
    with pytest.raises(ValueError, match=r"cache rule '\(unclosed'.*regular expression"):
        CacheRule("(unclosed", ttl=3600)
    with pytest.raises(ValueError, match=r"deny rule 'x'"):
        DenyRule("[", name="x")
    with pytest.raises(ValueError, match=r"personal pattern"):
        Rules(personal=["*"])
    with pytest.raises(ValueError, match=r"opener_ttl"):
        Rules(opener_ttl=60)
