"""Caches that let the daemon answer common questions without Agentforce and speak common
answers without ElevenLabs, in milliseconds, without ever giving one user another's answer.

- ``normalize``: the question as the cache compares it, and its key.
- ``rules``: which questions may use the cache (safe by default: context-free, not personal).
- ``response``: confirmed answers (served only after several users got the same one), and the
  context a follow-up needs after a cached answer.
- ``audio``: TTS voice notes by voice + text, in memory and on disk.
- ``media_ids``: WhatsApp media ids of uploaded voice notes (kept < 30 days).
- ``stt``: transcripts by the voice note's sha256.
- ``singleflight``: one load for many concurrent askers of the same user-independent thing.

Each module's docstring shows how the turn uses it.
"""

from __future__ import annotations

from daemon.cache.audio import AudioCache, AudioCacheStats, audio_key
from daemon.cache.media_ids import MediaIds, MediaIdStats
from daemon.cache.normalize import normalize_question, question_key
from daemon.cache.response import (
    CachedAnswer,
    PendingContext,
    ResponseCache,
    ResponseCacheStats,
    with_context,
)
from daemon.cache.rules import DEFAULT_PERSONAL, CacheRule, Decision, DenyRule, Rules
from daemon.cache.singleflight import SingleFlight
from daemon.cache.stt import TranscriptCache, TranscriptCacheStats

__all__ = [
    "DEFAULT_PERSONAL",
    "AudioCache",
    "AudioCacheStats",
    "CacheRule",
    "CachedAnswer",
    "Decision",
    "DenyRule",
    "MediaIdStats",
    "MediaIds",
    "PendingContext",
    "ResponseCache",
    "ResponseCacheStats",
    "Rules",
    "SingleFlight",
    "TranscriptCache",
    "TranscriptCacheStats",
    "audio_key",
    "normalize_question",
    "question_key",
    "with_context",
]
