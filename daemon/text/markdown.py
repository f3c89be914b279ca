"""Reading the agent's Markdown: what ``to_whatsapp`` and ``for_speech`` both need.

Code spans, escapes and URLs are stashed behind private-use placeholders so later rewrites
cannot touch them; fenced blocks are cut out first; emphasis follows CommonMark's flanking
rules, made stricter. Pure, total, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Private-use code points mark stashed spans (code, URLs, escaped characters) and the emphasis
# found so far. They are removed from the input first, so they can never clash with it.
STASH_OPEN = "\ue000"
_STASH_CLOSE = "\ue001"
BOLD = "\ue002"
ITALIC = "\ue003"
STRIKE = "\ue004"
_SENTINELS = re.compile("[\ue000-\ue004]")
_STASHED = re.compile(f"{STASH_OPEN}(\\d+){_STASH_CLOSE}")


class Stash:
    """Spans taken out of the text so later rewrites cannot touch them."""

    def __init__(self) -> None:
        self._items: list[str] = []

    def put(self, text: str) -> str:
        self._items.append(text)
        return f"{STASH_OPEN}{len(self._items) - 1}{_STASH_CLOSE}"

    def restore(self, text: str) -> str:
        # A stashed span may itself hold a placeholder (a link around a stashed URL); each
        # round resolves one level, and there can never be more levels than items.
        for _ in range(len(self._items) + 1):
            if STASH_OPEN not in text:
                break
            text = _STASHED.sub(lambda m: self._items[int(m[1])], text)
        return text


_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
# Link targets may hold one level of balanced parentheses (Wikipedia URLs), and an optional
# title, which is dropped.
LINK = re.compile(
    r"(!?)\[([^\]\n]*)\]\(\s*<?((?:[^()\s<>]|\([^()\s]*\))+)>?"
    r"(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?\s*\)"
)
BARE_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>]+", re.IGNORECASE)
_URL_TRAILING = ".,;:!?'\"”’»*_~"

HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
SETEXT = re.compile(r"^ {0,3}=+[ \t]*$")
BULLET = re.compile(r"^([ \t]*)[-*+•][ \t]+(.*)$")
NUMBERED = re.compile(r"^([ \t]*)(\d{1,9}[.)])[ \t]+(.*)$")
QUOTE = re.compile(r"^[ \t]*>[ \t]?(.*)$")
TABLE_ROW = re.compile(r"^[ \t]*\|.*\|[ \t]*$")
HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)

# Emphasis follows CommonMark's idea of flanking, made stricter: a delimiter run opens only
# where it is not glued to a word on its left, and closes only where it is not glued to a word
# on its right. That keeps ``2*3*4``, ``snake_case_words`` and ``a**b`` untouched, and matches
# what WhatsApp itself renders (its markers also need word boundaries).
_EMPHASIS: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"(?<![\w*])\*\*\*(?![\s*])(.+?)(?<![\s*])\*\*\*(?![\w*])"), BOLD, ITALIC),
    (re.compile(r"(?<!\w)___(?![\s_])(.+?)(?<![\s_])___(?!\w)"), BOLD, ITALIC),
    (re.compile(r"(?<![\w*])\*\*(?![\s*])(.+?)(?<![\s*])\*\*(?![\w*])"), BOLD, ""),
    (re.compile(r"(?<!\w)__(?![\s_])(.+?)(?<![\s_])__(?!\w)"), BOLD, ""),
    (re.compile(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])"), ITALIC, ""),
    (re.compile(r"(?<!\w)_(?![\s_])(.+?)(?<![\s_])_(?!\w)"), ITALIC, ""),
    (re.compile(r"(?<![\w~])~~(?![\s~])(.+?)(?<![\s~])~~(?![\w~])"), STRIKE, ""),
)


def is_table_rule(line: str) -> bool:
    """A table's delimiter row, e.g. ``|---|:--:|`` (a line of only ``|``, ``:``, ``-``)."""
    stripped = line.strip()
    return "|" in stripped and "-" in stripped and not stripped.strip("|:- \t")


def emphasis(text: str, *, keep: bool) -> str:
    """Replace Markdown emphasis by private markers (``keep``) or by its bare content."""
    for pattern, outer, inner in _EMPHASIS:
        replacement = rf"{outer}{inner}\g<1>{inner}{outer}" if keep else r"\g<1>"
        text = pattern.sub(replacement, text)
    return text


def stash_url(url: str, stash: Stash) -> tuple[str, str]:
    """Split a bare URL from the punctuation that ends the sentence it sits in."""
    tail = ""
    while url and (
        url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))
    ):
        tail = url[-1] + tail
        url = url[:-1]
    return stash.put(url), tail


def same_target(text: str, url: str) -> bool:
    def bare(value: str) -> str:
        value = value.strip().lower()
        value = re.sub(r"^(?:https?://|mailto:)", "", value)
        return value.rstrip("/")

    return bare(text) == bare(url)


def protect_inline(line: str, stash: Stash, *, link: Callable[[str, str, bool], str]) -> str:
    """Stash code spans, escapes and URLs; rewrite links and images through ``link``."""
    line = INLINE_CODE.sub(lambda m: stash.put(m[0]), line)
    line = ESCAPE.sub(lambda m: stash.put(m[1]), line)
    line = HTML_BREAK.sub(" ", line)
    line = LINK.sub(lambda m: link(m[2].strip(), m[3], m[1] == "!"), line)
    line = AUTOLINK.sub(lambda m: link(m[1], m[1], False), line)

    def bare(m: re.Match[str]) -> str:
        placeholder, tail = stash_url(m[0], stash)
        return placeholder + tail

    # Placeholders are not matched by BARE_URL: URLs already stashed stay as they are.
    return BARE_URL.sub(bare, line)


def fenced_blocks(text: str) -> list[tuple[bool, list[str]]]:
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


def prepare(text: str) -> str:
    text = _SENTINELS.sub("", text)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def collapse_blank_lines(text: str) -> str:
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()
