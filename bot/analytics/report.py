"""The period report: ``report.html`` (self-contained, charts drawn by the vendored Chart.js,
opens offline), ``kpis.csv`` (one row per KPI with its unit and definition) and
``timeseries.csv`` (one row per hour or day)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, fields
from datetime import timedelta
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics.kpis import (
    RATIO,
    SECONDS,
    SECTIONS,
    KpiReport,
    Timeseries,
    TimeseriesPoint,
    as_json,
    compute_kpis,
    definitions,
    timeseries,
)
from bot.analytics.scope import KpiFilters, Period
from bot.config import AnalyticsSettings

CHART_JS = "static/vendor/chart.umd.min.js"
KPI_COLUMNS = ("section", "kpi", "value", "unit", "definition")


@dataclass(frozen=True, slots=True)
class ReportFiles:
    html: Path
    kpis_csv: Path
    timeseries_csv: Path


def report_bucket(period: Period) -> str:
    """Hours for up to two days, days beyond."""
    return "hour" if period.end - period.start <= timedelta(days=2) else "day"


async def build_report(
    engine: AsyncEngine,
    period: Period,
    filters: KpiFilters,
    settings: AnalyticsSettings,
    out: Path,
) -> ReportFiles:
    report = await compute_kpis(engine, period, filters, settings)
    series = await timeseries(engine, period, report_bucket(period), filters, settings)
    return write_report(out, report, series)


def write_report(out: Path, report: KpiReport, series: Timeseries) -> ReportFiles:
    out.mkdir(parents=True, exist_ok=True)
    files_ = ReportFiles(out / "report.html", out / "kpis.csv", out / "timeseries.csv")
    with files_.kpis_csv.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(KPI_COLUMNS)
        w.writerows(kpi_rows(report))
    with files_.timeseries_csv.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        names = [fl.name for fl in fields(TimeseriesPoint)]
        w.writerow(names)
        for p in as_json(series.points):
            w.writerow([_cell(p[n]) for n in names])
    files_.html.write_text(render_html(report, series), encoding="utf-8")
    return files_


# -- CSV ---------------------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def kpi_rows(report: KpiReport) -> list[tuple[str, str, str, str, str]]:
    """Every KPI as (section, kpi, value, unit, definition); list KPIs one row per item."""
    defs = definitions()
    rows: list[tuple[str, str, str, str, str]] = [
        ("report", "from", report.period.start.isoformat(), "time", "period start (inclusive)"),
        ("report", "to", report.period.end.isoformat(), "time", "period end (exclusive)"),
        ("report", "as_of", report.as_of.isoformat(), "time", "figures as of"),
        *(
            ("report", f"filter.{k}", _cell(v), "", "filter")
            for k, v in report.filters.as_data().items()
        ),
        ("report", "service_level_s", _cell(report.service_level_s), SECONDS, "threshold T"),
        ("report", "service_level_target", _cell(report.service_level_target), RATIO, "target"),
    ]
    data = report.as_data()
    for section in SECTIONS:
        for name, value in data[section].items():
            d = defs[f"{section}.{name}"]
            if not isinstance(value, list):
                rows.append((section, name, _cell(value), d["unit"], d["definition"]))
                continue
            for item in value:
                key, *rest = item.items()
                for field_name, field_value in rest:
                    rows.append(
                        (
                            section,
                            f"{name}[{key[1]}].{field_name}",
                            _cell(field_value),
                            _item_unit(field_name),
                            d["definition"],
                        )
                    )
    return rows


def _item_unit(name: str) -> str:
    if name.endswith("_s"):
        return SECONDS
    if name.endswith(("rate", "occupancy", "utilisation")):
        return RATIO
    return "" if name == "name" else "count"


# -- HTML --------------------------------------------------------------------------------
def chart_js() -> str:
    """The vendored Chart.js, ready to inline in a ``<script>`` element."""
    text = (files("bot") / CHART_JS).read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not ln.startswith("//# sourceMappingURL=")]
    body = "\n".join(lines)
    if "</script" in body.lower():
        raise RuntimeError(f"{CHART_JS} cannot be inlined: it contains '</script'")
    return body


def _json_for_script(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == RATIO:
        return f"{value * 100:.1f} %"
    if unit == SECONDS:
        total = float(value)
        if total >= 3600:
            return f"{int(total // 3600)} h {int(total % 3600 // 60):02d} m"
        if total >= 60:
            return f"{int(total // 60)} m {int(total % 60):02d} s"
        return f"{total:.1f} s"
    return str(value)


def _kpi_table(report: KpiReport, section: str) -> str:
    defs = definitions()
    data = report.as_data()[section]
    rows = []
    for name, value in data.items():
        if isinstance(value, list):
            continue
        d = defs[f"{section}.{name}"]
        rows.append(
            f"<tr><th>{escape(name.replace('_', ' '))}</th>"
            f'<td class="num">{escape(fmt(value, d["unit"]))}</td>'
            f"<td>{escape(d['definition'])}</td></tr>"
        )
    return f'<table class="kpis">{"".join(rows)}</table>'


def _list_table(headers: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p class=empty>none</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _chart_data(report: KpiReport, series: Timeseries) -> dict[str, Any]:
    pts = series.points
    label = "%Y-%m-%d"
    if series.bucket == "hour":
        one_day = len({p.start.date() for p in pts}) <= 1
        label = "%H:00" if one_day else "%m-%d %H:00"
    return {
        "labels": [p.start.strftime(label) for p in pts],
        "contained": [p.contained for p in pts],
        "handoffs": [p.handoffs for p in pts],
        "answered": [p.answered for p in pts],
        "abandoned": [p.abandoned for p in pts],
        "asa_s": [p.asa_s for p in pts],
        "service_level": [
            None if p.service_level is None else round(p.service_level * 100, 1) for p in pts
        ],
        "service_level_target": round(report.service_level_target * 100, 1),
        "intents": {
            "labels": [i.intent for i in report.bot.top_intents],
            "values": [i.messages for i in report.bot.top_intents],
        },
        "reasons": {
            "labels": [r.name for r in report.bot.handoff_reasons],
            "values": [r.count for r in report.bot.handoff_reasons],
        },
    }


CHARTS_SCRIPT = """
const D = JSON.parse(document.getElementById("chart-data").textContent);
const stacked = {scales: {x: {stacked: true}, y: {stacked: true, beginAtZero: true}}};
new Chart(document.getElementById("c-conversations"), {type: "bar", options: stacked, data: {
  labels: D.labels, datasets: [
    {label: "contained by the bot", data: D.contained, backgroundColor: "#2e7d32"},
    {label: "handed off", data: D.handoffs, backgroundColor: "#f9a825"}]}});
