"""The user's language: normalised codes, and a guess from the script of a text.

Speech-to-text reports a language (Scribe gives ISO 639-3 such as "eng" or "ara"); a typed
message has none, so its script decides where the script is telling (Arabic script -> "ar");
otherwise the configured default applies. The code picks the canned texts ([texts.<code>])
and goes to text-to-speech.
"""

from __future__ import annotations

import unicodedata

ALIASES = {
    # ISO 639-3 (and 639-2/B where it differs) -> ISO 639-1 (ElevenLabs spells Filipino "fil")
    "eng": "en", "jpn": "ja", "zho": "zh", "chi": "zh", "cmn": "zh", "deu": "de", "ger": "de",
    "hin": "hi", "fra": "fr", "fre": "fr", "kor": "ko", "por": "pt", "ita": "it", "spa": "es",
    "ind": "id", "nld": "nl", "dut": "nl", "tur": "tr", "tgl": "fil", "tl": "fil", "pol": "pl",
    "swe": "sv", "bul": "bg", "ron": "ro", "rum": "ro", "ara": "ar", "ces": "cs", "cze": "cs",
    "ell": "el", "gre": "el", "fin": "fi", "hrv": "hr", "msa": "ms", "may": "ms", "zsm": "ms",
    "slk": "sk", "slo": "sk", "dan": "da", "tam": "ta", "ukr": "uk", "rus": "ru", "hun": "hu",
    "nor": "no", "nob": "no", "nno": "no", "nb": "no", "nn": "no", "vie": "vi",
    # The rest of the 99 languages Scribe lists, in the ISO 639-3 codes it reports them in
    # (elevenlabs.io/docs/capabilities/speech-to-text, "Supported languages"), with 639-2/B
    # and individual-language codes where they differ. Asturian (ast), Cebuano (ceb),
    # Kabuverdianu (kea), Luo (luo), Northern Sotho (nso), Umbundu (umb) and Cantonese (yue)
    # have no 639-1 code and stay as they are.
    "afr": "af", "amh": "am", "hye": "hy", "arm": "hy", "asm": "as", "aze": "az", "bel": "be",
    "ben": "bn", "bos": "bs", "mya": "my", "bur": "my", "cat": "ca", "nya": "ny", "est": "et",
    "ful": "ff", "glg": "gl", "lug": "lg", "kat": "ka", "geo": "ka", "guj": "gu", "hau": "ha",
    "heb": "he", "isl": "is", "ice": "is", "ibo": "ig", "gle": "ga", "jav": "jv", "kan": "kn",
    "kaz": "kk", "khm": "km", "kur": "ku", "kir": "ky", "lao": "lo", "lav": "lv", "lin": "ln",
    "lit": "lt", "ltz": "lb", "mkd": "mk", "mac": "mk", "mal": "ml", "mlt": "mt", "mri": "mi",
    "mao": "mi", "mar": "mr", "mon": "mn", "nep": "ne", "npi": "ne", "oci": "oc", "ori": "or",
    "pus": "ps", "fas": "fa", "per": "fa", "pes": "fa", "pan": "pa", "srp": "sr", "sna": "sn",
    "snd": "sd", "slv": "sl", "som": "so", "swa": "sw", "swh": "sw", "tgk": "tg", "tel": "te",
    "tha": "th", "urd": "ur", "uzb": "uz", "cym": "cy", "wel": "cy", "wol": "wo", "xho": "xh",
    "zul": "zu",
}  # fmt: skip


def normalize(code: str | None) -> str | None:
    """ "eng", "en-US", "EN_gb" -> "en"; None or "" -> None."""
    if not code:
        return None
    base = code.strip().lower().replace("_", "-").split("-")[0]
    return ALIASES.get(base, base) or None


# Scripts that name one language well enough to choose its texts. Latin, Cyrillic and the
# like are shared by many languages, so they decide nothing (the default applies).
_SCRIPTS = {"ARABIC": "ar", "HEBREW": "he", "GREEK": "el", "THAI": "th", "HANGUL": "ko",
            "HIRAGANA": "ja", "KATAKANA": "ja", "DEVANAGARI": "hi", "TAMIL": "ta"}  # fmt: skip


def from_script(text: str) -> str | None:
    """The language a text's letters point to, when most of them are in a telling script."""
    counts: dict[str, int] = {}
    letters = 0
    for char in text:
        if not char.isalpha():
            continue
        letters += 1
        name = unicodedata.name(char, "")
        script = name.split(" ", 1)[0]
        if script in _SCRIPTS:
            counts[_SCRIPTS[script]] = counts.get(_SCRIPTS[script], 0) + 1
    if not letters or not counts:
        return None
    code, count = max(counts.items(), key=lambda item: item[1])
    return code if count * 2 > letters else None
