"""The constraints of this daemon's keys that daemon/fields.py has no general word for.

Each is declared on its field in sections.py (``Annotated[str, PATH]``) and checked once,
with the others, by validate.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from daemon.fields import Between, Check, Rule

PATH = Rule(lambda v: v.startswith("/"), "must start with /, got {value!r}")
UNIT = Between(0.0, 1.0)  # ElevenLabs voice settings
SHARE = Between(0.0, 1.0, why="must be between 0 and 1")
RATE = Rule(lambda v: 0 < v <= 1, "must be in (0, 1]")
AT_LEAST_ONE = Rule(lambda v: v >= 1, "must be >= 1")
CONFIRMATIONS = Rule(lambda v: v >= 1, "must be >= 1, got {value}")
DISK_TIER = Rule(lambda v: v >= 0, "must be >= 0 (0 = no disk tier)")
# WhatsApp keeps an uploaded media id 30 days (reference/whatsapp.md §4).
UPLOAD_LIFETIME = Rule(
    lambda v: v < 30 * 24 * 3600, "must be under 30 days (WhatsApp drops uploads)"
)
OUTPUT_FORMAT = Rule(
    lambda v: v.startswith(("opus_", "mp3_", "pcm_", "wav_")),
    "must be an ElevenLabs output format such as opus_48000_32, got {value!r}",
)
# Braces would break the {user} hash tags that keep one user's keys on one cluster slot.
KEY_PREFIX = Rule(
    lambda v: bool(v) and not any(c in v for c in "{} "),
    "must be non-empty, without braces or spaces, got {value!r}",
)


@dataclass(frozen=True, slots=True)
class RedisUrl(Check):
    """``redis://`` or ``rediss://``, a host, no password (the secret REDIS_PASSWORD holds
    it), a valid port, and a path that is a database number if there is one."""

    def problem(self, value: Any) -> str | None:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            return f"must be a redis:// or rediss:// URL, got {value!r}"
        if parts.password is not None:
            return "must not hold a password: set the secret REDIS_PASSWORD instead"
        try:
            parts.port  # noqa: B018 (urlsplit checks the port when it is read)
        except ValueError:
            return f"has an invalid port: {value!r}"
        db = parts.path.strip("/")
        if db and not db.isdigit():
            return f"the path must be a database number, got {db!r}"
        return None


REDIS_URL = RedisUrl()
