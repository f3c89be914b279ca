"""Provider-neutral values that flow from a channel's webhook parser to the turn.

A channel (Meta, Twilio) turns its own wire format into these; the web layer, the inbox, the
lanes and the turn only ever see these, so they never branch on the provider.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Kind(enum.Enum):
    TEXT = "text"
    VOICE = "voice"  # an audio message: a recorded voice note or an audio file
    UNSUPPORTED = "unsupported"  # image, sticker, location, ...: the user gets a polite reply


@dataclass(frozen=True, slots=True)
class User:
    """Who wrote to us, and how to answer.

    ``key`` identifies the user everywhere inside the daemon (lanes, sessions): the
    business-scoped user id when WhatsApp gives one, else the phone number
    (reference/whatsapp.md §2.7). ``address`` is what the channel needs to send back:
    ``+E164`` for Meta when the phone is known (else the BSUID), ``whatsapp:+E164`` for Twilio.
    Never log either in clear; use ``observe.logs.hashed``.
    """

    key: str
    address: str


@dataclass(frozen=True, slots=True)
class Media:
    """A reference to inbound media, resolved by ``Channel.fetch_media``."""

    id: str  # Graph media id, or the Twilio media URL
    mime_type: str
    sha256: str | None = None
    voice: bool = False  # recorded with WhatsApp's voice-note button


@dataclass(frozen=True, slots=True)
class Inbound:
    """One user message that deserves exactly one answer."""

    message_id: str  # wamid / MessageSid: the dedupe key
    user: User
    kind: Kind
    text: str = ""  # the text for TEXT (button titles included); "" otherwise
    media: Media | None = None  # set for VOICE
    original_type: str = ""  # the provider's own type name ("image", "sticker", ...)
    timestamp: int = 0  # seconds since the epoch, as the provider stamped it
    channel_ref: str = ""  # the provider's business number id the message came in on

    def unstorable(self) -> str:
        """Why this message cannot be written down (the durable inbox stores UTF-8), or "".

        JSON may carry a lone surrogate (``"\\ud83d"``) that no UTF-8 encoder takes; a parser
        skips such a message instead of letting the inbox write fail for its whole batch.
        """
        media = self.media
        fields = [self.message_id, self.user.key, self.user.address, self.text]
        fields += [self.original_type, self.channel_ref]
        if media is not None:
            fields += [media.id, media.mime_type, media.sha256 or ""]
        for value in fields:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "message with text that is not valid Unicode (a lone surrogate)"
        return ""


class DeliveryStatus(enum.StrEnum):
    """What a provider reported about a message the daemon sent, in the daemon's words: the
    ``status`` label of wa_agentd_statuses_total. Each provider's parser maps the words it
    documents onto these (channels/<provider>/); a word it does not know is OTHER, so the
    label set stays bounded whatever a provider starts sending."""

    # On its way: accepted and queued by the provider, handed to WhatsApp.
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    # At the user's: delivered to the phone, read, a voice note played.
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    PARTIALLY_DELIVERED = "partially_delivered"
    # Not (or no longer) there.
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    CANCELED = "canceled"
    DELETED = "deleted"
    WARNING = "warning"
    OTHER = "other"


@dataclass(slots=True)
class Batch:
    """Everything one webhook delivery carried."""

    messages: list[Inbound] = field(default_factory=list)
    statuses: dict[DeliveryStatus, int] = field(default_factory=dict)  # DELIVERED -> count
    ignored: dict[str, int] = field(default_factory=dict)  # "reaction" -> count, and why
    errors: list[str] = field(default_factory=list)  # value-level errors Meta reported


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    language: str | None = None  # ISO 639 code as STT reported it


@dataclass(frozen=True, slots=True)
class AgentMessage:
    """One entry of the agent's reply array, reduced to what the turn needs."""

    type: str  # Inform, Inquire, Confirm, Failure, Escalate, SessionEnded, Error, ...
    text: str = ""


@dataclass(frozen=True, slots=True)
class AgentReply:
    messages: tuple[AgentMessage, ...]
    # Where the answer came from: "agent" (this user's session), "cache" (a confirmed answer
    # from the response cache) or "shared" (another user's concurrent call for the same FAQ).
    origin: str = "agent"

    @property
    def text(self) -> str:
        """The user-facing answer: the texts of every message that carries one, in order."""
        return "\n\n".join(m.text for m in self.messages if m.text.strip())

    def has(self, *types: str) -> bool:
        return any(m.type in types for m in self.messages)