new Chart(document.getElementById("c-queue"), {type: "bar", options: stacked, data: {
  labels: D.labels, datasets: [
    {label: "answered", data: D.answered, backgroundColor: "#1565c0"},
    {label: "abandoned", data: D.abandoned, backgroundColor: "#c62828"}]}});
new Chart(document.getElementById("c-service"), {type: "line", data: {labels: D.labels,
  datasets: [
    {label: "service level %", data: D.service_level, yAxisID: "pct", borderColor: "#1565c0",
     spanGaps: true},
    {label: "target %", data: D.labels.map(() => D.service_level_target), yAxisID: "pct",
     borderColor: "#9e9e9e", borderDash: [6, 4], pointRadius: 0},
    {label: "ASA (s)", data: D.asa_s, yAxisID: "sec", borderColor: "#6a1b9a", spanGaps: true}]},
  options: {scales: {pct: {position: "left", min: 0, max: 100},
                     sec: {position: "right", beginAtZero: true,
                           grid: {drawOnChartArea: false}}}}});
new Chart(document.getElementById("c-intents"), {type: "bar", data: {labels: D.intents.labels,
  datasets: [{label: "messages", data: D.intents.values, backgroundColor: "#00838f"}]},
  options: {indexAxis: "y", plugins: {legend: {display: false}}}});
new Chart(document.getElementById("c-reasons"), {type: "bar", data: {labels: D.reasons.labels,
  datasets: [{label: "tickets", data: D.reasons.values, backgroundColor: "#ef6c00"}]},
  options: {indexAxis: "y", plugins: {legend: {display: false}}}});
