"""Hostile input, delivered in a way a real attacker could, and what it cost.

What a hostile user can send, for the attack tests (tests/edge/test_cost.py) and bench/abuse.py:
audio that decodes to far more than its size suggests.
"""

from __future__ import annotations

import struct
from functools import cache

# Ogg pages (RFC 3533 §6) -----------------------------------------------------------------


@cache
def _crc_table() -> tuple[int, ...]:
    # Ogg's CRC-32: polynomial 0x04c11db7, no reflection, initial value 0 (RFC 3533 §6).
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return tuple(table)


def _crc(data: bytes) -> int:
    table, crc = _crc_table(), 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) & 0xFF) ^ byte]
    return crc


def _page(packets: list[bytes], granule: int, sequence: int, *, flags: int = 0) -> bytes:
    lacing = b"".join(b"\xff" * (len(p) // 255) + bytes([len(p) % 255]) for p in packets)
    assert len(lacing) <= 255, "one page holds at most 255 lacing values"
    header = (
        b"OggS"
        + bytes([0, flags])
        + struct.pack("<qII", granule, 1, sequence)
        + b"\0\0\0\0"
        + bytes([len(lacing)])
        + lacing
    )
    body = b"".join(packets)
    crc = _crc(header + body)
    return header[:22] + struct.pack("<I", crc) + header[26:] + body


# An Opus TOC byte (RFC 6716 §3.1): configuration 3 (SILK narrowband, 60 ms), mono, code 0
# (one frame). With no frame data after it, the decoder conceals a 60 ms frame: 2880 samples
# at 48 kHz from one byte of payload.
_TOC_60MS = 0x18
_SAMPLES_60MS = 2880


@cache
def one_byte_opus(size: int = 300_000, *, lie_granule: int | None = None) -> bytes:
    """An Ogg/Opus file of about ``size`` bytes made of 1-byte Opus packets.

    Each page carries 255 packets of 60 ms: 300 KB decode to about 2.4 hours of audio. The
    granule positions tell the truth unless ``lie_granule`` is given: then every page claims
    that position, so the container headers say the file is short whatever it decodes to.
    """
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<HIhB", 312, 48_000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 7) + b"hostile" + struct.pack("<I", 0)
    pages = [_page([head], 0, 0, flags=2), _page([tags], 0, 1)]
    total, sequence, granule = sum(map(len, pages)), 2, 0
    while total < size:
        granule += _SAMPLES_60MS * 255
        page = _page([bytes([_TOC_60MS])] * 255, lie_granule or granule, sequence)
        pages.append(page)
        total += len(page)
        sequence += 1
    return b"".join(pages)


def one_byte_opus_seconds(data: bytes) -> float:
    """What ``one_byte_opus`` data decodes to, from its page count (for reports): every page
    after the two header pages carries 255 packets, and "OggS" occurs only at page starts."""
    packets = (data.count(b"OggS") - 2) * 255
    return packets * _SAMPLES_60MS / 48_000
