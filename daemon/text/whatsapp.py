"""Markdown -> WhatsApp's own formatting (``*bold*``, ``_italic_``, ``~strike~``, code).

Pure and total: ``to_whatsapp`` never raises, whatever the input.
"""

from __future__ import annotations

import logging

from daemon.text.markdown import (
    BOLD,
    BULLET,
    HEADING,
    ITALIC,
    QUOTE,
    RULE,
    SETEXT,
    STASH_OPEN,
    STRIKE,
    TABLE_ROW,
    Stash,
    collapse_blank_lines,
    emphasis,
    fenced_blocks,
    is_table_rule,
    prepare,
    protect_inline,
    same_target,
)

log = logging.getLogger(__name__)


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
    stash = Stash()
    out: list[str] = []
    for is_code, lines in fenced_blocks(prepare(markdown)):
        if is_code:
            out.append(stash.put("```\n" + "\n".join(lines) + "\n```"))
            continue
        for raw in lines:
            if not is_table_rule(raw) or RULE.match(raw):
                out.append(_whatsapp_line(raw, stash))
    text = collapse_blank_lines("\n".join(out))
    text = text.replace(BOLD, "*").replace(ITALIC, "_").replace(STRIKE, "~")
    return stash.restore(text)


def _whatsapp_inline(text: str, stash: Stash) -> str:
    def link(label: str, url: str, image: bool) -> str:
        if STASH_OPEN in url:  # a bare URL, already stashed
            return url
        if not label or same_target(label, url):
            return stash.put(url)
        return f"{label} ({stash.put(url)})"

    return emphasis(protect_inline(text, stash, link=link), keep=True)


def _whatsapp_line(raw: str, stash: Stash) -> str:
    if not raw.strip() or RULE.match(raw) or SETEXT.match(raw):
        return ""
    if heading := HEADING.match(raw):
        content = _whatsapp_inline(heading[2] or "", stash).replace(BOLD, "").strip()
        return f"{BOLD}{content}{BOLD}" if content else ""
    if bullet := BULLET.match(raw):
        return f"{bullet[1]}• {_whatsapp_inline(bullet[2], stash)}"
    if quote := QUOTE.match(raw):
        return f"> {_whatsapp_inline(quote[1], stash)}".rstrip()
    if TABLE_ROW.match(raw):
        cells = raw.strip().strip("|").split("|")
        return " | ".join(_whatsapp_inline(cell.strip(), stash) for cell in cells)
    return _whatsapp_inline(raw, stash)
