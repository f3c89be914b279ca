"""Ogg/Opus for WhatsApp voice notes, and the length of the ones users send, with PyAV (its
wheel bundles FFmpeg and libopus).

WhatsApp renders a voice note only for Ogg-contained Opus, mono (reference/whatsapp.md §4.1,
§4.2). ElevenLabs normally answers ``opus_48000_*`` already in Ogg, so the happy path is a
4-byte check and no work; anything else (mp3 from a tier without Opus, raw PCM, WAV) is
transcoded here (reference/speech.md §1.5, §4.1).

PyAV in-process instead of spawning ffmpeg: no 65-90 ms process start-up per call and a newer,
faster libopus, 1.5-2x faster overall (reference/speech.md §4.3, §4.4). The encode is still
~0.2-0.3 s of CPU per 20 s of speech, so async callers go through ``ensure_ogg_opus``, which
runs it in a worker thread.

Inbound voice notes are measured before speech-to-text, which bills per second of audio: the
length is the count of decoded samples (``measure_seconds``), never what the container says.
Headers are whatever the sender wrote (an Ogg's last granule position can claim one second for
hours of audio), and a packet can be tiny: a 1-byte Opus packet (a bare TOC byte) decodes to a
60 ms frame, so 300 KB of them are 2.4 hours. Decoding stops once the limit is passed, within
a time budget and a packet budget, so a hostile file costs at most a fraction of a second.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import av
import trio
from av.audio.frame import AudioFrame
from av.container import InputContainer

from daemon.observe import stages

log = logging.getLogger(__name__)

OGG_MAGIC = b"OggS"

_OPUS_RATE = 48_000  # libopus works at 48 kHz internally; the WhatsApp-proven choice (§4.2)
_OPUS_FRAME = 960  # 20 ms at 48 kHz: the frame size libopus is tuned for (§4.3)

# Everything PyAV raises for bad input. InvalidDataError is both FFmpegError and ValueError;
# OSError / EOFError / IndexError cover truncated streams and containers without audio.
_AV_ERRORS: tuple[type[BaseException], ...] = (
    av.FFmpegError,
    ValueError,
    OSError,
    EOFError,
    IndexError,
)


class AudioError(ValueError):
    """The bytes are not audio we can decode (or re-encode)."""


# Containers a user's audio may come in: WhatsApp voice notes are Ogg/Opus; audio files and
# Twilio's list add MP3, AAC (ADTS), AMR, MP4/M4A/3GP, WAV, WebM/Matroska, FLAC (speech.md §2.1,
# whatsapp.md §6). FFmpeg probes only among these: no playlist or concat demuxer, which could
# open other files or URLs named inside the data.
INBOUND_FORMATS = "ogg,mp3,aac,amr,mov,wav,matroska,flac"
# Decoding an inbound clip to measure it stops after this much wall time or this many packets
# (a 20 ms Opus frame per packet: 5 minutes are 15 000): far above what a real voice note
# needs (~40 ms per 20 s, speech.md §4.3), far below what would hold a worker thread.
MEASURE_TIME_BUDGET = 5.0
MEASURE_MAX_PACKETS = 200_000


@dataclass(frozen=True, slots=True)
class AudioInfo:
    format: str  # container as FFmpeg names it: "ogg", "mp3", "wav", "s16le", ...
    codec: str  # decoder name: "opus", "mp3float", "pcm_s16le", ...
    channels: int
    sample_rate: int
    duration: float  # seconds


def is_ogg(data: bytes) -> bool:
    """True if ``data`` starts like an Ogg stream (every Ogg page begins with "OggS")."""
    return data[:4] == OGG_MAGIC


def _open_input(data: bytes, pcm_rate: int | None) -> InputContainer:
    """An input container; raw PCM has no header, so its layout must be given (§4.2)."""
    if not data:
        raise AudioError("no audio bytes")
    if pcm_rate is not None:
        if pcm_rate <= 0:
            raise AudioError(f"pcm_rate must be > 0, got {pcm_rate}")
        options = {"sample_rate": str(pcm_rate), "ch_layout": "mono"}
        return av.open(io.BytesIO(data), "r", format="s16le", options=options)
    return av.open(io.BytesIO(data), "r")


def _audio_frames(container: InputContainer) -> Iterator[AudioFrame]:
    if not container.streams.audio:
        raise AudioError("no audio stream")
    yield from container.decode(container.streams.audio[0])


def to_ogg_opus(data: bytes, *, bitrate: int = 32_000, pcm_rate: int | None = None) -> bytes:
    """Transcode any audio PyAV can probe to mono 48 kHz Opus in Ogg, tuned for speech.

    ``pcm_rate`` marks ``data`` as raw signed 16-bit little-endian mono PCM at that rate
    (ElevenLabs ``pcm_<rate>``), which carries no header to probe. 32 kbit/s keeps ~2 minutes
    under WhatsApp's 512 KB play-button limit (reference/whatsapp.md §4.2).

    Blocking and CPU-bound: call it from a thread (``ensure_ogg_opus`` does).
    Raises AudioError on anything that does not decode to at least one audio frame.
    """
    out_buf = io.BytesIO()
    try:
        with (
            _open_input(data, pcm_rate) as inp,
            av.open(out_buf, "w", format="ogg") as out,
        ):
            stream = out.add_stream("libopus", rate=_OPUS_RATE, layout="mono")
            stream.bit_rate = bitrate
            # Same as ffmpeg's "-application voip -vbr on" (§4.2); the options do take
            # effect (§4.3: changing application changed the output bytes).
            stream.codec_context.options = {"application": "voip", "vbr": "on"}
            resampler = av.AudioResampler(
                format="s16", layout="mono", rate=_OPUS_RATE, frame_size=_OPUS_FRAME
            )
            decoded = 0
            for frame in _audio_frames(inp):
                decoded += frame.samples
                for chunk in resampler.resample(frame):
                    for packet in stream.encode(chunk):
                        out.mux(packet)
            if decoded == 0:
                raise AudioError("no audio frames")
            for chunk in resampler.resample(None):  # flush the resampler's tail
                for packet in stream.encode(chunk):
                    out.mux(packet)
            for packet in stream.encode(None):  # flush the encoder
                out.mux(packet)
    except AudioError:
        raise
    except _AV_ERRORS as exc:
        raise AudioError(f"cannot transcode to Ogg/Opus: {exc}") from exc
    return out_buf.getvalue()


def probe(data: bytes, *, pcm_rate: int | None = None) -> AudioInfo:
    """Container, codec, channels, sample rate and duration of a clip, for logs and tests.

    The duration comes from the container when it states one, else from decoding the whole
    stream (cheap: ~40 ms per 20 s of Opus, §4.3). Raises AudioError on undecodable input.
    """
    try:
        with _open_input(data, pcm_rate) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if container.duration is not None and container.duration > 0:
                duration = container.duration / av.time_base
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                samples = sum(frame.samples for frame in container.decode(stream))
                duration = samples / ctx.sample_rate if ctx.sample_rate else 0.0
            return AudioInfo(
                format=container.format.name,
                codec=ctx.name,
                channels=ctx.channels,
                sample_rate=ctx.sample_rate,
                duration=duration,
            )
    except AudioError:
        raise
    except _AV_ERRORS as exc:
        raise AudioError(f"cannot read audio: {exc}") from exc


def measure_seconds(
    data: bytes,
    *,
    limit: float,
    time_budget: float = MEASURE_TIME_BUDGET,
    max_packets: int = MEASURE_MAX_PACKETS,
) -> float:
    """The length of an inbound clip in seconds, from the samples it decodes to.

    Decoding stops as soon as more than ``limit`` seconds have been decoded: the result is
    then just over ``limit`` (the caller only needs to know it is too long). Raises
    AudioError when the data is not audio in one of ``INBOUND_FORMATS``, decodes to no
    samples, or cannot be measured within ``time_budget`` seconds or ``max_packets`` packets.
    Blocking and CPU-bound: call it from a thread (``measure``).
    """
    if not data:
        raise AudioError("no audio bytes")
    started = time.monotonic()
    samples = 0.0  # in seconds: the sample rate may change from frame to frame
    try:
        with av.open(io.BytesIO(data), "r", options={"format_whitelist": INBOUND_FORMATS}) as inp:
            if not inp.streams.audio:
                raise AudioError("no audio stream")
            stream = inp.streams.audio[0]
            for n, packet in enumerate(inp.demux(stream)):
                if n >= max_packets or time.monotonic() - started > time_budget:
                    raise AudioError("audio could not be measured within its budget")
                for frame in packet.decode():
                    if frame.sample_rate > 0:
                        samples += frame.samples / frame.sample_rate
                if samples > limit:
                    return samples
    except AudioError:
        raise
    except _AV_ERRORS as exc:
        raise AudioError(f"cannot read audio: {exc}") from exc
    if samples <= 0:
        raise AudioError("no audio frames")
    return samples


async def measure(
    data: bytes, *, limit: float, limiter: trio.CapacityLimiter | None = None
) -> float:
    """``measure_seconds`` in a worker thread (the transcodes' limiter: one per core). Not
    abandoned on cancellation: the time budget ends it within seconds anyway."""
    started = time.perf_counter()
    seconds = await trio.to_thread.run_sync(
        lambda: measure_seconds(data, limit=limit), limiter=limiter or default_limiter()
    )
    stages.record("measure", time.perf_counter() - started)
    return seconds


# The host has 2 cores. A libopus encode keeps one core busy for ~0.2-0.3 s per 20 s clip,
# so more than two at once only queues inside the kernel scheduler and steals CPU from the
# event loop (webhooks must be answered in milliseconds). Extra transcodes wait here instead.
# A RunVar, not a module-level CapacityLimiter: trio primitives belong to one trio.run (tests
# start many), like trio's own default thread limiter.
_DEFAULT_LIMIT = 2
_default_limiter: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(
    "speech_audio_limiter"
)


def default_limiter() -> trio.CapacityLimiter:
    """The process-wide (per trio run) limiter for transcodes: 2, one per core."""
    try:
        return _default_limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(_DEFAULT_LIMIT)
        _default_limiter.set(limiter)
        return limiter


async def ensure_ogg_opus(
    data: bytes,
    *,
    limiter: trio.CapacityLimiter | None = None,
    pcm_rate: int | None = None,
) -> bytes:
    """``data`` itself if it is already Ogg, else its Ogg/Opus transcode.

    The transcode runs in a worker thread so the event loop keeps answering webhooks; PyAV
    releases the GIL while libopus encodes (reference/speech.md §4.4). It is not abandoned on
    cancellation: it is short (well under a second) and the thread would go on burning a
    core anyway. ``limiter`` defaults to ``default_limiter()``. Raises AudioError.

    Only the container is checked: every Ogg that reaches us is Opus (ElevenLabs
    ``opus_48000_*`` or WhatsApp's own voice notes), and re-encoding one would cost
    quality and time for nothing.
    """
    if pcm_rate is None and is_ogg(data):
        return data
    started = time.perf_counter()
    result = await trio.to_thread.run_sync(
        lambda: to_ogg_opus(data, pcm_rate=pcm_rate),
        limiter=limiter or default_limiter(),
    )
    elapsed = time.perf_counter() - started
    stages.record("encode", elapsed)
    log.debug(
        "transcoded %d bytes to %d bytes of Ogg/Opus in %.0f ms",
        len(data),
        len(result),
        elapsed * 1000,
    )
    return result
