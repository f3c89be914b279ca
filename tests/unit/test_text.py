from __future__ import annotations

import random
import re

import pytest

from daemon.text import SPOKEN_LINK, for_speech, split_message, to_whatsapp

# --- to_whatsapp ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("**bold**", "*bold*"),
        ("__bold__", "*bold*"),
        ("*italic*", "_italic_"),
        ("_italic_", "_italic_"),
        ("~~gone~~", "~gone~"),
        ("***both***", "*_both_*"),
        ("a **b** c *d* e", "a *b* c _d_ e"),
        ("**a *b* c**", "*a _b_ c*"),
        ("# Title", "*Title*"),
        ("### Deep **title** ###", "*Deep title*"),
        ("[docs](https://ex.com/a)", "docs (https://ex.com/a)"),
        ("[https://ex.com](https://ex.com)", "https://ex.com"),
        ("[ex.com](https://ex.com/)", "https://ex.com/"),
        ('[t](https://ex.com "Title")', "t (https://ex.com)"),
        (
            "[wiki](https://en.wikipedia.org/wiki/A_(b))",
            "wiki (https://en.wikipedia.org/wiki/A_(b))",
        ),
        ("![a cat](https://img.ex/c_a_t.png)", "a cat (https://img.ex/c_a_t.png)"),
        ("![](https://img.ex/c.png)", "https://img.ex/c.png"),
        ("<https://auto.ex/x_y>", "https://auto.ex/x_y"),
        ("- one\n* two\n+ three", "• one\n• two\n• three"),
        ("- top\n  - nested", "• top\n  • nested"),
        ("1. first\n2) second", "1. first\n2) second"),
        ("> quoted *x*", "> quoted _x_"),
        ("above\n\n---\n\nbelow", "above\n\nbelow"),
        ("a\n\n\n\n\nb", "a\n\nb"),
        ("| a | b |\n|---|:--:|\n| 1 | **2** |", "a | b\n1 | *2*"),
        (r"\*not italic\*", "*not italic*"),
        ("**https://ex.com/a_b**", "*https://ex.com/a_b*"),
    ],
)
def test_to_whatsapp_converts(markdown: str, expected: str) -> None:
    assert to_whatsapp(markdown) == expected


@pytest.mark.parametrize(
    "plain",
    [
        "Hello, how can I help you today?",
        "2*3*4 = 24 and 2 * 3 = 6",
        "snake_case_words and file_name.txt and _private",
        "See https://ex.com/a_b_c/*star*/d_e and https://ex.com/x__y__z.",
        "Email me at john_doe_smith@example.com",
        "Price: 5 * 3 - 2",
        "#hashtag is not a heading",
        "Straße, naïve, مرحبا؟ 你好。",
        "1. numbered\n2. list",
        "a lone * star and a lone _ underscore",
    ],
)
def test_to_whatsapp_leaves_plain_text_alone(plain: str) -> None:
    assert to_whatsapp(plain) == plain
    assert to_whatsapp(to_whatsapp(plain)) == plain


def test_code_is_kept_verbatim() -> None:
    markdown = (
        "Run `a_b_c*d*` now.\n\n"
        "```python\n"
        "def __init__(self):\n"
        "    return 2**3  # **not bold** [x](y)\n"
        "\n\n\n"
        "```\n"
        "after **b**"
    )
    assert to_whatsapp(markdown) == (
        "Run `a_b_c*d*` now.\n\n"
        "```\n"
        "def __init__(self):\n"
        "    return 2**3  # **not bold** [x](y)\n"
        "\n\n\n"
        "```\n"
        "after *b*"
    )


def test_unclosed_fence_runs_to_the_end() -> None:
    assert to_whatsapp("```\n**x**") == "```\n**x**\n```"


def test_to_whatsapp_never_raises_on_odd_input() -> None:
    rng = random.Random(1234)
    alphabet = "*_~`#[]()!<>-+|\\\n \tab1.:/é😀\ue000\ue001\ue002"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        out = to_whatsapp(text)
        assert isinstance(out, str)
        assert not re.search("[\ue000-\ue004]", out)


# --- for_speech -------------------------------------------------------------------------------


def test_for_speech_strips_markup() -> None:
    markdown = (
        "# Your order\n"
        "It is **on its way** and _should_ arrive ~~today~~ soon 🚚.\n\n"
        "- Tracking number `AB_12`\n"
        "- Carrier: [DHL](https://dhl.com/track?id=1_2)\n"
        "1. Open https://ex.com/x_y.\n\n"
        "```\ncode never read aloud\n```\n"
        "Thanks! 👍🏽👨‍👩‍👧"
    )
    assert for_speech(markdown) == (
        "Your order. It is on its way and should arrive today soon. "
        f"Tracking number AB_12. Carrier: DHL. Open {SPOKEN_LINK}. Thanks!"
    )


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("See https://ex.com for details", f"See {SPOKEN_LINK} for details."),
        ("[https://ex.com](https://ex.com)", f"{SPOKEN_LINK}."),
        ("Hello", "Hello."),
        ("Really?", "Really?"),
        ('He said "yes."', 'He said "yes."'),
        ("هل أنت بخير؟", "هل أنت بخير؟"),
        ("Options:\n- a\n- b", "Options: a. b."),
        ("It is 20°C ☀️ today", "It is 20°C today."),
        ("snake_case here", "snake case here."),
        ("| Item | Price |\n|---|---|\n| Tea | 2 € |", "Item, Price. Tea, 2 €."),
        ("Great 👍 !", "Great!"),
        ("1️⃣ first", "1 first."),
        ("line one\nline two", "line one line two."),
        ("", ""),
        ("🎉🎉", ""),
    ],
)
def test_for_speech(markdown: str, expected: str) -> None:
    assert for_speech(markdown) == expected


