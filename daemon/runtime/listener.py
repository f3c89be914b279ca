"""The hypercorn config of one listener: bounds and protocols the daemon serves with."""

from __future__ import annotations

import logging

from daemon import web_guard
from daemon.config import Settings
from daemon.connections import ConnectionCap


def listener_config(bind: str, settings: Settings) -> web_guard.ListenerConfig:
    server = settings.server
    cfg = web_guard.ListenerConfig()
    cfg.bind = [bind]
    cfg.graceful_timeout = server.graceful_timeout
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("wa_agentd.http")
    # A client that connects and sends nothing is dropped (slow-loris); idle keep-alive
    # connections are closed after keep_alive_timeout (hypercorn default 5 s).
    cfg.read_timeout = 30
    # hypercorn's default backlog of 100 drops connections in a burst (Meta delivers
    # concurrently); the kernel caps this at net.core.somaxconn.
    cfg.backlog = 1024
    # Off by default: no upstream needs HTTP/2, and every protocol served is one more parser
    # facing the internet (daemon/web_guard.py; alpn too, should TLS ever be served here).
    cfg.http2 = server.http2
    cfg.alpn_protocols = ["h2", "http/1.1"] if server.http2 else ["http/1.1"]
    cfg.connections = ConnectionCap(server.max_connections)
    return cfg
