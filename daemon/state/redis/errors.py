"""What can go wrong with the shared state, in the two words the daemon acts on.

::

    Exception
     ├── RedisUnavailable   Redis can't be reached, is loading, out of memory, read-only
     │                      (a replica after a fail-over), or did not answer within
     │                      [redis] command_timeout. Webhooks answer 503 (Meta and Twilio
     │                      redeliver), /readyz is false; the next call tries again.
     └── LeaseLost          this host no longer owns the user (its lease ran out and another
                            host took the user over, with a newer fencing token). The turn
                            stops where it is: nothing more is written, nothing is sent.

Every coredis call of this package runs inside ``mapped()``, the one place where coredis'
exception tree is translated (the shape of httpx's ``map_httpcore_exceptions``). Errors not
listed here (a wrong argument, a bug in a script) are not Redis being down and propagate
as they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from coredis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ConnectionError,
    ReadOnlyError,
    RedisClusterError,
    ResponseError,
    TryAgainError,
)

# The marker the Lua scripts of this package raise when the fencing token is stale
# (redis.error_reply), so a refusal arrives as an error, never as a value to check.
LEASE_LOST = "WA_LEASE_LOST"


class RedisUnavailable(Exception):
    """Redis can't serve the daemon now; retrying later may work."""


class LeaseLost(Exception):
    """Another host owns this user now: do not write, do not send."""


@contextmanager
def mapped() -> Iterator[None]:
    try:
        yield
    except (ConnectionError, TimeoutError) as exc:  # BusyLoadingError is a ConnectionError
        raise RedisUnavailable(str(exc) or type(exc).__name__) from exc
    except (AuthenticationError, AuthorizationError) as exc:
        raise RedisUnavailable(f"refused: {exc}") from exc
    except (ReadOnlyError, ClusterDownError, TryAgainError) as exc:
        raise RedisUnavailable(str(exc)) from exc
    except ResponseError as exc:
        message = str(exc)
        if message.startswith(LEASE_LOST) or f" {LEASE_LOST}" in message:
            raise LeaseLost(message) from exc
        if message.startswith(("OOM", "MISCONF", "LOADING", "MASTERDOWN", "NOREPLICAS")):
            raise RedisUnavailable(message) from exc
        raise
    except RedisClusterError as exc:
        raise RedisUnavailable(str(exc)) from exc
