"""systemd notify protocol: READY, STATUS, WATCHDOG, STOPPING.

A datagram to ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace); a no-op
outside systemd. Ten lines instead of a dependency (reference/trio-stack.md §5).
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1\\nSTATUS=listening") to systemd. True if sent."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop: if the receiver's queue is full, this message is
            # dropped (the next WATCHDOG=1 comes soon enough).
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked for."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000
