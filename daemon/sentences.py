"""Sentences out of streamed Markdown, for text-to-speech one sentence at a time. Pure.

Fed the agent's answer piece by piece (``feed``), ``SentenceChunker`` hands out each
sentence as soon as it is certainly closed, as the Markdown the agent wrote (the caller
makes it speakable with ``text.for_speech``). Where it closes one:

- at ``.`` ``!`` ``?`` ``…`` (and ``؟`` ``۔``, ``。！？``), with the quotes, brackets and
  emphasis markers that close after it, once the next character is a space — never inside
  a decimal (``3.5``), a URL or a file name (``example.com/a.b``): no space follows there;
- not after an abbreviation (``e.g.``, ``Dr.``, ``approx.``: a short list), an initial
  (``J. Smith``, ``د. أحمد``), a list number (``1. Open``), or before a lower-case Latin
  word (``... and then``): a sentence rarely starts in lower case;
- at a line break: list items, headings and table rows are each a sentence;
- never inside Markdown markup: inline code, a link's label or URL, ``**bold**``; a fenced
  code block is dropped whole (speech skips code; the text message carries it);
- only once at least ``min_chars`` long: short pieces ("Hi!", a two-word list item) join
  the next one, so a voice note is not a string of tiny requests;
- and at the last space before ``max_chars`` when nothing closed it sooner.

The same text gives the same sentences however it is split into pieces: a sentence closes
only on what it contains and the first non-space character after it (Pipecat's "needs
lookahead", reference/speech.md §6.2), so the chunker waits for that character rather
than guess. ``flush`` closes what is left at the end of the answer.
"""

from __future__ import annotations

import re

MIN_CHARS = 20  # LiveKit's min_sentence_len (reference/speech.md §6.3)
MAX_CHARS = 400  # ~25 s of speech: one request, well inside every model's limit

_TERMINALS = frozenset(".!?…؟۔。！？")
# What may close after the punctuation and still belong to the sentence.
_CLOSERS = frozenset("\"')]}»”’」』*_~")
# Abbreviations that end with a period inside a sentence (lower case, without the final
# period). Not "etc": it ends sentences as often as not, and a split there costs little.
_ABBREVIATIONS = frozenset(
    {
        "e.g", "i.e", "cf", "vs", "approx", "appt", "apt", "dept", "est", "min", "max",
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "no", "nos", "nr",
        "tel", "fig", "vol", "p", "pp", "ca", "inc", "ltd", "co", "corp", "a.m", "p.m",
        "u.s", "u.k", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
        "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun",
    }
)  # fmt: skip
_LIST_NUMBER = re.compile(r"[ \t]{0,3}\d{1,9}")
_FENCE = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_OPENERS = "\"'([{«“‘"
# Where the text kept in fence mode starts: on the opening fence's line, at the start of a
# block line, or in the middle of a line too long to keep (its rest is not a line start).
_OPENING, _LINE_START, _MID_LINE = 0, 1, 2


