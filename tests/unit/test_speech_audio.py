from __future__ import annotations

import io
import math
import threading

import av
import pytest
import trio

from daemon.observe.stages import current_stages
from daemon.sim.audio import speak
from daemon.sim.hostile import one_byte_opus, one_byte_opus_seconds
from daemon.speech import audio
from daemon.speech.audio import AudioError, ensure_ogg_opus, is_ogg, probe, to_ogg_opus


def tone_pcm(seconds: float, rate: int, channels: int = 1) -> bytes:
    """A 440 Hz tone as s16le, interleaved."""
    out = bytearray()
    for k in range(int(rate * seconds)):
        value = int(3000 * math.sin(2 * math.pi * 440 * k / rate))
        out += value.to_bytes(2, "little", signed=True) * channels
    return bytes(out)


def make_mp3(seconds: float = 2.0, rate: int = 44_100, layout: str = "mono") -> bytes:
    """A real mp3 (libmp3lame), like ElevenLabs' mp3_44100_* output."""
    channels = 1 if layout == "mono" else 2
    pcm = tone_pcm(seconds, rate, channels)
    frame_samples = 1152  # one MPEG-1 Layer III frame
    step = 2 * channels * frame_samples
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate, layout=layout)
        for index, start in enumerate(range(0, len(pcm), step)):
            chunk = pcm[start : start + step]
            frame = av.AudioFrame(format="s16", layout=layout, samples=len(chunk) // (2 * channels))
            frame.planes[0].update(chunk)
            frame.sample_rate = rate
            frame.pts = index * frame_samples
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def test_is_ogg() -> None:
    assert is_ogg(b"OggS\x00\x02rest")
    assert not is_ogg(b"ID3\x04")
    assert not is_ogg(b"Ogg")
    assert not is_ogg(b"")


@pytest.mark.parametrize("layout", ["mono", "stereo"])
def test_mp3_becomes_mono_48k_ogg_opus_of_the_same_length(layout: str) -> None:
    mp3 = make_mp3(3.0, layout=layout)
    before = probe(mp3)
    assert (before.format, before.codec, before.channels) == (
        "mp3",
        "mp3float",
        1 if layout == "mono" else 2,
    )

    ogg = to_ogg_opus(mp3)

    assert ogg.startswith(b"OggS")
    info = probe(ogg)
    assert (info.format, info.codec, info.channels, info.sample_rate) == ("ogg", "opus", 1, 48_000)
    assert info.duration == pytest.approx(before.duration, rel=0.10)
    assert info.duration == pytest.approx(3.0, rel=0.10)


def test_bitrate_is_applied() -> None:
    mp3 = make_mp3(4.0)
    small = to_ogg_opus(mp3, bitrate=16_000)
    large = to_ogg_opus(mp3, bitrate=96_000)
    assert len(small) < len(large)


def test_raw_pcm_with_its_rate() -> None:
    pcm = tone_pcm(1.5, 24_000)  # like ElevenLabs pcm_24000: s16le mono, no header
    assert probe(pcm, pcm_rate=24_000).duration == pytest.approx(1.5)

    info = probe(to_ogg_opus(pcm, pcm_rate=24_000))

    assert (info.codec, info.channels, info.sample_rate) == ("opus", 1, 48_000)
    assert info.duration == pytest.approx(1.5, rel=0.10)


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage" * 50, b"OggS" + b"\x00" * 100, b"ID3\x04" + b"\xff" * 300],
    ids=["empty", "garbage", "fake-ogg", "fake-mp3"],
)
def test_undecodable_input_raises_audio_error(data: bytes) -> None:
    with pytest.raises(AudioError):
        to_ogg_opus(data)
    with pytest.raises(AudioError):
        probe(data)


def test_audio_error_is_a_value_error() -> None:
    assert issubclass(AudioError, ValueError)


def test_bad_pcm_rate_raises_audio_error() -> None:
    with pytest.raises(AudioError):
        to_ogg_opus(b"\x00\x01" * 100, pcm_rate=0)


def test_probe_reads_a_sim_voice_note() -> None:
    info = probe(speak("hello there", seconds=2.0))
    assert (info.format, info.codec, info.channels, info.sample_rate) == ("ogg", "opus", 1, 48_000)
    assert info.duration == pytest.approx(2.0, rel=0.10)


async def test_ogg_passes_through_unchanged() -> None:
    ogg = speak("already a voice note")
    with trio.fail_after(10):
        result = await ensure_ogg_opus(ogg)
    assert result is ogg


