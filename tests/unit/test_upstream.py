"""daemon.upstream: the status table every client's parser follows, and the codes over it."""

from __future__ import annotations

import httpx
import pytest

from daemon import upstream
from daemon.agentforce import wire as agentforce
from daemon.channels.meta import wire as meta
from daemon.channels.twilio import wire as twilio
from daemon.errors import Reason, UpstreamError, UpstreamRejected, UpstreamUnavailable
from daemon.speech import wire as speech
from daemon.upstream import Codes, Meaning, Statuses

U, R = UpstreamUnavailable, UpstreamRejected

# The rows of the module doc's table, with a status standing for "other 5xx" and "other".
ROWS = {"408": 408, "409": 409, "423": 423, "429": 429, "503": 503, "other 5xx": 500, "other": 400}

PARSERS = {
    "agentforce": lambda status: agentforce.parse_error(status, b""),
    "whatsapp": lambda status: meta.parse_graph_error(status, b""),
    "twilio": lambda status: twilio.parse_error(status, b""),
    "elevenlabs": lambda status: speech.parse_error(status, b"", "elevenlabs-tts"),
}


def cell(meaning: Meaning) -> str:
    letter = "U" if meaning.kind is UpstreamUnavailable else "R"
    return f"{letter} {meaning.reason}" if meaning.reason else letter


def test_the_table_in_the_module_doc_is_the_table() -> None:
    assert upstream.__doc__ is not None
    doc_rows = {}
    lines = upstream.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["status", *STATUSES])
    for line in lines[start + 1 : start + 1 + len(ROWS)]:
        name = next(row for row in ROWS if line.strip().startswith(row))
        doc_rows[name] = line.strip()[len(name) :].split()
    for name, status in ROWS.items():
        expected = " ".join(cell(upstream.STATUS_TABLE[up].meaning(status)) for up in STATUSES)
        assert " ".join(doc_rows[name]) == expected, name


STATUSES = list(upstream.STATUS_TABLE)


@pytest.mark.parametrize("name", STATUSES)
def test_every_parser_follows_its_column_without_a_code(name: str) -> None:
    column = upstream.STATUS_TABLE[name]
    for status in range(100, 600):
        error = PARSERS[name](status)
        assert (type(error), error.reason) == tuple(column.meaning(status)), status
        assert error.status == status


def test_the_columns_differ_where_the_upstreams_do() -> None:
    table = upstream.STATUS_TABLE
    # Agentforce: one request at a time per session (§10): this user waits, nobody else.
    assert table["agentforce"].meaning(423) == (U, Reason.USER_BUSY)
    assert table["twilio"].meaning(423) == (R, None)
    # ElevenLabs retries 408 and 409 like its SDK; Graph and Twilio document neither.
    assert table["elevenlabs"].meaning(409) == (U, None)
    assert table["whatsapp"].meaning(408) == (R, None)
    # Everywhere: 429 and 503 not processed, another 5xx may have been.
    for column in table.values():
        assert column.meaning(429) == column.meaning(503) == (U, Reason.SLOW_DOWN)
        assert column.meaning(500) == column.meaning(599) == (U, None)


CODES = Codes(
    retryable=frozenset({1, 2}),
    fatal=frozenset({10}),
    reasons={2: Reason.SLOW_DOWN, 10: Reason.RECIPIENT},
    final=frozenset({1, 10}),
)
STATUS = Statuses(
    transient=frozenset({429}), reasons={429: Reason.SLOW_DOWN, 503: Reason.SLOW_DOWN}
)


@pytest.mark.parametrize(
    ("code", "status", "meaning"),
    [
        (None, 503, (U, Reason.SLOW_DOWN)),  # no code: the status speaks
        (99, 429, (U, Reason.SLOW_DOWN)),  # an unknown code: the status speaks
        (99, 400, (R, None)),
        (1, 400, (U, None)),  # retryable whatever the status
        (1, 503, (U, None)),  # final: no reason even on a 503
        (2, 503, (U, Reason.SLOW_DOWN)),
        (2, 400, (U, Reason.SLOW_DOWN)),  # the code's own reason
        (10, 429, (R, Reason.RECIPIENT)),  # fatal whatever the status
    ],
)
def test_codes_decide_over_the_status(
    code: int | None, status: int, meaning: tuple[type[UpstreamError], Reason | None]
) -> None:
    assert CODES.meaning(code, status, STATUS) == meaning


def test_documented_code_decisions() -> None:
    # Graph's 131000 "unknown error" may have been processed, even on a 503 (§5.1).
    maybe = meta.parse_graph_error(503, b'{"error": {"code": 131000, "message": "x"}}')
    assert (type(maybe), maybe.reason) == (U, None)
    # ElevenLabs' busy codes are a slow-down by themselves (speech.md §1.7).
    busy = speech.parse_error(
        400, b'{"detail": {"status": "system_busy"}}', "elevenlabs-stt", retry_after=3.0
    )
    assert (type(busy), busy.reason, busy.retry_after) == (R, Reason.SLOW_DOWN, 3.0)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [({"Retry-After": "7"}, 7.0), ({}, None), ({"Retry-After": "soon"}, None)],
)
def test_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    assert upstream.retry_after(httpx.Response(429, headers=headers)) == seconds
