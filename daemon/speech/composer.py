"""One voice note out of an answer that is still being written: speech per sentence.

The turn feeds the agent's streamed text in as it comes; each sentence is sent to
text-to-speech as soon as it closes (``sentences.SentenceChunker``), at most
``concurrency`` at once, each with the text around it (``previous_text`` / ``next_text``)
so the parts join; the raw PCM parts are joined in order and encoded once, in-process, into
one Ogg/Opus voice note (reference/speech.md §6.4: never byte-concatenated Ogg files)::

    async with compose_voice(voice, concurrency=3, max_chars=1500, cut_notice=...) as note:
        note.feed("Your parcel left ")          # Speak ops of agentforce.stream
        note.feed("the warehouse. It ...")      # -> TTS of "Your parcel left the warehouse."
        note.retract()                          # a ValidationFailureChunk: drop the draft
        note.commit()                           # a complete message arrived
        voice = await note.finish(reply.text)   # the authoritative answer -> VoiceNote

``finish`` checks what was spoken against the final answer, sentence by sentence: the
sentences that match are kept, from the first that differs on the rest is spoken again
(and the parts after it are dropped). Leaving the ``async with`` cancels whatever is still
being synthesized.

Length: WhatsApp shows a voice note's play button up to 512 KB (reference/whatsapp.md
§4.2). At most ``max_chars`` of text are spoken ([voice] max_tts_chars, about 100 s, 400 KB
at 32 kbit/s); an answer longer than that is cut after the last whole sentence that fits,
and ``cut_notice`` ("the rest is in the text message") is said at the end. A note that
still comes out over 512 KB is not sent (None): the text says it all.

Errors: a part that fails (after whatever retries its synthesizer does) fails the voice
note — ``finish`` raises that ``UpstreamError`` — and never the caller's other work: part
tasks keep their errors to themselves until then.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import trio

from daemon.agentforce.stream import Commit, Retract, Speak, SpeechOp
from daemon.errors import UpstreamError, UpstreamRejected
from daemon.sentences import SentenceChunker, split_sentences
from daemon.speech.audio import AudioError, ensure_ogg_opus
from daemon.text import for_speech

log = logging.getLogger(__name__)

MAX_VOICE_BYTES = 512 * 1024  # WhatsApp's play-button limit (reference/whatsapp.md §4.2)
PREVIOUS_CHARS = 400  # neighbouring text sent along: enough for the prosody, not a cost
NEXT_CHARS = 200
_TTS = "elevenlabs-tts"  # the upstream named in errors, as the speech client names it

Encode = Callable[[bytes, int], Awaitable[bytes]]


class PcmVoice(Protocol):
    """Text-to-speech of one sentence as raw s16le mono PCM at ``pcm_rate``."""

    @property
    def pcm_rate(self) -> int: ...

    def key(self, text: str) -> str:
        """What the audio of ``text`` depends on (the neighbours aside), for the cache."""
        ...

    async def pcm(self, text: str, *, previous_text: str, next_text: str) -> bytes: ...


class PartCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, audio: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class VoiceNote:
    ogg: bytes  # one Ogg/Opus voice note
    text: str  # what it says (the spoken sentences, joined)
    seconds: float
    parts: int  # sentences spoken (the cut notice included)
    cached: int  # of which the part cache had
    cut: bool  # the answer was longer than max_chars: its end is only in the text


class _Part:
    def __init__(self, text: str) -> None:
        self.text = text
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        # Set once this part took its turn at the limiter (or will not): the next part
        # waits for it, so sentences go to speech in the order they are said (trio starts
        # tasks in no promised order).
        self.queued = trio.Event()
        self.pcm: bytes | None = None
        self.error: UpstreamError | None = None
        self.cached = False


async def _encode(pcm: bytes, rate: int) -> bytes:
    return await ensure_ogg_opus(pcm, pcm_rate=rate)


class VoiceComposer:
    """Built by ``compose_voice``; its parts are synthesized in the caller's nursery."""

    def __init__(
        self,
        nursery: trio.Nursery,
        voice: PcmVoice,
        *,
        limiter: trio.CapacityLimiter,
        max_chars: int,
        cut_notice: str,
        cache: PartCache | None,
        encode: Encode,
    ) -> None:
        self._nursery = nursery
        self._voice = voice
        self._limiter = limiter
        self._max_chars = max_chars
        self._cut_notice = for_speech(cut_notice) if cut_notice else ""
        self._cache = cache
        self._encode = encode
        self._chunker = SentenceChunker()
        self._parts: list[_Part] = []
        self._committed = 0  # parts of complete messages (a retraction keeps them)
        self._committed_pending = ""  # ... and the unclosed sentence they ended with
        self._cut = False
        self._closed = False
        self._last_queued = _set_event()  # the first part waits for nobody

    # -- the stream of text ----------------------------------------------------------------

    def feed(self, text: str) -> None:
        """More of the answer (Markdown, as the agent writes it)."""
        self._add(self._chunker.feed(text), pending=self._chunker.pending)

    def retract(self) -> None:
        """The agent withdrew what it wrote since the last ``commit``."""
        self._drop(self._committed)
        self._cut = False
        self._chunker.reset()
        # The committed message's unclosed last sentence is still to be said (it closes
        # nothing when fed alone again, but whatever it closes is spoken).
        self.feed(self._committed_pending)

    def commit(self) -> None:
        """What was fed so far is a complete message."""
        self._committed = len(self._parts)
        self._committed_pending = self._chunker.pending

    def apply(self, ops: Iterable[SpeechOp]) -> None:
        """``StreamStep.speech`` of an agent stream, as it comes."""
        for op in ops:
            if isinstance(op, Speak):
                self.feed(op.text)
            elif isinstance(op, Retract):
                self.retract()
            elif isinstance(op, Commit):
                self.commit()

    # -- the end ---------------------------------------------------------------------------

    async def finish(self, final_text: str) -> VoiceNote | None:
        """The voice note of ``final_text``, the whole answer; None when there is nothing to
        say or it would not fit a voice note. Raises UpstreamError when a part failed."""
        self._add(self._chunker.flush(), pending="")
        self._reconcile(final_text)
        if self._cut and self._cut_notice:
            self._start(_Part(self._cut_notice))
        if not self._parts:
            return None
        for part in self._parts:
            await part.done.wait()
            if part.error is not None:
                raise part.error
        pcm = b"".join(part.pcm or b"" for part in self._parts)
        rate = self._voice.pcm_rate
        try:
            ogg = await self._encode(pcm, rate)
        except AudioError as exc:
            raise UpstreamRejected(
                "elevenlabs-tts", f"cannot encode the voice note: {exc}"
            ) from exc
        seconds = len(pcm) / (2 * rate)
        if len(ogg) > MAX_VOICE_BYTES:
            log.warning(
                "voice note of %.0f s is %d bytes, over WhatsApp's %d: text only",
                seconds,
                len(ogg),
                MAX_VOICE_BYTES,
            )
            return None
        return VoiceNote(
            ogg=ogg,
            text=" ".join(part.text for part in self._parts),
            seconds=seconds,
            parts=len(self._parts),
            cached=sum(part.cached for part in self._parts),
            cut=self._cut,
        )

    def _reconcile(self, final_text: str) -> None:
        """Keep the parts the final answer starts with; speak the rest of it anew."""
        final = [s for s in (for_speech(m) for m in split_sentences(final_text)) if s]
        same = 0
        for part, sentence in zip(self._parts, final, strict=False):
            if _norm(part.text) != _norm(sentence):
                break
            same += 1
        if same == len(self._parts) == len(final):
            return
        if same < len(self._parts):
            log.info("voice note: the final answer differs from sentence %d on", same + 1)
        self._drop(same)
        self._cut = False
        self._add_spoken(final[same:], following="")

    def close(self) -> None:
        """Cancel the parts still being synthesized (the voice note is not wanted)."""
        self._closed = True
        for part in self._parts:
            part.scope.cancel()

    # -- parts -----------------------------------------------------------------------------

    def _add(self, sentences: list[str], *, pending: str) -> None:
        spoken = [s for s in (for_speech(m) for m in sentences) if s]
        self._add_spoken(spoken, following=_pending_context(pending))

    def _add_spoken(self, spoken: list[str], *, following: str) -> None:
        if self._closed:
            return
        for n, text in enumerate(spoken):
            if self._cut or self._spoken_chars() + len(text) > self._max_chars:
                self._cut = True
                return
            after = " ".join([*spoken[n + 1 :], following]).strip()
            self._start(_Part(text), next_text=_head(after))

    def _start(self, part: _Part, *, next_text: str = "") -> None:
        previous = _tail(" ".join(p.text for p in self._parts))
        before, self._last_queued = self._last_queued, part.queued
        self._parts.append(part)
        self._nursery.start_soon(self._synthesize, part, before, previous, next_text)

    def _drop(self, keep: int) -> None:
        for part in self._parts[keep:]:
            part.scope.cancel()
        del self._parts[keep:]
        self._committed = min(self._committed, keep)

    def _spoken_chars(self) -> int:
        return sum(len(part.text) for part in self._parts)

    async def _synthesize(
        self, part: _Part, before: trio.Event, previous: str, following: str
    ) -> None:
        try:
            with part.scope:
                await before.wait()
                key = self._voice.key(part.text)
                if self._cache is not None and (hit := self._cache.get(key)) is not None:
                    part.pcm, part.cached = hit, True
                    return
                async with self._limiter:
                    part.queued.set()
                    pcm = await self._voice.pcm(
                        part.text, previous_text=previous, next_text=following
                    )
                if len(pcm) % 2:
                    raise UpstreamRejected(_TTS, "not 16-bit PCM")
                part.pcm = pcm
                if self._cache is not None:
                    self._cache.put(key, pcm)
        except UpstreamError as exc:
            part.error = exc
        except Exception as exc:  # a bug must fail the voice note, not the turn
            log.exception("voice note part failed")
            part.error = UpstreamRejected(_TTS, f"unexpected error: {exc!r}")
        finally:
            part.queued.set()
            part.done.set()


