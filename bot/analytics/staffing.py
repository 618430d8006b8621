"""Staffing plans: the Erlang C requirement per interval of the day, from the contacts the
queue actually received (the ``tickets`` table), and their text-table and CSV forms.

Each ticket is one contact offered to the human queue: it arrived at ``created_at`` (a
callback keeps its original arrival), was answered at ``answered_at`` and resolved at
``resolved_at``. Per interval of the local day (15, 30 or 60 minutes) the plan takes the mean
arrivals over every day of the range, days without contacts included, and the mean handle
time (resolved - answered, plus the configured wrap-up) of the tickets that arrived in it.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics.erlang import StaffingRequirement, required_agents
from bot.store.schema import TicketRow

INTERVAL_CHOICES = (15, 30, 60)
MIN_AHT_S = 1.0  # a handle time of 0 s (resolved the instant it was answered) is no model input


class AhtSource(StrEnum):
    """Where an interval's handle time comes from."""

    INTERVAL = "interval"  # tickets handled that arrived in this interval
    RANGE = "range"  # none in this interval: every ticket handled in the date range
    DEFAULT = "default"  # none handled at all: settings.handoff.default_aht_s


@dataclass(frozen=True)
class TicketTimes:
    """When one contact arrived, was answered and was resolved (aware datetimes)."""

    arrived_at: datetime
    answered_at: datetime | None
    resolved_at: datetime | None

    @property
    def handle_s(self) -> float | None:
        """Seconds from answer to resolution; ``None`` when it was not handled to the end."""
        if self.answered_at is None or self.resolved_at is None:
            return None
        seconds = (self.resolved_at - self.answered_at).total_seconds()
        return seconds if seconds >= 0 else None


@dataclass(frozen=True)
class StaffingTargets:
    """What the business asks of its queue, and the allowance for agents' time off the queue."""

    target_answer_s: float
    service_level: float
    shrinkage: float = 0.0
    max_occupancy: float | None = None
    asa_target_s: float | None = None


