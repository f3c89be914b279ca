"""Retries that are safe to make: which errors, how long to wait, and how many in total.

Usage::

    budget = RetryBudget()                       # one per upstream, for the whole process
    policy = retry_policy(idempotent=False, rng=random.Random())

    async def attempt(n: int) -> Reply:
        return await breaker.call(lambda: client.send(session, text))

    reply = await with_retries(attempt, policy=policy, budget=budget)

The pieces (reference/anchors.md §C.2):

- ``retryable(exc, idempotent=, sent=)`` — the rule of what may be repeated, decided on the
  error's provider-neutral ``reason`` (daemon/errors.py) and class, never on a provider's own
  codes: the client that parsed the error knows what it meant. A send whose outcome is unknown
  is not blindly repeated: a POST that timed out after it was sent, or got a 500, may have been
  processed, and repeating it can give the user two answers.
- ``backoff`` — AWS "full jitter": ``uniform(0, min(cap, base * 2**attempt))``.
- ``retry_after_seconds`` — a ``Retry-After`` header, delta-seconds or HTTP-date.
- ``RetryBudget`` — Finagle's retry budget, so retries cannot multiply an outage's load.
- ``retry_policy`` — combines them into the ``policy`` ``with_retries`` asks after a failure.

Read from ``UpstreamError`` besides its class: ``reason`` (what it meant, set by the client),
``retry_after`` (float seconds, from ``retry_after_seconds`` or ``CircuitOpen``) and ``sent``
(False when the client knows the request never left; None: unknown, and ``was_sent`` then looks
for an httpx connect or pool error in the ``raise ... from`` chain).
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import math
import random
import re
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import httpx
import trio

from daemon.errors import (
    Reason,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from daemon.instrumentation.events import RetryOutcome
from daemon.resilience.breaker import CircuitOpen

log = logging.getLogger(__name__)

T = TypeVar("T")

Policy = Callable[[UpstreamError, int], float | None]
"""``policy(exc, attempt)``: seconds to wait before attempt ``attempt + 1``, or None to give up."""

# A server may ask for hours (urllib3 allows 6 h); nothing in a chat turn waits that long.
MAX_RETRY_AFTER = 300.0

# "Not processed": the upstream refused to start on it, so repeating it cannot do anything
# twice, even for a send (Graph 130429 / 131056, HTTP 429 / 503, Agentforce 423, ElevenLabs
# busy: the clients map those to these reasons).
NOT_PROCESSED = frozenset({Reason.SLOW_DOWN, Reason.USER_BUSY})
# Repeating it fails the same way: the user cannot be messaged, or the media id is gone (the
# channel uploads again itself; a blind repeat of the same request would not).
NEVER_RETRIED = frozenset({Reason.RECIPIENT, Reason.MEDIA_GONE})

# Errors raised before a byte of the request went out (anchors.md §C.2: urllib3 treats
# connect errors as safe to retry). A ReadError or RemoteProtocolError may come after the
# body was sent, so they are not here.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_DELTA_SECONDS = re.compile(r"[+-]?\d+(\.\d+)?")


def backoff(attempt: int, *, base: float = 0.5, cap: float = 8.0, rng: random.Random) -> float:
    """Full jitter: a uniform draw in ``[0, min(cap, base * 2**attempt)]``; attempt 0 is first."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # min() before the power would overflow a float for a large attempt number.
    ceiling = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    return rng.uniform(0.0, ceiling)


def retry_after_seconds(headers: Mapping[str, str], now_epoch: float) -> float | None:
    """Seconds asked for by ``Retry-After`` (RFC 9110 §10.2.3), or None without a usable one.

    Delta-seconds or an HTTP-date; a past date or negative number gives 0, and the answer is
    capped at ``MAX_RETRY_AFTER``. ``headers`` may be an ``httpx.Headers`` or a plain dict.
    """
    raw = headers.get("retry-after")
    if raw is None:
        raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None:
        return None
    value = raw.strip()
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:  # RFC 850 / asctime forms carry no zone; HTTP dates are GMT
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now_epoch
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


class RetryBudget:
    """Finagle-style retry budget (anchors.md §C.2): retries at most ``ratio`` of requests.

    Each request deposits ``ratio`` of a token and each retry withdraws one; on top, a floor
    of ``min_per_second`` retries per second lets a quiet process still retry. Deposits and
    withdrawals count for ``window`` seconds. One budget per upstream, shared by all turns.
    """

    def __init__(
        self,
        *,
        ratio: float = 0.1,
        min_per_second: float = 1.0,
        window: float = 10.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if ratio < 0 or min_per_second < 0 or window <= 0:
            raise ValueError("ratio and min_per_second must be >= 0, window > 0")
        self._ratio = ratio
        self._floor = min_per_second * window
        self._window = window
        self._clock = clock
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()

    def record_request(self) -> None:
        """One request was made (count it once, not once per attempt)."""
        self._requests.append(self._clock())
        # Trimmed here too: with healthy upstreams nobody retries, and the deque would keep
        # every request of the process's life (bench/soak.py found ~10 MiB per 100k turns).
        self._expire()

    def try_retry(self) -> bool:
        """Take a token for one retry; False means the budget is spent: do not retry."""
        if self.balance() < 1.0:
            return False
        self._retries.append(self._clock())
        return True

    def balance(self) -> float:
        """Tokens available now (for metrics)."""
        self._expire()
        return self._floor + self._ratio * len(self._requests) - len(self._retries)

    def _expire(self) -> None:
        horizon = self._clock() - self._window
        for times in (self._requests, self._retries):
            while times and times[0] <= horizon:
                times.popleft()

    def __len__(self) -> int:
        """Requests and retries remembered (bounded by the window)."""
        return len(self._requests) + len(self._retries)


def was_sent(exc: BaseException) -> bool:
    """May the request have reached the server? False only when we know it did not."""
    explicit = getattr(exc, "sent", None)
    if isinstance(explicit, bool):
        return explicit
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, _NOT_SENT):
            return False
        cause = cause.__cause__
    return True


