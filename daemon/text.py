"""Pure text tools the turn applies to every answer, whatever the channel.

The agent answers in Markdown. WhatsApp has its own, smaller formatting language
(``*bold*``, ``_italic_``, ``~strike~``, ```` ```mono``` ````, `` `code` ``, ``> quote``), a
text-to-speech voice reads markup characters aloud, and a WhatsApp message has a length limit.
So:

- ``to_whatsapp`` rewrites Markdown into WhatsApp formatting,
- ``for_speech`` strips every kind of formatting for TTS,
- ``split_message`` cuts a long answer into messages that fit the channel's limit.

All three are total: ``to_whatsapp`` and ``for_speech`` never raise, whatever the input.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable

log = logging.getLogger(__name__)

# --- shared machinery -------------------------------------------------------------------------

# Private-use code points mark stashed spans (code, URLs, escaped characters) and the emphasis
# found so far. They are removed from the input first, so they can never clash with it.
_STASH_OPEN = "\ue000"
_STASH_CLOSE = "\ue001"
_BOLD = "\ue002"
_ITALIC = "\ue003"
_STRIKE = "\ue004"
_SENTINELS = re.compile("[\ue000-\ue004]")
_STASHED = re.compile(f"{_STASH_OPEN}(\\d+){_STASH_CLOSE}")


class _Stash:
    """Spans taken out of the text so later rewrites cannot touch them."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def put(self, text: str) -> str:
        self._items.append(text)
        return f"{_STASH_OPEN}{len(self._items) - 1}{_STASH_CLOSE}"

    def restore(self, text: str) -> str:
        # A stashed span may itself hold a placeholder (a link around a stashed URL); each
        # round resolves one level, and there can never be more levels than items.
        for _ in range(len(self._items) + 1):
            if _STASH_OPEN not in text:
                break
            text = _STASHED.sub(lambda m: self._items[int(m[1])], text)
        return text


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
# Link targets may hold one level of balanced parentheses (Wikipedia URLs), and an optional
# title, which is dropped.
_LINK = re.compile(
    r"(!?)\[([^\]\n]*)\]\(\s*<?((?:[^()\s<>]|\([^()\s]*\))+)>?"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?\s*\)"
)
_BARE_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\"”’»*_~"

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}=+[ \t]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+•][ \t]+(.*)$")
_NUMBERED = re.compile(r"^([ \t]*)(\d{1,9}[.)])[ \t]+(.*)$")
_QUOTE = re.compile(r"^[ \t]*>[ \t]?(.*)$")
_TABLE_ROW = re.compile(r"^[ \t]*\|.*\|[ \t]*$")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)

# Emphasis follows CommonMark's idea of flanking, made stricter: a delimiter run opens only
# where it is not glued to a word on its left, and closes only where it is not glued to a word
# on its right. That keeps ``2*3*4``, ``snake_case_words`` and ``a**b`` untouched, and matches
# what WhatsApp itself renders (its markers also need word boundaries).
_EMPHASIS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"(?<![\w*])\*\*\*(?![\s*])(.+?)(?<![\s*])\*\*\*(?![\w*])"), _BOLD, _ITALIC),
    (re.compile(r"(?<!\w)___(?![\s_])(.+?)(?<![\s_])___(?!\w)"), _BOLD, _ITALIC),
    (re.compile(r"(?<![\w*])\*\*(?![\s*])(.+?)(?<![\s*])\*\*(?![\w*])"), _BOLD, ""),
    (re.compile(r"(?<!\w)__(?![\s_])(.+?)(?<![\s_])__(?!\w)"), _BOLD, ""),
    (re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])"), _ITALIC, ""),
    (re.compile(r"(?<!\w)_(?![\s_])(.+?)(?<![\s_])_(?!\w)"), _ITALIC, ""),
    (re.compile(r"(?<![\w~])~~(?![\s~])(.+?)(?<![\s~])~~(?![\w~])"), _STRIKE, ""),
)


def _is_table_rule(line: str) -> bool:
    """A table's delimiter row, e.g. ``|---|:--:|`` (a line of only ``|``, ``:``, ``-``)."""
    stripped = line.strip()
    return "|" in stripped and "-" in stripped and not stripped.strip("|:- \t")


def _emphasis(text: str, *, keep: bool) -> str:
    """Replace Markdown emphasis by private markers (``keep``) or by its bare content."""
    for pattern, outer, inner in _EMPHASIS:
        replacement = rf"{outer}{inner}\g<1>{inner}{outer}" if keep else r"\g<1>"
        text = pattern.sub(replacement, text)
    return text


def _stash_url(url: str, stash: _Stash) -> tuple[str, str]:
    """Split a bare URL from the punctuation that ends the sentence it sits in."""
    tail = ""
    while url and (
        url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))
    ):
        tail = url[-1] + tail
        url = url[:-1]
    return stash.put(url), tail