@dataclass(frozen=True)
class IntervalDemand:
    """The observed workload of one interval of the day."""

    start: time  # local time of day
    minutes: int
    arrivals: int  # over the whole date range
    mean_arrivals: float  # per day
    handled: int  # tickets that arrived in the interval and have a handle time
    aht_s: float  # wrap-up included
    aht_source: AhtSource

    @property
    def end(self) -> time:
        minute = (self.start.hour * 60 + self.start.minute + self.minutes) % (24 * 60)
        return time(minute // 60, minute % 60)

    @property
    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class IntervalPlan:
    """One interval's workload and the agents it needs."""

    demand: IntervalDemand
    requirement: StaffingRequirement


@dataclass(frozen=True)
class StaffingPlan:
    """The requirement for every interval of the day, from the contacts of a date range."""

    first_day: date
    last_day: date
    interval_min: int
    timezone: str
    timezone_source: str  # e.g. "business profile nlu-data/business.yml"
    wrap_up_s: float
    targets: StaffingTargets
    channel: str | None
    intervals: tuple[IntervalPlan, ...]

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


def business_timezone(project_dir: Path) -> tuple[ZoneInfo, str]:
    """The business's time zone from its profile (``<project_dir>/business.yml``), with a
    note saying where it came from; UTC, and a note saying so, when there is none."""
    file = project_dir / "business.yml"
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ZoneInfo("UTC"), f"UTC: no business profile at {file}"
    except (OSError, yaml.YAMLError) as exc:
        return ZoneInfo("UTC"), f"UTC: business profile {file} unreadable ({exc})"
    name = data.get("timezone") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        return ZoneInfo("UTC"), f"UTC: business profile {file} names no timezone"
    try:
        return ZoneInfo(name), f"business profile {file}"
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC"), f"UTC: business profile {file} has unknown timezone {name!r}"


def local_day_bounds(first_day: date, last_day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC instants from the start of ``first_day`` to the end of ``last_day``, local time."""
    start = datetime.combine(first_day, time(0), tzinfo=tz)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


async def load_ticket_times(
    engine: AsyncEngine, start: datetime, end: datetime, channel: str | None = None
) -> list[TicketTimes]:
    """Tickets that arrived in ``[start, end)``, optionally of one channel."""
    stmt = select(TicketRow.created_at, TicketRow.answered_at, TicketRow.resolved_at).where(
        TicketRow.created_at >= start, TicketRow.created_at < end
    )
    if channel is not None:
        stmt = stmt.where(TicketRow.channel == channel)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [TicketTimes(r.created_at, r.answered_at, r.resolved_at) for r in rows]


def interval_demand(
    tickets: Iterable[TicketTimes],
    first_day: date,
    last_day: date,
    tz: ZoneInfo,
    *,
    interval_min: int,
    wrap_up_s: float,
    default_aht_s: float,
) -> list[IntervalDemand]:
    """Mean arrivals and handle time of every interval of the local day, over the range."""
    if interval_min not in INTERVAL_CHOICES:
        raise ValueError(f"interval must be one of {INTERVAL_CHOICES} minutes, not {interval_min}")
    if last_day < first_day:
        raise ValueError(f"the range ends ({last_day}) before it starts ({first_day})")
    days = (last_day - first_day).days + 1
    slots = 24 * 60 // interval_min
    arrivals = [0] * slots
    handle_sums = [0.0] * slots
    handled = [0] * slots
    for t in tickets:
        local = t.arrived_at.astimezone(tz)
        if not first_day <= local.date() <= last_day:
            continue
        slot = (local.hour * 60 + local.minute) // interval_min
        arrivals[slot] += 1
        handle = t.handle_s
        if handle is not None:
            handle_sums[slot] += handle + wrap_up_s
            handled[slot] += 1
    total_handled = sum(handled)
    range_aht = sum(handle_sums) / total_handled if total_handled else None
    result = []
    for slot in range(slots):
        if handled[slot]:
            aht, source = handle_sums[slot] / handled[slot], AhtSource.INTERVAL
        elif range_aht is not None:
            aht, source = range_aht, AhtSource.RANGE
        else:
            aht, source = default_aht_s, AhtSource.DEFAULT
        minute = slot * interval_min
        result.append(
            IntervalDemand(
                start=time(minute // 60, minute % 60),
                minutes=interval_min,
                arrivals=arrivals[slot],
                mean_arrivals=arrivals[slot] / days,
                handled=handled[slot],
                aht_s=max(aht, MIN_AHT_S),
                aht_source=source,
            )
        )
    return result


def plan_intervals(
    demand: Sequence[IntervalDemand], targets: StaffingTargets
) -> tuple[IntervalPlan, ...]:
    """The Erlang C requirement of each interval's mean workload."""
    return tuple(
        IntervalPlan(
            d,
            required_agents(
                d.mean_arrivals,
                d.minutes * 60,
                d.aht_s,
                targets.target_answer_s,
                targets.service_level,
                shrinkage=targets.shrinkage,
                max_occupancy=targets.max_occupancy,
                asa_target_s=targets.asa_target_s,
            ),
        )
        for d in demand
    )


async def observed_plan(
    engine: AsyncEngine,
    first_day: date,
    last_day: date,
    *,
    tz: ZoneInfo,
    timezone_source: str,
    interval_min: int,
    wrap_up_s: float,
    default_aht_s: float,
    targets: StaffingTargets,
    channel: str | None = None,
) -> StaffingPlan:
    """Read the range's tickets and plan every interval of the day."""
    if last_day < first_day:
        raise ValueError(f"the range ends ({last_day}) before it starts ({first_day})")
    start, end = local_day_bounds(first_day, last_day, tz)
    tickets = await load_ticket_times(engine, start, end, channel)
    demand = interval_demand(
        tickets,
        first_day,
        last_day,
        tz,
        interval_min=interval_min,
        wrap_up_s=wrap_up_s,
        default_aht_s=default_aht_s,
    )
    return StaffingPlan(
        first_day=first_day,
        last_day=last_day,
        interval_min=interval_min,
        timezone=str(tz.key),
        timezone_source=timezone_source,
        wrap_up_s=wrap_up_s,
        targets=targets,
        channel=channel,
        intervals=plan_intervals(demand, targets),
    )


# -- formatting ---------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _seconds(x: float) -> str:
    return "infinite" if math.isinf(x) else f"{x:.1f} s"


def _targets_line(t: StaffingTargets) -> str:
    parts = [f"{t.service_level * 100:g}% answered within {t.target_answer_s:g} s"]
    if t.asa_target_s is not None:
        parts.append(f"ASA at most {t.asa_target_s:g} s")
    if t.max_occupancy is not None:
        parts.append(f"occupancy at most {t.max_occupancy * 100:g}%")
    parts.append(f"shrinkage {t.shrinkage * 100:g}%")
    return "targets: " + ", ".join(parts)


def format_requirement(r: StaffingRequirement) -> str:
    """The answer for given numbers, one figure a line."""
    targets = StaffingTargets(
        r.target_answer_s, r.service_level_target, r.shrinkage, r.max_occupancy, r.asa_target_s
    )
    rows = [
        ("traffic intensity", f"{r.traffic_erlangs:.2f} Erlangs"),
        ("agents needed", f"{r.agents} (on the queue)"),
        ("agents scheduled", f"{r.scheduled_agents} (after {r.shrinkage * 100:g}% shrinkage)"),
        ("service level", f"{_pct(r.service_level)} within {r.target_answer_s:g} s"),
        ("average speed of answer", _seconds(r.asa_s)),
        ("occupancy", _pct(r.occupancy)),
        ("probability of waiting", _pct(r.probability_wait)),
    ]
    head = (
        f"Erlang C: {r.calls:g} contacts per {r.interval_s / 60:g} min, "
        f"average handle time {r.aht_s:g} s\n{_targets_line(targets)}\n"
    )
    width = max(len(k) for k, _ in rows)
    return head + "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n"


_TABLE_HEAD = (
    "interval",
    "mean calls",
    "AHT s",
    "AHT from",
    "Erlangs",
    "agents",
    "scheduled",
    "SL",
    "ASA s",
    "occupancy",
    "P(wait)",
)


def format_table(plan: StaffingPlan) -> str:
    """The plan as a text table; intervals without any contact are summarised, not listed."""
    channel = f", {plan.channel} contacts only" if plan.channel else ""
    lines = [
        f"Erlang C staffing from contacts of {plan.first_day} to {plan.last_day} "
        f"({plan.days} day{'s' if plan.days != 1 else ''}){channel}, "
        f"{plan.interval_min}-minute intervals",
        f"times of day in {plan.timezone} ({plan.timezone_source})",
        f"{_targets_line(plan.targets)}; handle times include {plan.wrap_up_s:g} s wrap-up",
        "",
    ]
    busy = [p for p in plan.intervals if p.demand.arrivals]
    if not busy:
        lines.append("no contacts in this range: no agents needed")
        return "\n".join(lines) + "\n"
    rows = [_TABLE_HEAD]
    for p in busy:
        d, r = p.demand, p.requirement
        rows.append(
            (
                d.label,
                f"{d.mean_arrivals:.2f}",
                f"{d.aht_s:.0f}",
                d.aht_source.value,
                f"{r.traffic_erlangs:.2f}",
                str(r.agents),
                str(r.scheduled_agents),
                _pct(r.service_level),
                f"{r.asa_s:.1f}",
                _pct(r.occupancy),
                _pct(r.probability_wait),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TABLE_HEAD))]
    for row in rows:
        cells = [
            cell.ljust(w) if i in (0, 3) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    empty = len(plan.intervals) - len(busy)
    if empty:
        lines += ["", f"{empty} intervals without contacts need no agents (not listed)"]
    peak = max(busy, key=lambda p: p.requirement.scheduled_agents)
    lines.append(
        f"peak: {peak.requirement.scheduled_agents} scheduled "
        f"({peak.requirement.agents} on the queue) at {peak.demand.label}"
    )
    return "\n".join(lines) + "\n"


CSV_FIELDS = (
    "interval_start",
    "interval_end",
    "timezone",
    "days",
    "arrivals",
    "mean_arrivals",
    "handled",
    "aht_s",
    "aht_source",
    "traffic_erlangs",
    "agents",
    "scheduled_agents",
    "service_level",
    "asa_s",
    "occupancy",
    "probability_wait",
)


def write_csv(plan: StaffingPlan, out: IO[str]) -> None:
    """Every interval of the plan (empty ones included) as CSV with a header row."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for p in plan.intervals:
        d, r = p.demand, p.requirement
        row: list[Any] = [
            f"{d.start:%H:%M}",
            f"{d.end:%H:%M}",
            plan.timezone,
            plan.days,
            d.arrivals,
            f"{d.mean_arrivals:.4f}",
            d.handled,
            f"{d.aht_s:.1f}",
            d.aht_source.value,
            f"{r.traffic_erlangs:.4f}",
            r.agents,
            r.scheduled_agents,
            f"{r.service_level:.4f}",
            f"{r.asa_s:.2f}",
            f"{r.occupancy:.4f}",
            f"{r.probability_wait:.4f}",
        ]
        writer.writerow(row)
