"""What the routes work with: the daemon's parts they reach, and the counters they keep.

Built by the runtime (daemon/runtime/serve.py ``web_context``), read by the webhook route
(daemon/web.py) and the health and admin routes (daemon/web_admin.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from daemon.channels.base import Channel
from daemon.channels.provider import Routes
from daemon.config import ServerConfig
from daemon.lanes import Lanes
from daemon.limits import UserLimits
from daemon.observe.metrics import Metrics
from daemon.state.base import Inbox
from daemon.web_body import BodyBudget


@dataclass
class WebStats:
    """Counters the web layer keeps; metrics read them."""

    webhooks: dict[str, int] = field(default_factory=dict)  # outcome -> count
    messages: dict[str, int] = field(default_factory=dict)  # accepted / duplicate / ...
    statuses: dict[str, int] = field(default_factory=dict)  # delivered -> count

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


@dataclass
class WebContext:
    channel: Channel
    inbox: Inbox
    lanes: Lanes
    webhook_path: str
    max_body_bytes: int
    ready: Callable[[], tuple[bool, str]]  # (ready?, reason) for /readyz
    metrics: Metrics | None = None
    # Routes the provider adds to the public listener (Twilio: the voice notes it fetches
    # from us, daemon/channels/twilio/routes.py).
    routes: Sequence[Routes] = ()
    # POST /admin/* needs "Authorization: Bearer <admin_token>"; "" turns them off.
    admin_token: str = ""
    flush_caches: Callable[[], Awaitable[dict[str, int]]] | None = None
    # GET /admin/status: the JSON document of daemon/observe/snapshot.py.
    status: Callable[[], Awaitable[dict[str, Any]]] | None = None
    stats: WebStats = field(default_factory=WebStats)
    draining: bool = False
    # Per-user limits decided as messages come in (None: none); messages of one user that may
    # wait in the inbox while their lane is full ([lanes] max_waiting).
    limits: UserLimits | None = None
    max_waiting: int = 100
    bodies: BodyBudget = field(
        default_factory=lambda: BodyBudget(
            max_bytes=ServerConfig().body_memory_bytes, max_reads=ServerConfig().max_body_reads
        )
    )
