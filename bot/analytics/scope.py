"""What a KPI question is about: a period of time and optional filters.

Periods are half-open UTC intervals ``[start, end)``. A day given as ``YYYY-MM-DD`` is the UTC
calendar day; ``--to`` days are inclusive (``--from 2026-11-01 --to 2026-11-30`` is November).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any


class ScopeError(ValueError):
    """A period or filter that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)``, both timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ScopeError("a period needs timezone-aware start and end")
        if self.end <= self.start:
            raise ScopeError(
                f"the period ends ({self.end.isoformat()}) before it starts "
                f"({self.start.isoformat()})"
            )

    @classmethod
    def days(cls, first: date, last: date) -> Period:
        """Whole UTC days from ``first`` to ``last`` inclusive."""
        if last < first:
            raise ScopeError(f"--to {last.isoformat()} is before --from {first.isoformat()}")
        return cls(
            datetime.combine(first, time(), UTC),
            datetime.combine(last + timedelta(days=1), time(), UTC),
        )

    def as_of(self, now: datetime) -> datetime:
        """The moment the figures describe: the period's end, or now for a live period."""
        return min(self.end, now)

    def as_data(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}


def parse_day(raw: str, what: str) -> date:
    """``YYYY-MM-DD`` or a :class:`ScopeError` that names ``what``."""
    try:
        return date.fromisoformat(raw)
    except ValueError as exc:
        raise ScopeError(f"{what}: {raw!r:.40} is not a date (YYYY-MM-DD)") from exc


def parse_moment(raw: str, what: str, *, end_of_day: bool = False) -> datetime:
    """A day (``YYYY-MM-DD``, UTC; with ``end_of_day`` the day after it, so a ``to`` day is
    inclusive) or an ISO 8601 time with a time zone."""
    if len(raw) == 10:
        day = parse_day(raw, what)
        if end_of_day:
            day += timedelta(days=1)
        return datetime.combine(day, time(), UTC)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ScopeError(f"{what}: {raw!r:.40} is not a date or ISO 8601 time") from exc
    if value.tzinfo is None:
        raise ScopeError(f"{what}: give a time zone (e.g. {raw}Z or {raw}+00:00)")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class KpiFilters:
    """Narrow the figures. Which KPIs each filter applies to is part of each KPI's definition
    (see :mod:`bot.analytics.kpis`); in short:

    - ``channel``: everything (conversations, tickets); agent time is not per channel.
    - ``intent``: conversations in which a customer message had this intent, and their tickets.
    - ``skill``: tickets of this skill, handoffs to it, agents who have it.
    - ``agent_id``: tickets this agent answered and this agent's time.
    """

    channel: str | None = None
    skill: str | None = None
    intent: str | None = None
    agent_id: int | None = None

    def as_data(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "skill": self.skill,
            "intent": self.intent,
            "agent_id": self.agent_id,
        }
