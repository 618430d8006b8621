"""Staffing from observed contacts (a hand-built SQLite database) and `receptionist staffing`."""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bot.analytics import staffing_cli
from bot.analytics.erlang import required_agents
from bot.analytics.staffing import (
    AhtSource,
    StaffingTargets,
    TicketTimes,
    business_timezone,
    format_table,
    interval_demand,
    observed_plan,
    write_csv,
)
from bot.config import AnalyticsSettings, HandoffSettings, RasaSettings, Settings
from bot.store import create_engine, migrate
from bot.store.schema import ConversationRow, TicketRow

LONDON = ZoneInfo("Europe/London")
DAY1, DAY2 = date(2024, 7, 1), date(2024, 7, 2)  # British Summer Time: local = UTC + 1
WRAP_UP_S = 10.0
TARGETS = StaffingTargets(target_answer_s=20, service_level=0.8, shrinkage=0.3)


def local(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=LONDON)


# (arrival, seconds until answered or None, handle seconds or None, channel)
Contact = tuple[datetime, float | None, float | None, str]

CONTACTS: list[Contact] = [
    (local(DAY1, 9, 5), 60, 240, "voice"),  # 09:00 slot, handled 240 s
    (local(DAY1, 9, 20), 30, 360, "voice"),  # 09:00 slot, handled 360 s
    (local(DAY2, 9, 10), None, None, "voice"),  # 09:00 slot, abandoned
    (local(DAY2, 9, 29, 59), 20, None, "voice"),  # 09:00 slot, answered, still open
    (local(DAY2, 14, 45), 5, 60, "webchat"),  # 14:30 slot, handled 60 s
    (local(DAY1, 23, 30), None, None, "voice"),  # 23:30 local, 22:30 UTC
    (local(DAY1, 0, 30), None, None, "voice"),  # 00:30 local = 23:30 UTC the day before
    (local(DAY2 + timedelta(days=1), 0, 10), 5, 100, "voice"),  # 3 July local: outside
    (local(DAY1, 0, 0) - timedelta(seconds=1), 5, 100, "voice"),  # 30 June local: outside
]


