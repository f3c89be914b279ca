"""The response cache's key: a question reduced to what it asks, and a hash of it.

Pure functions. The turn normalises the user's text (or the voice note's transcript) once, hands
the result to ``rules.Rules.decide`` and, when the decision is cacheable, builds the key with
``question_key`` for ``response.ResponseCache``.

Matching is exact on the normalised text (reference/anchors.md §B.4: start exact-only; semantic
matching serves wrong answers at any threshold that gives hits). The normalisation therefore only
removes differences that cannot change what is asked:

- Unicode NFKC (full-width forms, ligatures, compatibility digits) and case folding;
- invisible formatting: bidi marks, zero-width space, BOM, soft hyphen, Arabic tatweel (a pure
  stretching glyph: "مرحـــبا" is "مرحبا"). Zero-width (non-)joiners stay: Persian and Indic
  spelling uses them;
- runs of white space become one space;
- punctuation, symbols and emoji at either end ("  What are your OPENING hours?? 🙂" is "what
  are your opening hours"), including what emoji are built from (skin tones, variation
  selectors, joiners, keycaps, tags);
- inside the text, punctuation is kept (it can change the meaning), except that runs of
  question and exclamation marks collapse to their first mark ("why?!?" -> "why?").

Letters and marks of every script are kept: only Unicode categories decide, never an ASCII
range. Arabic diacritics (harakat) are kept too: dropping them would merge distinct words, and a
missed hit only costs time while a false one gives a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata

# Invisible characters that only steer rendering: bidi marks and embeddings, zero-width space,
# word joiner, BOM, soft hyphen, Arabic tatweel (U+0640, category Lm but carries no sound).
_INVISIBLE = re.compile(
    "[\u00ad\u0640\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)
_WHITESPACE = re.compile(r"\s+")
# ? ! and the Arabic question mark; NFKC has already mapped the full-width forms to ASCII.
_MARK_RUN = re.compile("([?!\u061f])[?!\u061f]+")

# Combining marks that are parts of emoji, not of letters.
_EMOJI_MARKS = frozenset(
    [*range(0xFE00, 0xFE10), 0x20E3, *range(0xE0100, 0xE01F0)]  # variation selectors, keycap
)

KEY_VERSION = "wa-agentd/question/1"


def _is_edge_noise(ch: str) -> bool:
    """True for what may be stripped from either end: punctuation, symbols (emoji are So,
    skin tones Sk), separators, controls/format (ZWJ, tags), unassigned code points (emoji
    newer than this Python's Unicode tables) and the combining marks emoji are built with."""
    cat = unicodedata.category(ch)
    return cat[0] in "PSZC" or ord(ch) in _EMOJI_MARKS


def _strip_edges(text: str) -> str:
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or _is_edge_noise(text[start])):
        start += 1
    while end > start and (text[end - 1].isspace() or _is_edge_noise(text[end - 1])):
        end -= 1
    return text[start:end]


def normalize_question(text: str) -> str:
    """The question as the cache compares it; "" when nothing but noise is left."""
    text = unicodedata.normalize("NFKC", text)
    # casefold can produce text that is not NFKC again (e.g. some Greek forms): normalise twice.
    text = unicodedata.normalize("NFKC", text.casefold())
    text = _INVISIBLE.sub("", text)
    text = _WHITESPACE.sub(" ", text)
    text = _strip_edges(text)
    return _MARK_RUN.sub(r"\1", text)


def question_key(
    normalized: str,
    *,
    agent_id: str,
    language: str | None,
    agent_version: str = "",
) -> str:
    """sha256 hex of everything an answer depends on besides the question.

    ``language``: the language the question came in (the STT's code for a voice note, None
    when unknown). ``agent_version``: anything that changes the agent's answers (a published
    version, a knowledge-base release); changing it starts a fresh cache (reference/anchors.md
    §B.4). The encoding is a JSON array with a version tag, so no two different inputs can
    encode alike (no separator can be forged inside a field).
    """
    payload = json.dumps(
        [KEY_VERSION, agent_id, agent_version, language, normalized],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
