"""Whisper's language codes and the English names OpenAI's verbose_json reports ("en" -> "english").

Pure: standard library only. The table is Whisper's own list; unknown codes pass through unchanged.
"""

from __future__ import annotations

_TABLE = """
en english|zh chinese|de german|es spanish|ru russian|ko korean|fr french|ja japanese|pt portuguese|tr turkish
pl polish|ca catalan|nl dutch|ar arabic|sv swedish|it italian|id indonesian|hi hindi|fi finnish|vi vietnamese
he hebrew|uk ukrainian|el greek|ms malay|cs czech|ro romanian|da danish|hu hungarian|ta tamil|no norwegian
th thai|ur urdu|hr croatian|bg bulgarian|lt lithuanian|la latin|mi maori|ml malayalam|cy welsh|sk slovak
te telugu|fa persian|lv latvian|bn bengali|sr serbian|az azerbaijani|sl slovenian|kn kannada|et estonian
mk macedonian|br breton|eu basque|is icelandic|hy armenian|ne nepali|mn mongolian|bs bosnian|kk kazakh
sq albanian|sw swahili|gl galician|mr marathi|pa punjabi|si sinhala|km khmer|sn shona|yo yoruba|so somali
af afrikaans|oc occitan|ka georgian|be belarusian|tg tajik|sd sindhi|gu gujarati|am amharic|yi yiddish|lo lao
uz uzbek|fo faroese|ht haitian creole|ps pashto|tk turkmen|nn nynorsk|mt maltese|sa sanskrit|lb luxembourgish
my myanmar|bo tibetan|tl tagalog|mg malagasy|as assamese|tt tatar|haw hawaiian|ln lingala|ha hausa|ba bashkir
jw javanese|su sundanese|yue cantonese
"""

NAMES: dict[str, str] = dict(
    (entry.split(" ", 1)[0], entry.split(" ", 1)[1]) for entry in _TABLE.replace("\n", "|").split("|") if entry
)
CODES: dict[str, str] = {name: code for code, name in NAMES.items()}


def language_name(code: str | None) -> str:
    """OpenAI's spelling of a detected language; "english" when Whisper did not say."""
    if not code:
        return "english"
    base = code.lower().split("-")[0].split("_")[0]
    return NAMES.get(base, code.lower())


def language_code(value: str) -> str:
    """A two-letter code for a code or an English language name ("French" -> "fr", "pt-BR" -> "pt")."""
    lowered = value.strip().lower()
    if lowered in CODES:
        return CODES[lowered]
    return lowered.split("-")[0].split("_")[0]