async def seed(url: str, contacts: list[Contact]) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
        async with AsyncSession(engine) as s, s.begin():
            for i, (arrived, wait, handle, channel) in enumerate(contacts):
                answered = arrived + timedelta(seconds=wait) if wait is not None else None
                resolved = (
                    answered + timedelta(seconds=handle)
                    if answered is not None and handle is not None
                    else None
                )
                status = "resolved" if resolved else ("assigned" if answered else "abandoned")
                s.add(
                    ConversationRow(
                        id=f"c{i}",
                        channel=channel,
                        status="closed",
                        turn_count=0,
                        created_at=arrived,
                        updated_at=arrived,
                    )
                )
                s.add(
                    TicketRow(
                        conversation_id=f"c{i}",
                        channel=channel,
                        status=status,
                        reason="requested",
                        skill="general",
                        priority=1,
                        version=0,
                        created_at=arrived,
                        queued_at=arrived,
                        answered_at=answered,
                        resolved_at=resolved,
                        abandoned_at=None if answered else arrived + timedelta(seconds=45),
                    )
                )
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
def _no_env_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the environment would override the ones these tests build."""
    for key in list(os.environ):
        if key.startswith("RECEPTIONIST_"):
            monkeypatch.delenv(key)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'var' / 'receptionist.db'}"
    asyncio.run(seed(url, CONTACTS))
    return url


def settings_for(tmp_path: Path, **analytics: float) -> Settings:
    return Settings(
        home=tmp_path,
        data_dir=tmp_path / "var",
        rasa=RasaSettings(project_dir=tmp_path / "nlu"),
        handoff=HandoffSettings(wrap_up_s=WRAP_UP_S, default_aht_s=300.0),
        analytics=AnalyticsSettings(**analytics),
    )


def write_profile(tmp_path: Path, tz: str = "Europe/London") -> None:
    (tmp_path / "nlu").mkdir(exist_ok=True)
    (tmp_path / "nlu" / "business.yml").write_text(
        f"name: Test Physio\ntimezone: {tz}\n", encoding="utf-8"
    )


# -- the observed plan ---------------------------------------------------------------------


async def test_observed_plan_per_interval(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        plan = await observed_plan(
            engine,
            DAY1,
            DAY2,
            tz=LONDON,
            timezone_source="test",
            interval_min=30,
            wrap_up_s=WRAP_UP_S,
            default_aht_s=300.0,
            targets=TARGETS,
        )
    finally:
        await engine.dispose()
    assert plan.days == 2 and len(plan.intervals) == 48
    by_start = {p.demand.start: p for p in plan.intervals}
    assert sum(p.demand.arrivals for p in plan.intervals) == 7  # the two outside are left out

    nine = by_start[time(9, 0)]
    assert nine.demand.arrivals == 4 and nine.demand.mean_arrivals == 2.0
    assert nine.demand.handled == 2
    assert nine.demand.aht_s == pytest.approx((240 + 10 + 360 + 10) / 2)  # 310 s
    assert nine.demand.aht_source is AhtSource.INTERVAL
    # 2 calls per 30 min at 310 s is 0.344 Erlangs: one agent answers only 67% in 20 s
    assert nine.requirement.traffic_erlangs == pytest.approx(2 * 310 / 1800)
    assert (nine.requirement.agents, nine.requirement.scheduled_agents) == (2, 3)

    half_two = by_start[time(14, 30)]
    assert (half_two.demand.mean_arrivals, half_two.demand.aht_s) == (0.5, 70.0)
    assert half_two.requirement == required_agents(0.5, 1800, 70.0, 20, 0.8, shrinkage=0.3)

    # no handled ticket in these intervals: the range's mean handle time (250, 370, 70)
    for start in (time(23, 30), time(0, 30)):
        d = by_start[start].demand
        assert (d.arrivals, d.handled, d.aht_source) == (1, 0, AhtSource.RANGE)
        assert d.aht_s == pytest.approx((250 + 370 + 70) / 3)
        assert by_start[start].requirement.agents == 1
    assert by_start[time(22, 30)].demand.arrivals == 0  # UTC hour of 23:30 local

    quiet = by_start[time(3, 0)]
    assert quiet.demand.arrivals == 0 and quiet.requirement.agents == 0


async def test_observed_plan_one_channel(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        plan = await observed_plan(
            engine,
            DAY1,
            DAY2,
            tz=LONDON,
            timezone_source="test",
            interval_min=60,
            wrap_up_s=0.0,
            default_aht_s=300.0,
            targets=TARGETS,
            channel="webchat",
        )
    finally:
        await engine.dispose()
    assert len(plan.intervals) == 24
    busy = [p for p in plan.intervals if p.demand.arrivals]
    assert [(p.demand.start, p.demand.aht_s) for p in busy] == [(time(14, 0), 60.0)]


def test_default_handle_time_when_nothing_was_handled() -> None:
    tickets = [TicketTimes(local(DAY1, 10, 0), None, None) for _ in range(3)]
    demand = interval_demand(
        tickets, DAY1, DAY1, LONDON, interval_min=15, wrap_up_s=10, default_aht_s=420
    )
    assert len(demand) == 96
    ten = next(d for d in demand if d.start == time(10, 0))
    assert (ten.arrivals, ten.mean_arrivals, ten.aht_s) == (3, 3.0, 420.0)
    assert all(d.aht_source is AhtSource.DEFAULT for d in demand)
    assert ten.label == "10:00-10:15"


def test_demand_refuses_bad_interval_and_range() -> None:
    with pytest.raises(ValueError, match="interval"):
        interval_demand([], DAY1, DAY2, LONDON, interval_min=45, wrap_up_s=0, default_aht_s=1)
    with pytest.raises(ValueError, match="before"):
        interval_demand([], DAY2, DAY1, LONDON, interval_min=30, wrap_up_s=0, default_aht_s=1)


def test_business_timezone(tmp_path: Path) -> None:
    tz, note = business_timezone(tmp_path / "nlu")
    assert tz == ZoneInfo("UTC") and note.startswith("UTC: no business profile")
    write_profile(tmp_path)
    tz, note = business_timezone(tmp_path / "nlu")
    assert tz == LONDON and "business profile" in note and not note.startswith("UTC")
    write_profile(tmp_path, "Mars/Olympus_Mons")
    tz, note = business_timezone(tmp_path / "nlu")
    assert tz == ZoneInfo("UTC") and "unknown timezone" in note


def test_table_and_csv(tmp_path: Path, db_url: str) -> None:
    async def plan_it() -> str:
        engine = create_engine(db_url)
        try:
            plan = await observed_plan(
                engine,
                DAY1,
                DAY2,
                tz=LONDON,
                timezone_source="business profile x",
                interval_min=30,
                wrap_up_s=WRAP_UP_S,
                default_aht_s=300.0,
                targets=TARGETS,
            )
        finally:
            await engine.dispose()
        with (tmp_path / "plan.csv").open("w", encoding="utf-8", newline="") as out:
            write_csv(plan, out)
        return format_table(plan)

    table = asyncio.run(plan_it())
    assert "Europe/London (business profile x)" in table
    assert "2 days" in table and "30-minute intervals" in table
    nine = next(line for line in table.splitlines() if line.startswith("09:00-09:30"))
    assert nine.split()[1:8] == ["2.00", "310", "interval", "0.34", "2", "3", "95.5%"]
    assert "44 intervals without contacts" in table
    assert "peak: 3 scheduled (2 on the queue) at 09:00-09:30" in table
    rows = list(csv.DictReader((tmp_path / "plan.csv").open(encoding="utf-8")))
    assert len(rows) == 48
    nine_row = rows[18]
    assert nine_row["interval_start"] == "09:00" and nine_row["interval_end"] == "09:30"
    assert (nine_row["arrivals"], nine_row["handled"], nine_row["agents"]) == ("4", "2", "2")
    assert nine_row["scheduled_agents"] == "3" and nine_row["timezone"] == "Europe/London"
    assert rows[47]["interval_end"] == "00:00"


# -- the command line ----------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="receptionist")
    sub = parser.add_subparsers(dest="command", required=True)
    staffing_cli.add_arguments(sub)
    return parser.parse_args(["staffing", *argv])


def test_cli_given_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("--calls", "100", "--aht-s", "180", "--target-s", "20", "--service-level", "0.8")
    code = staffing_cli.run(
        parse(*argv, "--shrinkage", "0.3", "--max-occupancy", "0.85"), settings_for(tmp_path)
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = dict(line.split("  ", 1) for line in out.splitlines()[2:])
    assert lines["traffic intensity"].strip() == "10.00 Erlangs"
    assert lines["agents needed"].strip() == "14 (on the queue)"
    assert lines["agents scheduled"].strip() == "20 (after 30% shrinkage)"
    assert lines["service level"].strip() == "88.8% within 20 s"
    assert lines["average speed of answer"].strip() == "7.8 s"
    assert lines["occupancy"].strip() == "71.4%"
    assert lines["probability of waiting"].strip() == "17.4%"
    assert "occupancy at most 85%" in out


def test_cli_targets_default_to_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("--calls", "100", "--aht-s", "180")
    assert staffing_cli.run(args, settings_for(tmp_path)) == 0  # 80/20
    assert "agents needed            14" in capsys.readouterr().out
    strict = settings_for(tmp_path, service_level_s=20, service_level_target=0.95)
    assert staffing_cli.run(args, strict) == 0
    out = capsys.readouterr().out
    assert "agents needed            16" in out and "95% answered within 20 s" in out


def test_cli_asa_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("--calls", "100", "--aht-s", "180", "--asa-s", "2")
    assert staffing_cli.run(args, settings_for(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "ASA at most 2 s" in out and "agents needed            16" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--calls", "-5", "--aht-s", "180"), "--calls cannot be negative"),
        (("--calls", "100", "--aht-s", "0"), "--aht-s must be above 0"),
        (("--calls", "100", "--aht-s", "-3"), "--aht-s must be above 0"),
        (("--calls", "100"), "give --calls and --aht-s"),
        ((), "give --calls and --aht-s"),
        (("--calls", "100", "--aht-s", "180", "--shrinkage", "1"), "--shrinkage"),
        (("--calls", "100", "--aht-s", "180", "--shrinkage", "-0.2"), "--shrinkage"),
        (("--calls", "100", "--aht-s", "180", "--service-level", "80"), "--service-level"),
        (("--calls", "100", "--aht-s", "180", "--target-s", "-1"), "--target-s"),
        (("--calls", "100", "--aht-s", "180", "--max-occupancy", "1.5"), "--max-occupancy"),
        (("--calls", "100", "--aht-s", "180", "--asa-s", "0"), "--asa-s"),
        (("--calls", "100", "--aht-s", "180", "--interval-min", "0"), "--interval-min"),
        (("--calls", "1", "--aht-s", "1", "--from", "2024-07-01"), "need --observed"),
        (("--observed",), "--observed needs --from"),
        (("--observed", "--from", "2024-07-02", "--to", "2024-07-01"), "before --from"),
        (("--observed", "--calls", "3"), "--observed measures them"),
        (
            ("--observed", "--from", "2024-07-01", "--to", "2024-07-01", "--interval-min", "45"),
            "--interval-min must be one of 15, 30, 60",
        ),
    ],
)
def test_cli_bad_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    assert staffing_cli.run(parse(*argv), settings_for(tmp_path)) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err
    assert not (tmp_path / "var").exists()  # refused before touching the database


def test_cli_bad_date_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse("--observed", "--from", "1 July", "--to", "2024-07-02")
    assert exc.value.code == 2
    assert "not a date (YYYY-MM-DD)" in capsys.readouterr().err


def test_cli_observed(tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    write_profile(tmp_path)
    out_csv = tmp_path / "plan.csv"
    args = parse(
        "--observed", "--from", "2024-07-01", "--to", "2024-07-02", "--shrinkage", "0.3",
        "--csv", str(out_csv),
    )  # fmt: skip
    assert staffing_cli.run(args, settings_for(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "times of day in Europe/London (business profile" in out
    assert "handle times include 10 s wrap-up" in out
    assert any(line.startswith("09:00-09:30") for line in out.splitlines())
    assert any(line.startswith("23:30-00:00") for line in out.splitlines())
    assert f"wrote 48 intervals to {out_csv}" in out
    assert len(out_csv.read_text(encoding="utf-8").splitlines()) == 49


def test_cli_observed_without_profile_is_utc(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("--observed", "--from", "2024-07-01", "--to", "2024-07-02")
    assert staffing_cli.run(args, settings_for(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "times of day in UTC (UTC: no business profile" in out
    lines = out.splitlines()
    # in UTC the 09:xx contacts arrived at 08:xx, the 23:30 one at 22:30
    assert any(line.startswith("08:00-08:30") for line in lines)
    assert any(line.startswith("22:30-23:00") for line in lines)
    assert not any(line.startswith("09:00-09:30") for line in lines)


def test_cli_observed_empty_range(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("--observed", "--from", "2023-01-01", "--to", "2023-01-07")
    assert staffing_cli.run(args, settings_for(tmp_path)) == 0
    assert "no contacts in this range: no agents needed" in capsys.readouterr().out


def test_arrivals_in_utc_bounds_are_aware() -> None:
    # a stored ticket comes back as an aware UTC datetime; bucketing uses the local zone
    t = TicketTimes(datetime(2024, 7, 1, 8, 5, tzinfo=UTC), None, None)
    (d,) = [
        d
        for d in interval_demand(
            [t], DAY1, DAY1, LONDON, interval_min=60, wrap_up_s=0, default_aht_s=60
        )
        if d.arrivals
    ]
    assert d.start == time(9, 0)
