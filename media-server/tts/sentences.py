"""Bot replies to speakable sentences: markdown stripped, split where a speaker would pause.

:func:`split_sentences` gives the units the voice synthesizes one at a time (the first one can
play while the rest are synthesized). :func:`speakable` rewrites the things the Piper/espeak-ng
front end reads badly ("9:00" is "nine zero zero", "$12.50" is "dollar twelve point five zero",
"Mon\u2013Fri" is "mon fry") into words it reads well.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["speakable", "split_sentences", "strip_markdown"]

MIN_WORDS = 3
"""Fragments with fewer words ("Sure.", "Thank you!") are spoken together with a neighbour."""
MAX_CHARS = 250
"""Longer sentences are cut at clause boundaries (commas, semicolons, dashes)."""

# --- markdown -------------------------------------------------------------------------------

_MD_RULES: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    (re.compile(r"^\s*(```|~~~).*$", re.M), ""),  # code fences (the code itself stays)
    (re.compile(r"<br\s*/?>", re.I), "\n"),
    (re.compile(r"<((?:https?://|mailto:)[^<>\s]+)>"), r"\1"),  # autolinks
    (re.compile(r"<([^<>\s@]+@[^<>\s@]+)>"), r"\1"),  # <someone@example.com>
    (re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>"), ""),  # html tags
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images: alt text
    (re.compile(r"\[([^\]]+)\]\((?:[^()\s]|\([^()\s]*\))*(?:\s+\"[^\"]*\")?\s*\)"), r"\1"),
    (re.compile(r"\[([^\]]+)\]\[[^\]]*\]"), r"\1"),  # reference links
    (re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+.*$", re.M), ""),  # link reference definitions
    (re.compile(r"`+([^`]+?)`+"), r"\1"),  # inline code
    (re.compile(r"^\s{0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", re.M), r"\1"),  # headings
    (re.compile(r"^\s*(?:>\s?)+", re.M), ""),  # block quotes
    (re.compile(r"^\s*([-*_])(?:\s*\1){2,}\s*$", re.M), ""),  # horizontal rules
    (re.compile(r"^\s*(?:[-*+•▪‣◦]|\d{1,3}[.)])\s+", re.M), ""),  # bullets, numbered items
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*\\])\*(?![\w*])"), r"\1"),  # italic
    (re.compile(r"(?<![\w\\])_(?=[^\s_])(.+?)(?<=[^\s_\\])_(?!\w)"), r"\1"),  # italic
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"\1"),  # strikethrough
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),  # backslash escapes
]
_TABLE_ROW = re.compile(r"^\s*\|(.*)\|\s*$", re.M)
_TABLE_RULE = re.compile(r":?-+:?")


def _table_row(match: re.Match[str]) -> str:
    cells = [cell.strip() for cell in match.group(1).split("|")]
    return ", ".join(cell for cell in cells if cell and not _TABLE_RULE.fullmatch(cell))


def strip_markdown(text: str) -> str:
    """``text`` without markdown syntax: link texts kept, urls of links dropped."""
    text = _TABLE_ROW.sub(_table_row, text)
    for pattern, replacement in _MD_RULES:
        text = pattern.sub(replacement, text)
    return text


# --- sentence splitting ---------------------------------------------------------------------

_TITLES = ("mr", "mrs", "ms", "mx", "dr", "prof", "st", "mt", "ft", "rev", "hon", "gen", "capt")
_RANKS = ("lt", "sgt", "col", "cpl", "messrs")
_LATIN = ("e.g", "eg", "i.e", "ie", "vs", "viz", "cf")
_OFFICE = ("approx", "appt", "incl", "dept", "ext", "tel", "apt", "ste", "rm", "bldg", "est", "fig")
_MONTHS = ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
# Never end a sentence (titles before a name, "e.g." before an example, "ext." before a number).
_ALWAYS = frozenset([*_TITLES, *_RANKS, *_LATIN, *_OFFICE])
# Not a sentence end before a number ("No. 5", "Jan. 12", "p. 3").
_BEFORE_NUMBER = frozenset(["no", "nr", "nos", "p", "pp", "vol", "ch", "sec", "art", *_MONTHS])
_BOUNDARY = re.compile(r"([.!?…]+)([\"'\u201d\u2019)\]]*)(\s+|$)")
_WORD_CHAR = re.compile(r"[^\W_]")
_OPENERS = "\"'\u201c\u2018([{"
_CLAUSE = re.compile(r"[,;:](?=\s)|\s[\u2013\u2014-](?=\s)")


def _ends_sentence(line: str, match: re.Match[str]) -> bool:
    punct = match.group(1)
    rest = line[match.end() :]
    if not rest:
        return True
    nxt = rest[0]
    if "!" in punct or "?" in punct:
        return True
    if punct in ("...", "…") or len(punct) > 1:  # ellipsis: a pause unless a new sentence starts
        return not nxt.islower()
    if nxt.islower():  # "approx. two hours", unknown abbreviations
        return False
    word_start = line.rfind(" ", 0, match.start()) + 1
    word = line[word_start : match.start()].lstrip(_OPENERS).lower()
    if word in _ALWAYS:
        return False
    if word in _BEFORE_NUMBER and (nxt.isdigit() or nxt == "#"):
        return False
    # An initial ("J. Smith") does not end a sentence.
    return not (len(word) == 1 and word.isalpha() and word.upper() == _initial(line, word_start))


def _initial(line: str, word_start: int) -> str:
    return line[word_start:].lstrip(_OPENERS)[:1]


def _split_line(line: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(line):
        if _ends_sentence(line, match):
            end = match.start(3)
            parts.append(line[start:end].strip())
            start = match.end()
    parts.append(line[start:].strip())
    return [part for part in parts if part]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Cut a long sentence after the last clause boundary that keeps pieces <= ``max_chars``."""
    pieces: list[str] = []
    while len(sentence) > max_chars:
        cut = -1
        for match in _CLAUSE.finditer(sentence, 0, max_chars + 1):
            if match.start() >= max_chars // 3:
                cut = match.end()
        if cut < 0:
            space = sentence.rfind(" ", max_chars // 3, max_chars + 1)
            if space < 0:
                break
            cut = space
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    pieces.append(sentence)
    return [piece for piece in pieces if piece]


def _word_count(text: str) -> int:
    return sum(1 for token in text.split() if _WORD_CHAR.search(token))


def _join(first: str, second: str) -> str:
    if first[-1] in ".!?…:;,":
        return f"{first} {second}"
    return f"{first}. {second}"  # a line without punctuation (a heading, a bullet)


def _merge_short(sentences: list[str], min_words: int) -> list[str]:
    merged: list[str] = []
    carry = ""
    for sentence in sentences:
        sentence = _join(carry, sentence) if carry else sentence
        if _word_count(sentence) < min_words:
            carry = sentence
        else:
            merged.append(sentence)
            carry = ""
    if carry:
        if merged:
            merged[-1] = _join(merged[-1], carry)
        elif _WORD_CHAR.search(carry):
            merged.append(carry)
    return merged


def split_sentences(
    text: str, *, min_words: int = MIN_WORDS, max_chars: int = MAX_CHARS
) -> list[str]:
    """The sentences of a bot reply, in order, to be spoken one by one.

    Markdown is stripped (emphasis, links -> their text, bullets, headings, code marks).
    Sentences end at ``.``, ``!``, ``?``, ``…`` followed by a space, and at line breaks; a
    period does not end one after an abbreviation ("Dr.", "e.g.", "etc. and"), inside numbers,
    times, prices, urls or e-mail addresses. Fragments of fewer than ``min_words`` words are
    merged into the next sentence (the last into the previous one); sentences longer than
    ``max_chars`` are cut at clause boundaries. Never returns empty or blank strings, nor
    fragments without a letter or digit.
    """
    sentences: list[str] = []
    for raw_line in strip_markdown(text).splitlines():
        line = " ".join(raw_line.split())
        if not line:
            continue
        for sentence in _split_line(line):
            pieces = _split_long(sentence, max_chars)
            sentences.extend(piece for piece in pieces if _WORD_CHAR.search(piece))
    return _merge_short(sentences, min_words)


# --- speakable text -------------------------------------------------------------------------

_DAYS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "tues": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "thur": "Thursday",
    "thurs": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}