def retryable(exc: UpstreamError, *, idempotent: bool, sent: bool) -> bool:
    """Is repeating the request that raised ``exc`` safe and worth it?

    ``idempotent``: repeating it changes nothing the user can see — a GET, a media download,
    a speech synthesis or transcription. ``sent``: the request may have reached the server.
    """
    if isinstance(exc, CircuitOpen):
        return False  # failing fast is the point; the breaker decides when to try again
    if exc.reason in NEVER_RETRIED:
        return False
    if exc.reason in NOT_PROCESSED:
        return True  # whatever the class: the upstream said it did nothing with it
    if isinstance(exc, UpstreamRejected):
        return False  # it answered and refused; or we refused it locally before sending
    if not isinstance(exc, UpstreamUnavailable | UpstreamTimeout):
        return False
    # Unavailable (a 5xx, a lost connection) or timed out, with no reason to say it was not
    # processed: safe if it never left, or if repeating it is harmless. A send that may have
    # gone is an unknown outcome, not a failure to repeat.
    return not sent or idempotent


def retry_policy(
    *,
    idempotent: bool,
    rng: random.Random,
    base: float = 0.5,
    cap: float = 8.0,
    max_delay: float = 30.0,
    sent: Callable[[UpstreamError], bool] = was_sent,
) -> Policy:
    """The ``policy`` for ``with_retries``: ``retryable`` plus how long to wait.

    The wait is the error's ``retry_after`` when it has one (Retry-After, already capped at
    ``MAX_RETRY_AFTER`` when parsed), ``4**attempt`` seconds for ``Reason.USER_BUSY`` (Meta's
    advice for the pair rate limit, whatsapp.md §5.2: 1, 4, 16 s; it also gives a session
    busy with a request we gave up on the time to finish it), full-jitter ``backoff``
    otherwise. A wait above ``max_delay`` gives up at once: retrying sooner than asked would
    be refused again, and sleeping longer would eat the user's turn.
    """

    def policy(exc: UpstreamError, attempt: int) -> float | None:
        if not retryable(exc, idempotent=idempotent, sent=sent(exc)):
            return None
        asked = exc.retry_after
        # Checked, not trusted: anyone may set it, and a NaN would slip past ``max_delay``.
        if isinstance(asked, int | float) and not isinstance(asked, bool) and math.isfinite(asked):
            delay = max(0.0, float(asked))
        elif exc.reason == Reason.USER_BUSY:
            delay = 4.0 ** min(attempt, 16)
        else:
            delay = backoff(attempt, base=base, cap=cap, rng=rng)
        return delay if delay <= max_delay else None

    return policy


Outcome = Callable[[RetryOutcome], None]
"""``on_outcome(outcome)``, for metrics: RETRIED for each retry made, BUDGET_SPENT when a
retry was wanted and the budget said no, and for a call that was retried at least once,
RECOVERED (it succeeded in the end) or GAVE_UP (it still failed)."""


async def with_retries(
    call: Callable[[int], Awaitable[T]],
    *,
    policy: Policy,
    budget: RetryBudget | None,
    max_attempts: int = 3,
    sleep: Callable[[float], Awaitable[None]] = trio.sleep,
    on_outcome: Outcome | None = None,
) -> T:
    """``await call(attempt)`` for attempt 0, 1, ... until it returns or may not be retried.

    Only ``UpstreamError`` is retried, at most ``max_attempts`` calls in all (Google SRE: 3),
    each retry after ``policy``'s delay and only while ``budget`` has a token. The last error
    is raised as it is. Cancellation and other exceptions pass straight through.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")

    def outcome(name: RetryOutcome) -> None:
        if on_outcome is not None:
            on_outcome(name)

    if budget is not None:
        budget.record_request()
    attempt = 0
    while True:
        try:
            result = await call(attempt)
        except UpstreamError as exc:
            delay = policy(exc, attempt) if attempt + 1 < max_attempts else None
            if delay is not None and budget is not None and not budget.try_retry():
                log.info("retry budget spent: upstream=%s, giving up", exc.upstream)
                outcome(RetryOutcome.BUDGET_SPENT)
                delay = None
            if delay is None:
                if attempt > 0:
                    outcome(RetryOutcome.GAVE_UP)
                raise
            # Status and code only: messages can carry session ids or user text.
            log.info(
                "retrying: upstream=%s failed attempt %d/%d, next in %.2fs: %s status=%s "
                "code=%s reason=%s",
                exc.upstream,
                attempt + 1,
                max_attempts,
                delay,
                type(exc).__name__,
                exc.status,
                exc.code,
                exc.reason,
            )
            outcome(RetryOutcome.RETRIED)
        else:
            if attempt > 0:
                outcome(RetryOutcome.RECOVERED)
            return result
        await sleep(delay)
        attempt += 1
