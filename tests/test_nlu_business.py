"""The business profile and its calendar logic (nlu-data/actions/business.py): pure Python,
time-zone aware, "now" always passed in."""

from __future__ import annotations

import importlib.util
import sys
from datetime import date, datetime
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LONDON = ZoneInfo("Europe/London")


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "receptionist_business", ROOT / "nlu-data" / "actions" / "business.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


business = _load()


@pytest.fixture(scope="module")
def prof() -> object:
    return business.load_profile(ROOT / "nlu-data" / "business.yml")


def at(*args: int, tz: ZoneInfo = LONDON) -> datetime:
    return datetime(*args, tzinfo=tz)  # type: ignore[misc]


def test_shipped_profile_loads(prof: object) -> None:
    p = prof
    assert p.name and p.timezone == "Europe/London"  # type: ignore[attr-defined]
    assert "Harbour Street" in p.address  # type: ignore[attr-defined]
    assert {s.id for s in p.services} >= {"sports_massage", "physio_assessment"}  # type: ignore[attr-defined]
    assert p.default_skill == "general"  # type: ignore[attr-defined]
    assert p.skill_for("billing") == "billing"  # type: ignore[attr-defined]
    assert p.skill_for("nonsense") == "general"  # type: ignore[attr-defined]


def test_week_summary_groups_days(prof: object) -> None:
    text = prof.describe_week()  # type: ignore[attr-defined]
    assert text.startswith("We're open Monday to Friday from 9 am to 5:30 pm")
    assert "Saturday from 10 am to 2 pm" in text
    assert "closed on Sundays" in text


def test_open_now_on_a_weekday_afternoon(prof: object) -> None:
    # Tuesday 10 March 2026, 11:20 in London
    assert prof.describe_now(at(2026, 3, 10, 11, 20)) == (  # type: ignore[attr-defined]
        "Yes, we're open now, until 5:30 pm today."
    )


def test_closed_after_hours_says_when_it_opens(prof: object) -> None:
    text = prof.describe_now(at(2026, 3, 10, 18, 0))  # type: ignore[attr-defined]
    assert text == "We're closed right now. We open again tomorrow at 9 am."


def test_saturday_evening_opens_on_monday(prof: object) -> None:
    text = prof.describe_now(at(2026, 3, 14, 15, 0))  # type: ignore[attr-defined]
    assert text == "We're closed right now. We open again on Monday at 9 am."


def test_now_is_converted_to_the_business_time_zone(prof: object) -> None:
    # 08:30 in New York is 13:30 in London (before the US/UK clock change gap: 5 h).
    ny = at(2026, 3, 3, 8, 30, tz=ZoneInfo("America/New_York"))
    assert prof.open_at(ny)  # type: ignore[attr-defined]
    # 16:45 UTC on 1 July is 17:45 BST: closed (summer time applied)
    assert not prof.open_at(at(2026, 7, 1, 16, 45, tz=ZoneInfo("UTC")))  # type: ignore[attr-defined]
    assert prof.open_at(at(2026, 1, 7, 16, 45, tz=ZoneInfo("UTC")))  # type: ignore[attr-defined]


def test_naive_now_is_refused(prof: object) -> None:
    with pytest.raises(ValueError):
        prof.open_at(datetime(2026, 3, 10, 12, 0))  # type: ignore[attr-defined]


def test_christmas_is_closed_every_year(prof: object) -> None:
    now = at(2030, 12, 1, 10, 0)
    text = prof.describe_day(date(2030, 12, 25), now)  # type: ignore[attr-defined]
    assert text.startswith("We're closed on Wednesday 25 December for Christmas Day.")
    # 26th is Boxing Day, 27th is a Friday
    assert "We open again on Friday 27 December at 9 am." in text


