"""Real Ogg/Opus audio for the simulators, with the words it "says" carried in its tags.

The simulated user records voice notes and the simulated ElevenLabs speaks answers; neither
can really talk, so each clip is a valid mono 48 kHz Ogg/Opus stream (a quiet tone whose
length follows the text) with the text in an Opus comment tag. The simulated speech-to-text
decodes the whole stream (so garbage is refused like the real API would) and reads the tag
back. Tests can then check that the voice note the user got says the agent's answer.
"""

from __future__ import annotations

import functools
import io
import math

import av

TEXT_TAG = "WA_AGENTD_TEXT"
LANG_TAG = "WA_AGENTD_LANG"
SILENT_TAG = "WA_AGENTD_SILENT"
_RATE = 48_000
_FRAME = 960  # 20 ms at 48 kHz, the frame size Opus likes best


@functools.cache
def _second_of_tone() -> bytes:
    """One second of a 220 Hz tone, s16le; 220 whole periods, so it tiles seamlessly."""
    return b"".join(
        int(3000 * math.sin(2 * math.pi * 220 * k / _RATE)).to_bytes(2, "little", signed=True)
        for k in range(_RATE)
    )


def _tone(samples: int, start: int) -> bytes:
    offset = 2 * (start % _RATE)
    second = _second_of_tone()
    return (second[offset:] + second)[: 2 * samples]


@functools.lru_cache(maxsize=256)  # deterministic, and encoding costs CPU the daemon's load needs
def speak(text: str, language: str = "en", seconds: float | None = None) -> bytes:
    """An Ogg/Opus clip of ``seconds`` (default: ~60 ms per character, 0.5-20 s) saying ``text``.

    An empty ``text`` makes silence: the simulated STT hears nothing in it.
    """
    if seconds is None:
        seconds = min(20.0, max(0.5, 0.06 * len(text)))
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=_RATE, layout="mono")
        stream.bit_rate = 32_000
        # FFmpeg drops empty tags, so silence is marked with a tag of its own.
        stream.metadata[TEXT_TAG] = text or "-"
        stream.metadata[SILENT_TAG] = "0" if text else "1"
        stream.metadata[LANG_TAG] = language
        total = int(_RATE * seconds)
        for start in range(0, total, _FRAME):
            frame = av.AudioFrame(format="s16", layout="mono", samples=_FRAME)
            pcm = _tone(_FRAME, start) if text else bytes(2 * _FRAME)
            frame.planes[0].update(pcm)
            frame.sample_rate = _RATE
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


class NotAudio(ValueError):
    """The bytes are not a decodable audio stream."""


def listen(data: bytes) -> tuple[str, str, float]:
    """Decode ``data`` fully and return (text, language, duration in seconds).

    Audio without our tag (any real recording) is heard as a fixed sentence, so the daemon
    can be driven with arbitrary Ogg/Opus files too. Raises NotAudio on anything undecodable.
    """
    try:
        with av.open(io.BytesIO(data), "r") as container:
            if not container.streams.audio:
                raise NotAudio("no audio stream")
            stream = container.streams.audio[0]
            samples = 0
            rate = stream.codec_context.sample_rate or _RATE
            for frame in container.decode(stream):
                samples += frame.samples
            tags = {k.upper(): v for k, v in stream.metadata.items()}
            tags.update({k.upper(): v for k, v in container.metadata.items()})
    except (av.FFmpegError, ValueError) as exc:
        if isinstance(exc, NotAudio):
            raise
        raise NotAudio(str(exc)) from exc
    if samples == 0:
        raise NotAudio("no audio frames")
    if tags.get(SILENT_TAG) == "1":
        return "", tags.get(LANG_TAG, "en"), samples / rate
    text = tags.get(TEXT_TAG, "Hello, this is a voice note.")
    return text, tags.get(LANG_TAG, "en"), samples / rate


def describe(data: bytes) -> dict[str, object]:
    """Container, codec, channels and sample rate of an audio clip (for checks in tests)."""
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        return {
            "format": container.format.name,
            "codec": stream.codec_context.name,
            "channels": stream.codec_context.channels,
            "sample_rate": stream.codec_context.sample_rate,
        }
