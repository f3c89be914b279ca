"""Cutting a long answer into messages that fit the channel's length limit. Pure."""

from __future__ import annotations

import re
import unicodedata

# A sentence ends at . ! ? … (Latin), ؟ ۔ (Arabic, Urdu) followed by whitespace, or at
# 。！？ (CJK, written without spaces), each optionally followed by closing quotes/brackets.
_SENTENCE_END = re.compile(r"[.!?…؟۔]+[\"')\]}»”’」』]*(?=\s)|[。！？]+[\"')\]}»”’」』]*")
_PARAGRAPH = re.compile(r"\n[ \t]*\n")
_NEWLINE = re.compile("\n")
_GLUE = {"\u200d", "\ufe0f", "\ufe0e", "\u20e3"}


def split_message(text: str, limit: int) -> list[str]:
    """Cut ``text`` into stripped, non-empty parts of at most ``limit`` characters, in order.

    Length is ``len(str)``, i.e. Unicode code points. WhatsApp documents its limits in
    characters (4096 for a Cloud API text body, reference/whatsapp.md §5; 1600 for Twilio).
    Whether Meta counts code points or UTF-16 units (an emoji outside the BMP is two) is not
    documented; a caller that fears the latter can pass a smaller ``limit``.

    A cut prefers, in this order: a paragraph break in the second half of the window; a
    sentence end or line break in the second half; a sentence end or line break anywhere; any
    whitespace; and only then a hard cut (never inside an emoji sequence or before a combining
    mark, when that can be helped). The "second half" rule keeps the number of messages low,
    which matters for WhatsApp's pair rate limit (one message per 6 s per user, §5.2).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    parts: list[str] = []
    text = text.strip()
    start = 0
    # Offsets, not slices of the remainder: slicing would copy the text once per part.
    while len(text) - start > limit:
        # One more character than fits, to see what follows a cut at ``limit``.
        window = text[start : start + limit + 1]
        cut = _cut_point(window, limit)
        parts.append(window[:cut].rstrip())
        start += cut
        while start < len(text) and text[start].isspace():
            start += 1
    if start < len(text):
        parts.append(text[start:])
    return parts


def _cut_point(window: str, limit: int) -> int:
    """Where to cut ``window`` (limit + 1 characters, the first not a space): 1..limit."""
    half = max(1, limit // 2)
    paragraphs = [m.start() for m in _PARAGRAPH.finditer(window) if 1 <= m.start() <= limit]
    sentences = [m.end() for m in _SENTENCE_END.finditer(window) if m.end() <= limit]
    sentences += [m.start() for m in _NEWLINE.finditer(window) if 1 <= m.start() <= limit]
    for candidates, floor in ((paragraphs, half), (sentences, half), (sentences, 1)):
        good = [c for c in candidates if c >= floor]
        if good:
            return max(good)
    for i in range(limit, 0, -1):
        if window[i].isspace():
            return i
    return _hard_cut(window, limit)


def _hard_cut(window: str, limit: int) -> int:
    cut = limit
    # Back off a little so a combining accent or an emoji ZWJ sequence stays whole.
    for back in range(min(8, limit - 1) + 1):
        candidate = limit - back
        after, before = window[candidate], window[candidate - 1]
        if not unicodedata.combining(after) and after not in _GLUE and before != "\u200d":
            cut = candidate
            break
    return cut
