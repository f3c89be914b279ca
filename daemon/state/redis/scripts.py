"""Running a registered Lua script: the coredis call, its errors mapped, its reply untyped.

Scripts are sent with EVALSHA and loaded again by coredis when Redis answers NOSCRIPT
(after a restart or a ``SCRIPT FLUSH``). Their replies are RESP values whose shape only the
script knows, so the caller reads them (``Any`` here, checked where they are parsed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from coredis.commands.script import Script

from daemon.state.redis.errors import mapped

Arg = str | int | float | bytes


async def call(script: Script[bytes], keys: Sequence[str], args: Sequence[object] = ()) -> Any:
    """Run ``script``; ``args`` are ``Arg`` values (typed loosely: callers build mixed lists)."""
    values: list[Any] = [a for a in args if isinstance(a, Arg)]
    if len(values) != len(args):
        raise TypeError(f"script arguments must be str, int, float or bytes: {args!r}")
    with mapped():
        return await script(keys=list(keys), args=values)


def text(value: object) -> str:
    """A RESP string as ``str`` (the client speaks bytes, for the binary caches)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def ms(seconds: float) -> int:
    """Seconds as the milliseconds PX/PEXPIRE take, at least 1 (0 would mean "now")."""
    return max(1, round(seconds * 1000))
