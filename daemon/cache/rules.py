"""Which questions may be answered from, or written to, the response cache.

Safe by default. Agentforce keeps state within a session, so the same words can need different
answers (reference/anchors.md §B.4). Only *context-free* turns take part:

- a question that **opens** a conversation: the user has no earlier turn in their agent
  session *and* no cached answer was served to them recently (``response.PendingContext.has``);
  "and on Sundays?" right after a cached "opening hours" answer is not an opener;
- or a question that matches an operator FAQ rule marked ``standalone`` (it needs no context,
  e.g. "^opening hours$"), wherever it comes in the conversation. Reason ``faq``: the
  operator vouches that it has one answer for everybody, so its first answer is trusted.

An FAQ rule that is *not* standalone only sets the TTL of an opener it matches (reason
``opener``, still confirmed by different users); it makes a follow-up no more cacheable.

Never, whatever the rules say: a question that looks personal (first person singular — "my",
"I", "me" and their equivalents —, order, case and ticket numbers, e-mail addresses, phone
numbers, links) or that matches an operator deny rule. The personal patterns are a default the
operator can replace (config), never a rule to weaken by accident: a missed hit costs a second, a
wrong hit gives one user's answer to another.

The turn calls ``Rules.decide(normalize_question(text), opens_conversation=...)`` once per
question; when ``decision.cacheable`` it looks the key up, and on a miss records the agent's
reply with ``decision.ttl``.

Patterns are Python regular expressions, matched case-insensitively with ``search`` against the
*normalised* question (casefolded, trimmed; see ``normalize``), compiled once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

MIN_TTL = 3600.0  # an FAQ answer cached for less is hardly worth the confirmations
MAX_TTL = 86400.0  # an answer older than a day is too likely stale (anchors.md §B.4)
OPENER_TTL = 3600.0

Reason = Literal["empty", "too_long", "personal", "denied", "follow_up", "faq", "opener"]

# Arabic possessive "my" is a suffix (ـي / ـتي) and can't be told from other final yā' by a
# pattern; these are the words a customer writes most, with the attached conjunctions and
# prepositions (و ف ب ل ك) allowed in front.
_AR_MY_WORDS = (
    "طلبي|طلبيتي|طلباتي|رقمي|حسابي|اسمي|عنواني|فاتورتي|فواتيري|بطاقتي|شحنتي|شحنتى|رصيدي|"
    "اشتراكي|حجزي|موعدي|هاتفي|جوالي|تذكرتي|شكواي|باقتي|بياناتي|معلوماتي|دفعتي|سري|"
    "سيارتي|منزلي|بيتي|ابني|بنتي|زوجي|زوجتي"
)
_AR_I_WORDS = "أنا|انا|إني|اني|إنني|انني|لي|عندي|لدي|لديّ|معي|نفسي|أريد|اريد|أبغى|ابغى|ابغي|بدي"

DEFAULT_PERSONAL: tuple[str, ...] = (
    # English first person singular (and plural possessive: "our order" is someone's).
    r"\b(?:i|me|my|mine|myself|im|ive|our|ours|ourselves)\b",
    # Common first person words of other languages customers write in.
    r"\b(?:je|moi|mon|ma|mes)\b|\bj['’]",  # French
    r"\b(?:yo|mi|mis|conmigo)\b",  # Spanish, Italian "mi"
    r"\b(?:ich|mich|mir|mein|meine|meinen|meinem|meiner|meines)\b",  # German
    r"\b(?:eu|meu|meus|minha|minhas)\b",  # Portuguese
    rf"(?<!\w)[وفبلك]?(?:{_AR_MY_WORDS})(?!\w)",  # Arabic "my ..."
    rf"(?<!\w)[وف]?(?:{_AR_I_WORDS})(?!\w)",  # Arabic "I", "me", "I want"
    # Identifiers: long digit runs (any script's digits) such as order numbers "00001116",
    # "#12345" / "#AB-77", an id right after what it identifies, phone numbers.
    r"\d{5,}",
    r"#\s*[\w-]*\d",
    r"\b(?:order|case|ticket|booking|reservation|invoice|account|acct|tracking|reference|ref"
    r"|policy|claim|customer|member|confirmation|parcel|shipment)\b\W{0,3}"
    r"(?:no|nr|num|number|id)?\.?\W{0,3}[a-z]{0,4}\d",
    r"\+?\d(?:[\s().-]*\d){6,}",
    # E-mail addresses and handles, links (they carry tokens and ids).
    r"\S@\S",
    r"https?://|www\.",
)


def _compile(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{what}: not a valid regular expression: {exc}") from exc


@dataclass(frozen=True)
class CacheRule:
    """An operator FAQ rule: questions matching ``pattern`` may be cached for ``ttl`` seconds.

    ``standalone``: the question needs no context and has one answer for everybody, so it is
    cacheable even in the middle of a conversation and its first answer is trusted. Not
    standalone: the rule only sets the TTL of an opener (which still needs confirmations).
    """

    pattern: str
    ttl: float
    standalone: bool = True
    name: str = ""  # for errors and logs; the pattern when empty
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        what = f"cache rule {self.name or self.pattern!r}"
        if isinstance(self.ttl, bool) or not MIN_TTL <= self.ttl <= MAX_TTL:
            raise ValueError(
                f"{what}: ttl must be between {MIN_TTL:.0f} and {MAX_TTL:.0f} seconds, "
                f"got {self.ttl!r}"
            )
        object.__setattr__(self, "regex", _compile(self.pattern, what))

    @property
    def label(self) -> str:
        return self.name or self.pattern


@dataclass(frozen=True)
class DenyRule:
    """Questions matching ``pattern`` are never answered from the cache nor written to it."""

    pattern: str
    name: str = ""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        what = f"deny rule {self.name or self.pattern!r}"
        object.__setattr__(self, "regex", _compile(self.pattern, what))

    @property
    def label(self) -> str:
        return self.name or self.pattern


@dataclass(frozen=True)
class Decision:
    """``rule``: the label of the rule or personal pattern that decided, for logs/metrics."""

    cacheable: bool
    reason: Reason
    ttl: float = 0.0
    rule: str = ""


class Rules:
    def __init__(
        self,
        faq: Sequence[CacheRule] = (),
        deny: Sequence[DenyRule] = (),
        personal: Sequence[str] = DEFAULT_PERSONAL,
        *,
        opener_ttl: float = OPENER_TTL,
        max_chars: int = 300,
    ) -> None:
        if isinstance(opener_ttl, bool) or not MIN_TTL <= opener_ttl <= MAX_TTL:
            raise ValueError(
                f"cache opener_ttl: must be between {MIN_TTL:.0f} and {MAX_TTL:.0f} seconds, "
                f"got {opener_ttl!r}"
            )
        self._faq = tuple(faq)
        self._deny = tuple(deny)
        self._personal = tuple((p, _compile(p, f"personal pattern {p!r}")) for p in personal)
        self._opener_ttl = float(opener_ttl)
        # A long message is rarely asked twice word for word and more often carries details.
        self._max_chars = max_chars

    def decide(self, normalized: str, *, opens_conversation: bool) -> Decision:
        """May this (normalised) question be served from and written to the cache?"""
        if not normalized:
            return Decision(False, "empty")
        if len(normalized) > self._max_chars:
            return Decision(False, "too_long")
        for pattern, regex in self._personal:
            if regex.search(normalized):
                return Decision(False, "personal", rule=pattern)
        for deny in self._deny:
            if deny.regex.search(normalized):
                return Decision(False, "denied", rule=deny.label)
        for rule in self._faq:
            if rule.regex.search(normalized):
                if rule.standalone:
                    return Decision(True, "faq", ttl=float(rule.ttl), rule=rule.label)
                if opens_conversation:
                    # Not standalone: the rule only sets the TTL. The operator did not vouch
                    # that the answer is the same for everybody, so it is an opener and
                    # needs the confirmations of different users like any other opener.
                    return Decision(True, "opener", ttl=float(rule.ttl), rule=rule.label)
                return Decision(False, "follow_up", rule=rule.label)
        if opens_conversation:
            return Decision(True, "opener", ttl=self._opener_ttl)
        return Decision(False, "follow_up")