def test_special_hours_on_christmas_eve(prof: object) -> None:
    text = prof.describe_day(date(2026, 12, 24), at(2026, 12, 20, 9, 0))  # type: ignore[attr-defined]
    assert text == "Yes, on Thursday (Christmas Eve) we're open from 9 am to 1 pm."
    assert prof.open_at(at(2026, 12, 24, 12, 59))  # type: ignore[attr-defined]
    assert not prof.open_at(at(2026, 12, 24, 13, 0))  # type: ignore[attr-defined]


def test_dated_closure_applies_only_that_year(prof: object) -> None:
    assert prof.hours_on(date(2026, 4, 3)).reason == "Good Friday"  # type: ignore[attr-defined]
    assert prof.hours_on(date(2027, 4, 3)).reason is None  # type: ignore[attr-defined]


def test_sunday_and_past_days(prof: object) -> None:
    now = at(2026, 3, 10, 11, 0)
    assert prof.describe_day(date(2026, 3, 15), now) == (  # type: ignore[attr-defined]
        "We're closed on Sunday. We open again on Monday at 9 am."
    )
    assert prof.describe_day(date(2026, 3, 11), now) == (  # type: ignore[attr-defined]
        "Yes, tomorrow we're open from 9 am to 5:30 pm."
    )
    assert "already passed" in prof.describe_day(date(2026, 3, 9), now)  # type: ignore[attr-defined]


def test_appointment_must_fit_inside_opening_hours(prof: object) -> None:
    fits = prof.fits_opening_hours  # type: ignore[attr-defined]
    assert fits(at(2026, 3, 10, 16, 45), 45)
    assert not fits(at(2026, 3, 10, 17, 0), 45)  # would end 17:45
    assert not fits(at(2026, 3, 10, 8, 30), 30)
    assert not fits(at(2026, 3, 15, 11, 0), 30)  # Sunday


def test_services_found_by_alias_and_typo(prof: object) -> None:
    find = prof.find_service  # type: ignore[attr-defined]
    assert find("a deep tissue massage please").id == "sports_massage"
    assert find("acupunture").id == "acupuncture"
    assert find("pilates").id == "pilates"
    assert find("a haircut") is None
    assert prof.describe_price(find("massage")) == (  # type: ignore[attr-defined]
        "A sports massage costs £55 and takes 60 minutes."
    )


def test_edits_to_the_file_change_the_answers(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "nlu-data" / "business.yml").read_text())
    data["hours"]["sunday"] = [["11:00", "15:00"]]
    f = tmp_path / "business.yml"
    f.write_text(yaml.safe_dump(data))
    p = business.current_profile(f)
    assert p.open_at(at(2026, 3, 15, 12, 0))
    assert "Sunday" not in p.describe_week().split("closed")[1]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone"),
        (lambda d: d["hours"].update(monday=[["17:00", "09:00"]]), "hours.monday"),
        (lambda d: d["hours"].update(funday=[]), "funday"),
        (lambda d: d["closures"].append({"date": "2026-02-30"}), "closures[8].date"),
        (lambda d: d["services"][0].pop("price"), "services[0].price"),
        (lambda d: d["contact"].pop("phone"), "contact.phone"),
    ],
)
def test_bad_profile_names_the_key(tmp_path: Path, mutate: object, message: str) -> None:
    data = yaml.safe_load((ROOT / "nlu-data" / "business.yml").read_text())
    mutate(data)  # type: ignore[operator]
    f = tmp_path / "business.yml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(business.ProfileError) as err:
        business.load_profile(f)
    assert message in str(err.value)


def test_named_holidays_resolve_to_their_next_date(prof: object) -> None:
    find = prof.find_named_day  # type: ignore[attr-defined]
    today = date(2026, 11, 22)
    assert find("are you open on christmas day", today) == date(2026, 12, 25)
    assert find("xmas eve", today) == date(2026, 12, 24)
    assert find("what about new year's day", today) == date(2027, 1, 1)
    assert find("boxing day", date(2026, 12, 27)) == date(2027, 12, 26)
    # a dated closure that has passed is not found again next year
    assert find("good friday", today) is None
    assert find("good friday", date(2026, 3, 1)) == date(2026, 4, 3)
    assert find("next monday", today) is None
