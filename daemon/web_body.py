"""How much webhook body the daemon holds at once, before any signature is checked.

A signature covers the whole body, so it can only be checked once the body is in; until then
anyone can make the daemon buffer bytes. Three bounds keep that small (daemon/web.py applies
them, in this order, before the first byte of the body is read):

1. the provider's signature header must be there and well-formed (Channel.has_signature),
   else 401: a request nobody signed costs nothing;
2. a declared Content-Length over the body limit is 413 at once;
3. the body reserves its size here: its Content-Length, or the whole limit when chunked
   (Meta and Twilio send Content-Length). At most ``max_reads`` bodies and ``max_bytes``
   bytes at once; beyond either the answer is 503, which both providers retry.

The reservation is held until the webhook is answered: the body stays in memory while it is
parsed and written to the inbox, so that is when it counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class BodiesFull(Exception):
    """No room for one more body now (answered 503)."""


@dataclass
class BodyBudget:
    max_bytes: int
    max_reads: int
    held_bytes: int = 0
    held_reads: int = 0
    refused: int = 0  # reservations refused so far, for /metrics

    @contextmanager
    def reserve(self, size: int) -> Iterator[None]:
        """Hold ``size`` bytes and one read slot for the block; BodiesFull when either is
        used up. Never waits: a provider retries a 503 later, a waiting request holds its
        connection."""
        if self.held_reads >= self.max_reads or self.held_bytes + size > self.max_bytes:
            self.refused += 1
            raise BodiesFull()
        self.held_reads += 1
        self.held_bytes += size
        try:
            yield
        finally:
            self.held_reads -= 1
            self.held_bytes -= size


def reservation(declared: int | None, limit: int) -> int:
    """What a body reserves: its declared length, else (chunked) the largest it may grow to."""
    return limit if declared is None else min(declared, limit)
