"""A token bucket, pure: ``burst`` tokens, refilled at ``rate`` per second, one per turn."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    tokens: float  # what is left; starts full (``TokenBucket.full``)
    updated_at: float  # when ``tokens`` was last brought up to date (monotonic seconds)

    @classmethod
    def full(cls, burst: int, now: float) -> TokenBucket:
        return cls(float(burst), now)

    def take(self, now: float, *, burst: int, rate: float) -> bool:
        """Take one token if there is one (after refilling for the time since the last
        call); False, and nothing taken, when the bucket is empty."""
        elapsed = max(0.0, now - self.updated_at)  # a clock that stepped back refills nothing
        self.tokens = min(float(burst), self.tokens + elapsed * rate)
        self.updated_at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