"""

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem}.sub{color:#666;margin-top:0}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1.5rem}
.card{border:1px solid #ddd;border-radius:8px;padding:1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}
th,td{border-bottom:1px solid #eee;padding:.3rem .5rem;text-align:left;vertical-align:top}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
table.kpis th{white-space:nowrap}table.kpis td:last-child{color:#555;font-size:12px}
.headline{display:flex;flex-wrap:wrap;gap:1rem}.headline div{border:1px solid #ddd;
border-radius:8px;padding:.6rem 1rem;min-width:9rem}.headline b{display:block;font-size:1.4rem}
.empty{color:#888}
"""


def _headline(report: KpiReport) -> str:
    b, qk, a = report.bot, report.queue, report.agents
    items = [
        ("Containment", fmt(b.containment_rate, RATIO)),
        ("Handoff rate", fmt(b.handoff_rate, RATIO)),
        (
            f"Service level ({report.service_level_s:g} s)",
            fmt(qk.service_level, RATIO),
        ),
        ("ASA", fmt(qk.asa_s, SECONDS)),
        ("Abandonment", fmt(qk.abandonment_rate, RATIO)),
        ("AHT", fmt(qk.aht_s, SECONDS)),
        ("Occupancy", fmt(a.occupancy, RATIO)),
        ("Bookings", fmt(b.bookings, "count")),
    ]
    return "".join(f"<div>{escape(k)}<b>{escape(v)}</b></div>" for k, v in items)


def render_html(report: KpiReport, series: Timeseries) -> str:
    p = report.period
    filters = ", ".join(f"{k}={v}" for k, v in report.filters.as_data().items() if v is not None)
    title = f"Contact-centre report {p.start:%Y-%m-%d} to {(p.end - timedelta(seconds=1)):%Y-%m-%d}"
    target = f"target {report.service_level_target * 100:g} % in {report.service_level_s:g} s"
    b = report.bot
    intents = [[i.intent, str(i.messages), str(i.conversations)] for i in b.top_intents]
    failing = [
        [f.intent, str(f.handoffs), str(f.conversations), fmt(f.failure_rate, RATIO)]
        for f in b.top_failing_intents
    ]
    agents = [
        [
            a.name,
            fmt(a.logged_in_s, SECONDS),
            str(a.handled),
            fmt(a.occupancy, RATIO),
            fmt(a.utilisation, RATIO),
            fmt(a.avg_wrap_up_s, SECONDS),
        ]
        for a in report.agents.per_agent
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{escape(title)}</h1>
<p class="sub">{escape(p.start.isoformat())} to {escape(p.end.isoformat())} (UTC, end exclusive);
figures as of {escape(report.as_of.isoformat())}; {escape(target)}{
        escape("; filters: " + filters) if filters else ""
    }; {escape(series.bucket)} buckets.</p>
<section class="headline">{_headline(report)}</section>
<h2>Trends</h2>
<div class="grid">
<div class="card"><h3>Conversations</h3><canvas id="c-conversations"></canvas></div>
<div class="card"><h3>Queue</h3><canvas id="c-queue"></canvas></div>
<div class="card"><h3>Service level and ASA</h3><canvas id="c-service"></canvas></div>
<div class="card"><h3>Top intents</h3><canvas id="c-intents"></canvas></div>
<div class="card"><h3>Handoff reasons</h3><canvas id="c-reasons"></canvas></div>
</div>
<h2>Self-service (bot)</h2>{_kpi_table(report, "bot")}
<h3>Top intents</h3>{_list_table(["intent", "messages", "conversations"], intents)}
<h3>Top failing intents</h3>{
        _list_table(["intent", "handoffs", "conversations", "failure rate"], failing)
    }
<h2>Queue</h2>{_kpi_table(report, "queue")}
<h2>Agents</h2>{_kpi_table(report, "agents")}
{_list_table(["agent", "logged in", "handled", "occupancy", "utilisation", "avg wrap-up"], agents)}
<script type="application/json" id="chart-data">{
        _json_for_script(_chart_data(report, series))
    }</script>
<script>{chart_js()}</script>
<script>{CHARTS_SCRIPT}</script>
</body></html>
"""
