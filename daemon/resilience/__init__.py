"""Circuit breakers, retries and retry budgets for the upstream clients.

- ``CircuitBreaker`` (``breaker``): fail fast while an upstream is down, probe it with timed
  trials, close again when it answers.
- ``with_retries`` / ``retry_policy`` / ``retryable`` / ``RetryBudget`` (``retry``): retry only
  what is safe to repeat, with full-jitter backoff, Retry-After and a process-wide budget.

Retry at one layer only (reference/anchors.md §C.2): wrap the breaker call in the retry loop,
not the other way round, so that every attempt is seen by the breaker and a ``CircuitOpen`` is
never retried.
"""

from __future__ import annotations

from daemon.resilience.breaker import BreakerSnapshot as BreakerSnapshot
from daemon.resilience.breaker import CircuitBreaker as CircuitBreaker
from daemon.resilience.breaker import CircuitOpen as CircuitOpen
from daemon.resilience.breaker import State as State
from daemon.resilience.breaker import default_is_failure as default_is_failure
from daemon.resilience.retry import Policy as Policy
from daemon.resilience.retry import RetryBudget as RetryBudget
from daemon.resilience.retry import backoff as backoff
from daemon.resilience.retry import retry_after_seconds as retry_after_seconds
from daemon.resilience.retry import retry_policy as retry_policy
from daemon.resilience.retry import retryable as retryable
from daemon.resilience.retry import was_sent as was_sent
from daemon.resilience.retry import with_retries as with_retries
