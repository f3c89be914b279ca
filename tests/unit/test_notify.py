"""sd_notify: the watchdog interval, the ping loop on trio's clock, STATUS= lines, the socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio
import trio.testing

from daemon.observe.notify import StatusLine, notify, watchdog, watchdog_interval

# --------------------------------------------------------------------------- the interval


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "200000"}) == 0.1


def test_watchdog_interval_honours_watchdog_pid() -> None:
    mine = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": mine}) == 1.0
    # Meant for another process (inherited from a parent that is a service itself): off.
    other = str(os.getpid() + 1)
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": other}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "self"}) is None


@pytest.mark.parametrize(
    "usec",
    ["", "0", "00", "-2000000", "2e6", "1.5", " 2000000", "2000000s", "abc", "٣٠٠٠٠٠٠", "²"],
)
def test_watchdog_is_off_when_watchdog_usec_is_absent_zero_or_garbage(usec: str) -> None:
    assert watchdog_interval({"WATCHDOG_USEC": usec}) is None


def test_watchdog_is_off_without_watchdog_usec_even_with_our_pid() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_PID": str(os.getpid())}) is None


def test_watchdog_interval_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == 2.0


# --------------------------------------------------------------------------- the ping loop


async def test_pings_come_at_half_of_watchdog_usec_on_trios_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pings: list[float] = []
    interval = watchdog_interval({"WATCHDOG_USEC": "30000000"})
    assert interval == 15.0

    def send(message: str) -> bool:
        assert message == "WATCHDOG=1"
        pings.append(trio.current_time())
        return True

    start = trio.current_time()
    with trio.move_on_after(100):  # on the mock clock: instant
        await watchdog(interval, send)
    assert [t - start for t in pings] == [0, 15, 30, 45, 60, 75, 90]


async def test_a_blocked_loop_misses_its_pings(mock_clock: trio.testing.MockClock) -> None:
    # The point of pinging from a task: while the loop is stuck in a synchronous call no
    # ping goes out, however long that lasts. Here the clock jumps 40 s past a 15 s
    # interval while no task runs: still the one ping from before the block.
    pings: list[float] = []

    def send(message: str) -> bool:
        pings.append(trio.current_time())
        return True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watchdog, 15.0, send)
        await trio.testing.wait_all_tasks_blocked()  # the first ping, then asleep
        mock_clock.jump(40)  # "blocked": time passes, no task ran
        assert len(pings) == 1
        await trio.testing.wait_all_tasks_blocked()  # the loop runs again: it catches up
        assert len(pings) == 2
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------- STATUS=


def test_status_line_is_sent_only_when_it_changes() -> None:
    sent: list[str] = []

    def send(message: str) -> bool:
        sent.append(message)
        return True

    status = StatusLine(send)
    for text in ("a", "a", "b", "b", "a"):
        status.set(text)
    assert sent == ["STATUS=a", "STATUS=b", "STATUS=a"]


async def test_status_line_follows_what_it_describes_every_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sent: list[tuple[float, str]] = []
    running = [0]

    def send(message: str) -> bool:
        sent.append((trio.current_time() - start, message))
        return True

    start = trio.current_time()
    status = StatusLine(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(status.keep_current, lambda: f"{running[0]} turns in flight", 1.0)
        await trio.sleep(2.5)
        running[0] = 3
        await trio.sleep(2)
        nursery.cancel_scope.cancel()
    # Seen at the first refresh after the change (t=3), and nothing sent in between.
    assert sent == [(0, "STATUS=0 turns in flight"), (3, "STATUS=3 turns in flight")]


# --------------------------------------------------------------------------- the socket


async def test_notify_sends_one_datagram_to_notify_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1\nSTATUS=listening on http://127.0.0.1:1")
        receiver.settimeout(5)
        assert receiver.recv(4096) == b"READY=1\nSTATUS=listening on http://127.0.0.1:1"


async def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"wa-agentd-test-{os.getpid()}-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("WATCHDOG=1")
        receiver.settimeout(5)
        assert receiver.recv(4096) == b"WATCHDOG=1"


def test_notify_is_a_no_op_outside_systemd_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert notify("READY=1") is False


def test_notify_does_not_block_when_the_receiver_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A receiver that never reads: its queue fills, and then messages are dropped instead of
    # stalling the event loop (a blocked loop would be killed by the very watchdog it pings).
    path = tmp_path / "full.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        receiver.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        results = [notify("WATCHDOG=1" + "x" * 1000) for _ in range(5000)]
    assert results[0] is True
    assert False in results
