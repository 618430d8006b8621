"""``receptionist report --from YYYY-MM-DD --to YYYY-MM-DD``: write the period report
(HTML with charts, plus CSV). Wired into ``bot/cli.py`` with :func:`add_arguments` and
:func:`run`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from bot.analytics.scope import KpiFilters, Period, ScopeError, parse_day

if TYPE_CHECKING:
    from bot.config import Settings


def add_arguments(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``report`` to the ``receptionist`` sub-commands (``subparsers`` is the object
    returned by ``ArgumentParser.add_subparsers``)."""
    report: argparse.ArgumentParser = subparsers.add_parser(
        "report", help="contact-centre KPIs for a period: HTML with charts, plus CSV"
    )
    report.add_argument(
        "--from", dest="date_from", required=True, metavar="YYYY-MM-DD", help="first day (UTC)"
    )
    report.add_argument(
        "--to", dest="date_to", required=True, metavar="YYYY-MM-DD", help="last day, inclusive"
    )
    report.add_argument(
        "--out", type=Path, help="output directory (default: <data_dir>/reports/<from>_<to>)"
    )
    report.add_argument("--channel", help="only this channel (webchat, voice, …)")
    report.add_argument("--skill", help="only tickets of this skill and agents who have it")
    report.add_argument("--intent", help="only conversations with a message of this intent")
    report.add_argument("--agent", type=int, metavar="USER_ID", help="only this agent's work")
    return report


def run(
    args: argparse.Namespace,
    settings: Settings,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> int:
    """0 when the report was written, 2 for bad arguments, 1 when the database fails."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        first = parse_day(args.date_from, "--from")
        last = parse_day(args.date_to, "--to")
        period = Period.days(first, last)
    except ScopeError as exc:
        print(f"error: {exc}", file=err)
        return 2
    filters = KpiFilters(
        channel=args.channel, skill=args.skill, intent=args.intent, agent_id=args.agent
    )
    target: Path = args.out or settings.data_path / "reports" / f"{first}_{last}"
    return asyncio.run(_write(settings, period, filters, target, out, err))


async def _write(
    settings: Settings,
    period: Period,
    filters: KpiFilters,
    target: Path,
    out: IO[str],
    err: IO[str],
) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.analytics.report import build_report
    from bot.store.engine import DatabaseConfigError, create_engine, migrate

    try:
        engine = create_engine(settings.database_url)
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    try:
        await migrate(engine)
        written = await build_report(engine, period, filters, settings.analytics, target)
    except (SQLAlchemyError, OSError) as exc:
        print(f"error: the report could not be written: {exc}", file=err)
        return 1
    finally:
        await engine.dispose()
    print(f"report: {written.html}", file=out)
    print(f"kpis:   {written.kpis_csv}", file=out)
    print(f"series: {written.timeseries_csv}", file=out)
    return 0
