"""The business profile (``business.yml``) and the calendar logic that answers "are you open
now / on Sunday / on 25 December?".

Pure logic: it imports only the standard library and PyYAML (both in the Rasa virtualenv and
the main one), and never reads the clock itself: every question takes "now" explicitly, as a
time-zone-aware datetime. The custom actions pass ``datetime.now(profile.tz)``.
"""

from __future__ import annotations

import difflib
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "business.yml"
ENV_FILE = "RECEPTIONIST_BUSINESS_FILE"


class ProfileError(ValueError):
    """business.yml is missing a key or has a value of the wrong shape; names the key."""


Interval = tuple[time, time]


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    aliases: tuple[str, ...]
    price: float
    duration_minutes: int

    def price_text(self, currency: str) -> str:
        return money(self.price, currency)


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    default: bool = False


@dataclass(frozen=True)
class DayRule:
    """A closure (no hours) or special hours, on one date or every year on a month-day."""

    name: str
    hours: tuple[Interval, ...]
    year: int | None
    month: int
    day: int

    def applies(self, d: date) -> bool:
        return (self.year is None or self.year == d.year) and (d.month, d.day) == (
            self.month,
            self.day,
        )


@dataclass(frozen=True)
class DayHours:
    """The opening hours of one date and why (regular, a closure, special hours)."""

    day: date
    intervals: tuple[Interval, ...]
    reason: str | None = None  # the name of the holiday or special day, if any

    @property
    def closed(self) -> bool:
        return not self.intervals