async def test_ensure_transcodes_mp3_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = audio.to_ogg_opus

    def spy(data: bytes, **kwargs: int | None) -> bytes:
        threads.append(threading.get_ident())
        return real(data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audio, "to_ogg_opus", spy)
    mp3 = make_mp3(2.0)
    limiter = trio.CapacityLimiter(1)

    with trio.fail_after(10):
        ogg = await ensure_ogg_opus(mp3, limiter=limiter)

    assert threads and threads[0] != threading.get_ident()  # never on the event loop thread
    assert limiter.borrowed_tokens == 0
    info = probe(ogg)
    assert (info.codec, info.channels, info.sample_rate) == ("opus", 1, 48_000)
    assert info.duration == pytest.approx(2.0, rel=0.10)


async def test_ensure_transcodes_pcm_even_if_it_looks_like_ogg() -> None:
    pcm = b"OggS" + tone_pcm(0.5, 16_000)[4:]
    with trio.fail_after(10):
        ogg = await ensure_ogg_opus(pcm, pcm_rate=16_000)
    assert ogg != pcm
    assert probe(ogg).codec == "opus"


async def test_a_transcode_is_timed_as_the_turns_encode_stage() -> None:
    turn_stages: dict[str, float] = {}
    token = current_stages.set(turn_stages)
    try:
        with trio.fail_after(10):
            await ensure_ogg_opus(tone_pcm(0.5, 16_000), pcm_rate=16_000)
            encoded = turn_stages["encode"]
            assert encoded > 0
            await ensure_ogg_opus(speak("already ogg"))  # passed through: no encode
    finally:
        current_stages.reset(token)
    assert turn_stages == {"encode": encoded}
    with trio.fail_after(10):  # outside a turn: timed nowhere, no error
        await ensure_ogg_opus(tone_pcm(0.2, 16_000), pcm_rate=16_000)


async def test_ensure_raises_audio_error_on_garbage() -> None:
    with trio.fail_after(10), pytest.raises(AudioError):
        await ensure_ogg_opus(b"definitely not audio" * 20)


async def test_concurrent_transcodes_share_the_default_limiter() -> None:
    limiter = audio.default_limiter()
    assert limiter is audio.default_limiter()
    assert limiter.total_tokens == 2
    mp3 = make_mp3(1.0)
    results: list[bytes] = []

    async def one() -> None:
        results.append(await ensure_ogg_opus(mp3))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)

    assert len(results) == 4
    assert all(is_ogg(r) for r in results)
    assert limiter.borrowed_tokens == 0


# -- measuring what users send (issue 10) --------------------------------------------------------


def test_a_voice_note_is_measured_by_its_decoded_samples() -> None:
    clip = speak("when do you open", seconds=7.0)
    assert audio.measure_seconds(clip, limit=300) == pytest.approx(7.0, abs=0.1)
    mp3 = make_mp3(3.0)
    assert audio.measure_seconds(mp3, limit=300) == pytest.approx(3.0, abs=0.1)


def test_one_byte_opus_packets_are_counted_as_what_they_decode_to() -> None:
    """300 KB of 1-byte Opus packets decode to 2.4 h; measuring stops just past the limit
    instead of decoding all of it (which takes seconds of CPU)."""
    bomb = one_byte_opus()
    seconds = audio.measure_seconds(bomb, limit=300)
    assert 300 < seconds < 301


def test_container_headers_that_understate_the_length_are_not_believed() -> None:
    """Every page claims granule position 48000 (one second): the header says 1 s."""
    liar = one_byte_opus(30_000, lie_granule=48_000)
    with av.open(io.BytesIO(liar)) as container:
        assert container.duration is not None and container.duration / 1e6 <= 1.0
    decoded = audio.measure_seconds(liar, limit=10_000)
    assert decoded == pytest.approx(one_byte_opus_seconds(liar), rel=0.01)
    assert decoded > 800


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not audio at all",
        b"OggS" + bytes(200),
        b"#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n",
        b"ffconcat version 1.0\nfile /etc/passwd\n",
    ],
)
def test_what_is_not_inbound_audio_cannot_be_measured(data: bytes) -> None:
    with pytest.raises(AudioError):
        audio.measure_seconds(data, limit=300)


def test_measuring_is_bounded_in_time_and_packets() -> None:
    bomb = one_byte_opus(30_000)
    with pytest.raises(AudioError, match="budget"):
        audio.measure_seconds(bomb, limit=10_000, max_packets=100)
    with pytest.raises(AudioError, match="budget"):
        audio.measure_seconds(bomb, limit=10_000, time_budget=0.0)


async def test_measure_runs_in_a_worker_thread_and_is_timed() -> None:
    clip = speak("hello", seconds=2.0)
    seen: dict[str, float] = {}
    token = current_stages.set(seen)
    try:
        assert await audio.measure(clip, limit=300) == pytest.approx(2.0, abs=0.1)
    finally:
        current_stages.reset(token)
    assert "measure" in seen