def _same_target(text: str, url: str) -> bool:
    def bare(value: str) -> str:
        value = value.strip().lower()
        value = re.sub(r"^(?:https?://|mailto:)", "", value)
        return value.rstrip("/")

    return bare(text) == bare(url)


def _protect_inline(line: str, stash: _Stash, *, link: Callable[[str, str, bool], str]) -> str:
    """Stash code spans, escapes and URLs; rewrite links and images through ``link``."""
    line = _INLINE_CODE.sub(lambda m: stash.put(m[0]), line)
    line = _ESCAPE.sub(lambda m: stash.put(m[1]), line)
    line = _HTML_BREAK.sub(" ", line)
    line = _LINK.sub(lambda m: link(m[2].strip(), m[3], m[1] == "!"), line)
    line = _AUTOLINK.sub(lambda m: link(m[1], m[1], False), line)

    def bare(m: re.Match[str]) -> str:
        placeholder, tail = _stash_url(m[0], stash)
        return placeholder + tail

    # Placeholders are not matched by _BARE_URL: URLs already stashed stay as they are.
    return _BARE_URL.sub(bare, line)


def _fenced_blocks(text: str) -> list[tuple[bool, list[str]]]:
    """Cut the text into runs of (is_code, lines). An unclosed fence runs to the end."""
    blocks: list[tuple[bool, list[str]]] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened or (opened[1][0] == "`" and "`" in opened[2]):
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            blocks.append((False, prose))
            prose = []
        fence = opened[1]
        code: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing
                and closing[1][0] == fence[0]
                and len(closing[1]) >= len(fence)
                and not closing[2].strip()
            ):
                i += 1
                break
            code.append(lines[i])
            i += 1
        blocks.append((True, code))
    if prose:
        blocks.append((False, prose))
    return blocks


