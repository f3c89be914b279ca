"""Constraints on settings fields, declared on the field and checked once by the loader.

A section of config.toml is a frozen dataclass; a field says what it may hold in its type::

    drain_timeout: Seconds = 30.0                       # a number > 0
    graph_url: Annotated[str, HTTP_URL] = "https://graph.facebook.com/v23.0"
    stability: Annotated[float, Between(0.0, 1.0)] = 0.5

daemon/config/validate.py reads the ``Check`` objects from the ``Annotated`` metadata of every
field of every section and raises the first problem as a ``ConfigError`` that names the key,
e.g. ``[timeouts] agent: must be > 0, got 0``. Checks that relate two keys stay in
validate.py. This module imports nothing of the daemon, so a provider's section
(daemon/channels/<provider>/settings.py) declares its constraints the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit


class Check:
    """A rule one value must keep."""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (the text after "[section] key: "), or None."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Rule(Check):
    """``test(value)`` must hold; ``why`` is formatted with ``value`` when it does not."""

    test: Callable[[Any], bool]
    why: str

    def problem(self, value: Any) -> str | None:
        return None if self.test(value) else self.why.format(value=value)


@dataclass(frozen=True, slots=True)
class Between(Check):
    """``low <= value <= high``."""

    low: float
    high: float
    why: str = "must be between {low:g} and {high:g}, got {value!r}"

    def problem(self, value: Any) -> str | None:
        if self.low <= value <= self.high:
            return None
        return self.why.format(low=self.low, high=self.high, value=value)


@dataclass(frozen=True, slots=True)
class Each(Check):
    """Every item of a list keeps ``check``; the key of a bad one gets its index:
    ``[redis] sentinels[1]``."""

    check: Check

    def problem(self, value: Any) -> str | None:  # the loader asks item by item
        return None


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 <= int(port) <= 65535)


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _or_empty(test: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda value: value == "" or test(value)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


POSITIVE = Rule(lambda v: not _number(v) or v > 0, "must be > 0, got {value!r}")
HOST_PORT = Rule(_host_port, 'must be "host:port", got {value!r}')
HOST_PORT_OR_EMPTY = Rule(_or_empty(_host_port), HOST_PORT.why)
HTTP_URL = Rule(_http_url, "must be an http(s) URL, got {value!r}")
HTTP_URL_OR_EMPTY = Rule(_or_empty(_http_url), HTTP_URL.why)
SOME_HOSTS = Rule(bool, "must name at least one host")
# 0 turns the feature off; below that is a typo.
OFF_OR_MORE = Rule(lambda v: v >= 0, "must be >= 0 (0 = off), got {value!r}")

# The units of most numeric keys, each > 0 (hypercorn's config.py names its units the same way).
Seconds = Annotated[float, POSITIVE]
Bytes = Annotated[int, POSITIVE]
Count = Annotated[int, POSITIVE]


def checks_of(annotation: Any) -> tuple[Check, ...]:
    """The checks an ``Annotated`` type carries (none for a plain type)."""
    return tuple(m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Check))


@dataclass(frozen=True, slots=True)
class Needed:
    """Not a check of the value: the key must be set to serve real traffic (``wa-agentd
    serve``, ``check-config``), where defaults are fine for the demo and the tests.
    ``what`` says what to put there."""

    what: str


def needed_of(annotation: Any) -> Needed | None:
    return next((m for m in getattr(annotation, "__metadata__", ()) if isinstance(m, Needed)), None)
