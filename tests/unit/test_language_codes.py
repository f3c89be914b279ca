"""daemon/language.py: every language code speech-to-text reports becomes the code the rest
of the daemon uses for that language ([texts.<code>], text-to-speech, from_script)."""

from __future__ import annotations

import pytest

from daemon.language import ALIASES, from_script, normalize
from daemon.sim.elevenlabs import ISO_639_3

# The 99 languages Scribe lists, as ISO 639-3 -> ISO 639-1, kept here from the docs
# (elevenlabs.io/docs/capabilities/speech-to-text, "Supported languages"; Mandarin also as
# "cmn", in its accuracy breakdown) and ISO 639-2's table of 639-1 codes, not from
# daemon/language.py. None: the language has no 639-1 code, the code stays as it is.
SCRIBE = {
    "afr": "af", "amh": "am", "ara": "ar", "hye": "hy", "asm": "as", "ast": None, "aze": "az",
    "bel": "be", "ben": "bn", "bos": "bs", "bul": "bg", "mya": "my", "yue": None, "cat": "ca",
    "ceb": None, "nya": "ny", "hrv": "hr", "ces": "cs", "dan": "da", "nld": "nl", "eng": "en",
    "est": "et", "fil": "fil", "fin": "fi", "fra": "fr", "ful": "ff", "glg": "gl", "lug": "lg",
    "kat": "ka", "deu": "de", "ell": "el", "guj": "gu", "hau": "ha", "heb": "he", "hin": "hi",
    "hun": "hu", "isl": "is", "ibo": "ig", "ind": "id", "gle": "ga", "ita": "it", "jpn": "ja",
    "jav": "jv", "kea": None, "kan": "kn", "kaz": "kk", "khm": "km", "kor": "ko", "kur": "ku",
    "kir": "ky", "lao": "lo", "lav": "lv", "lin": "ln", "lit": "lt", "luo": None, "ltz": "lb",
    "mkd": "mk", "msa": "ms", "mal": "ml", "mlt": "mt", "zho": "zh", "cmn": "zh", "mri": "mi",
    "mar": "mr", "mon": "mn", "nep": "ne", "nso": None, "nor": "no", "oci": "oc", "ori": "or",
    "pus": "ps", "fas": "fa", "pol": "pl", "por": "pt", "pan": "pa", "ron": "ro", "rus": "ru",
    "srp": "sr", "sna": "sn", "snd": "sd", "slk": "sk", "slv": "sl", "som": "so", "spa": "es",
    "swa": "sw", "swe": "sv", "tam": "ta", "tgk": "tg", "tel": "te", "tha": "th", "tur": "tr",
    "ukr": "uk", "umb": None, "urd": "ur", "uzb": "uz", "vie": "vi", "cym": "cy", "wol": "wo",
    "xho": "xh", "zul": "zu",
}  # fmt: skip

# A word in each language whose script from_script reads, for the check that a voice note
# and a typed message in the same language land on the same code.
WRITTEN = {
    "ara": "مرحبا بكم", "heb": "שלום לכולם", "ell": "Καλημέρα σας", "tha": "สวัสดีครับ",
    "kor": "안녕하세요", "jpn": "こんにちは", "hin": "नमस्ते दोस्तों", "tam": "வணக்கம்",
}  # fmt: skip


def test_the_list_is_the_documented_one() -> None:
    assert len(SCRIBE) == 100  # 99 languages, Mandarin under two codes


@pytest.mark.parametrize("code", sorted(SCRIBE))
def test_every_code_scribe_reports_becomes_its_639_1_code(code: str) -> None:
    expected = SCRIBE[code] or code
    assert normalize(code) == expected
    assert normalize(code.upper()) == expected


@pytest.mark.parametrize(("spoken", "emitted"), sorted(ISO_639_3.items()))
def test_every_code_the_simulator_emits_comes_back_as_the_language_it_heard(
    spoken: str, emitted: str
) -> None:
    # The simulator hears a clip tagged with a 639-1 code and answers 639-3, as Scribe does.
    assert emitted in SCRIBE, f"the simulator emits {emitted!r}, which Scribe does not list"
    assert normalize(emitted) == normalize(spoken)


@pytest.mark.parametrize("code", sorted(WRITTEN))
def test_a_voice_note_and_a_typed_message_agree_on_the_language(code: str) -> None:
    assert normalize(code) == from_script(WRITTEN[code])


def test_every_alias_goes_to_a_code_nothing_maps_further() -> None:
    assert all(normalize(target) == target for target in ALIASES.values())