class SentenceChunker:
    """Incremental: ``feed`` pieces of the answer, get the sentences they close."""

    def __init__(self, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS) -> None:
        if not 0 < min_chars < max_chars:
            raise ValueError("need 0 < min_chars < max_chars")
        self._min = min_chars
        self._max = max_chars
        self._buf = ""  # the open sentence (and what follows it, not yet decided)
        self._fence: str | None = None  # the marker of the code fence we are in
        self._fence_line = _OPENING  # where in the fenced block the start of _buf is
        self._reset_scan()

    def _reset_scan(self, *, line_start: bool = True) -> None:
        self._i = 0  # next character of _buf to look at
        self._line = 0 if line_start else -1  # where the current line starts in _buf
        self._code = False  # inside `inline code`
        self._link = 0  # 1: inside [a link label], 2: inside its (url)
        self._strong = 0  # "**" and "__" seen: odd = inside bold

    @property
    def pending(self) -> str:
        """Text fed but not yet in a sentence (the start of the next one)."""
        return "" if self._fence is not None else self._buf

    def feed(self, text: str) -> list[str]:
        """The sentences ``text`` closes, in order (often none)."""
        self._buf += text
        return self._scan(final=False)

    def flush(self) -> list[str]:
        """The end of the answer: whatever is left is the last sentence."""
        sentences = self._scan(final=True)
        rest = self._buf.strip()
        if rest and self._fence is None:
            sentences.append(rest)
        self.reset()
        return sentences

    def reset(self) -> None:
        """Forget everything not yet handed out (the agent withdrew it)."""
        self._buf = ""
        self._fence = None
        self._fence_line = _OPENING
        self._reset_scan()

    # -- scanning --------------------------------------------------------------------------

    def _scan(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while True:
            if self._fence is not None:
                if not self._skip_fence(final):
                    return out
                continue
            end = self._find_end(final)
            if end is None:
                return out
            sentence = self._buf[:end].strip()
            after = self._buf[end:]
            self._buf = after.lstrip()
            # The rest starts a line if a line break was among the spaces cut off, or if a
            # fence line starts there (end is that line's start).
            skipped = after[: len(after) - len(self._buf)]
            self._reset_scan(line_start="\n" in skipped or self._fence is not None)
            if sentence:
                out.append(sentence)

    def _find_end(self, final: bool) -> int | None:
        """Where the open sentence ends, scanning on from where the last call stopped; None
        when more text is needed to know. A fence start hands the text before it out and
        enters fence mode (returning its start)."""
        buf = self._buf
        while self._i < len(buf):
            i = self._i
            if i == self._line and not self._code:
                fence = self._fence_at(i, final)
                if fence is None:
                    return None  # the line may still turn into a fence: wait
                if fence:
                    self._fence = fence
                    return i  # the text before the fence is a sentence of its own
            if i >= self._max:
                return self._forced_cut()
            char = buf[i]
            if char == "\n":
                self._line = i + 1
                # Markup does not run across lines here; a stray opener must not stop
                # every later line from closing a sentence.
                self._code, self._link = False, 0
                if self._long_enough(i):
                    return i
            elif char == "`":
                self._code = not self._code
            elif not self._code:
                end = self._markup_or_end(i, final)
                if end == -1:
                    return None  # the next character decides: wait for it
                if end is not None:
                    return end
            self._i += 1
        return None

    def _markup_or_end(self, i: int, final: bool) -> int | None:
        """Track markup at ``i``; the end of the sentence if one closes at ``i``, -1 if the
        text after ``i`` must be seen first, else None."""
        buf = self._buf
        char = buf[i]
        if char == "[" and self._link == 0:
            self._link = 1
        elif char == "]" and self._link == 1:
            if i + 1 >= len(buf) and not final:
                return -1
            self._link = 2 if buf[i + 1 : i + 2] == "(" else 0
        elif char == ")" and self._link == 2:
            self._link = 0
        elif char in "*_":
            if i + 1 >= len(buf) and not final:
                return -1  # one marker or the first of a pair: the next character says
            if buf[i + 1 : i + 2] == char and buf[i - 1 : i] != char:
                self._strong += 1
        elif char in _TERMINALS and self._link == 0:
            return self._end_after_terminal(i, final)
        return None

    def _end_after_terminal(self, i: int, final: bool) -> int | None:
        buf = self._buf
        j = i
        while j < len(buf) and buf[j] in _TERMINALS:
            j += 1
        k = j
        while k < len(buf) and buf[k] in _CLOSERS:
            k += 1
        if k == len(buf):
            # At the very end: more may follow; at the end of the answer, flush takes it.
            return None if final else -1
        if not buf[k].isspace():
            return None  # "3.5", "example.com", "?q=1": not an end
        nxt = k
        while nxt < len(buf) and buf[nxt].isspace() and buf[nxt] != "\n":
            nxt += 1
        if nxt == len(buf) and not final:
            return -1  # only spaces so far: the next word decides
        if nxt < len(buf) and buf[nxt] != "\n" and not self._closes(i, j, buf[nxt]):
            return None
        if self._inside_strong(k) or not self._long_enough(k):
            return None
        return k

    def _closes(self, i: int, j: int, next_char: str) -> bool:
        """Whether the punctuation ``buf[i:j]`` ends a sentence, given the next word's first
        character (a line break after it always does)."""
        run = self._buf[i:j]
        if run[-1] in "!?؟！？":
            return True
        if next_char.isascii() and next_char.islower():
            return False  # "e.g. this", "... and then"
        if run != ".":
            return True
        line = self._buf[self._line : i]
        if _LIST_NUMBER.fullmatch(line):
            return False  # "1. Open your order"
        word = self._buf[:i].rsplit(None, 1)[-1] if self._buf[:i].strip() else ""
        word = word.lstrip(_OPENERS).lower()
        if word in _ABBREVIATIONS:
            return False
        return not (len(word) == 1 and word.isalpha())  # an initial: "J. Smith"

    def _inside_strong(self, end: int) -> bool:
        # Markers after the punctuation ("**Done.**") are counted up to the end.
        extra = sum(
            1
            for n in range(self._i + 1, end)
            if self._buf[n] in "*_"
            and self._buf[n + 1 : n + 2] == self._buf[n]
            and self._buf[n - 1] != self._buf[n]
        )
        return (self._strong + extra) % 2 == 1

    def _long_enough(self, end: int) -> bool:
        return len(self._buf[:end].strip()) >= self._min

    def _forced_cut(self) -> int:
        """Nothing closed the sentence within ``max_chars``: cut at the last space."""
        window = self._buf[: self._max]
        cut = max(window.rfind(" "), window.rfind("\t"))
        return cut if cut > 0 else self._max

    # -- fenced code -----------------------------------------------------------------------

    def _fence_at(self, i: int, final: bool) -> str | None:
        """The fence marker opening at line start ``i``; "" if the line is no fence; None if
        too little of the line is known yet."""
        line_end = self._buf.find("\n", i)
        line = self._buf[i:] if line_end == -1 else self._buf[i:line_end]
        match = _FENCE.match(line)
        if match:
            return match[1]
        if line_end == -1 and not final and _could_become_fence(line):
            return None
        return ""

    def _skip_fence(self, final: bool) -> bool:
        """Drop fenced lines up to and including the closing fence; False when the closing
        fence was not seen yet (what was seen is dropped, but for an unfinished line)."""
        assert self._fence is not None
        buf = self._buf
        start = 0
        while True:
            line_end = buf.find("\n", start)
            if line_end == -1:
                rest = buf[start:]
                if final:
                    self._buf = ""
                elif len(rest) > 100 and self._fence_line != _OPENING:
                    self._buf = ""  # no fence is that long: drop it, remember it is mid-line
                    self._fence_line = _MID_LINE
                else:
                    self._buf = rest  # it may be the closing fence: wait for its end
                return False
            line = buf[start:line_end]
            start = line_end + 1
            where, self._fence_line = self._fence_line, _LINE_START
            if where != _LINE_START:
                continue  # the opening fence's line, or the rest of a dropped long line
            stripped = line.strip()
            if stripped.startswith(self._fence) and stripped.strip(self._fence[0]) == "":
                self._fence = None
                self._fence_line = _OPENING
                self._buf = buf[start:]
                self._reset_scan()
                return True


def _could_become_fence(line: str) -> bool:
    body = line.lstrip(" \t")
    if len(line) - len(body) > 3:
        return False
    return body == "" or (len(body) < 3 and len(set(body)) == 1 and body[0] in "`~")


def split_sentences(
    text: str, *, min_chars: int = MIN_CHARS, max_chars: int = MAX_CHARS
) -> list[str]:
    """All the sentences of a whole text, as the chunker would hand them out."""
    chunker = SentenceChunker(min_chars=min_chars, max_chars=max_chars)
    return chunker.feed(text) + chunker.flush()