@dataclass(frozen=True)
class Profile:
    name: str
    timezone: str
    address_lines: tuple[str, ...]
    directions: str
    parking: str
    phone: str
    email: str
    website: str
    weekly: dict[int, tuple[Interval, ...]]
    closures: tuple[DayRule, ...]
    special: tuple[DayRule, ...]
    currency: str
    services: tuple[Service, ...]
    departments: tuple[Department, ...]
    bot_languages: tuple[str, ...]
    staff_languages: tuple[str, ...]
    source: str = field(default="business.yml", compare=False)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def address(self) -> str:
        return ", ".join(self.address_lines)

    @property
    def default_skill(self) -> str:
        for d in self.departments:
            if d.default:
                return d.id
        return self.departments[0].id if self.departments else "general"

    def skill_for(self, wanted: str | None) -> str:
        """The department id matching ``wanted`` (an id, a name or part of one), else the
        default department."""
        if wanted:
            w = wanted.strip().lower()
            for d in self.departments:
                if w in (d.id, d.name.lower()) or w in d.name.lower().split():
                    return d.id
        return self.default_skill

    # -- calendar -------------------------------------------------------------------------

    def hours_on(self, d: date) -> DayHours:
        for rule in self.closures:
            if rule.applies(d):
                return DayHours(d, (), rule.name)
        for rule in self.special:
            if rule.applies(d):
                return DayHours(d, rule.hours, rule.name)
        return DayHours(d, self.weekly.get(d.weekday(), ()))

    def _local(self, now: datetime) -> datetime:
        if now.tzinfo is None:
            raise ValueError("now must be time-zone aware")
        return now.astimezone(self.tz)

    def open_at(self, when: datetime) -> bool:
        local = self._local(when)
        t = local.time()
        return any(a <= t < b for a, b in self.hours_on(local.date()).intervals)

    def closes_at(self, when: datetime) -> datetime | None:
        """When the current opening interval ends, if open at ``when``."""
        local = self._local(when)
        t = local.time()
        for a, b in self.hours_on(local.date()).intervals:
            if a <= t < b:
                return datetime.combine(local.date(), b, tzinfo=self.tz)
        return None

    def next_opening(self, when: datetime, horizon_days: int = 31) -> datetime | None:
        """The next moment the doors open strictly after ``when`` (None within the horizon)."""
        local = self._local(when)
        for offset in range(horizon_days + 1):
            d = local.date() + timedelta(days=offset)
            for a, _b in self.hours_on(d).intervals:
                start = datetime.combine(d, a, tzinfo=self.tz)
                if start > local:
                    return start
        return None

    def fits_opening_hours(self, start: datetime, minutes: int) -> bool:
        """Whether an appointment of ``minutes`` starting at ``start`` lies within one
        opening interval of that day."""
        local = self._local(start)
        end = local + timedelta(minutes=minutes)
        if end.date() != local.date():
            return False
        return any(
            a <= local.time() and end.time() <= b for a, b in self.hours_on(local.date()).intervals
        )

    # -- answers ----------------------------------------------------------------------------

    def describe_week(self) -> str:
        """'We're open Monday to Friday from 9 am to 5:30 pm, and Saturday from 10 am to 2 pm.
        We're closed on Sundays and public holidays.'"""
        groups: list[tuple[int, int, tuple[Interval, ...]]] = []
        for i in range(7):
            iv = self.weekly.get(i, ())
            if groups and groups[-1][2] == iv and groups[-1][1] == i - 1:
                groups[-1] = (groups[-1][0], i, iv)
            else:
                groups.append((i, i, iv))
        open_parts: list[str] = []
        closed: list[str] = []
        for a, b, iv in groups:
            days = (
                WEEKDAYS[a].title() if a == b else f"{WEEKDAYS[a].title()} to {WEEKDAYS[b].title()}"
            )
            if iv:
                open_parts.append(f"{days} {intervals_text(iv)}")
            else:
                closed.append(
                    WEEKDAYS[a].title() + "s"
                    if a == b
                    else f"{WEEKDAYS[a].title()} to {WEEKDAYS[b].title()}"
                )
        if not open_parts:
            return "We're closed at the moment, with no regular opening hours."
        text = "We're open " + join_and(open_parts, sep=", and ") + "."
        closed_text = join_and(closed)
        text += (
            f" We're closed on {closed_text} and public holidays."
            if closed_text
            else (" We're closed on public holidays.")
        )
        return text

    def describe_day(self, d: date, now: datetime) -> str:
        """The answer to 'are you open on <d>?' asked at ``now``."""
        local_now = self._local(now)
        h = self.hours_on(d)
        label = day_label(d, local_now.date())
        if d < local_now.date():
            return f"{label[0].upper()}{label[1:]} has already passed. " + self.describe_week()
        if h.closed:
            why = f" for {h.reason}" if h.reason else ""
            nxt = self.next_opening(datetime.combine(d, time(23, 59), tzinfo=self.tz))
            after = (
                f" We open again {day_label(nxt.date(), local_now.date())} at {clock(nxt.time())}."
                if nxt
                else ""
            )
            return f"We're closed {label}{why}.{after}"
        special = f" ({h.reason})" if h.reason else ""
        return f"Yes, {label}{special} we're open {intervals_text(h.intervals)}."

    def describe_now(self, now: datetime) -> str:
        """The answer to 'are you open now?'."""
        local = self._local(now)
        until = self.closes_at(local)
        if until is not None:
            return f"Yes, we're open now, until {clock(until.time())} today."
        h = self.hours_on(local.date())
        nxt = self.next_opening(local)
        why = f" for {h.reason}" if h.closed and h.reason else ""
        head = f"We're closed right now{why}."
        if nxt is None:
            return head
        return f"{head} We open again {day_label(nxt.date(), local.date())} at {clock(nxt.time())}."

    def find_named_day(self, text: str | None, today: date) -> date | None:
        """The next date (from ``today``) of a closure or special day named in ``text``
        ("are you open on Christmas Day?", "boxing day")."""
        if not text:
            return None
        t = normalise(text).replace("xmas", "christmas")
        best: tuple[int, date] | None = None
        for rule in (*self.closures, *self.special):
            name = re.sub(r"^the ", "", normalise(rule.name))
            name = name.replace("new year s", "new years")
            if not name or not re.search(
                rf"\b{re.escape(name)}\b", t.replace("new year s", "new years")
            ):
                continue
            for year in (today.year, today.year + 1):
                if rule.year is not None and rule.year != year:
                    continue
                try:
                    d = date(year, rule.month, rule.day)
                except ValueError:
                    continue
                if d >= today:
                    if best is None or len(name) > best[0]:
                        best = (len(name), d)
                    break
        return best[1] if best else None

    def find_service(self, text: str | None) -> Service | None:
        """The service named by ``text`` (id, name or alias; tolerant of small typos)."""
        if not text:
            return None
        t = normalise(text)
        names: dict[str, Service] = {}
        for s in self.services:
            for n in (s.id.replace("_", " "), s.name, *s.aliases):
                names[normalise(n)] = s
        if t in names:
            return names[t]
        for n, s in sorted(names.items(), key=lambda kv: -len(kv[0])):
            if re.search(rf"\b{re.escape(n)}\b", t):
                return s
        close = difflib.get_close_matches(t, list(names), n=1, cutoff=0.8)
        return names[close[0]] if close else None

    def describe_services(self) -> str:
        items = [f"{s.name} ({s.price_text(self.currency)})" for s in self.services]
        return f"We offer {join_and(items)}."

    def describe_price(self, service: Service) -> str:
        return (
            f"A {service.name} costs {service.price_text(self.currency)} and takes "
            f"{service.duration_minutes} minutes."
        )