@asynccontextmanager
async def compose_voice(
    nursery: trio.Nursery,
    voice: PcmVoice,
    *,
    concurrency: int,
    max_chars: int,
    cut_notice: str = "",
    cache: PartCache | None = None,
    limiter: trio.CapacityLimiter | None = None,
    encode: Encode = _encode,
) -> AsyncIterator[VoiceComposer]:
    """A ``VoiceComposer`` for one answer, its parts synthesized in ``nursery`` (the
    caller's: the composer opens none, so the caller's own exceptions come out of the
    ``async with`` unwrapped); the parts still running are cancelled on exit.

    ``concurrency``: requests at once for this answer ([voice] tts_concurrency), unless a
    ``limiter`` shared with other answers is given."""
    if concurrency < 1 or max_chars < 1:
        raise ValueError("concurrency and max_chars must be >= 1")
    composer = VoiceComposer(
        nursery,
        voice,
        limiter=limiter or trio.CapacityLimiter(concurrency),
        max_chars=max_chars,
        cut_notice=cut_notice,
        cache=cache,
        encode=encode,
    )
    try:
        yield composer
    finally:
        composer.close()


def _set_event() -> trio.Event:
    event = trio.Event()
    event.set()
    return event


def _pending_context(pending: str) -> str:
    """The start of the next sentence, still being written, as context: as speech (list
    markers and markup gone), without the period ``for_speech`` adds to unfinished text,
    and without its last word, which may still be cut short."""
    if not pending.strip():
        return ""
    spoken = for_speech(pending)
    if spoken.endswith(".") and not pending.rstrip().endswith("."):
        spoken = spoken[:-1]
    if not pending[-1:].isspace():
        spoken = spoken.rsplit(" ", 1)[0] if " " in spoken else ""
    return spoken.strip()


def _norm(text: str) -> str:
    return " ".join(text.split())


def _tail(text: str) -> str:
    """The last PREVIOUS_CHARS of ``text``, from a word's start."""
    if len(text) <= PREVIOUS_CHARS:
        return text
    cut = text[-PREVIOUS_CHARS:]
    return cut.split(" ", 1)[1] if " " in cut else cut


def _head(text: str) -> str:
    """The first NEXT_CHARS of ``text``, to a word's end (a word cut short is left out)."""
    text = text.strip()
    if len(text) <= NEXT_CHARS:
        return text
    cut = text[:NEXT_CHARS]
    return cut.rsplit(" ", 1)[0] if " " in cut else cut