def _prepare(text: str) -> str:
    text = _SENTINELS.sub("", text)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _collapse_blank_lines(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- WhatsApp ---------------------------------------------------------------------------------


def to_whatsapp(markdown: str) -> str:
    """Rewrite the agent's Markdown into WhatsApp's formatting.

    ``**b**``/``__b__`` -> ``*b*``; ``*i*``/``_i_`` -> ``_i_``; ``~~s~~`` -> ``~s~``; headings
    -> ``*Heading*``; ``[text](url)`` -> ``text (url)``; images -> ``alt (url)``; bullets ->
    ``•``; numbered lists and ``>`` quotes kept; inline code and fenced blocks kept verbatim
    (the language tag dropped, WhatsApp would show it as text); rules dropped; table rows
    become ``a | b``; at most one blank line in a row. Plain text comes back unchanged.
    """
    try:
        return _to_whatsapp(markdown)
    except Exception:  # a formatting bug must never cost the user the answer itself
        log.exception("to_whatsapp failed; sending the answer unformatted")
        return markdown.strip()


def _to_whatsapp(markdown: str) -> str:
    stash = _Stash()
    out: list[str] = []
    for is_code, lines in _fenced_blocks(_prepare(markdown)):
        if is_code:
            out.append(stash.put("```\n" + "\n".join(lines) + "\n```"))
            continue
        for raw in lines:
            if not _is_table_rule(raw) or _RULE.match(raw):
                out.append(_whatsapp_line(raw, stash))
    text = _collapse_blank_lines("\n".join(out))
    text = text.replace(_BOLD, "*").replace(_ITALIC, "_").replace(_STRIKE, "~")
    return stash.restore(text)


def _whatsapp_inline(text: str, stash: _Stash) -> str:
    def link(label: str, url: str, image: bool) -> str:
        if _STASH_OPEN in url:  # a bare URL, already stashed
            return url
        if not label or _same_target(label, url):
            return stash.put(url)
        return f"{label} ({stash.put(url)})"

    return _emphasis(_protect_inline(text, stash, link=link), keep=True)


def _whatsapp_line(raw: str, stash: _Stash) -> str:
    if not raw.strip() or _RULE.match(raw) or _SETEXT.match(raw):
        return ""
    if heading := _HEADING.match(raw):
        content = _whatsapp_inline(heading[2] or "", stash).replace(_BOLD, "").strip()
        return f"{_BOLD}{content}{_BOLD}" if content else ""
    if bullet := _BULLET.match(raw):
        return f"{bullet[1]}• {_whatsapp_inline(bullet[2], stash)}"
    if quote := _QUOTE.match(raw):
        return f"> {_whatsapp_inline(quote[1], stash)}".rstrip()
    if _TABLE_ROW.match(raw):
        cells = raw.strip().strip("|").split("|")
        return " | ".join(_whatsapp_inline(cell.strip(), stash) for cell in cells)
    return _whatsapp_inline(raw, stash)


# --- speech -----------------------------------------------------------------------------------

# Emoji and pictographs: ElevenLabs reads them badly (names, silence, or noise), so speech drops
# them. Ranges are the emoji blocks, not all of Unicode's "Symbol, other": "20°C" keeps its °.
_EMOJI_BASE = (
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, flags' regional indicators
    "\u2600-\u27bf"  # miscellaneous symbols, dingbats
    "\u2b00-\u2bff"  # stars, squares, arrows with emoji presentation
    "\u231a\u231b\u2328\u23cf\u23e9-\u23f3\u23f8-\u23fa"
    "\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe"
    "\u2194-\u2199\u21a9\u21aa\u2934\u2935"
    "\u203c\u2049\u2139\u3030\u303d\u3297\u3299"
)
_EMOJI_MODIFIER = "\ufe0e\ufe0f\u20e3\U000e0020-\U000e007f"
_EMOJI = re.compile(
    f"[{_EMOJI_BASE}](?:[{_EMOJI_MODIFIER}]|\u200d[{_EMOJI_BASE}])*|[{_EMOJI_MODIFIER}]"
)
# "the link" reads naturally where a URL stood ("see the link for details"); spelling a URL
# aloud helps nobody, and the text message sent alongside carries it.
SPOKEN_LINK = "the link"
_TERMINAL = ".!?…:;؟۔。！？"
_CLOSERS = "\"')]}»”’」』"


def for_speech(markdown: str) -> str:
    """The answer as plain sentences for text-to-speech.

    Emphasis markers go; headings, list items and table rows become sentences of their own
    (a period added where the line has no end punctuation); links become their text and bare
    URLs become "the link"; fenced code blocks are dropped (the text message carries them) and
    inline code keeps its content; emoji go; whitespace is collapsed into single spaces.
    """
    try:
        return _for_speech(markdown)
    except Exception:  # never lose the voice answer to a formatting bug
        log.exception("for_speech failed; speaking the raw answer")
        return " ".join(markdown.split())


def _with_end(sentence: str) -> str:
    sentence = sentence.strip()
    if not sentence:
        return ""
    if sentence.rstrip(_CLOSERS)[-1:] in _TERMINAL:
        return sentence
    return sentence + "."


def _speech_inline(text: str) -> str:
    stash = _Stash()

    def link(label: str, url: str, image: bool) -> str:
        if not label or _same_target(label, url) or _BARE_URL.fullmatch(label):
            return "" if image else SPOKEN_LINK
        return label

    text = _INLINE_CODE.sub(lambda m: stash.put(m[2].strip()), text)
    text = _ESCAPE.sub(lambda m: stash.put(m[1]), text)
    text = _AUTOLINK.sub(SPOKEN_LINK, text)
    text = _HTML_BREAK.sub(" ", text)
    text = re.sub(r"</?[a-zA-Z][^>\n]*>", "", text)
    text = _LINK.sub(lambda m: link(m[2].strip(), m[3], m[1] == "!"), text)
    text = _BARE_URL.sub(lambda m: SPOKEN_LINK + _stash_url(m[0], _Stash())[1], text)
    text = _emphasis(text, keep=False)
    # Markers the rules above left alone would be read out as "asterisk" / "underscore".
    text = re.sub(r"(?<!\d)\*+|\*+(?!\d)", " ", text)
    text = re.sub(r"_+", " ", text)
    text = re.sub(r"~~", "", text)
    text = _EMOJI.sub("", text)
    return stash.restore(text)


def _for_speech(markdown: str) -> str:
    sentences: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            sentences.append(_with_end(" ".join(paragraph)))
            paragraph.clear()

    for is_code, lines in _fenced_blocks(_prepare(markdown)):
        if is_code:
            flush()
            continue
        for raw in lines:
            own_sentence: str | None = None
            if not raw.strip() or _RULE.match(raw) or _SETEXT.match(raw) or _is_table_rule(raw):
                flush()
                continue
            if heading := _HEADING.match(raw):
                own_sentence = heading[2] or ""
            elif bullet := _BULLET.match(raw):
                own_sentence = bullet[2]
            elif numbered := _NUMBERED.match(raw):
                own_sentence = numbered[3]
            elif _TABLE_ROW.match(raw):
                cells = (_speech_inline(c).strip() for c in raw.strip().strip("|").split("|"))
                own_sentence = ", ".join(c for c in cells if c)
                flush()
                sentences.append(_with_end(own_sentence))
                continue
            else:
                quote = _QUOTE.match(raw)
                line = _speech_inline(quote[1] if quote else raw).strip()
                if line:
                    paragraph.append(line)
                continue
            flush()
            sentences.append(_with_end(_speech_inline(own_sentence)))
    flush()
    spoken = " ".join(s for s in sentences if s.strip(_TERMINAL + " "))
    spoken = " ".join(spoken.split())
    # Removed URLs and emoji can leave a space before punctuation ("Great 👍 !").
    return re.sub(r"\s+([.,;:!?…؟。！？])", r"\1", spoken)


# --- splitting --------------------------------------------------------------------------------

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