# --- split_message ----------------------------------------------------------------------------


def test_short_text_is_one_part() -> None:
    assert split_message("  hello  ", 4096) == ["hello"]
    assert split_message("", 10) == []
    assert split_message(" \n\n ", 10) == []


def test_paragraph_break_preferred() -> None:
    text = "First paragraph is here. It has two sentences.\n\nSecond one. Short."
    assert split_message(text, 60) == [
        "First paragraph is here. It has two sentences.",
        "Second one. Short.",
    ]


def test_sentence_end_preferred_over_space() -> None:
    text = "One two three four five six. Seven eight nine ten eleven twelve"
    assert split_message(text, 40) == [
        "One two three four five six.",
        "Seven eight nine ten eleven twelve",
    ]


def test_space_when_no_sentence_end() -> None:
    assert split_message("aaa bbb ccc ddd", 8) == ["aaa bbb", "ccc ddd"]


def test_hard_cut_last() -> None:
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_hard_cut_keeps_emoji_sequences_whole() -> None:
    family = "👨\u200d👩\u200d👧"  # five code points, one emoji
    parts = split_message("ab" + family + "cd", 6)
    assert parts == ["ab", family + "c", "d"]


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("これはペンです。あれは本です。", 10, ["これはペンです。", "あれは本です。"]),
        ("真的吗？是的！好。", 5, ["真的吗？", "是的！好。"]),
        ("هل أنت بخير؟ نعم أنا بخير.", 15, ["هل أنت بخير؟", "نعم أنا بخير."]),
        ("آپ کیسے ہیں۔ میں ٹھیک ہوں۔", 15, ["آپ کیسے ہیں۔", "میں ٹھیک ہوں۔"]),
        ("Wait… what? Yes!", 12, ["Wait… what?", "Yes!"]),
        ('He said "stop." Then left.', 18, ['He said "stop."', "Then left."]),
        ("Pi is 3.14159 exactly not", 14, ["Pi is 3.14159", "exactly not"]),
    ],
)
def test_sentence_ends_across_scripts(text: str, limit: int, expected: list[str]) -> None:
    assert split_message(text, limit) == expected


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_message("abc", 0)


WORDS = ["a", "the", "WhatsApp", "voice", "naïve", "مرحبا", "你好", "😀", "x" * 30, "ok"]
ENDS = [".", "!", "?", "…", "؟", "。"]


def _random_text(rng: random.Random, *, sentence_words: int) -> str:
    paragraphs = []
    for _ in range(rng.randint(1, 12)):
        sentences = []
        for _ in range(rng.randint(1, 8)):
            words = [rng.choice(WORDS) for _ in range(rng.randint(1, sentence_words))]
            sentences.append(" ".join(words) + rng.choice(ENDS))
        paragraphs.append(" ".join(sentences))
    return rng.choice(["\n\n", "\n", " "]).join(paragraphs)


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize("limit", [4096, 1600, 200, 50, 7])
def test_split_properties_on_random_texts(limit: int) -> None:
    rng = random.Random(limit)
    for _ in range(300):
        text = _random_text(rng, sentence_words=rng.choice([3, 12, 60]))
        if limit >= 1600 and rng.random() < 0.3:
            text = " ".join([text] * rng.randint(2, 40))  # long enough to split at 4096
        parts = split_message(text, limit)
        assert parts, text
        for part in parts:
            assert 0 < len(part) <= limit
            assert part == part.strip()
        assert _squash("".join(parts)) == _squash(text)  # nothing lost, order kept


@pytest.mark.parametrize("limit", [4096, 1600, 300])
def test_split_prefers_sentence_ends(limit: int) -> None:
    # Every sentence is shorter than half the limit, so every cut can be a sentence end.
    rng = random.Random(7)
    end = re.compile(r"[.!?…؟。]$")
    for _ in range(100):
        text = " ".join([_random_text(rng, sentence_words=8)] * rng.randint(1, 60))
        parts = split_message(text, limit)
        for part in parts[:-1]:
            assert end.search(part), part
            assert len(part) > limit // 2 or "\n" in text  # no needlessly short parts


def test_public_surface() -> None:
    # daemon.text is a package of one module per job; callers import from the package.
    import daemon.text as text

    public = {name for name in vars(text) if not name.startswith("_")}
    assert public == {
        "SPOKEN_LINK",
        "for_speech",
        "split_message",
        "to_whatsapp",
        "markdown",
        "speech",
        "split",
        "whatsapp",
    }
