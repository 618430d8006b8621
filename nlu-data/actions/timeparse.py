"""Date and time expressions ("tomorrow at 3", "next Tuesday morning", "25 December") resolved
to an absolute, time-zone-aware datetime in the business's time zone, with ``dateparser``.

Like ``business.py`` it never reads the clock: "now" is passed in. What this module adds to
dateparser is receptionist common sense, not parsing: fillers are dropped, a part of the day
("morning") becomes a time, a bare hour that a front desk would mean in the afternoon ("at 3")
is read as pm, and "next Tuesday" means the coming Tuesday.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dateparser

PARTS_OF_DAY = {
    "first thing": time(9, 0),
    "morning": time(10, 0),
    "lunchtime": time(12, 30),
    "lunch time": time(12, 30),
    "noon": time(12, 0),
    "midday": time(12, 0),
    "afternoon": time(14, 0),
    "end of the day": time(16, 30),
    "evening": time(17, 0),
}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
FILLERS = (
    r"\b(um+|uh+|erm+|er|like|please|maybe|perhaps|possibly|ideally|around|about|ish|"
    r"say|sometime|some time|if possible|would be good|works|is good|please)\b"
)
# Hours a receptionist hears without am/pm and means in the afternoon ("at 3" = 15:00).
PM_IF_BARE = range(1, 8)


@dataclass(frozen=True)
class Resolved:
    """A resolved expression: the moment, and whether a time of day was given."""

    when: datetime
    has_time: bool

    @property
    def day(self) -> date:
        return self.when.date()


def _clean(text: str) -> str:
    t = text.lower().strip()
    t = re.sub(r"[?!,;]", " ", t)
    t = re.sub(FILLERS, " ", t)
    t = re.sub(r"\bo'?clock\b", "", t)
    t = re.sub(r"\b(on|for|at|in)\s*$", "", t)
    return re.sub(r"\s+", " ", t).strip()


NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}


def _spoken_times(text: str) -> tuple[str, bool]:
    """Normalise spoken clock times to HH:MM so the parser cannot read "at 3" as a day or a
    year: "at three" / "at 3" -> 15:00 (bare 1-7 read as pm), "half past two" -> 14:30,
    "quarter to 4" -> 15:45, "10.30" -> 10:30. Returns the text and whether a time was seen."""
    t = re.sub(
        r"\b(" + "|".join(NUMBER_WORDS) + r")\b", lambda m: str(NUMBER_WORDS[m.group(1)]), text
    )
    t = re.sub(
        r"\b(\d{1,2}) (fifteen|thirty|forty[- ]five)\b",
        lambda m: f"{m.group(1)}:{ {'fifteen': 15, 'thirty': 30}.get(m.group(2), 45) }",
        t,
    )
    t = re.sub(r"\bhalf past (\d{1,2})\b", r"\1:30", t)
    t = re.sub(r"\bquarter past (\d{1,2})\b", r"\1:15", t)
    t = re.sub(r"\bquarter to (\d{1,2})\b", lambda m: f"{(int(m.group(1)) - 1) % 12 or 12}:45", t)
    t = re.sub(r"\b(\d{1,2})\.(\d{2})\b", r"\1:\2", t)
    seen = False

    def hhmm(m: re.Match[str]) -> str:
        nonlocal seen
        hour, minute, mer = int(m.group(1)), int(m.group(2) or 0), m.group(3) or None
        if hour > 23 or minute > 59:
            return m.group(0)
        if mer in ("pm", "p.m.") and hour < 12:
            hour += 12
        elif mer in ("am", "a.m.") and hour == 12:
            hour = 0
        elif mer is None and hour in PM_IF_BARE:
            hour += 12
        seen = True
        return f" {hour:02d}:{minute:02d} "

    # a clock time: "3pm", "10:30", "at 3", "at 10 am"; not a bare day number
    t = re.sub(r"(?:\bat |\bby |\bfrom )?\b(\d{1,2}):(\d{2})\s*(am|pm|a\.m\.|p\.m\.)?", hhmm, t)
    t = re.sub(r"\b(\d{1,2})()\s*(am|pm|a\.m\.|p\.m\.)(?=\W|$)", hhmm, t)
    t = re.sub(r"\b(?:at|by|from) (\d{1,2})()()\b(?!\s*(?:st|nd|rd|th)\b)", hhmm, t)
    return re.sub(r"\s+", " ", t).strip(), seen


def _part_of_day(text: str) -> tuple[str, time | None]:
    for words in sorted(PARTS_OF_DAY, key=len, reverse=True):
        pattern = rf"\b(in the |this |tomorrow |)?{words}\b"
        m = re.search(pattern, text)
        if m:
            rest = (text[: m.start()] + " " + (m.group(1) or "") + text[m.end() :]).strip()
            rest = re.sub(r"\b(in the|this)\b", "", rest)
            if m.group(1) == "this ":
                rest = (rest + " today").strip()
            return re.sub(r"\s+", " ", rest).strip(), PARTS_OF_DAY[words]
    return text, None


def _next_weekday(text: str, today: date) -> tuple[str, date | None]:
    """'next tuesday' / 'this tuesday' / 'tuesday' -> the coming Tuesday (never today)."""
    m = re.search(r"\b(?:(next|this|coming|on)\s+)?(" + "|".join(WEEKDAYS) + r")\b", text)
    if not m:
        return text, None
    wd = WEEKDAYS.index(m.group(2))
    ahead = (wd - today.weekday()) % 7 or 7
    rest = (text[: m.start()] + " " + text[m.end() :]).strip()
    return re.sub(r"\s+", " ", rest), today + timedelta(days=ahead)


def resolve(text: str, now: datetime, tz: ZoneInfo) -> Resolved | None:
    """Resolve ``text`` relative to ``now`` in ``tz``; None when it names no date or time."""
    if now.tzinfo is None:
        raise ValueError("now must be time-zone aware")
    local_now = now.astimezone(tz)
    t = _clean(text)
    if not t:
        return None
    t, part = _part_of_day(t)
    t, clock_seen = _spoken_times(t)
    t, weekday = _next_weekday(t, local_now.date())
    settings = {
        "TIMEZONE": str(tz),
        "TO_TIMEZONE": str(tz),
        "RETURN_AS_TIMEZONE_AWARE": True,
        "RELATIVE_BASE": local_now.replace(tzinfo=None),
        "PREFER_DATES_FROM": "future",
        "PREFER_DAY_OF_MONTH": "first",
        "DATE_ORDER": "DMY",
        "RETURN_TIME_AS_PERIOD": True,
    }
    parsed = None
    has_time = False
    if t:
        result = dateparser.date.DateDataParser(languages=["en"], settings=settings).get_date_data(
            t
        )
        if result.date_obj is None:
            if weekday is None and part is None:
                return None
        else:
            parsed = result.date_obj.astimezone(tz)
            has_time = (
                clock_seen
                or result.period == "time"
                or bool(re.search(r"\b(hours?|minutes?|mins?)\b", t))
            )
    if parsed is None:
        base_day = weekday or local_now.date()
        parsed = datetime.combine(base_day, time(0, 0), tzinfo=tz)
    elif weekday is not None:
        parsed = datetime.combine(weekday, parsed.timetz() if has_time else time(0, 0))
    if not has_time and part is not None:
        parsed = datetime.combine(parsed.date(), part, tzinfo=tz)
        has_time = True
    if not has_time:
        parsed = parsed.replace(hour=0, minute=0, second=0, microsecond=0)
    return Resolved(parsed.replace(second=0, microsecond=0), has_time)
