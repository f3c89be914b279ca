"""How many connections one listener holds, and which one gives way at the cap.

Every connection costs a file descriptor and ~20-30 KiB (bench/attack.py). Without a cap, a
client that opens connections faster than keep_alive_timeout closes them fills the unit's
LimitNOFILE, and then the kernel's accept queue: a signed webhook waits behind them and times
out. So each listener holds at most ``limit`` connections, and a new one at the cap:

- closes the oldest *idle* connection (no request in flight: a kept-alive one between
  requests, or one whose request head has not arrived yet, once it is FRESH_SECONDS old): a
  flood of idle or trickling connections only ever evicts itself, and the newcomer (a
  webhook, whose head follows its connect at once) is served;
- when none is idle (every one is in a request, which the body budget and the timeouts
  bound, or younger than FRESH_SECONDS), is answered 503 and closed at once, so the client
  retries instead of waiting in the accept queue.

What it cannot do: a flood from more sockets than the cap plus the kernel's accept queue
(``[server]`` backlog 1024), reconnecting as fast as it is closed, overruns the accept
queue itself, and every client's connect then waits for SYN retransmissions (seconds;
bench/attack.py "idle" with 8300 sockets on the same two cores). That is stopped in front:
per-source connection limits in the proxy or the firewall.

Closing an idle connection is what its idle timer would have done a few seconds later;
HTTP clients retry a request on a kept-alive connection the server closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# A new connection is not closed to make room before it had this long to send its first
# request head. Under a connection flood the kernel's accept queue overflows and a real
# client's first bytes may come a TCP retransmission (~1 s) after its connect; closed
# before they arrive, it would see "server disconnected" instead of an answer. An attacker
# gains nothing from it: it holds a slot this long at most before it counts as idle.
FRESH_SECONDS = 2.0


class Connection(Protocol):
    @property
    def idle(self) -> bool:
        """No request in flight (hypercorn's idle timer runs), and not fresh."""
        ...

    async def close(self) -> None: ...


# What a refused connection gets before it is closed: a clear "later", in HTTP/1.1 because
# that is the only protocol a fresh connection on this listener starts with.
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 24\r\n"
    b"retry-after: 1\r\nconnection: close\r\n\r\ntoo many connections now"
)


@dataclass
class ConnectionCap:
    limit: int
    # Open connections, oldest first (a dict keeps insertion order; one scan finds the
    # oldest idle one, at most ``limit`` cheap checks, and only at the cap).
    _open: dict[Connection, None] = field(default_factory=dict)
    evicted: int = 0  # idle connections closed to make room, for /metrics
    refused: int = 0  # new connections refused (none idle), for /metrics

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, conn: Connection) -> tuple[bool, Connection | None]:
        """(admitted?, the idle connection to close first). Call ``leave`` when it ends."""
        if len(self._open) < self.limit:
            self._open[conn] = None
            return True, None
        victim = next((c for c in self._open if c.idle), None)
        if victim is None:
            self.refused += 1
            return False, None
        del self._open[victim]  # counted out now, so two newcomers never pick the same one
        self._open[conn] = None
        self.evicted += 1
        return True, victim

    def leave(self, conn: Connection) -> None:
        self._open.pop(conn, None)