_FULL_DAY = r"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day"
_DAY_ABBR = r"(?:Mon|Tues?|Wed|Thu(?:rs?)?|Fri|Sat|Sun)"
_DAY = rf"(?:{_FULL_DAY}|{_DAY_ABBR}\b\.?)"
_DAY_RANGE = re.compile(rf"\b({_DAY})\s*(?:[\u2013\u2014-]|\bto\b|\buntil\b|\btill\b)\s*({_DAY})")
_DAY_BEFORE_TIME = re.compile(rf"\b({_DAY_ABBR})\b\.?(?=\s*(?::|,?\s*\d))")
_DAY_IN_LIST = re.compile(rf"\b({_DAY_ABBR})\b\.?(?=\s*(?:,|&|\band\b)\s*{_DAY})")
_AM_PM = re.compile(r"(?<=\d)\s*([AaPp])\.?\s?[Mm]\b\.?")
_DOT_TIME = re.compile(r"\b(1[0-2]|0?[1-9])\.([0-5]\d) (AM|PM)\b")
_DOT_TIME_AT = re.compile(
    r"\b(at|from|until|till|by|before|after|between)\s+([01]?\d|2[0-3])\.([0-5]\d)\b(?![.,]\d)"
)
_TIME_TOKEN = r"\d{1,2}(?::\d\d)?(?: [AP]M\b)?"
_TIME_RANGE = re.compile(  # "9:00\u201317:00", "9 AM - 5 PM", "9 AM-5 PM", "2\u20133"
    rf"\b({_TIME_TOKEN})\s*(?:[\u2013\u2014]|\s-\s|-(?=\d{{1,2}}(?::\d\d| [AP]M)))\s*"
)
_TIME = re.compile(r"(?<![\d:.])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])(?: (AM|PM)\b)?")
_MONEY = re.compile(r"([$£€])\s?((?>\d{1,3}(?:,\d{3})+|\d+))(?:\.(\d{2}))?(?![\d.,]\d)")
_CURRENCY = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}
_PHONE = re.compile(r"(?<![\w.,/:-])\+?\(?\d[\d().\- ]{5,}\d(?![\w/:-]|[.,]\d)")
_ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")
_DECIMAL = re.compile(r"\d+\.\d+")
_WORDS = [
    (re.compile(r"\bDr\.(?=\s)"), "Doctor"),
    (re.compile(r"\bMr\.(?=\s)"), "Mister"),
    (re.compile(r"\bMrs\.(?=\s)"), "Missus"),
    (re.compile(r"\bMs\.(?=\s)"), "Miz"),
    (re.compile(r"\bProf\.(?=\s)"), "Professor"),
    (re.compile(r"\b[Ee]\.g\.(?=[\s,]|$)"), "for example"),
    (re.compile(r"\b[Ii]\.e\.(?=[\s,]|$)"), "that is"),
    (re.compile(r"\betc\.(?=[\s,)]|$)"), "et cetera"),
    (re.compile(r"\bapprox\.(?=\s)"), "approximately"),
    (re.compile(r"\b[Nn]o\.(?=\s?\d)"), "number"),
    (re.compile(r"\bext\.(?=\s?\d)"), "extension"),
    (re.compile(r"\b24/7\b"), "24 7"),
]


