"""The period report: HTML with the chart data and the inlined Chart.js, CSV with the right
values, and `receptionist report` argument errors (exit 2 with a clear message)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from importlib.resources import files
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics import report_cli
from bot.analytics.kpis import compute_kpis, timeseries
from bot.analytics.report import build_report, chart_js, report_bucket, write_report
from bot.analytics.scope import KpiFilters, Period
from bot.config import DatabaseSettings, Settings
from bot.store import create_engine, migrate
from tests.analytics.test_kpis import PERIOD, SETTINGS_80_20, build

AFTER = datetime(2026, 4, 1, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'report.db'}")
    await migrate(eng)
    await build(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


async def _written(engine: AsyncEngine, out: Path) -> None:
    report = await compute_kpis(engine, PERIOD, KpiFilters(), SETTINGS_80_20, now=AFTER)
    series = await timeseries(engine, PERIOD, "hour", KpiFilters(), SETTINGS_80_20, now=AFTER)
    write_report(out, report, series)


def _kpis_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["section", "kpi", "value", "unit", "definition"]
    return {f"{r['section']}.{r['kpi']}": r for r in rows}


async def test_csv_holds_every_kpi_with_its_value(engine: AsyncEngine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    await _written(engine, out)
    kpis = _kpis_csv(out / "kpis.csv")
    assert kpis["report.from"]["value"] == "2026-03-02T00:00:00+00:00"
    assert kpis["report.service_level_s"]["value"] == "20.0"
    assert kpis["bot.conversations"]["value"] == "10"
    assert kpis["bot.containment_rate"]["value"] == "0.2222"
    assert kpis["bot.containment_rate"]["unit"] == "ratio"
    assert "contained / engaged" in kpis["bot.containment_rate"]["definition"]
    assert kpis["bot.handoff_reasons[user_request].count"]["value"] == "2"
    assert kpis["bot.top_intents[faq_hours].messages"]["value"] == "3"
    assert kpis["bot.top_failing_intents[(none)].failure_rate"]["value"] == ""  # None
    assert kpis["bot.avg_asr_confidence"]["value"] == "0.65"
    assert kpis["queue.tickets"]["value"] == "7"
    assert kpis["queue.service_level"]["value"] == "0.6"
    assert kpis["queue.asa_s"]["value"] == "24.0"
    assert kpis["queue.asa_s"]["unit"] == "seconds"
    assert kpis["queue.aht_s"]["value"] == "435.0"
    assert kpis["queue.callbacks_completed"]["value"] == "1"
    assert kpis["agents.avg_wrap_up_s"]["value"] == "30.0"
    assert kpis["agents.occupancy"]["value"] == str(round(1830 / 11531, 4))
    per_agent = [k for k in kpis if k.startswith("agents.per_agent[") and k.endswith("].name")]
    assert sorted(kpis[k]["value"] for k in per_agent) == ["Alice", "Bob"]

    with (out / "timeseries.csv").open(newline="", encoding="utf-8") as f:
        series = list(csv.DictReader(f))
    assert len(series) == 24
    nine = series[9]
    assert nine["start"] == "2026-03-02T09:00:00+00:00"
    assert (nine["conversations"], nine["contained"], nine["handoffs"]) == ("3", "2", "1")
    assert (nine["asa_s"], nine["service_level"]) == ("10.0", "1.0")
    assert series[3]["service_level"] == ""  # nothing to measure
    assert sum(int(r["tickets"]) for r in series) == 7


async def test_html_is_self_contained_with_chart_data(engine: AsyncEngine, tmp_path: Path) -> None:
    out = tmp_path / "out"
    await _written(engine, out)
    html = (out / "report.html").read_text(encoding="utf-8")
    # the library is inlined (no network needed), without its source-map reference
    assert chart_js() in html
    assert "Chart.js v4" in html
    assert "sourceMappingURL" not in html
    assert not re.search(r"<script[^>]+src=", html)
    assert "http://" not in html.replace("http://www.w3.org", "")
    data = json.loads(
        re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html, re.S)[1]
    )
    assert data["labels"][9] == "09:00"  # one day: hours only
    assert data["contained"][9] == 2 and data["handoffs"][9] == 1
    assert data["service_level"][9] == 100.0 and data["service_level_target"] == 80.0
    assert data["asa_s"][10] == 51.0
    assert data["intents"] == {
        "labels": ["faq_hours", "greet", "billing_question", "book_appointment"],
        "values": [3, 3, 2, 2],
    }
    assert data["reasons"]["labels"][0] == "user_request"
    for canvas in ("c-conversations", "c-queue", "c-service", "c-intents", "c-reasons"):
        assert f'<canvas id="{canvas}">' in html
    assert "22.2 %" in html  # containment in the headline
    assert "60.0 %" in html  # service level
    assert "7 m 15 s" in html  # AHT 435 s


async def test_html_escapes_names(engine: AsyncEngine, tmp_path: Path) -> None:
    from sqlalchemy import update

    from bot.store.schema import TicketRow

    async with engine.begin() as c:
        await c.execute(update(TicketRow).values(reason="</script><b>x"))
    await _written(engine, tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "</script><b>x" not in html
    assert "\\u003c/script>\\u003cb>x" in html


def test_vendored_chart_js_matches_its_readme() -> None:
    vendor = files("bot") / "static" / "vendor"
    digest = hashlib.sha256((vendor / "chart.umd.min.js").read_bytes()).hexdigest()
    readme = (vendor / "README.md").read_text(encoding="utf-8")
    assert digest in readme
    assert "MIT" in readme


def test_report_bucket() -> None:
    assert report_bucket(PERIOD) == "hour"
    assert report_bucket(Period.days(date(2026, 3, 1), date(2026, 3, 31))) == "day"


async def test_build_report_writes_three_files(engine: AsyncEngine, tmp_path: Path) -> None:
    written = await build_report(engine, PERIOD, KpiFilters(), SETTINGS_80_20, tmp_path / "r")
    assert written.html.exists() and written.kpis_csv.exists() and written.timeseries_csv.exists()


# -- the command -----------------------------------------------------------------------------
def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="receptionist")
    sub = parser.add_subparsers(dest="command")
    report_cli.add_arguments(sub)
    return parser.parse_args(argv)


def _settings(home: Path, db: Path) -> Settings:
    return Settings(
        home=home,
        data_dir=Path("var"),
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{db}"),
        analytics=SETTINGS_80_20,
    )


async def test_command_writes_the_report(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    eng = create_engine(f"sqlite+aiosqlite:///{db}")
    await migrate(eng)
    await build(eng)
    await eng.dispose()
    settings = _settings(tmp_path, db)
    out, err = io.StringIO(), io.StringIO()
    args = _parse(["report", "--from", "2026-03-02", "--to", "2026-03-02", "--channel", "voice"])
    # run() drives its own event loop: call it from a worker thread
    import asyncio

    code = await asyncio.to_thread(report_cli.run, args, settings, out, err)
    assert code == 0, err.getvalue()
    target = tmp_path / "var" / "reports" / "2026-03-02_2026-03-02"
    assert f"report: {target / 'report.html'}" in out.getvalue()
    kpis = _kpis_csv(target / "kpis.csv")
    assert kpis["report.filter.channel"]["value"] == "voice"
    assert kpis["bot.conversations"]["value"] == "3"
    assert kpis["queue.service_level"]["value"] == "0.5"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "2026-02-30", "--to", "2026-03-01"], "--from: '2026-02-30' is not a date"),
        (["--from", "2026-03-01", "--to", "March"], "--to: 'March' is not a date (YYYY-MM-DD)"),
        (["--from", "2026-03-05", "--to", "2026-03-01"], "--to 2026-03-01 is before --from"),
    ],
)
def test_command_bad_dates_exit_2(tmp_path: Path, argv: list[str], message: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = report_cli.run(
        _parse(["report", *argv]), _settings(tmp_path, tmp_path / "x.db"), out, err
    )
    assert code == 2
    assert message in err.getvalue()
    assert err.getvalue().startswith("error: ")
    assert not (tmp_path / "x.db").exists()  # nothing touched


def test_command_requires_both_dates() -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(["report", "--from", "2026-03-01"])
    assert exc.value.code == 2
