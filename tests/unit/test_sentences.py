"""daemon.sentences: where streamed Markdown is cut into sentences for text-to-speech."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.sentences import SentenceChunker, split_sentences
from daemon.sim.agentforce import FAQ_GREETING, FAQ_HOURS, FAQ_RETURNS, FAQ_SHIPPING
from daemon.text import for_speech

CASES = [
    # -- English: where a sentence closes ------------------------------------------------
    (
        "Your parcel left the warehouse. It should arrive tomorrow!",
        ["Your parcel left the warehouse.", "It should arrive tomorrow!"],
    ),
    (
        "Is there anything else? I'm happy to help… Just ask.",
        ["Is there anything else?", "I'm happy to help… Just ask."],  # 18 chars: joined
    ),
    (
        'She said "we close at six." Then she left the shop.',
        ['She said "we close at six."', "Then she left the shop."],
    ),
    # -- never inside decimals, URLs, abbreviations ----------------------------------------
    (
        "The total is $29.99 with tax. Version 2.5.1 fixes it, see example.com/help.html now.",
        ["The total is $29.99 with tax.", "Version 2.5.1 fixes it, see example.com/help.html now."],
    ),
    (
        "Open https://example.com/a?b=1. Then log in with your e-mail address.",
        ["Open https://example.com/a?b=1.", "Then log in with your e-mail address."],
    ),
    (
        "Dr. Smith and Mr. J. Brown work at Acme Inc. near St. Paul's. They open at 9 a.m. daily.",
        [
            "Dr. Smith and Mr. J. Brown work at Acme Inc. near St. Paul's.",
            "They open at 9 a.m. daily.",
        ],
    ),
    (
        "Bring an ID, e.g. a passport or a licence. That is all you need.",
        ["Bring an ID, e.g. a passport or a licence.", "That is all you need."],
    ),
    # -- line breaks and list items -----------------------------------------------------------
    (
        "Here are the options:\n- Standard delivery in 3–5 days\n- Express delivery in 1–2 days",
        [
            "Here are the options:",
            "- Standard delivery in 3–5 days",
            "- Express delivery in 1–2 days",
        ],
    ),
    (
        "1. Open your order in the app\n2. Choose the item to return\n3. Print the label",
        ["1. Open your order in the app", "2. Choose the item to return", "3. Print the label"],
    ),
    # -- two-word fragments join the next piece ---------------------------------------------
    ("Hi! How can I help you today?", ["Hi! How can I help you today?"]),
    ("Sure.\n- opening hours\n- returns", ["Sure.\n- opening hours", "- returns"]),
    # -- never inside Markdown markup ---------------------------------------------------------
    (
        "We're open **Mon. to Fri. Closed Sat.** and on holidays. Call us any time you like.",
        ["We're open **Mon. to Fri. Closed Sat.** and on holidays.", "Call us any time you like."],
    ),
    (
        "**All done. Thanks.** Anything else I can do for you?",
        ["**All done. Thanks.**", "Anything else I can do for you?"],
    ),
    (
        "Read [the policy. It is short](https://x.com/p.html). Then reply to this message.",
        ["Read [the policy. It is short](https://x.com/p.html).", "Then reply to this message."],
    ),
    (
        "Run `pip install a. b` in a shell. It installs the package for you.",
        ["Run `pip install a. b` in a shell.", "It installs the package for you."],
    ),
    (
        "Use this snippet:\n```python\nprint('One. Two. Three.')\n```\nIt prints three words.",
        ["Use this snippet:", "It prints three words."],
    ),
    # -- Arabic ------------------------------------------------------------------------------
    (
        "مرحبًا! كيف يمكنني مساعدتك اليوم؟ نحن هنا من أجلك دائمًا.",
        ["مرحبًا! كيف يمكنني مساعدتك اليوم؟", "نحن هنا من أجلك دائمًا."],
    ),
    (
        "نفتح من الساعة ٩ صباحًا، ونغلق في ٥ مساءً. السعر ٣٫٥ دينار فقط للشحن.",
        ["نفتح من الساعة ٩ صباحًا، ونغلق في ٥ مساءً.", "السعر ٣٫٥ دينار فقط للشحن."],
    ),
    (
        "سيتصل بك د. أحمد غدًا صباحًا. هل لديك سؤال آخر؟ أنا في الخدمة دائمًا…",
        ["سيتصل بك د. أحمد غدًا صباحًا.", "هل لديك سؤال آخر؟ أنا في الخدمة دائمًا…"],
    ),
    (
        "خيارات الشحن:\n- عادي خلال ٣ إلى ٥ أيام عمل\n- سريع خلال يوم أو يومين",
        ["خيارات الشحن:\n- عادي خلال ٣ إلى ٥ أيام عمل", "- سريع خلال يوم أو يومين"],
    ),
    (
        "زر موقعنا example.com/ar للمزيد. شكرًا لتواصلك معنا!",
        ["زر موقعنا example.com/ar للمزيد.", "شكرًا لتواصلك معنا!"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_sentences_close_where_a_reader_would_pause(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_fed_word_by_word_gives_the_same_sentences(text: str, expected: list[str]) -> None:
    chunker = SentenceChunker()
    got: list[str] = []
    for piece in re.findall(r"\s*\S+\s*", text):
        got.extend(chunker.feed(piece))
    assert got + chunker.flush() == expected


def test_a_sentence_is_handed_out_once_the_next_word_begins() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("Your parcel left the warehouse.") == []  # "." then what?
    assert chunker.feed(" ") == []  # a space: the next word may be lower case
    assert chunker.feed("It") == ["Your parcel left the warehouse."]
    assert chunker.pending == "It"
    assert chunker.feed(" arrives tomorrow.\n") == ["It arrives tomorrow."]  # a line break


def test_a_list_item_closes_at_its_line_break() -> None:
    chunker = SentenceChunker()
    assert chunker.feed("- Standard delivery: 3–5 business days") == []
    assert chunker.feed("\n") == ["- Standard delivery: 3–5 business days"]


def test_reset_forgets_what_was_not_handed_out() -> None:
    chunker = SentenceChunker()
    chunker.feed("A draft that the agent will withdraw")
    chunker.reset()
    assert chunker.pending == ""
    assert chunker.feed("The real answer is here.") == []
    assert chunker.flush() == ["The real answer is here."]


def test_a_sentence_with_no_end_is_cut_at_a_space_before_max_chars() -> None:
    text = " ".join(["word"] * 200)
    sentences = split_sentences(text, max_chars=100)
    assert all(len(s) <= 100 for s in sentences)
    assert " ".join(sentences) == text


def test_an_unclosed_fence_drops_the_rest_of_the_answer() -> None:
    assert split_sentences("Look at this example:\n```\nsecret = 1. Two.") == [
        "Look at this example:"
    ]


@pytest.mark.parametrize("answer", [FAQ_HOURS, FAQ_RETURNS, FAQ_SHIPPING, FAQ_GREETING])
def test_spoken_sentence_by_sentence_says_what_the_whole_answer_says(answer: str) -> None:
    # What the composer speaks (for_speech per sentence) is what the sync path would speak.
    by_sentence = " ".join(for_speech(s) for s in split_sentences(answer))
    assert by_sentence == for_speech(answer)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        SentenceChunker(min_chars=50, max_chars=20)


# -- properties -------------------------------------------------------------------------------

# Words that exercise every rule, joined by every kind of space.
_TOKENS = st.sampled_from(
    [
        "Hello", "world", "there", "the", "parcel", "e.g.", "Dr.", "J.", "3.5", "$29.99",
        "example.com/a.b", "https://x.com/?q=1.", "end.", "end!", "why?", "so…", "...", "وصل",
        "الطرد؟", "مرحبًا!", "٣٫٥", "د.", "**bold.**", "**open", "close**", "`code.", "code`",
        "[label.", "label](https://x.com/a.)", "*em*", "__x__", "1.", "-", "#", "|", "```",
        "~~~", "``", "\"quoted.\"", "(aside.)", "»", "_",
    ]
)  # fmt: skip
_SPACE = st.sampled_from([" ", " ", "  ", "\n", "\n\n", "\t", " \n"])


@st.composite
def _answer(draw: st.DrawFn) -> str:
    words = draw(st.lists(_TOKENS, max_size=60))
    return "".join(word + draw(_SPACE) for word in words)


def _pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    out, start = [], 0
    for point in points:
        out.append(text[start:point])
        start = point
    return [*out, text[start:]]


def _fed(pieces: list[str]) -> list[str]:
    chunker = SentenceChunker(min_chars=12, max_chars=80)
    got: list[str] = []
    for piece in pieces:
        got.extend(chunker.feed(piece))
    return got + chunker.flush()


@settings(max_examples=400, deadline=None)
@given(_answer(), st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_of_any_answer_gives_the_same_sentences(text: str, cuts: list[int]) -> None:
    whole = split_sentences(text, min_chars=12, max_chars=80)
    assert _fed(_pieces(text, cuts)) == whole
    # One character at a time: every place a read can end, in one run.
    assert _fed(list(text)) == whole


@settings(max_examples=400, deadline=None)
@given(_answer())
def test_no_word_is_lost_outside_fenced_code(text: str) -> None:
    sentences = split_sentences(text, min_chars=12, max_chars=80)
    assert all(s == s.strip() and s for s in sentences)
    if "```" not in text and "~~~" not in text:
        assert "".join("".join(sentences).split()) == "".join(text.split())