def _day(name: str) -> str:
    name = name.rstrip(".")
    return _DAYS.get(name.lower(), name)


def _time_words(hour: int, minute: str, suffix: str | None, clock24: bool) -> str:
    if suffix is None and clock24:
        suffix = "AM" if hour < 12 else "PM"
        if hour == 12 and minute == "00":
            return "12 noon"
        if hour == 0 and minute == "00":
            return "midnight"
        hour = hour % 12 or 12
    if minute == "00":
        return f"{hour} {suffix}" if suffix else f"{hour} o'clock"
    spoken = f"{hour} oh {minute[1]}" if minute[0] == "0" else f"{hour} {minute}"
    return f"{spoken} {suffix}" if suffix else spoken


def _money(match: re.Match[str]) -> str:
    one, many, sub_one, sub_many = _CURRENCY[match.group(1)]
    amount, cents = match.group(2), match.group(3)
    words = f"{amount} {one if amount == '1' else many}"
    if cents and cents != "00":
        value = int(cents)
        words += f" {value} {sub_one if value == 1 else sub_many}"
    return words


def _phone(match: re.Match[str]) -> str:
    number = match.group(0)
    digits = sum(ch.isdigit() for ch in number)
    grouped = number.startswith("+") or any(sep in number for sep in "-()")
    if not 7 <= digits <= 15 or not (grouped or digits >= 9):
        return number
    if _ISO_DATE.fullmatch(number.strip()) or _DECIMAL.fullmatch(number):
        return number
    groups = [g for g in re.split(r"[^\d]+", number) if g]
    spoken = ", ".join(" ".join(group) for group in groups)
    return f"plus {spoken}" if number.startswith("+") else spoken


def speakable(text: str) -> str:
    """``text`` rewritten for the voice: abbreviations, times, day ranges, money, phone numbers.

    "Mon\u2013Fri 9:00\u201317:00" -> "Monday to Friday 9 AM to 5 PM"; "$12.50" ->
    "12 dollars 50 cents"; "Dr. Lee" -> "Doctor Lee"; "555-0123" -> "5 5 5, 0 1 2 3".
    A time without AM/PM reads as a 24-hour time when the text has one past 12:59 or one
    written with a leading zero ("09:00"), else as on a clock face ("3:30" -> "3 30").
    """
    out = text
    for pattern, replacement in _WORDS:
        out = pattern.sub(replacement, out)
    out = _AM_PM.sub(lambda m: f" {m.group(1).upper()}M", out)
    out = _DOT_TIME.sub(r"\1:\2 \3", out)
    out = _DOT_TIME_AT.sub(r"\1 \2:\3", out)
    out = _PHONE.sub(_phone, out)
    out = _DAY_RANGE.sub(lambda m: f"{_day(m.group(1))} to {_day(m.group(2))}", out)
    out = _DAY_BEFORE_TIME.sub(lambda m: _day(m.group(1)), out)
    out = _DAY_IN_LIST.sub(lambda m: _day(m.group(1)), out)
    out = _TIME_RANGE.sub(r"\1 to ", out)
    clock24 = any(
        int(m.group(1)) > 12 or (m.group(1).startswith("0") and m.group(3) is None)
        for m in _TIME.finditer(out)
    )
    out = _TIME.sub(lambda m: _time_words(int(m.group(1)), m.group(2), m.group(3), clock24), out)
    out = _MONEY.sub(_money, out)
    out = " ".join(out.split())
    if text.rstrip().endswith(".") and out and out[-1] not in ".!?…":
        out += "."  # "…, etc." lost its period to "et cetera"
    return out
