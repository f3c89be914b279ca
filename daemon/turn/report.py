"""What one turn did: its summary line and what the metrics count (daemon/observe reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TurnReport:
    """What one turn did, for its summary log line and the metrics."""

    turn_id: str
    kind: str
    user: str  # hashed
    message_id: str = ""  # for tests and tools; not in the summary line
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    outcome: str = "pending"
    voice: str = "none"  # none | sent | skipped | failed
    language: str = ""  # the language the turn answered in ("" = the default)
    cached: list[str] = field(default_factory=list)  # "transcript", "answer": what a cache gave
    resumed: str = ""  # the stage a restarted turn resumed from ("" = a fresh turn)
    extras: list[str] = field(
        default_factory=list
    )  # "holding", "echo": messages besides the answer
    error: str = ""
    voice_error: str = ""  # why the voice note failed, when the text answer stood alone
    # Upstream calls that got no HTTP answer at all (the HTTP ones are counted by the
    # clients' response hooks): (upstream, "timeout" | "error").
    failures: list[tuple[str, str]] = field(default_factory=list)
    # What the turn cost: Agentforce calls, seconds of audio and characters sent to STT / TTS
    # (once per attempt), WhatsApp messages sent by kind (text, voice, canned, extra; a
    # long answer split in three is three).
    agent_calls: int = 0
    stt_seconds: float = 0.0
    tts_characters: int = 0
    sent: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        stages = " ".join(f"{k}={v:.3f}" for k, v in self.stages.items())
        err = f" error={self.error!r}" if self.error else ""
        err += f" voice_error={self.voice_error!r}" if self.voice_error else ""
        extras = f" extras={','.join(self.extras)}" if self.extras else ""
        lang = f" lang={self.language}" if self.language else ""
        extras += f" cached={','.join(self.cached)}" if self.cached else ""
        extras += f" resumed={self.resumed}" if self.resumed else ""
        return (
            f"turn={self.turn_id} done user={self.user} kind={self.kind} outcome={self.outcome} "
            f"voice={self.voice}{lang}{extras} {stages}{err}"
        ).rstrip()
