"""Markdown -> plain sentences for text-to-speech: no markup, no URLs, no emoji.

Pure and total: ``for_speech`` never raises, whatever the input.
"""

from __future__ import annotations

import logging
import re

from daemon.text.markdown import (
    AUTOLINK,
    BARE_URL,
    BULLET,
    ESCAPE,
    HEADING,
    HTML_BREAK,
    INLINE_CODE,
    LINK,
    NUMBERED,
    QUOTE,
    RULE,
    SETEXT,
    TABLE_ROW,
    Stash,
    emphasis,
    fenced_blocks,
    is_table_rule,
    prepare,
    same_target,
    stash_url,
)

log = logging.getLogger(__name__)

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
    stash = Stash()

    def link(label: str, url: str, image: bool) -> str:
        if not label or same_target(label, url) or BARE_URL.fullmatch(label):
            return "" if image else SPOKEN_LINK
        return label

    text = INLINE_CODE.sub(lambda m: stash.put(m[2].strip()), text)
    text = ESCAPE.sub(lambda m: stash.put(m[1]), text)
    text = AUTOLINK.sub(SPOKEN_LINK, text)
    text = HTML_BREAK.sub(" ", text)
    text = re.sub(r"</?[a-zA-Z][^>\n]*>", "", text)
    text = LINK.sub(lambda m: link(m[2].strip(), m[3], m[1] == "!"), text)
    text = BARE_URL.sub(lambda m: SPOKEN_LINK + stash_url(m[0], Stash())[1], text)
    text = emphasis(text, keep=False)
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

    for is_code, lines in fenced_blocks(prepare(markdown)):
        if is_code:
            flush()
            continue
        for raw in lines:
            own_sentence: str | None = None
            if not raw.strip() or RULE.match(raw) or SETEXT.match(raw) or is_table_rule(raw):
                flush()
                continue
            if heading := HEADING.match(raw):
                own_sentence = heading[2] or ""
            elif bullet := BULLET.match(raw):
                own_sentence = bullet[2]
            elif numbered := NUMBERED.match(raw):
                own_sentence = numbered[3]
            elif TABLE_ROW.match(raw):
                cells = (_speech_inline(c).strip() for c in raw.strip().strip("|").split("|"))
                own_sentence = ", ".join(c for c in cells if c)
                flush()
                sentences.append(_with_end(own_sentence))
                continue
            else:
                quote = QUOTE.match(raw)
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
