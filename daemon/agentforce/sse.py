"""Server-sent events framing, fed with bytes as they arrive. Pure, no I/O.

The Agent API streams a turn as ``text/event-stream`` (reference/agentforce.md §4). This is
the stream format of the WHATWG HTML standard, §9.2 "Server-sent events", "Parsing an event
stream" and "Interpreting an event stream", implemented as written there:

- the stream is UTF-8; a byte order mark at its very start is dropped; bytes that do not
  decode become U+FFFD (the standard's "decode", never an exception);
- a line ends at CRLF, LF or CR; a CR at the end of one read waits for the next read, which
  may start with the LF of the same line end;
- an empty line dispatches the event gathered so far; a line starting with ":" is a comment
  (a heartbeat), ignored;
- ``field:value`` (one space after the colon dropped), or a line without a colon: the whole
  line is the field name and the value is empty;
- ``data`` lines are joined with "\\n"; ``event`` names the event (default "message");
  ``id`` sets the last event id unless it contains NUL; ``retry`` is kept only when it is
  all ASCII digits; any other field is ignored;
- an event whose data buffer is empty is not dispatched (its type is forgotten);
- at the end of the stream an event without its closing empty line is discarded — the
  standard says so; ``close()`` reports whether that happened, so the caller can say so in
  a log line instead of losing it silently.

Bounded: a line or an event longer than ``max_event_bytes`` raises ``SseTooLarge`` (a server
that never ends a line must not fill our memory).

``id`` and ``retry`` are parsed but nothing acts on them: the daemon never reconnects a
stream (§4.3: re-POSTing the message would run the turn twice), so there is no
``Last-Event-ID`` to send and no reconnection delay to wait.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024  # an Inform is a few KB; 1 MiB leaves room for any


class SseTooLarge(ValueError):
    """A line or an event exceeded the parser's bound."""


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event. ``id`` is the last event id in force when it was dispatched."""

    data: str
    event: str = "message"
    id: str = ""
    retry: int | None = None  # the reconnection time (ms) last announced, if any


class SseParser:
    """Feed raw bytes with ``feed``; it returns the events completed by them, in order."""

    def __init__(self, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max = max_event_bytes
        self._text = ""  # decoded text not yet split into lines
        self._started = False  # the BOM check is for the first character of the stream only
        self._pending_cr = False  # the last read ended with CR: an LF may follow
        self._data: list[str] = []
        self._data_size = 0
        self._event = ""
        self._last_id = ""
        self._retry: int | None = None

    @property
    def last_event_id(self) -> str:
        return self._last_id

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """The events that ``chunk`` completes (possibly none, possibly several)."""
        return self._lines(self._decoder.decode(chunk, final=False))

    def close(self) -> tuple[list[SseEvent], bool]:
        """End of stream: the events the last bytes completed, and whether an event with data
        but without its closing empty line was discarded, as the standard says to."""
        events = self._lines(self._decoder.decode(b"", final=True))
        if self._text:
            # A last line without its line end is still a line (but not the empty line that
            # would dispatch): it belongs to the event that is then discarded.
            self._line(self._text, events)
            self._text = ""
        discarded = bool(self._data)
        self._reset_event()
        return events, discarded

    # -- lines ---------------------------------------------------------------------------

    def _lines(self, text: str) -> list[SseEvent]:
        events: list[SseEvent] = []
        if not text:
            return events
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]  # the LF of a CRLF split across two reads
        buffer = self._text + text
        start = 0
        length = len(buffer)
        while start < length:
            cr = buffer.find("\r", start)
            lf = buffer.find("\n", start)
            if cr == -1 and lf == -1:
                break
            if cr == -1 or (lf != -1 and lf < cr):
                end, after = lf, lf + 1
            elif cr + 1 < length:
                end = cr
                after = cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                # CR is the last character so far: a line end either way, but the LF of a
                # CRLF may come with the next read, and must not make an empty line then.
                end, after = cr, cr + 1
                self._pending_cr = True
            self._line(buffer[start:end], events)
            start = after
        self._text = buffer[start:]
        if len(self._text) > self._max:
            raise SseTooLarge(f"an event-stream line is longer than {self._max} characters")
        return events

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "data":
            self._data_size += len(value) + 1
            if self._data_size > self._max:
                raise SseTooLarge(f"an event is longer than {self._max} characters")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # Any other field name is ignored (the standard).

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data:
            events.append(
                SseEvent(
                    data="\n".join(self._data),
                    event=self._event or "message",
                    id=self._last_id,
                    retry=self._retry,
                )
            )
        self._reset_event()

    def _reset_event(self) -> None:
        self._data = []
        self._data_size = 0
        self._event = ""
