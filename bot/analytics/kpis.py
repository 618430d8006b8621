"""Contact-centre KPIs, live and historical, with each KPI's definition next to its field.

Three scopes (the queries are in :mod:`bot.analytics.kpi_queries`):

- **bot** — conversations that *started* in the period (channel, intent filters);
- **queue** — tickets *created* in the period (channel, skill, agent, intent filters); a
  ticket counts in the period it arrived in, whatever happened to it later;
- **agents** — agent time *overlapping* the period, clipped to ``[start, as_of]``.

``as_of`` is the period's end, or now while the period lasts (live figures). Ratios are
rounded to 4 decimals, durations to 0.1 s; a KPI with nothing to measure is ``None``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics import kpi_queries as q
from bot.analytics.scope import KpiFilters, Period, ScopeError
from bot.config import AnalyticsSettings
from bot.handoff.records import Presence, TicketStatus
from bot.store.schema import utcnow

COUNT, RATIO, SECONDS = "count", "ratio", "seconds"
NO_INTENT = "(none)"
WAITING = (TicketStatus.QUEUED.value, TicketStatus.OFFERED.value)


def kpi(unit: str, definition: str) -> Any:
    """A KPI field: its unit and definition travel with it (report, CSV, API docs)."""
    return field(metadata={"unit": unit, "definition": definition})


def _ratio(n: float, d: float) -> float | None:
    return round(n / d, 4) if d else None


def _mean(values: Sequence[float], ndigits: int = 1) -> float | None:
    return round(sum(values) / len(values), ndigits) if values else None


def _secs(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds()


# -- bot: conversations and NLU --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NamedCount:
    name: str
    count: int


@dataclass(frozen=True, slots=True)
class IntentCount:
    intent: str
    messages: int
    conversations: int


@dataclass(frozen=True, slots=True)
class FailingIntent:
    intent: str
    handoffs: int
    conversations: int  # conversations in which the intent occurred
    failure_rate: float | None


@dataclass(frozen=True, slots=True)
class BotKpis:
    conversations: int = kpi(COUNT, "Conversations that started in the period.")
    engaged: int = kpi(
        COUNT,
        "Of those, conversations with at least one customer message or a handoff; "
        "conversations opened and never used are left out of the rates.",
    )
    contained: int = kpi(
        COUNT,
        "Engaged conversations without any handoff ticket: the bot handled them alone "
        "(a conversation still open counts as contained so far).",
    )
    containment_rate: float | None = kpi(
        RATIO,
        "Self-service containment: contained / engaged. The skill and agent filters do not "
        "apply (a contained conversation has neither).",
    )
    handed_off: int = kpi(
        COUNT, "Engaged conversations with a handoff ticket (of the skill, if filtered)."
    )
    handoff_rate: float | None = kpi(RATIO, "handed_off / engaged.")
    handoff_reasons: tuple[NamedCount, ...] = kpi(
        COUNT, "Tickets created in the period (queue scope) by handoff reason, most first."
    )
    customer_messages: int = kpi(COUNT, "Customer messages in the conversations in scope.")
    nlu_messages: int = kpi(
        COUNT,
        "Customer messages the NLU classified (messages for a waiting or present agent are "
        "not classified).",
    )
    fallbacks: int = kpi(
        COUNT, "Customer messages classified nlu_fallback (confidence below the threshold)."
    )
    fallback_rate: float | None = kpi(RATIO, "fallbacks / nlu_messages.")
    top_intents: tuple[IntentCount, ...] = kpi(
        COUNT,
        "Intents of customer messages, most messages first (nlu_fallback excluded), with the "
        "number of conversations each occurred in.",
    )
    top_failing_intents: tuple[FailingIntent, ...] = kpi(
        COUNT,
        "Per handed-off conversation, the failing intent is the last intent (not "
        "nlu_fallback) of a customer message at or before its first ticket ('(none)' if "
        "none); most handoffs first. failure_rate = handoffs / conversations in which the "
        "intent occurred.",
    )
    avg_nlu_confidence: float | None = kpi(
        RATIO, "Mean intent confidence of classified customer messages (fallbacks included)."
    )
    spoken_messages: int = kpi(COUNT, "Customer messages with a speech-recognition confidence.")
    avg_asr_confidence: float | None = kpi(
        RATIO, "Mean speech-recognition confidence of spoken customer messages."
    )
    bookings: int = kpi(
        COUNT, "Bookings the bot made in the conversations in scope (whatever their status)."
    )


def bot_kpis(
    conversations: Sequence[q.ConversationFact],
    stats: Sequence[q.IntentStats],
    failing: dict[str, str | None],
    bookings: int,
    tickets: Sequence[q.TicketFact],
    top_n: int,
) -> BotKpis:
    engaged = [c for c in conversations if c.has_user_message or c.has_ticket]
    contained = sum(1 for c in engaged if not c.has_ticket)
    handed_off = sum(1 for c in engaged if c.handed_off)
    reasons = Counter(t.reason for t in tickets)

    classified = [s for s in stats if s.intent is not None]
    nlu_messages = sum(s.messages for s in classified)
    fallbacks = sum(s.messages for s in classified if s.intent == q.FALLBACK_INTENT)
    per_intent = {s.intent: s for s in classified if s.intent != q.FALLBACK_INTENT}
    top = sorted(per_intent.values(), key=lambda s: (-s.messages, s.intent or ""))[:top_n]

    fails = Counter(intent or NO_INTENT for intent in failing.values())
    failing_top = [
        FailingIntent(
            name,
            n,
            per_intent[name].conversations if name in per_intent else 0,
            _ratio(n, per_intent[name].conversations) if name in per_intent else None,
        )
        for name, n in sorted(fails.items(), key=lambda kv: (-kv[1], kv[0]))[:top_n]
    ]
    conf_n = sum(s.confidence_n for s in stats)
    asr_n = sum(s.asr_n for s in stats)
    return BotKpis(
        conversations=len(conversations),
        engaged=len(engaged),
        contained=contained,
        containment_rate=_ratio(contained, len(engaged)),
        handed_off=handed_off,
        handoff_rate=_ratio(handed_off, len(engaged)),
        handoff_reasons=tuple(
            NamedCount(r, n) for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        customer_messages=sum(s.messages for s in stats),
        nlu_messages=nlu_messages,
        fallbacks=fallbacks,
        fallback_rate=_ratio(fallbacks, nlu_messages),
        top_intents=tuple(IntentCount(s.intent or "", s.messages, s.conversations) for s in top),
        top_failing_intents=tuple(failing_top),
        avg_nlu_confidence=_ratio(sum(s.confidence_sum for s in stats), conf_n),
        spoken_messages=asr_n,
        avg_asr_confidence=_ratio(sum(s.asr_sum for s in stats), asr_n),
        bookings=bookings,
    )


# -- queue: tickets ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class QueueKpis:
    """Wait = from ``queued_at`` (for a callback: its callback time) to the answer or the
    abandonment. An abandoned ticket is abandoned even if an agent had answered it before a
    transfer; otherwise a ticket with ``answered_at`` is answered."""

    tickets: int = kpi(
        COUNT, "Queue volume: tickets created in the period (every handoff, callbacks included)."
    )
    answered: int = kpi(COUNT, "Tickets an agent accepted and the customer did not abandon.")
    abandoned: int = kpi(COUNT, "Tickets the customer left while waiting.")
    short_abandoned: int = kpi(
        COUNT, "Abandoned after waiting at most the service-level threshold T."
    )
    waiting: int = kpi(COUNT, "Tickets still waiting for an agent (queued or offered) at as_of.")
    avg_wait_s: float | None = kpi(SECONDS, "Mean wait of answered and abandoned tickets.")
    longest_wait_s: float | None = kpi(
        SECONDS, "Longest wait of any ticket in scope; one still waiting counts up to as_of."
    )
    asa_s: float | None = kpi(SECONDS, "Average speed of answer: mean wait of answered tickets.")
    answered_within_threshold: int = kpi(COUNT, "Answered after waiting at most T.")
    service_level: float | None = kpi(
        RATIO,
        "answered_within_threshold / (answered + abandoned after T): short abandons count "
        "in neither part (the usual 80/20 form). T = analytics.service_level_s.",
    )
    abandonment_rate: float | None = kpi(
        RATIO, "abandoned / (answered + abandoned); short abandons count."
    )
    avg_time_to_abandon_s: float | None = kpi(SECONDS, "Mean wait of abandoned tickets.")
    resolved: int = kpi(COUNT, "Tickets an agent resolved.")
    aht_s: float | None = kpi(
        SECONDS,
        "Average handle time: mean answered -> resolved of resolved tickets, wrap-up not "
        "included (see avg_wrap_up_s). After a transfer, the last agent's part only.",
    )
    callbacks_requested: int = kpi(COUNT, "Tickets with a callback scheduled.")
    callbacks_completed: int = kpi(
        COUNT, "Callbacks an agent answered at or after the callback time."
    )


def _wait_end(t: q.TicketFact) -> datetime | None:
    return t.abandoned_at or t.answered_at


def queue_kpis(tickets: Sequence[q.TicketFact], threshold_s: float, as_of: datetime) -> QueueKpis:
    abandoned = [t for t in tickets if t.abandoned_at is not None]
    answered = [t for t in tickets if t.abandoned_at is None and t.answered_at is not None]
    waiting = [t for t in tickets if _wait_end(t) is None and t.status in WAITING]
    abandon_waits = [_secs(t.queued_at, t.abandoned_at) for t in abandoned if t.abandoned_at]
    answer_waits = [_secs(t.queued_at, t.answered_at) for t in answered if t.answered_at]
    open_waits = [max(0.0, _secs(t.queued_at, as_of)) for t in waiting]
    short = sum(1 for w in abandon_waits if w <= threshold_s)
    within = sum(1 for w in answer_waits if w <= threshold_s)
    handle_times = [
        _secs(t.answered_at, t.resolved_at) for t in tickets if t.answered_at and t.resolved_at
    ]
    callbacks = [t for t in tickets if t.callback_at is not None]
    all_waits = answer_waits + abandon_waits + open_waits
    return QueueKpis(
        tickets=len(tickets),
        answered=len(answered),
        abandoned=len(abandoned),
        short_abandoned=short,
        waiting=len(waiting),
        avg_wait_s=_mean(answer_waits + abandon_waits),
        longest_wait_s=round(max(all_waits), 1) if all_waits else None,
        asa_s=_mean(answer_waits),
        answered_within_threshold=within,
        service_level=_ratio(within, len(answered) + len(abandoned) - short),
        abandonment_rate=_ratio(len(abandoned), len(answered) + len(abandoned)),
        avg_time_to_abandon_s=_mean(abandon_waits),
        resolved=len(handle_times),
        aht_s=_mean(handle_times),
        callbacks_requested=len(callbacks),
        callbacks_completed=sum(
            1
            for t in callbacks
            if t.abandoned_at is None
            and t.answered_at is not None
            and t.callback_at is not None
            and t.answered_at >= t.callback_at
        ),
    )


# -- agents: time ----------------------------------------------------------------------------
Span = tuple[datetime, datetime]


def _clip(a: datetime, b: datetime | None, lo: datetime, hi: datetime) -> Span | None:
    start, end = max(a, lo), min(b or hi, hi)
    return (start, end) if end > start else None


def _merge(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _length(spans: Iterable[Span]) -> float:
    return sum(_secs(a, b) for a, b in spans)


@dataclass(frozen=True, slots=True)
class AgentLine:
    agent_id: int
    name: str
    logged_in_s: float
    ready_s: float
    engaged_s: float
    handled: int  # tickets the agent answered in the period and still owns or resolved
    occupancy: float | None
    utilisation: float | None
    wrap_ups: int
    avg_wrap_up_s: float | None


@dataclass(frozen=True, slots=True)
class AgentKpis:
    """From the presence log and the tickets agents owned, clipped to ``[start, as_of]``. The
    agent filter picks one agent, the skill filter agents who have the skill; channel and
    intent do not apply (an agent's time is not per channel)."""

    agents: int = kpi(COUNT, "Agents logged in, or handling a ticket, during the period.")
    logged_in_s: float = kpi(
        SECONDS, "Time in any presence but offline, or handling a ticket (all agents)."
    )
    ready_s: float = kpi(
        SECONDS, "Time available or in wrap-up, or handling a ticket (away and busy excluded)."
    )
    engaged_s: float = kpi(
        SECONDS,
        "Time handling at least one ticket (answered -> resolved) or in wrap-up; concurrent "
        "chats count once.",
    )
    occupancy: float | None = kpi(
        RATIO, "engaged_s / ready_s: how busy agents were while they could take work."
    )
    utilisation: float | None = kpi(
        RATIO, "engaged_s / logged_in_s: the share of logged-in time spent on contacts."
    )
    wrap_ups: int = kpi(COUNT, "Wrap-up intervals that started in the period and have ended.")
    avg_wrap_up_s: float | None = kpi(
        SECONDS, "Mean duration of those wrap-ups (after-contact work)."
    )
    per_agent: tuple[AgentLine, ...] = kpi(COUNT, "The same figures per agent.")


OFFLINE, WRAP_UP = Presence.OFFLINE.value, Presence.WRAP_UP.value
READY = (Presence.AVAILABLE.value, WRAP_UP)


def agent_kpis(
    presence: Sequence[q.PresenceInterval],
    handled: Sequence[q.HandledInterval],
    infos: dict[int, q.AgentInfo],
    period: Period,
    as_of: datetime,
    skill: str | None,
) -> AgentKpis:
    lo, hi = period.start, as_of
    by_agent: dict[int, list[q.PresenceInterval]] = defaultdict(list)
    for p in presence:
        by_agent[p.user_id].append(p)
    work_of: dict[int, list[q.HandledInterval]] = defaultdict(list)
    for h in handled:
        work_of[h.agent_id].append(h)
    ids = {i for i, ps in by_agent.items() if any(p.presence != OFFLINE for p in ps)}
    ids |= set(work_of)
    if skill is not None:
        ids = {i for i in ids if i in infos and infos[i].skills.get(skill, 0) >= 1}

    def spans(ps: Iterable[q.PresenceInterval], keep: Callable[[str], bool]) -> list[Span]:
        return [
            s for p in ps if keep(p.presence) and (s := _clip(p.started_at, p.ended_at, lo, hi))
        ]

    lines = []
    all_wraps: list[float] = []
    for agent_id in sorted(ids):
        mine = by_agent.get(agent_id, [])
        work = [
            s
            for h in work_of.get(agent_id, [])
            if (s := _clip(h.answered_at, h.resolved_at, lo, hi))
        ]
        wrap = spans(mine, lambda p: p == WRAP_UP)
        engaged = _length(_merge(work + wrap))
        ready_s = _length(_merge(spans(mine, lambda p: p in READY) + work))
        logged_s = _length(_merge(spans(mine, lambda p: p != OFFLINE) + work))
        if logged_s == 0:
            continue  # not logged in and not working during [start, as_of]
        done = [
            _secs(p.started_at, p.ended_at)
            for p in mine
            if p.presence == WRAP_UP
            and p.ended_at is not None
            and period.start <= p.started_at < period.end
            and p.ended_at <= as_of
        ]
        all_wraps += done
        info = infos.get(agent_id)
        lines.append(
            AgentLine(
                agent_id=agent_id,
                name=info.name if info else f"#{agent_id}",
                logged_in_s=round(logged_s, 1),
                ready_s=round(ready_s, 1),
                engaged_s=round(engaged, 1),
                handled=sum(1 for h in work_of.get(agent_id, []) if lo <= h.answered_at < hi),
                occupancy=_ratio(engaged, ready_s),
                utilisation=_ratio(engaged, logged_s),
                wrap_ups=len(done),
                avg_wrap_up_s=_mean(done),
            )
        )
    engaged_total = sum(a.engaged_s for a in lines)
    ready_total = sum(a.ready_s for a in lines)
    logged_total = sum(a.logged_in_s for a in lines)
    return AgentKpis(
        agents=len(lines),
        logged_in_s=round(logged_total, 1),
        ready_s=round(ready_total, 1),
        engaged_s=round(engaged_total, 1),
        occupancy=_ratio(engaged_total, ready_total),
        utilisation=_ratio(engaged_total, logged_total),
        wrap_ups=len(all_wraps),
        avg_wrap_up_s=_mean(all_wraps),
        per_agent=tuple(lines),
    )


# -- the report ------------------------------------------------------------------------------
def as_json(value: Any) -> Any:
    """Dataclasses, tuples and datetimes as JSON-ready values."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple | list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class KpiReport:
    period: Period
    filters: KpiFilters
    as_of: datetime
    service_level_s: float
    service_level_target: float
    bot: BotKpis
    queue: QueueKpis
    agents: AgentKpis

    @property
    def meets_service_level(self) -> bool | None:
        sl = self.queue.service_level
        return None if sl is None else sl >= self.service_level_target

    def as_data(self) -> dict[str, Any]:
        return {
            "period": self.period.as_data(),
            "filters": self.filters.as_data(),
            "as_of": self.as_of.isoformat(),
            "service_level_s": self.service_level_s,
            "service_level_target": self.service_level_target,
            "meets_service_level": self.meets_service_level,
            "bot": as_json(self.bot),
            "queue": as_json(self.queue),
            "agents": as_json(self.agents),
        }


SECTIONS: dict[str, type[BotKpis] | type[QueueKpis] | type[AgentKpis]] = {
    "bot": BotKpis,
    "queue": QueueKpis,
    "agents": AgentKpis,
}


def definitions() -> dict[str, dict[str, str]]:
    """``{"bot.containment_rate": {"unit": "ratio", "definition": "…"}, …}``."""
    return {
        f"{section}.{f.name}": {"unit": f.metadata["unit"], "definition": f.metadata["definition"]}
        for section, cls in SECTIONS.items()
        for f in fields(cls)
    }


def _now(now: datetime | None) -> datetime:
    return (now or utcnow()).astimezone(UTC)


async def compute_kpis(
    engine: AsyncEngine,
    period: Period,
    filters: KpiFilters,
    settings: AnalyticsSettings,
    *,
    now: datetime | None = None,
    top_n: int = 10,
) -> KpiReport:
    as_of = period.as_of(_now(now))
    async with engine.connect() as conn:
        conversations = await q.conversation_facts(conn, period, filters)
        stats = await q.intent_stats(conn, period, filters)
        failing = await q.failing_intents(conn, period, filters)
        bookings = await q.bookings_made(conn, period, filters)
        tickets = await q.ticket_facts(conn, period, filters)
        presence = await q.presence_intervals(conn, period, filters.agent_id)
        handled = await q.handled_intervals(conn, period, filters.agent_id)
        ids = {p.user_id for p in presence} | {h.agent_id for h in handled}
        infos = await q.agents(conn, sorted(ids))
    return KpiReport(
        period=period,
        filters=filters,
        as_of=as_of,
        service_level_s=settings.service_level_s,
        service_level_target=settings.service_level_target,
        bot=bot_kpis(conversations, stats, failing, bookings, tickets, top_n),
        queue=queue_kpis(tickets, settings.service_level_s, as_of),
        agents=agent_kpis(presence, handled, infos, period, as_of, filters.skill),
    )


# -- time series (charts) -------------------------------------------------------------------
BUCKETS = {
    "minute": timedelta(minutes=1),
    "15min": timedelta(minutes=15),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
MAX_BUCKETS = 2000


@dataclass(frozen=True, slots=True)
class TimeseriesPoint:
    """One bucket, by arrival: conversations that started and tickets created in it."""

    start: datetime
    conversations: int
    engaged: int
    contained: int
    handoffs: int  # engaged conversations handed off
    containment_rate: float | None
    tickets: int
    answered: int
    abandoned: int
    asa_s: float | None
    service_level: float | None


@dataclass(frozen=True, slots=True)
class Timeseries:
    period: Period
    filters: KpiFilters
    bucket: str
    service_level_s: float
    points: tuple[TimeseriesPoint, ...]

    def as_data(self) -> dict[str, Any]:
        return {
            "period": self.period.as_data(),
            "filters": self.filters.as_data(),
            "bucket": self.bucket,
            "service_level_s": self.service_level_s,
            "points": as_json(self.points),
        }


def bucket_starts(period: Period, bucket: str) -> list[datetime]:
    """UTC-aligned bucket starts covering the period (the first may begin before it)."""
    size = BUCKETS.get(bucket)
    if size is None:
        raise ScopeError(f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r:.20}")
    start = period.start.astimezone(UTC)
    first = start.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        first = first.replace(hour=0)
    n = -(-(period.end - first) // size)  # ceiling division
    if n > MAX_BUCKETS:
        raise ScopeError(
            f"{n} {bucket} buckets is too many (at most {MAX_BUCKETS}); use a longer bucket "
            "or a shorter period"
        )
    return [first + i * size for i in range(n)]


async def timeseries(
    engine: AsyncEngine,
    period: Period,
    bucket: str,
    filters: KpiFilters,
    settings: AnalyticsSettings,
    *,
    now: datetime | None = None,
) -> Timeseries:
    starts = bucket_starts(period, bucket)
    size = BUCKETS[bucket]
    as_of = period.as_of(_now(now))
    async with engine.connect() as conn:
        conversations = await q.conversation_facts(conn, period, filters)
        tickets = await q.ticket_facts(conn, period, filters)
    convs_in: list[list[q.ConversationFact]] = [[] for _ in starts]
    tickets_in: list[list[q.TicketFact]] = [[] for _ in starts]
    for c in conversations:
        convs_in[(c.created_at - starts[0]) // size].append(c)
    for t in tickets:
        tickets_in[(t.created_at - starts[0]) // size].append(t)
    points = []
    for start, convs, ticks in zip(starts, convs_in, tickets_in, strict=True):
        engaged = [c for c in convs if c.has_user_message or c.has_ticket]
        contained = sum(1 for c in engaged if not c.has_ticket)
        queue = queue_kpis(ticks, settings.service_level_s, as_of)
        points.append(
            TimeseriesPoint(
                start=start,
                conversations=len(convs),
                engaged=len(engaged),
                contained=contained,
                handoffs=sum(1 for c in engaged if c.handed_off),
                containment_rate=_ratio(contained, len(engaged)),
                tickets=queue.tickets,
                answered=queue.answered,
                abandoned=queue.abandoned,
                asa_s=queue.asa_s,
                service_level=queue.service_level,
            )
        )
    return Timeseries(period, filters, bucket, settings.service_level_s, tuple(points))
