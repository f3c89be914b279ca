"""Logging helpers shared by every module.

Phone numbers and user ids appear in logs only through ``hashed``: stable within a
deployment (so an operator can follow one user across lines), useless to anyone reading the
log without the salt.
"""

from __future__ import annotations

import hashlib
import os

# A per-host salt would be better for privacy but would make hashes differ between hosts
# behind one load balancer; an operator can set WA_AGENTD_LOG_SALT to choose.
_SALT = os.environ.get("WA_AGENTD_LOG_SALT", "wa-agentd").encode()


def hashed(value: str) -> str:
    """A short, stable, non-reversible tag for a phone number or user id."""
    return "u:" + hashlib.blake2s(value.encode(), key=_SALT[:32], digest_size=5).hexdigest()