# -- formatting helpers -------------------------------------------------------------------


def normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", " ", text.lower()).strip().replace("  ", " ")


def money(amount: float, currency: str) -> str:
    symbol = {"GBP": "£", "EUR": "€", "USD": "$"}.get(currency.upper())
    value = f"{amount:.0f}" if float(amount).is_integer() else f"{amount:.2f}"
    return f"{symbol}{value}" if symbol else f"{value} {currency}"


def clock(t: time) -> str:
    """9 am, 5:30 pm, 12 noon."""
    if (t.hour, t.minute) == (12, 0):
        return "12 noon"
    suffix = "am" if t.hour < 12 else "pm"
    h = t.hour % 12 or 12
    return f"{h} {suffix}" if t.minute == 0 else f"{h}:{t.minute:02d} {suffix}"


def intervals_text(iv: tuple[Interval, ...]) -> str:
    return join_and([f"from {clock(a)} to {clock(b)}" for a, b in iv])


def join_and(items: list[str], sep: str = " and ") -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + sep + items[-1]


def day_label(d: date, today: date) -> str:
    if d == today:
        return "today"
    if d == today + timedelta(days=1):
        return "tomorrow"
    name = WEEKDAYS[d.weekday()].title()
    if today < d <= today + timedelta(days=6):
        return f"on {name}"
    return f"on {name} {d.day} {d.strftime('%B')}"


# -- loading ------------------------------------------------------------------------------


