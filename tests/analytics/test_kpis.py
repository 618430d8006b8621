"""Every KPI on a hand-built dataset with hand-computed answers, the filters, an empty
period, live figures, the presence log the agent KPIs read, and the desk KPI endpoints.

The dataset (2 March 2026, UTC; service level threshold T = 20 s):

    conv  channel  start  customer messages (intent confidence / asr)           ticket
    c1    webchat  09:00  greet .9, book_appointment .8  (+ a booking)          -
    c2    webchat  09:10  faq_hours .7                                          -
    c3    voice    09:20  book_appointment .6/.8, nlu_fallback .3/.5            T1
    c4    webchat  10:00  billing_question .85, then one for the agent (no NLU) T2
    c5    voice    10:30  (none: pressed 0)                                     T3
    c6    webchat  11:00  (never used)                                          -
    c7    webchat  1 Mar  (before the period; a booking)                        T7
    c8    webchat  12:00  faq_hours .95                                         T4
    c9    voice    13:00  greet .9/.9, nlu_fallback .2/.4                       T5
    c10   webchat  14:00  faq_hours .9                                          T6
    c11   webchat  16:00  billing_question .75, greet .9 at 16:20 (handed back) T8

    ticket skill    reason            queued    answered        resolved  abandoned  agent
    T1     general  not_understood    09:21:00  09:21:10 (10 s) 09:31:10  -          alice
    T2     billing  user_request      10:01:00  10:01:51 (51 s) 10:06:51  -          alice
    T3     general  dtmf_zero         10:30:00  -               -         10:31:00   -
    T4     general  callback_request  15:00:00* 15:00:15 (15 s) 15:04:15  -          bob
    T5     general  frustration       13:01:00  -               -         13:01:05   -
    T6     general  user_request      14:01:00  (still queued)  -         -          -
    T8     general  bot_request       16:01:00  16:01:20 (20 s) 16:11:20  -          bob
    * created 12:01, callback at 15:00 (queued_at is the callback time)

Agents: alice (general, billing) available 09:00, wrap-up 09:31:10-09:31:40, available,
wrap-up 10:06:51-10:07:11, away until 10:30, available until 11:00, then offline.
bob (general) available 14:55, wrap-up 15:04:15-15:04:55, available until 16:30, busy until
17:00, then offline. carol only logged in on 1 March.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from bot.analytics import api as kpi_api
from bot.analytics.kpis import (
    FailingIntent,
    IntentCount,
    NamedCount,
    bucket_starts,
    compute_kpis,
    definitions,
    timeseries,
)
from bot.analytics.scope import KpiFilters, Period, ScopeError
from bot.api.errors import error_middleware
from bot.api.keys import SETTINGS
from bot.config import AnalyticsSettings, Settings
from bot.desk import api as desk_api
from bot.desk.users import UserStore
from bot.handoff.records import Presence, UserRole
from bot.handoff.store import SqlHandoffStore
from bot.store import create_engine, migrate
from bot.store.schema import (
    AgentPresenceRow,
    BookingRow,
    ConversationRow,
    TicketRow,
    TurnRow,
    UserRow,
    utcnow,
)
from tests.procs import Postgres

DAY = date(2026, 3, 2)
PERIOD = Period.days(DAY, DAY)
AFTER = datetime(2026, 4, 1, tzinfo=UTC)  # "now" for historical figures
SETTINGS_80_20 = AnalyticsSettings(service_level_s=20.0, service_level_target=0.8)


def at(hms: str, day: date = DAY) -> datetime:
    h, m, *s = (int(x) for x in hms.split(":"))
    return datetime(day.year, day.month, day.day, h, m, s[0] if s else 0, tzinfo=UTC)


PREV = date(2026, 3, 1)


@dataclass(frozen=True)
class Dataset:
    engine: AsyncEngine
    alice: int
    bob: int
    carol: int


# conversation -> (channel, start, [(intent, confidence, asr, time)])
CONVERSATIONS: dict[str, tuple[str, datetime, list[tuple[str | None, float | None, float | None]]]]
CONVERSATIONS = {
    "c1": ("webchat", at("09:00"), [("greet", 0.9, None), ("book_appointment", 0.8, None)]),
    "c2": ("webchat", at("09:10"), [("faq_hours", 0.7, None)]),
    "c3": ("voice", at("09:20"), [("book_appointment", 0.6, 0.8), ("nlu_fallback", 0.3, 0.5)]),
    "c4": ("webchat", at("10:00"), [("billing_question", 0.85, None), (None, None, None)]),
    "c5": ("voice", at("10:30"), []),
    "c6": ("webchat", at("11:00"), []),
    "c7": ("webchat", at("23:00", PREV), [("faq_hours", 0.5, None)]),
    "c8": ("webchat", at("12:00"), [("faq_hours", 0.95, None)]),
    "c9": ("voice", at("13:00"), [("greet", 0.9, 0.9), ("nlu_fallback", 0.2, 0.4)]),
    "c10": ("webchat", at("14:00"), [("faq_hours", 0.9, None)]),
    "c11": ("webchat", at("16:00"), [("billing_question", 0.75, None)]),
}


async def build(engine: AsyncEngine) -> Dataset:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as s:
        users = {
            name: UserRow(
                username=name,
                display_name=name.title(),
                password_hash="x",
                role="agent",
                skills=skills,
                max_chats=3,
                presence="offline",
                presence_since=at("00:00", PREV),
                created_at=at("00:00", PREV),
            )
            for name, skills in (
                ("alice", {"general": 1, "billing": 1}),
                ("bob", {"general": 1}),
                ("carol", {"billing": 2}),
            )
        }
        s.add_all(users.values())
        for cid, (channel, start, messages) in CONVERSATIONS.items():
            s.add(
                ConversationRow(
                    id=cid,
                    channel=channel,
                    status="active",
                    turn_count=len(messages),
                    created_at=start,
                    updated_at=start,
                )
            )
            for seq, (intent, conf, asr) in enumerate(messages, start=1):
                when = start + timedelta(seconds=20 * seq)
                s.add(
                    TurnRow(
                        conversation_id=cid,
                        seq=seq,
                        role="user",
                        text="…",
                        intent=intent,
                        intent_confidence=conf,
                        asr_confidence=asr,
                        created_at=when,
                    )
                )
                # a bot reply after each message: never counted as a customer message
                s.add(
                    TurnRow(
                        conversation_id=cid,
                        seq=100 + seq,
                        role="bot",
                        text="ok",
                        intent=None,
                        created_at=when,
                    )
                )
        # c4's second message went to the agent (after T2 opened at 10:01)
        # c11: handed back to the bot after T8, then one more message
        s.add(
            TurnRow(
                conversation_id="c11",
                seq=50,
                role="user",
                text="hi again",
                intent="greet",
                intent_confidence=0.9,
                created_at=at("16:20"),
            )
        )
        await s.flush()
        alice, bob, carol = users["alice"].id, users["bob"].id, users["carol"].id

        def ticket(
            cid: str,
            skill: str,
            reason: str,
            status: str,
            queued: datetime,
            *,
            created: datetime | None = None,
            answered: datetime | None = None,
            resolved: datetime | None = None,
            abandoned: datetime | None = None,
            agent: int | None = None,
            callback_at: datetime | None = None,
        ) -> TicketRow:
            return TicketRow(
                conversation_id=cid,
                channel=CONVERSATIONS[cid][0],
                status=status,
                reason=reason,
                skill=skill,
                priority=1,
                version=1,
                created_at=created or queued,
                queued_at=queued,
                answered_at=answered,
                resolved_at=resolved,
                abandoned_at=abandoned,
                agent_id=agent,
                callback_number="+15550100" if callback_at else None,
                callback_at=callback_at,
            )

        s.add_all(
            [
                ticket(
                    "c3",
                    "general",
                    "not_understood",
                    "resolved",
                    at("09:21:00"),
                    answered=at("09:21:10"),
                    resolved=at("09:31:10"),
                    agent=alice,
                ),
                ticket(
                    "c4",
                    "billing",
                    "user_request",
                    "resolved",
                    at("10:01:00"),
                    answered=at("10:01:51"),
                    resolved=at("10:06:51"),
                    agent=alice,
                ),
                ticket(
                    "c5", "general", "dtmf_zero", "abandoned", at("10:30"), abandoned=at("10:31")
                ),
                ticket(
                    "c8",
                    "general",
                    "callback_request",
                    "resolved",
                    at("15:00:00"),
                    created=at("12:01"),
                    answered=at("15:00:15"),
                    resolved=at("15:04:15"),
                    agent=bob,
                    callback_at=at("15:00:00"),
                ),
                ticket(
                    "c9",
                    "general",
                    "frustration",
                    "abandoned",
                    at("13:01:00"),
                    abandoned=at("13:01:05"),
                ),
                ticket("c10", "general", "user_request", "queued", at("14:01")),
                ticket(
                    "c7",
                    "general",
                    "user_request",
                    "resolved",
                    at("23:01", PREV),
                    answered=at("23:02", PREV),
                    resolved=at("23:10", PREV),
                    agent=bob,
                ),
                ticket(
                    "c11",
                    "general",
                    "bot_request",
                    "resolved",
                    at("16:01:00"),
                    answered=at("16:01:20"),
                    resolved=at("16:11:20"),
                    agent=bob,
                ),
            ]
        )
        for cid, made in (("c1", at("09:02")), ("c7", at("23:05", PREV))):
            s.add(
                BookingRow(
                    conversation_id=cid,
                    service_id="cut",
                    service_name="Haircut",
                    start=made + timedelta(days=3),
                    timezone="UTC",
                    customer_name="Kim",
                    customer_phone="+15550101",
                    status="confirmed",
                    created_at=made,
                )
            )

        def presence(user: int, *spans: tuple[str, datetime, datetime | None]) -> None:
            for state, start, end in spans:
                s.add(
                    AgentPresenceRow(user_id=user, presence=state, started_at=start, ended_at=end)
                )

        presence(
            alice,
            ("offline", at("08:00", PREV), at("09:00")),
            ("available", at("09:00"), at("09:31:10")),
            ("wrap_up", at("09:31:10"), at("09:31:40")),
            ("available", at("09:31:40"), at("10:06:51")),
            ("wrap_up", at("10:06:51"), at("10:07:11")),
            ("away", at("10:07:11"), at("10:30")),
            ("available", at("10:30"), at("11:00")),
            ("offline", at("11:00"), None),
        )
        presence(
            bob,
            ("available", at("14:55"), at("15:04:15")),
            ("wrap_up", at("15:04:15"), at("15:04:55")),
            ("available", at("15:04:55"), at("16:30")),
            ("busy", at("16:30"), at("17:00")),
            ("offline", at("17:00"), None),
        )
        presence(carol, ("available", at("09:00", PREV), at("17:00", PREV)))
    return Dataset(engine, alice, bob, carol)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """A fresh database: a SQLite file, or a new database on the test PostgreSQL server."""
    admin: AsyncEngine | None = None
    name = f"kpi_{secrets.token_hex(6)}"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'kpi.db'}"
    else:
        pg: Postgres = request.getfixturevalue("postgres")
        admin = create_async_engine(pg.url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as c:
            await c.execute(text(f"CREATE DATABASE {name}"))
        url = f"{pg.url.rsplit('/', 1)[0]}/{name}"
    eng = create_engine(url)
    await migrate(eng)
    try:
        yield eng
    finally:
        await eng.dispose()
        if admin is not None:
            async with admin.connect() as c:
                await c.execute(text(f"DROP DATABASE {name}"))
            await admin.dispose()


@pytest.fixture
async def data(engine: AsyncEngine) -> Dataset:
    return await build(engine)


async def kpis(data: Dataset, filters: KpiFilters | None = None, **kw: Any) -> Any:
    return await compute_kpis(
        data.engine, PERIOD, filters or KpiFilters(), SETTINGS_80_20, now=AFTER, **kw
    )


# -- bot -------------------------------------------------------------------------------------
async def test_bot_kpis(data: Dataset) -> None:
    b = (await kpis(data)).bot
    assert b.conversations == 10  # c1-c6, c8-c11 (c7 started the day before)
    assert b.engaged == 9  # c6 was never used; c5 has no message but a ticket
    assert b.contained == 2  # c1, c2
    assert b.containment_rate == round(2 / 9, 4) == 0.2222
    assert b.handed_off == 7
    assert b.handoff_rate == round(7 / 9, 4)
    assert b.handoff_reasons == (
        NamedCount("user_request", 2),  # T2, T6
        NamedCount("bot_request", 1),
        NamedCount("callback_request", 1),
        NamedCount("dtmf_zero", 1),
        NamedCount("frustration", 1),
        NamedCount("not_understood", 1),
    )
    assert b.customer_messages == 13  # 12 classified + c4's message for the agent
    assert b.nlu_messages == 12
    assert b.fallbacks == 2  # c3, c9
    assert b.fallback_rate == round(2 / 12, 4) == 0.1667
    assert b.top_intents == (
        IntentCount("faq_hours", 3, 3),  # c2, c8, c10
        IntentCount("greet", 3, 3),  # c1, c9, c11
        IntentCount("billing_question", 2, 2),  # c4, c11
        IntentCount("book_appointment", 2, 2),  # c1, c3
    )
    # the last intent at or before the first ticket: c3 book_appointment (the fallback is
    # skipped), c4 billing_question, c5 none, c8 faq_hours, c9 greet, c10 faq_hours,
    # c11 billing_question (its greet came after the ticket)
    assert b.top_failing_intents == (
        FailingIntent("billing_question", 2, 2, 1.0),
        FailingIntent("faq_hours", 2, 3, round(2 / 3, 4)),
        FailingIntent("(none)", 1, 0, None),
        FailingIntent("book_appointment", 1, 2, 0.5),
        FailingIntent("greet", 1, 3, round(1 / 3, 4)),
    )
    conf = [0.9, 0.8, 0.7, 0.6, 0.3, 0.85, 0.95, 0.9, 0.2, 0.9, 0.75, 0.9]
    assert b.avg_nlu_confidence == round(sum(conf) / 12, 4) == 0.7292
    assert b.spoken_messages == 4
    assert b.avg_asr_confidence == 0.65  # (.8 + .5 + .9 + .4) / 4
    assert b.bookings == 1  # c7's booking belongs to 1 March


async def test_top_n_limits_lists(data: Dataset) -> None:
    b = (await kpis(data, top_n=1)).bot
    assert [i.intent for i in b.top_intents] == ["faq_hours"]
    assert [f.intent for f in b.top_failing_intents] == ["billing_question"]


# -- queue -----------------------------------------------------------------------------------
async def test_queue_kpis(data: Dataset) -> None:
    q = (await kpis(data)).queue
    assert q.tickets == 7  # T1-T6, T8 (T7 arrived on 1 March)
    assert q.answered == 4  # T1, T2, T4, T8
    assert q.abandoned == 2  # T3 after 60 s, T5 after 5 s
    assert q.short_abandoned == 1  # T5
    assert q.waiting == 1  # T6
    assert q.avg_wait_s == round((10 + 51 + 15 + 20 + 60 + 5) / 6, 1) == 26.8
    assert q.longest_wait_s == 35940.0  # T6: 14:01 to the period's end
    assert q.asa_s == 24.0  # (10 + 51 + 15 + 20) / 4; T4 waited from its callback time
    assert q.answered_within_threshold == 3  # 10, 15 and 20 s (at T counts)
    assert q.service_level == 0.6  # 3 / (4 answered + 2 abandoned - 1 short)
    assert q.abandonment_rate == round(2 / 6, 4)
    assert q.avg_time_to_abandon_s == 32.5
    assert q.resolved == 4
    assert q.aht_s == 435.0  # (600 + 300 + 240 + 600) / 4
    assert q.callbacks_requested == 1
    assert q.callbacks_completed == 1


# -- agents ----------------------------------------------------------------------------------
async def test_agent_kpis(data: Dataset) -> None:
    a = (await kpis(data)).agents
    assert a.agents == 2  # carol worked on 1 March only
    alice, bob = a.per_agent
    assert (alice.name, alice.agent_id, bob.name) == ("Alice", data.alice, "Bob")
    # alice: logged in 09:00-11:00; ready = 09:00-10:07:11 and 10:30-11:00;
    # engaged = T1 600 + wrap 30 + T2 300 + wrap 20
    assert (alice.logged_in_s, alice.ready_s, alice.engaged_s) == (7200.0, 5831.0, 950.0)
    assert alice.occupancy == round(950 / 5831, 4)
    assert alice.utilisation == round(950 / 7200, 4)
    assert (alice.handled, alice.wrap_ups, alice.avg_wrap_up_s) == (2, 2, 25.0)
    # bob: logged in 14:55-17:00; ready 14:55-16:30 (busy excluded); engaged = T4 240 +
    # wrap 40 + T8 600
    assert (bob.logged_in_s, bob.ready_s, bob.engaged_s) == (7500.0, 5700.0, 880.0)
    assert bob.occupancy == round(880 / 5700, 4)
    assert bob.utilisation == round(880 / 7500, 4)
    assert (bob.handled, bob.wrap_ups, bob.avg_wrap_up_s) == (2, 1, 40.0)
    assert (a.logged_in_s, a.ready_s, a.engaged_s) == (14700.0, 11531.0, 1830.0)
    assert a.occupancy == round(1830 / 11531, 4)
    assert a.utilisation == round(1830 / 14700, 4)
    assert (a.wrap_ups, a.avg_wrap_up_s) == (3, 30.0)


# -- filters ---------------------------------------------------------------------------------
async def test_channel_filter(data: Dataset) -> None:
    r = await kpis(data, KpiFilters(channel="voice"))
    assert (r.bot.conversations, r.bot.engaged, r.bot.contained) == (3, 3, 0)  # c3, c5, c9
    assert r.bot.handoff_rate == 1.0
    assert r.bot.fallback_rate == 0.5  # 2 of c3's and c9's 4 messages
    assert r.queue.tickets == 3  # T1, T3, T5
    assert (r.queue.answered, r.queue.abandoned) == (1, 2)
    assert r.queue.service_level == 0.5  # 1 / (1 + 2 - 1)
    assert r.queue.abandonment_rate == round(2 / 3, 4)
    assert r.agents.agents == 2  # agent time is not per channel


async def test_skill_filter(data: Dataset) -> None:
    r = await kpis(data, KpiFilters(skill="billing"))
    assert r.bot.conversations == 10
    assert r.bot.containment_rate == round(2 / 9, 4)  # not narrowed by skill
    assert r.bot.handed_off == 1  # c4
    assert r.bot.handoff_rate == round(1 / 9, 4)
    assert r.bot.top_failing_intents == (FailingIntent("billing_question", 1, 2, 0.5),)
    assert r.queue.tickets == 1  # T2
    assert r.queue.asa_s == 51.0
    assert r.queue.service_level == 0.0
    assert [x.name for x in r.agents.per_agent] == ["Alice"]  # bob lacks the skill


async def test_intent_filter(data: Dataset) -> None:
    r = await kpis(data, KpiFilters(intent="faq_hours"))
    assert (r.bot.conversations, r.bot.contained, r.bot.handed_off) == (3, 1, 2)  # c2, c8, c10
    assert r.bot.customer_messages == 3
    assert r.queue.tickets == 2  # T4, T6
    assert (r.queue.answered, r.queue.waiting) == (1, 1)


async def test_agent_filter(data: Dataset) -> None:
    r = await kpis(data, KpiFilters(agent_id=data.bob))
    assert r.bot.conversations == 10  # the bot's figures are not per agent
    assert r.queue.tickets == 2  # T4, T8: the tickets bob answered
    assert r.queue.asa_s == 17.5
    assert r.queue.service_level == 1.0
    assert r.queue.abandoned == 0
    assert [x.agent_id for x in r.agents.per_agent] == [data.bob]
    assert r.agents.occupancy == round(880 / 5700, 4)


async def test_empty_period(data: Dataset) -> None:
    empty = Period.days(date(2026, 5, 1), date(2026, 5, 1))
    r = await compute_kpis(data.engine, empty, KpiFilters(), SETTINGS_80_20, now=AFTER)
    assert (r.bot.conversations, r.bot.engaged, r.bot.bookings) == (0, 0, 0)
    assert r.bot.containment_rate is None
    assert r.bot.fallback_rate is None
    assert r.bot.avg_nlu_confidence is None
    assert r.bot.top_intents == () == r.bot.top_failing_intents == r.bot.handoff_reasons
    assert (r.queue.tickets, r.queue.answered, r.queue.abandoned) == (0, 0, 0)
    assert r.queue.asa_s is None and r.queue.service_level is None
    assert r.queue.longest_wait_s is None and r.queue.aht_s is None
    assert (r.agents.agents, r.agents.occupancy, r.agents.avg_wrap_up_s) == (0, None, None)
    assert r.meets_service_level is None
    data_ = r.as_data()
    assert data_["bot"]["top_intents"] == []
    assert data_["period"] == {
        "from": "2026-05-01T00:00:00+00:00",
        "to": "2026-05-02T00:00:00+00:00",
    }


async def test_live_figures_run_to_now(data: Dataset) -> None:
    now = at("14:05")
    r = await compute_kpis(data.engine, PERIOD, KpiFilters(), SETTINGS_80_20, now=now)
    assert r.as_of == now
    assert r.queue.longest_wait_s == 240.0  # T6 has waited 4 minutes so far
    # alice's open offline interval and bob's later ones do not count yet: bob not logged in
    assert [x.name for x in r.agents.per_agent] == ["Alice"]


async def test_report_is_json_ready_with_definitions(data: Dataset) -> None:
    import json

    r = await kpis(data)
    d = json.loads(json.dumps(r.as_data()))
    assert d["queue"]["service_level"] == 0.6
    assert d["meets_service_level"] is False  # 0.6 < 0.8
    assert d["bot"]["top_failing_intents"][2] == {
        "intent": "(none)",
        "handoffs": 1,
        "conversations": 0,
        "failure_rate": None,
    }
    defs = definitions()
    for section in ("bot", "queue", "agents"):
        for key in d[section]:
            assert defs[f"{section}.{key}"]["definition"]
    assert "short abandons" in defs["queue.service_level"]["definition"]


# -- time series -----------------------------------------------------------------------------
async def test_timeseries_by_hour(data: Dataset) -> None:
    ts = await timeseries(data.engine, PERIOD, "hour", KpiFilters(), SETTINGS_80_20, now=AFTER)
    assert len(ts.points) == 24
    by_hour = {p.start.hour: p for p in ts.points}
    nine = by_hour[9]  # c1, c2, c3; T1
    assert (nine.conversations, nine.engaged, nine.contained, nine.handoffs) == (3, 3, 2, 1)
    assert nine.containment_rate == round(2 / 3, 4)
    assert (nine.tickets, nine.answered, nine.asa_s, nine.service_level) == (1, 1, 10.0, 1.0)
    ten = by_hour[10]  # c4, c5; T2 (51 s), T3 (abandoned after 60 s)
    assert (ten.conversations, ten.tickets, ten.answered, ten.abandoned) == (2, 2, 1, 1)
    assert ten.service_level == 0.0
    assert by_hour[11].conversations == 1 and by_hour[11].engaged == 0  # c6
    assert by_hour[12].tickets == 1  # T4 arrived at 12:01 (answered at 15:00)
    assert by_hour[3].conversations == 0 and by_hour[3].service_level is None
    assert sum(p.conversations for p in ts.points) == 10
    assert sum(p.tickets for p in ts.points) == 7


async def test_timeseries_by_day_and_bucket_limits(data: Dataset) -> None:
    week = Period.days(date(2026, 3, 1), date(2026, 3, 7))
    ts = await timeseries(data.engine, week, "day", KpiFilters(), SETTINGS_80_20, now=AFTER)
    assert [p.conversations for p in ts.points] == [1, 10, 0, 0, 0, 0, 0]
    assert [p.tickets for p in ts.points] == [1, 7, 0, 0, 0, 0, 0]
    assert ts.as_data()["points"][1]["start"] == "2026-03-02T00:00:00+00:00"
    with pytest.raises(ScopeError, match="bucket must be one of"):
        bucket_starts(week, "second")
    assert len(bucket_starts(week, "15min")) == 7 * 96
    with pytest.raises(ScopeError, match="too many"):
        bucket_starts(Period.days(date(2020, 1, 1), date(2026, 1, 1)), "hour")


def test_period_validation() -> None:
    with pytest.raises(ScopeError, match="before"):
        Period.days(date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(ScopeError, match="timezone"):
        Period(datetime(2026, 3, 1), datetime(2026, 3, 2))


# -- presence log ------------------------------------------------------------------------------
async def test_presence_log_follows_every_change(engine: AsyncEngine) -> None:
    users = UserStore(engine)
    agent = await users.add(
        "dana", "a-long-password", role=UserRole.AGENT, display_name="Dana", skills={"general": 1}
    )
    store = SqlHandoffStore(engine)
    sessions = async_sessionmaker(engine)

    async def log() -> list[tuple[str, datetime, datetime | None]]:
        async with sessions() as s:
            rows = (
                await s.scalars(
                    select(AgentPresenceRow)
                    .where(AgentPresenceRow.user_id == agent.id)
                    .order_by(AgentPresenceRow.id)
                )
            ).all()
        return [(r.presence, r.started_at, r.ended_at) for r in rows]

    await store.set_presence(agent.id, Presence.AVAILABLE)
    [(state, started, ended)] = await log()
    assert (state, ended) == ("available", None)

    await store.set_presence(agent.id, Presence.WRAP_UP, utcnow())
    first, second = await log()
    assert first[2] == second[1]  # closed when the wrap-up began, same moment
    assert (second[0], second[2]) == ("wrap_up", None)

    assert await store.end_wrap_ups(started - timedelta(seconds=5)) == []  # not due yet
    assert len(await log()) == 2
    await asyncio.sleep(0.05)
    done_at = utcnow()
    assert await store.end_wrap_ups(done_at) == [agent.id]
    *_, wrap, back = await log()
    assert (wrap[0], wrap[2]) == ("wrap_up", done_at)
    assert back == ("available", done_at, None)
    assert await store.end_wrap_ups(done_at + timedelta(seconds=1)) == []  # nobody in wrap-up

    await store.set_presence(agent.id, Presence.OFFLINE)
    rows = await log()
    assert [r[0] for r in rows] == ["available", "wrap_up", "available", "offline"]
    assert [r[2] is None for r in rows] == [False, False, False, True]  # one open interval
    assert all(a[2] == b[1] for a, b in itertools.pairwise(rows))  # no gaps

    await store.set_presence(987654, Presence.AVAILABLE)  # no such user: nothing logged
    async with sessions() as s:
        assert len((await s.scalars(select(AgentPresenceRow))).all()) == 4

    # the agent KPIs read this log: one wrap-up that started and ended in the period
    day = Period(started - timedelta(hours=1), started + timedelta(hours=1))
    r = await compute_kpis(
        engine, day, KpiFilters(), SETTINGS_80_20, now=started + timedelta(hours=2)
    )
    wrap_s = round((done_at - second[1]).total_seconds(), 1)
    assert (r.agents.agents, r.agents.wrap_ups, r.agents.avg_wrap_up_s) == (1, 1, wrap_s)


# -- desk endpoints ----------------------------------------------------------------------------
@pytest.fixture
async def desk(
    data: Dataset, tmp_path: Path
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = Settings(home=tmp_path, analytics=SETTINGS_80_20)
    users = UserStore(data.engine)
    app[desk_api.USERS] = users
    app[kpi_api.ENGINE] = data.engine
    kpi_api.add_routes(app)
    for name, role in (("sue", UserRole.SUPERVISOR), ("al", UserRole.AGENT)):
        await users.add(name, "a-long-password", role=role, display_name=name, skills={})
    cookies = {}
    for name in ("sue", "al"):
        sess = await users.login(name, "a-long-password", 1.0)
        assert sess is not None
        cookies[name] = sess.token
    async with TestClient(TestServer(app)) as client:
        yield client, cookies


async def test_kpi_endpoint(desk: tuple[TestClient[Any, Any], dict[str, str]]) -> None:
    client, cookies = desk
    sup = {"Cookie": f"{desk_api.COOKIE}={cookies['sue']}"}
    resp = await client.get("/desk/api/kpis?from=2026-03-02&to=2026-03-02", headers=sup)
    assert resp.status == 200
    body = await resp.json()
    assert body["bot"]["containment_rate"] == 0.2222
    assert body["queue"]["service_level"] == 0.6
    assert body["period"]["to"] == "2026-03-03T00:00:00+00:00"  # the to day is inclusive
    assert "queue.asa_s" in body["definitions"]

    resp = await client.get(
        "/desk/api/kpis?from=2026-03-02&to=2026-03-02&channel=voice&agent=", headers=sup
    )
    assert (await resp.json())["queue"]["tickets"] == 3

    resp = await client.get(
        "/desk/api/kpis/timeseries?from=2026-03-02T09:00:00Z&to=2026-03-02T12:00:00Z&bucket=hour",
        headers=sup,
    )
    assert resp.status == 200
    points = (await resp.json())["points"]
    assert [p["conversations"] for p in points] == [3, 2, 1]


async def test_kpi_endpoint_refuses_and_validates(
    desk: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    client, cookies = desk
    assert (await client.get("/desk/api/kpis")).status == 401
    agent = {"Cookie": f"{desk_api.COOKIE}={cookies['al']}"}
    assert (await client.get("/desk/api/kpis", headers=agent)).status == 403
    sup = {"Cookie": f"{desk_api.COOKIE}={cookies['sue']}"}
    for query, needle in (
        ("from=2026-13-01", "from: '2026-13-01' is not a date"),
        ("from=2026-03-02T09:00", "give a time zone"),
        ("from=2026-03-05&to=2026-03-01", "before it starts"),
        ("agent=bob", "agent: 'bob' is not a user id"),
    ):
        resp = await client.get(f"/desk/api/kpis?{query}", headers=sup)
        assert resp.status == 422, query
        assert needle in (await resp.json())["error"]["message"]
    resp = await client.get("/desk/api/kpis/timeseries?bucket=week", headers=sup)
    assert resp.status == 422
    message = (await resp.json())["error"]["message"]
    assert "bucket must be one of minute, 15min, hour, day" in message
