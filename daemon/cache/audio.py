"""Text-to-speech audio cache: common answers spoken without calling ElevenLabs.

The key is everything that changes the sound (reference/speech.md §6.4 item 4): voice, model,
voice settings, output format and the text. The text is NFKC-normalised and its white space
folded, but **not** case-folded: "OK" and "ok", "US" and "us" are spoken differently. Audio is
content-addressed, so it never goes stale by itself and has no TTL; when a voice is edited at
ElevenLabs under the same voice_id, flush the cache (admin).

How the turn uses it::

    key = audio_key(voice_id=..., model_id=..., voice_settings=..., output_format=..., text=t)
    ogg = await audio.get_or_render(key, lambda: tts_to_ogg(t))   # one TTS for many askers
    media_id = media_ids.get(key, phone_number_id) or await upload(ogg)   (see media_ids)

and at start-up ``await audio.prerender(fixed_phrases, tts_to_ogg, key_for)`` for the phrases
of config [texts] and greetings. What is cached is the finished Ogg/Opus voice note, the thing
WhatsApp receives, so a hit skips synthesis *and* encoding.

Two tiers:

- memory: a cachetools ``LRUCache`` whose ``maxsize`` is a byte budget (``getsizeof=len``);
- disk (optional, survives restarts; ``[cache] dir``): ``<dir>/<key[:2]>/<key>.ogg``, bounded
  by total bytes, the least recently used file (oldest mtime; a disk hit touches it) evicted
  first. All disk I/O runs in ``trio.to_thread.run_sync``: the event loop never blocks on it.

File format: a 45-byte header — ``WAAC``, a format byte, the payload length (8 bytes, big
endian) and the payload's sha256 — then the Ogg bytes. A header rather than a sidecar file, so
that an entry is one file made visible by one atomic ``os.replace`` (a pair of files could be
seen half-written or half-deleted). Writes go to a temporary file in the same directory and are
renamed; no fsync (this is a cache: after a crash a file may be empty or short, and the length
and checksum catch exactly that). A file that fails the check — wrong magic, wrong length, wrong
checksum, payload not starting with ``OggS`` — is ignored and deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import struct
import tempfile
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio
from cachetools import LRUCache

from daemon.cache.singleflight import SingleFlight

log = logging.getLogger(__name__)

KEY_VERSION = "wa-agentd/tts/1"
OGG_MAGIC = b"OggS"
_HEADER = struct.Struct(">4sBQ32s")  # magic, format, payload length, sha256(payload)
_FILE_MAGIC = b"WAAC"
_FILE_FORMAT = 1
_KEY = re.compile(r"[0-9a-f]{64}")


def audio_key(
    *,
    voice_id: str,
    model_id: str,
    voice_settings: Mapping[str, object] | None,
    output_format: str,
    text: str,
    extra: Mapping[str, object] | None = None,
) -> str:
    """sha256 hex over a canonical JSON of what the audio depends on.

    ``extra``: any other request field that changes the audio (``language_code``, ``seed``,
    ``apply_text_normalization``, ...). Values must be JSON-serialisable.
    """
    text = " ".join(unicodedata.normalize("NFKC", text).split())
    doc = {
        "v": KEY_VERSION,
        "voice_id": voice_id,
        "model_id": model_id,
        "voice_settings": dict(voice_settings) if voice_settings else None,
        "output_format": output_format,
        "text": text,
        "extra": dict(extra) if extra else None,
    }
    canonical = json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AudioCacheStats:
    memory_hits: int
    disk_hits: int
    misses: int
    memory_entries: int
    memory_bytes: int
    disk_entries: int
    disk_bytes: int


# --------------------------------------------------------------------------- disk format (sync)


def _encode(data: bytes) -> bytes:
    return _HEADER.pack(_FILE_MAGIC, _FILE_FORMAT, len(data), hashlib.sha256(data).digest()) + data


def _decode(blob: bytes) -> bytes | None:
    """The payload of a cache file, or None when the file is not whole and sound."""
    if len(blob) < _HEADER.size:
        return None
    magic, fmt, length, digest = _HEADER.unpack_from(blob)
    data = blob[_HEADER.size :]
    if magic != _FILE_MAGIC or fmt != _FILE_FORMAT or length != len(data):
        return None
    if not data.startswith(OGG_MAGIC) or hashlib.sha256(data).digest() != digest:
        return None
    return data


def _read(path: Path) -> bytes | bool | None:
    """Payload; None if missing; False if corrupt (and then deleted). Touches mtime on a hit."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    data = _decode(blob)
    if data is None:
        path.unlink(missing_ok=True)
        return False
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)  # least recently *used* goes first, also across restarts
    return data


