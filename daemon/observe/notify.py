"""systemd notify protocol: READY, STATUS, WATCHDOG, STOPPING.

A datagram to ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace); a no-op
outside systemd. Ten lines instead of a dependency (reference/trio-stack.md §5).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

import trio

Send = Callable[[str], bool]


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


def _unsigned(text: str) -> int | None:
    # ASCII digits only: str.isdigit() also accepts "²" and "٣", which int() then rejects
    # or reads as a number systemd never wrote.
    if not text or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when systemd did not ask for them.

    Half of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends, so that one late ping
    is not yet a kill. Off when the value is 0, absent or not a number, and when
    ``$WATCHDOG_PID`` is set to anything but our pid (the variables were meant for another
    process, e.g. inherited from a parent that is itself a service).
    """
    env = os.environ if env is None else env
    usec = _unsigned(env.get("WATCHDOG_USEC", ""))
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and _unsigned(pid) != os.getpid():
        return None
    return usec / 2_000_000


async def watchdog(interval: float, send: Send = notify) -> None:
    """Ping every ``interval`` seconds, forever. It must run as a task on the event loop it
    vouches for: a loop blocked by a synchronous call runs no task, the pings stop, and
    systemd kills and restarts the daemon (SIGABRT, with a stack dump: PYTHONFAULTHANDLER)."""
    while True:
        send("WATCHDOG=1")
        await trio.sleep(interval)


class StatusLine:
    """The ``STATUS=`` text `systemctl status` shows, sent only when it changes."""

    def __init__(self, send: Send = notify) -> None:
        self._send = send
        self.text = ""

    def set(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._send(f"STATUS={text}")

    async def keep_current(self, describe: Callable[[], str], every: float = 1.0) -> None:
        """Refresh from ``describe()`` every ``every`` seconds. Changes are rare next to this
        period (turns in flight move with the load), and an unchanged line costs no
        datagram, so a short period keeps `systemctl status` current for nothing."""
        while True:
            self.set(describe())
            await trio.sleep(every)
