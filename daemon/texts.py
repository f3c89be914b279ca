"""The canned texts: what the user reads when the answer cannot be the agent's.

One ``TextTable`` per language, built in for English and Arabic; ``[texts.<code>]`` tables in
config.toml override single keys or add languages (daemon/config/load.py reads them, the
turn picks a table by the user's language).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextTable:
    """What the user reads when the answer cannot be the agent's, in one language."""

    agent_down: str
    not_understood: str
    no_speech: str
    unsupported: str
    escalated: str
    holding: str  # sent once when the answer takes longer than [ux] holding_after
    transcript_echo: str  # "{transcript}" is replaced by what speech-to-text heard
    voice_too_long: str  # a voice note over [voice] max_seconds
    # [limits]: once per window, in place of the dropped message's answer.
    slow_down: str  # over the per-user rate (burst, per_minute)
    daily_limit: str  # over daily_turns
    voice_daily_limit: str  # over daily_stt_seconds: voice notes are not heard until tomorrow
    text_only_today: str  # over daily_tts_characters: appended once to a text-only answer
    over_capacity: str  # the daemon's agent budget for the day is spent
    voice_unavailable: str  # the daemon's speech-to-text budget for the day is spent
    voice_cut: str  # said at the end of a voice note cut short ([voice] max_tts_chars)

    def spoken(self) -> tuple[str, ...]:
        """The replies that stand in place of an answer, which a voice note may hear. Not the
        limit notices: a user over a limit gets one message, not a voice note as well."""
        return (
            self.agent_down,
            self.not_understood,
            self.no_speech,
            self.unsupported,
            self.voice_too_long,
            self.over_capacity,
            self.voice_unavailable,
        )


ENGLISH = TextTable(
    agent_down=(
        "Sorry, I can't answer right now because of a technical problem. Please try again in a "
        "few minutes."
    ),
    not_understood=(
        "Sorry, I couldn't make out your voice note. Could you type your question instead?"
    ),
    no_speech=(
        "I couldn't hear anything in your voice note. Could you speak a little louder, or type "
        "your question?"
    ),
    unsupported=(
        "Sorry, I can only read text messages and listen to voice notes. Please send your "
        "question as text or as a voice note."
    ),
    escalated="I'm passing your request on to a colleague, who will get back to you.",
    holding="One moment, I'm looking into it…",
    transcript_echo="I understood: “{transcript}”",
    voice_too_long=(
        "Sorry, your voice note is too long for me to listen to. Please send a shorter one, or "
        "type your question."
    ),
    slow_down=(
        "You're sending messages faster than I can answer them. Please wait a minute, then send "
        "your question again."
    ),
    daily_limit="You've reached today's limit of messages. I'll be happy to help again tomorrow.",
    voice_daily_limit=(
        "You've sent a lot of voice notes today. Please type your questions for the rest of the "
        "day."
    ),
    text_only_today="(I'll answer in writing for the rest of the day.)",
    over_capacity=(
        "We're receiving an unusually high number of messages right now. Please try again later."
    ),
    voice_unavailable="I can't listen to voice notes right now. Please type your question.",
    voice_cut="The rest of my answer is in the text message.",
)

ARABIC = TextTable(
    agent_down="عذرًا، لا أستطيع الرد الآن بسبب مشكلة تقنية. يُرجى المحاولة مرة أخرى بعد بضع دقائق.",
    not_understood="عذرًا، لم أتمكن من فهم رسالتك الصوتية. هل يمكنك كتابة سؤالك بدلًا من ذلك؟",
    no_speech="لم أسمع أي شيء في رسالتك الصوتية. هل يمكنك التحدث بصوت أعلى قليلًا، أو كتابة سؤالك؟",
    unsupported=(
        "عذرًا، يمكنني فقط قراءة الرسائل النصية والاستماع إلى الرسائل الصوتية. "
        "يُرجى إرسال سؤالك نصًا أو رسالة صوتية."
    ),
    escalated="سأحوّل طلبك إلى أحد زملائي، وسيتواصل معك قريبًا.",
    holding="لحظة من فضلك، أبحث في الأمر…",
    transcript_echo="فهمت: «{transcript}»",
    voice_too_long=(
        "عذرًا، رسالتك الصوتية أطول من أن أستمع إليها. يُرجى إرسال رسالة أقصر، أو كتابة سؤالك."
    ),
    slow_down=(
        "أنت ترسل الرسائل أسرع مما أستطيع الرد عليها. يُرجى الانتظار دقيقة، ثم إرسال سؤالك مرة أخرى."
    ),
    daily_limit="لقد وصلت إلى الحد اليومي للرسائل. يسعدني مساعدتك مجددًا غدًا.",
    voice_daily_limit="لقد أرسلت الكثير من الرسائل الصوتية اليوم. يُرجى كتابة أسئلتك لبقية اليوم.",
    text_only_today="(سأرد عليك كتابةً لبقية اليوم.)",
    over_capacity="نتلقى عددًا كبيرًا جدًا من الرسائل حاليًا. يُرجى المحاولة مرة أخرى لاحقًا.",
    voice_unavailable="لا أستطيع الاستماع إلى الرسائل الصوتية الآن. يُرجى كتابة سؤالك.",
    voice_cut="بقية إجابتي في الرسالة النصية.",
)

BUILT_IN_TEXTS = {"en": ENGLISH, "ar": ARABIC}