def _write(path: Path, data: bytes) -> int:
    """Write atomically; the file's size on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = _encode(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem[:8] + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(blob)


def _unlink(paths: Iterable[Path]) -> None:
    for p in paths:
        try:
            p.unlink(missing_ok=True)
        except OSError as exc:  # a cache must not fail a turn over a file it could not delete
            log.warning("audio cache: cannot delete %s: %s", p.name, exc.strerror)


def _scan(root: Path) -> list[tuple[str, int, float]]:
    """(key, size, mtime) of the files under ``root``, oldest first. Leftover temporary files
    and files too short to be whole are deleted."""
    found: list[tuple[str, int, float]] = []
    if not root.is_dir():
        return found
    for sub in root.iterdir():
        if not sub.is_dir() or len(sub.name) != 2:
            continue
        for p in sub.iterdir():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            if p.suffix == ".tmp" or (p.suffix == ".ogg" and st.st_size <= _HEADER.size):
                _unlink([p])
            elif p.suffix == ".ogg" and _KEY.fullmatch(p.stem) and p.stem[:2] == sub.name:
                found.append((p.stem, st.st_size, st.st_mtime))
    found.sort(key=lambda item: item[2])
    return found


def _remove_all(root: Path) -> set[str]:
    keys = {key for key, _size, _mtime in _scan(root)}
    _unlink(root / key[:2] / f"{key}.ogg" for key in keys)
    return keys


# --------------------------------------------------------------------------- the cache


class AudioCache:
    """Ogg/Opus voice notes by ``audio_key``, in memory and optionally on disk."""

    def __init__(
        self,
        *,
        max_bytes: int,
        disk_dir: Path | None = None,
        disk_max_bytes: int = 0,
    ) -> None:
        self._memory: LRUCache[str, bytes] = LRUCache(maxsize=max_bytes, getsizeof=len)
        self._dir = disk_dir if disk_dir is not None and disk_max_bytes > 0 else None
        self._disk_max = disk_max_bytes
        # key -> file size, least recently used first. Loaded from the directory once.
        self._disk: OrderedDict[str, int] = OrderedDict()
        self._disk_bytes = 0
        self._indexed = False
        self._index_lock = trio.Lock()
        self._flight: SingleFlight[str, bytes] = SingleFlight()
        self._memory_hits = 0
        self._disk_hits = 0
        self._misses = 0

    # -- disk index -----------------------------------------------------------------------

    async def load_index(self) -> int:
        """Read the disk tier's directory (once; later calls are free). Call it at start-up to
        keep the scan off the first turn; otherwise the first disk access does it."""
        if self._dir is None or self._indexed:
            return len(self._disk)
        async with self._index_lock:
            if not self._indexed:
                found = await trio.to_thread.run_sync(_scan, self._dir)
                for key, size, _mtime in found:
                    self._disk[key] = size
                    self._disk_bytes += size
                self._indexed = True
                log.info("audio cache: %d files, %d bytes on disk", len(found), self._disk_bytes)
                await self._evict()
        return len(self._disk)

    def _path(self, key: str) -> Path:
        assert self._dir is not None
        return self._dir / key[:2] / f"{key}.ogg"

    def _disk_forget(self, key: str) -> None:
        size = self._disk.pop(key, None)
        if size is not None:
            self._disk_bytes -= size

    async def _evict(self) -> None:
        victims: list[Path] = []
        while self._disk_bytes > self._disk_max and self._disk:
            key, size = self._disk.popitem(last=False)
            self._disk_bytes -= size
            victims.append(self._path(key))
        if victims:
            await trio.to_thread.run_sync(_unlink, victims)

    # -- API ------------------------------------------------------------------------------

    async def get(self, key: str, *, count_miss: bool = True) -> bytes | None:
        """The audio for ``key`` from memory or disk, else None. ``count_miss=False``: a
        look ahead whose miss the caller will look up again (``get_or_render``)."""
        _check_key(key)
        data = self._memory.get(key)
        if data is not None:
            self._memory_hits += 1
            return data
        if self._dir is not None:
            await self.load_index()
            if key in self._disk:
                found = await trio.to_thread.run_sync(_read, self._path(key))
                if isinstance(found, bytes):
                    self._disk_hits += 1
                    self._disk.move_to_end(key)
                    self._remember(key, found)
                    return found
                if found is False:
                    log.warning("audio cache: dropped a corrupt file %s", key[:12])
                self._disk_forget(key)
        self._misses += count_miss
        return None

    async def put(self, key: str, data: bytes) -> None:
        _check_key(key)
        if not data.startswith(OGG_MAGIC):
            log.warning("audio cache: refusing %d bytes that are not Ogg", len(data))
            return
        self._remember(key, data)
        if self._dir is None:
            return
        await self.load_index()
        size = _HEADER.size + len(data)
        if size > self._disk_max:
            return
        try:
            written = await trio.to_thread.run_sync(_write, self._path(key), data)
        except OSError as exc:  # disk full, read-only: serve from memory, say it once a put
            log.warning("audio cache: cannot write to disk: %s", exc.strerror)
            return
        self._disk_forget(key)
        self._disk[key] = written
        self._disk_bytes += written
        await self._evict()

    async def get_or_render(self, key: str, render: Callable[[], Awaitable[bytes]]) -> bytes:
        """The cached audio, else ``render()`` once for all concurrent askers, then cached."""
        found = await self.get(key)
        if found is not None:
            return found

        async def render_and_put() -> bytes:
            data = await render()
            await self.put(key, data)
            return data

        return await self._flight.run(key, render_and_put)

    async def prerender(
        self,
        phrases: Iterable[str],
        synthesize: Callable[[str], Awaitable[bytes]],
        key_for: Callable[[str], str],
    ) -> int:
        """Render fixed phrases not cached yet, one after another (gentle on the TTS plan's
        concurrency). Failures are logged, not raised. The number of phrases rendered."""
        rendered = 0
        for phrase in phrases:
            key = key_for(phrase)
            if await self.get(key) is not None:
                continue
            try:
                data = await synthesize(phrase)
            except Exception as exc:
                log.warning("audio cache: prerender failed (%s: %s)", type(exc).__name__, exc)
                continue
            await self.put(key, data)
            rendered += 1
        return rendered

    async def flush(self) -> int:
        """Empty both tiers; the number of distinct entries removed."""
        keys = set(self._memory)
        self._memory.clear()
        if self._dir is not None:
            async with self._index_lock:
                keys.update(self._disk)
                keys |= await trio.to_thread.run_sync(_remove_all, self._dir)
                self._disk.clear()
                self._disk_bytes = 0
                self._indexed = True
        return len(keys)

    def stats(self) -> AudioCacheStats:
        return AudioCacheStats(
            memory_hits=self._memory_hits,
            disk_hits=self._disk_hits,
            misses=self._misses,
            memory_entries=len(self._memory),
            memory_bytes=int(self._memory.currsize),
            disk_entries=len(self._disk),
            disk_bytes=self._disk_bytes,
        )

    def _remember(self, key: str, data: bytes) -> None:
        with contextlib.suppress(ValueError):  # larger than the whole memory budget: disk only
            self._memory[key] = data


def _check_key(key: str) -> None:
    # The key becomes a file name: anything but a sha256 hex could walk out of the directory.
    if not _KEY.fullmatch(key):
        raise ValueError("audio cache key must be a sha256 hex digest (use audio_key)")