def _req(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise ProfileError(f"{where}{key}: missing")
    return data[key]


def _intervals(raw: Any, where: str) -> tuple[Interval, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ProfileError(f"{where}: expected a list of [open, close] pairs")
    out: list[Interval] = []
    for pair in raw:
        if not (isinstance(pair, list) and len(pair) == 2):
            raise ProfileError(f"{where}: {pair!r} is not an [open, close] pair")
        try:
            a, b = (time.fromisoformat(str(x)) for x in pair)
        except ValueError as exc:
            raise ProfileError(f"{where}: {pair!r}: times are HH:MM ({exc})") from None
        if not a < b:
            raise ProfileError(f"{where}: {pair!r}: opening must be before closing")
        out.append((a, b))
    return tuple(sorted(out))


def _day_rules(raw: Any, key: str, with_hours: bool) -> tuple[DayRule, ...]:
    rules: list[DayRule] = []
    for i, item in enumerate(raw or []):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ProfileError(f"{where}: expected a mapping with date and name")
        ds = str(_req(item, "date", where + "."))
        m = re.fullmatch(r"(?:(\d{4})-)?(\d{2})-(\d{2})", ds)
        if not m:
            raise ProfileError(f"{where}.date: {ds!r} is not MM-DD or YYYY-MM-DD")
        year = int(m.group(1)) if m.group(1) else None
        try:
            date(year or 2000, int(m.group(2)), int(m.group(3)))
        except ValueError as exc:
            raise ProfileError(f"{where}.date: {ds!r}: {exc}") from None
        hours = _intervals(_req(item, "hours", where + "."), f"{where}.hours") if with_hours else ()
        rules.append(
            DayRule(str(item.get("name") or ds), hours, year, int(m.group(2)), int(m.group(3)))
        )
    return tuple(rules)


def parse_profile(data: Any, source: str = "business.yml") -> Profile:
    if not isinstance(data, dict):
        raise ProfileError("the file must hold a mapping of keys")
    tzname = str(_req(data, "timezone", ""))
    try:
        ZoneInfo(tzname)
    except (ZoneInfoNotFoundError, ValueError):
        raise ProfileError(f"timezone: {tzname!r} is not an IANA time zone name") from None
    address = _req(data, "address", "")
    contact = _req(data, "contact", "")
    hours_raw = _req(data, "hours", "")
    if not isinstance(hours_raw, dict):
        raise ProfileError("hours: expected a mapping of weekday names")
    unknown = set(hours_raw) - set(WEEKDAYS)
    if unknown:
        raise ProfileError(f"hours: unknown weekday(s) {sorted(unknown)}")
    weekly = {i: _intervals(hours_raw.get(day), f"hours.{day}") for i, day in enumerate(WEEKDAYS)}
    services: list[Service] = []
    for i, s in enumerate(_req(data, "services", "")):
        where = f"services[{i}]."
        try:
            price = float(_req(s, "price", where))
            minutes = int(_req(s, "duration_minutes", where))
        except (TypeError, ValueError):
            raise ProfileError(f"{where}price/duration_minutes: must be numbers") from None
        services.append(
            Service(
                id=str(_req(s, "id", where)),
                name=str(_req(s, "name", where)),
                aliases=tuple(str(a) for a in s.get("aliases") or ()),
                price=price,
                duration_minutes=minutes,
            )
        )
    departments = tuple(
        Department(
            str(_req(d, "id", f"departments[{i}].")),
            str(d.get("name") or d["id"]),
            bool(d.get("default", False)),
        )
        for i, d in enumerate(data.get("departments") or [{"id": "general", "name": "reception"}])
    )
    langs = data.get("languages") or {}
    return Profile(
        name=str(_req(data, "name", "")),
        timezone=tzname,
        address_lines=tuple(str(x) for x in _req(address, "lines", "address.")),
        directions=str(address.get("directions") or ""),
        parking=str(address.get("parking") or ""),
        phone=str(_req(contact, "phone", "contact.")),
        email=str(_req(contact, "email", "contact.")),
        website=str(contact.get("website") or ""),
        weekly=weekly,
        closures=_day_rules(data.get("closures"), "closures", with_hours=False),
        special=_day_rules(data.get("special_hours"), "special_hours", with_hours=True),
        currency=str(data.get("currency") or "GBP"),
        services=tuple(services),
        departments=departments,
        bot_languages=tuple(str(x) for x in langs.get("bot") or ["English"]),
        staff_languages=tuple(str(x) for x in langs.get("staff") or ["English"]),
        source=source,
    )


def load_profile(path: Path) -> Profile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ProfileError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_profile(data, str(path))
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


_cache: dict[Path, tuple[float, Profile]] = {}
_lock = threading.Lock()


def current_profile(path: Path | None = None) -> Profile:
    """The profile, re-read whenever the file changes (so edits apply without a restart)."""
    p = path or Path(os.environ.get(ENV_FILE) or DEFAULT_FILE)
    mtime = p.stat().st_mtime
    with _lock:
        hit = _cache.get(p)
        if hit and hit[0] == mtime:
            return hit[1]
    prof = load_profile(p)
    with _lock:
        _cache[p] = (mtime, prof)
    return prof
