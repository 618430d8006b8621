"""Relative date and time expressions resolved by the action server's parser
(nlu-data/actions/timeparse.py, dateparser) in the business's time zone. They run in the Rasa
virtualenv, where the action server runs, with "now" passed in."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bot.config import load_settings

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys
from datetime import datetime
from zoneinfo import ZoneInfo
from actions.timeparse import resolve
from actions.actions import parse_phone, clean_name
tz = ZoneInfo(sys.argv[1])
now = datetime.fromisoformat(sys.argv[2])
out = {}
for text in json.loads(sys.argv[3]):
    r = resolve(text, now, tz)
    out[text] = None if r is None else [r.when.isoformat(), r.has_time]
phones = {t: parse_phone(t) for t in json.loads(sys.argv[4])}
names = {t: clean_name(t) for t in json.loads(sys.argv[5])}
print(json.dumps({"times": out, "phones": phones, "names": names}))
"""

# "now": Tuesday 10 March 2026, 11:20 in London (GMT)
NOW = "2026-03-10T11:20:00+00:00"
TIMES = {
    "tomorrow at 3": ["2026-03-11T15:00:00+00:00", True],
    "next Tuesday morning": ["2026-03-17T10:00:00+00:00", True],
    "um friday at 10am": ["2026-03-13T10:00:00+00:00", True],
    "half past two tomorrow": ["2026-03-11T14:30:00+00:00", True],
    "tomorrow at three thirty please": ["2026-03-11T15:30:00+00:00", True],
    "25 December": ["2026-12-25T00:00:00+00:00", False],
    "on sunday": ["2026-03-15T00:00:00+00:00", False],
    "monday afternoon": ["2026-03-16T14:00:00+00:00", True],
    "14/03 at 10": ["2026-03-14T10:00:00+00:00", True],
    "in two hours": ["2026-03-10T13:20:00+00:00", True],
    # after the clock change (29 March 2026) London is on BST, +01:00
    "april 2 at 9:30": ["2026-04-02T09:30:00+01:00", True],
    "blah blah": None,
    "my name is john": None,
}
PHONES = {
    "07912 345678": "+447912345678",
    "it's oh seven nine one two three four five six seven eight": "+447912345678",
    "double oh four four seven nine one two three four five six seven eight": "+447912345678",
    "+44 117 496 0123": "+441174960123",
    "12345": None,
    "no idea": None,
}
NAMES = {"my name is jane doe": "Jane Doe", "it's Sam O'Neil": "Sam O'Neil", "12345": None}


@pytest.fixture(scope="module")
def results() -> dict[str, dict[str, object]]:
    settings = load_settings()
    python = settings.rasa_venv / "bin" / "python"
    proc = subprocess.run(
        [
            str(python),
            "-c",
            SCRIPT,
            "Europe/London",
            NOW,
            json.dumps(list(TIMES)),
            json.dumps(list(PHONES)),
            json.dumps(list(NAMES)),
        ],
        cwd=ROOT / "nlu-data",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("text", list(TIMES))
def test_time_expressions(results: dict[str, dict[str, object]], text: str) -> None:
    assert results["times"][text] == TIMES[text]


@pytest.mark.parametrize("text", list(PHONES))
def test_phone_numbers(results: dict[str, dict[str, object]], text: str) -> None:
    assert results["phones"][text] == PHONES[text]


@pytest.mark.parametrize("text", list(NAMES))
def test_names(results: dict[str, dict[str, object]], text: str) -> None:
    assert results["names"][text] == NAMES[text]
