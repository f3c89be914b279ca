"""normalize_question: what counts as the same question; question_key: unambiguous and versioned."""

from __future__ import annotations

import pytest

from daemon.cache.normalize import normalize_question, question_key


@pytest.mark.parametrize(
    "text",
    [
        "what are your opening hours",
        "  What are your OPENING hours?? 🙂",
        "What are your opening hours?",
        "WHAT ARE YOUR OPENING HOURS!!!",
        "what   are\tyour\nopening hours",
        "¿what are your opening hours?",
        '"What are your opening hours"',
        "what are your opening hours 👍🏽",  # skin tone modifier
        "what are your opening hours ❤️",  # variation selector
        "what are your opening hours 🧑‍💻",  # zero-width joiner sequence
        "what are your opening hours 🇫🇷",  # regional indicators
        "what are your opening hours #️⃣",  # keycap: # + variation selector + U+20E3
        "what are your opening hours...",
        "🙂🙂 what are your opening hours :)",
        "Ｗｈａｔ ａｒｅ ｙｏｕｒ ｏｐｅｎｉｎｇ ｈｏｕｒｓ？",  # full width
        "\u200fwhat are your opening hours\u200e",  # bidi marks
        "what are your\u00a0opening hours",  # no-break space
    ],
)
def test_variants_normalise_together(text: str) -> None:
    assert normalize_question(text) == "what are your opening hours"


def test_arabic_letters_are_kept_and_noise_removed() -> None:
    base = "ما هي ساعات العمل"
    assert normalize_question(base) == base
    assert normalize_question("  ما هي ساعات العمل؟؟ 🙂") == base
    assert normalize_question("ما هي ساعـــات العمل؟") == base  # tatweel
    assert normalize_question("\u200fما هي ساعات العمل\u200f") == base


def test_other_scripts_keep_their_letters_and_marks() -> None:
    # Devanagari ends with a vowel sign (a combining mark): it must not be stripped.
    assert normalize_question("आप कब खुलते हैं?") == "आप कब खुलते हैं"
    assert normalize_question("营业时间是什么？") == "营业时间是什么"
    assert normalize_question("Когда вы открыты?!") == "когда вы открыты"
    assert normalize_question("Straße") == normalize_question("STRASSE")


def test_inner_punctuation_is_kept_but_mark_runs_collapse() -> None:
    assert normalize_question("hours?! and prices??") == "hours? and prices"
    assert normalize_question("what's the price, in euros?") == "what's the price, in euros"
    assert normalize_question("do you ship to the u.s.?") == "do you ship to the u.s"
    assert normalize_question("is it open?!?! really") == "is it open? really"
    assert normalize_question("opening hours") != normalize_question("opening, hours")


def test_only_noise_becomes_empty() -> None:
    assert normalize_question("") == ""
    assert normalize_question("  🙂👍 ?! ") == ""


def test_question_key_is_stable_hex_and_depends_on_every_part() -> None:
    k = question_key("opening hours", agent_id="0Xx1", language="en")
    assert len(k) == 64 and int(k, 16) >= 0
    assert k == question_key("opening hours", agent_id="0Xx1", language="en")
    others = {
        question_key("opening hours", agent_id="0Xx2", language="en"),
        question_key("opening hours", agent_id="0Xx1", language="ar"),
        question_key("opening hours", agent_id="0Xx1", language=None),
        question_key("opening hours", agent_id="0Xx1", language=""),
        question_key("opening hours", agent_id="0Xx1", language="en", agent_version="2"),
        question_key("opening hour", agent_id="0Xx1", language="en"),
    }
    assert k not in others and len(others) == 6


def test_question_key_encoding_is_unambiguous() -> None:
    # A naive "agent|language|text" join would make these collide.
    a = question_key("c", agent_id="a|b", language="x")
    b = question_key("x|c", agent_id="a", language="b")
    c = question_key('c","x', agent_id="a", language="b")
    assert len({a, b, c}) == 3
