"""What protocol garbage writes to the journal (issue 10).

Before: one HTTP/2 CONNECT stream without ``:path`` made hypercorn raise UnboundLocalError,
which the crash guard logged with its traceback: 43 lines per stream, 4300 for 100
(bench/attack.py, "h2_connect"). Now each such error is counted (``wa_agentd_http_protocol_
errors_total``) and logged as one line, at most a few per minute, with the traceback at
debug level only.
"""

from __future__ import annotations

import logging

import h2.config
import h2.connection
import pytest
import trio

from daemon import web_guard
from daemon.observe.logs import RateLimitedLog
from daemon.sim.base import Changes
from daemon.sim.stack import open_stack
from tests.edge.test_abuse import SERVE_TIMEOUT, Conn, _address, _assert_serving, _watch

STREAMS = 20


def _connect_without_path() -> bytes:
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(
            client_side=True, header_encoding=None, validate_outbound_headers=False
        )
    )
    conn.initiate_connection()
    conn.send_headers(1, [(b":method", b"CONNECT"), (b":authority", b"daemon")])
    return conn.data_to_send()


@pytest.fixture
def fresh_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate limits start over (other tests in this process may have used them up)."""
    monkeypatch.setattr(web_guard, "_errors", RateLimitedLog(web_guard.log))


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG], ids=["info", "debug"])
async def test_protocol_errors_are_one_rate_limited_line_each(
    level: int, caplog: pytest.LogCaptureFixture, fresh_limits: None
) -> None:
    caplog.set_level(level)
    before = web_guard.protocol_errors.get("UnboundLocalError", 0)
    async with open_stack(server={"http2": True}) as stack:
        address = _address(stack)
        with trio.fail_after(2 * SERVE_TIMEOUT):
            for _ in range(STREAMS):
                conn = Conn(Changes())
                async with await trio.open_tcp_stream(*address) as stream:
                    await stream.send_all(_connect_without_path())
                    await _watch(stream, conn)  # until the daemon drops it
            await _assert_serving(stack, "15550000401")
    counted = web_guard.protocol_errors.get("UnboundLocalError", 0) - before
    mine = [r for r in caplog.records if r.name == "wa_agentd.http"]
    warnings = [r for r in mine if r.levelno == logging.WARNING]
    tracebacks = [r for r in mine if r.exc_info]
    assert counted == STREAMS
    assert len(warnings) == 5  # the burst; the other 15 are counted, not written
    assert all("connection dropped: UnboundLocalError" in r.getMessage() for r in warnings)
    assert all("\n" not in r.getMessage() for r in warnings)
    if level == logging.INFO:
        assert tracebacks == []
    else:  # at debug, the traceback goes with each line written
        assert len(tracebacks) == 5 and all(r.levelno == logging.DEBUG for r in tracebacks)


def test_the_next_line_says_how_many_were_left_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimitedLog(logging.getLogger("t"), burst=2, window=60, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="t")
    for _ in range(5):
        limited.warning("bad thing %s", "x")
    now[0] = 61.0
    limited.warning("bad thing %s", "y")
    assert [r.getMessage() for r in caplog.records] == [
        "bad thing x",
        "bad thing x",
        "bad thing y (3 similar lines left out)",
    ]
