"""The agent and speech as the turn sees them: what a turn asks of each, whoever is behind.

The agent is Agentforce behind the response cache (daemon/answers.py); speech is
ElevenLabs behind its caches (daemon/speech/). The turn never asks which.
"""

from __future__ import annotations

from typing import Protocol

from daemon.model import AgentReply, Transcript


class Agent(Protocol):
    async def ask(self, user_key: str, text: str, *, language: str | None = None) -> AgentReply: ...

    async def cached(
        self, user_key: str, text: str, *, language: str | None = None
    ) -> AgentReply | None:
        """The answer a cache holds for ``text``, without calling the agent (None: ask).

        Looked up before the circuit breaker: a cached answer is served while the agent is
        down, and cache hits are not counted as agent calls by the breaker."""
        ...

    async def prepare(self, user_key: str) -> None:
        """Open (or check) the user's session ahead of ``ask``; errors are ``ask``'s to find."""
        ...


class Speech(Protocol):
    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None
    ) -> Transcript: ...

    async def synthesize(self, text: str, *, language: str | None = None) -> bytes: ...

    async def cached(self, text: str, *, language: str | None = None) -> bytes | None:
        """The voice note of ``text`` if a cache holds it (never calls the upstream)."""
        ...

    def audio_key(self, text: str, *, language: str | None = None) -> str:
        """What the audio of ``synthesize`` depends on, hashed (for media-id reuse)."""
        ...
