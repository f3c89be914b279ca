"""What the kernel knows about a process: CPU time, memory, threads; and systemd's READY=1.

CPU is ``utime + stime`` from ``/proc/<pid>/stat`` (fields 14 and 15, all threads of the
process, in clock ticks: 10 ms at the usual ``CLK_TCK`` of 100, so a window of a few
seconds at hundreds of turns is exact to a fraction of a percent). Memory is ``VmRSS`` and
``VmHWM`` (the peak) from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # user + system, all threads, since the process started
    rss_kib: int
    hwm_kib: int  # peak RSS
    threads: int


def usage(pid: int) -> Usage:
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, threads = int(fields[11]), int(fields[12]), int(fields[17])
    status: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            status[name] = int(value.split()[0])
    return Usage((utime + stime) / CLK_TCK, status.get("VmRSS", 0), status.get("VmHWM", 0), threads)


def own_cpu_s() -> float:
    """This process's CPU time (the simulators and the load generator), all threads, plus
    that of its children that have ended (the servers once stopped, other subprocesses)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


class ReadySocket:
    """A ``$NOTIFY_SOCKET`` for a child: ``ready()`` returns once it sent READY=1."""

    def __init__(self, sock: trio.socket.SocketType, path: str) -> None:
        self._sock = sock
        self.path = path

    async def ready(self) -> float:
        """Wait for READY=1; the clock time (``trio.current_time``) it arrived."""
        while True:
            datagram = await self._sock.recv(4096)
            if b"READY=1" in datagram.split(b"\n"):
                return trio.current_time()


@asynccontextmanager
async def ready_socket() -> AsyncIterator[ReadySocket]:
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as scratch:
        path = str(Path(scratch) / "notify")
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with sock:
            await sock.bind(path)
            yield ReadySocket(sock, path)


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Each live thread's (name, CPU seconds): the event loop is the thread whose id is the
    pid; trio's worker threads are named "Trio thread N"."""
    threads: dict[int, tuple[str, float]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = (task / "comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        threads[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return threads
