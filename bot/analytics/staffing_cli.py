"""``receptionist staffing``: the agents a queue needs for its service level (Erlang C), from
given numbers or from the contacts observed in the database per interval of the day. Wired
into ``bot/cli.py`` with :func:`add_arguments` and :func:`run`; bad input exits with 2."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from bot.analytics.erlang import required_agents
from bot.analytics.staffing import (
    INTERVAL_CHOICES,
    StaffingTargets,
    business_timezone,
    format_requirement,
    format_table,
    observed_plan,
    write_csv,
)

if TYPE_CHECKING:
    from bot.config import Settings

BAD_INPUT = 2
CHANNELS = ("voice", "webchat", "api")


class _InputError(Exception):
    """A command-line value the calculation cannot use."""


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def add_arguments(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``staffing`` to the ``receptionist`` sub-commands (``subparsers`` is the object
    returned by ``ArgumentParser.add_subparsers``)."""
    p = subparsers.add_parser(
        "staffing",
        help="Erlang C: agents needed for a service level, from given numbers or observed contacts",
        description="Agents needed for a service level (Erlang C). Either give the numbers "
        "(--calls, --aht-s) or plan every interval of the day from the contacts in the "
        "database (--observed --from --to).",
    )
    given = p.add_argument_group("given numbers")
    given.add_argument("--calls", type=float, help="contacts arriving per interval")
    given.add_argument("--aht-s", type=float, help="average handle time, wrap-up included (s)")
    observed = p.add_argument_group("observed contacts")
    observed.add_argument(
        "--observed", action="store_true", help="measure arrivals and handle times per interval"
    )
    observed.add_argument("--from", dest="first_day", type=_iso_date, metavar="YYYY-MM-DD")
    observed.add_argument("--to", dest="last_day", type=_iso_date, metavar="YYYY-MM-DD")
    observed.add_argument("--csv", type=Path, metavar="FILE", help="also write every interval")
    observed.add_argument("--channel", choices=CHANNELS, help="only contacts of this channel")
    targets = p.add_argument_group("targets")
    targets.add_argument(
        "--interval-min", type=int, default=30, help="interval length in minutes (default 30)"
    )
    targets.add_argument(
        "--target-s",
        type=float,
        help="target answer time (default analytics.service_level_s)",
    )
    targets.add_argument(
        "--service-level",
        type=float,
        help="share to answer within the target, e.g. 0.8 (default analytics.service_level_target)",
    )
    targets.add_argument(
        "--shrinkage",
        type=float,
        default=0.0,
        help="share of paid time off the queue (breaks, training, absence), e.g. 0.3",
    )
    targets.add_argument("--max-occupancy", type=float, help="at most this busy, e.g. 0.85")
    targets.add_argument("--asa-s", type=float, help="average speed of answer at most (s)")
    return p


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print the requirement (0), or an error on standard error (2 for bad input)."""
    try:
        targets = _targets(args, settings)
        if args.observed:
            return _observed(args, settings, targets)
        return _given(args, targets)
    except (_InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return BAD_INPUT


def _targets(args: argparse.Namespace, settings: Settings) -> StaffingTargets:
    target_s = args.target_s if args.target_s is not None else settings.analytics.service_level_s
    level = (
        args.service_level
        if args.service_level is not None
        else settings.analytics.service_level_target
    )
    if target_s < 0:
        raise _InputError(f"--target-s cannot be negative ({target_s:g})")
    if not 0 < level < 1:
        raise _InputError(
            f"--service-level must be a fraction between 0 and 1, e.g. 0.8, not {level:g}"
        )
    if not 0 <= args.shrinkage < 1:
        raise _InputError(
            f"--shrinkage must be at least 0 and below 1, e.g. 0.3, not {args.shrinkage:g}"
        )
    if args.max_occupancy is not None and not 0 < args.max_occupancy <= 1:
        raise _InputError(
            f"--max-occupancy must be above 0 and at most 1, e.g. 0.85, not {args.max_occupancy:g}"
        )
    if args.asa_s is not None and args.asa_s <= 0:
        raise _InputError(f"--asa-s must be above 0, not {args.asa_s:g}")
    if args.interval_min <= 0:
        raise _InputError(f"--interval-min must be above 0, not {args.interval_min}")
    return StaffingTargets(target_s, level, args.shrinkage, args.max_occupancy, args.asa_s)


def _given(args: argparse.Namespace, targets: StaffingTargets) -> int:
    if args.first_day or args.last_day or args.csv or args.channel:
        raise _InputError("--from, --to, --csv and --channel need --observed")
    if args.calls is None or args.aht_s is None:
        raise _InputError(
            "give --calls and --aht-s, or --observed --from YYYY-MM-DD --to YYYY-MM-DD"
        )
    if args.calls < 0:
        raise _InputError(f"--calls cannot be negative ({args.calls:g})")
    if args.aht_s <= 0:
        raise _InputError(f"--aht-s must be above 0, not {args.aht_s:g}")
    requirement = required_agents(
        args.calls,
        args.interval_min * 60,
        args.aht_s,
        targets.target_answer_s,
        targets.service_level,
        shrinkage=targets.shrinkage,
        max_occupancy=targets.max_occupancy,
        asa_target_s=targets.asa_target_s,
    )
    print(format_requirement(requirement), end="")
    return 0


def _observed(args: argparse.Namespace, settings: Settings, targets: StaffingTargets) -> int:
    if args.calls is not None or args.aht_s is not None:
        raise _InputError("--calls and --aht-s are for given numbers; --observed measures them")
    if args.first_day is None or args.last_day is None:
        raise _InputError("--observed needs --from YYYY-MM-DD and --to YYYY-MM-DD")
    if args.last_day < args.first_day:
        raise _InputError(f"--to ({args.last_day}) is before --from ({args.first_day})")
    if args.interval_min not in INTERVAL_CHOICES:
        choices = ", ".join(map(str, INTERVAL_CHOICES))
        raise _InputError(f"--interval-min must be one of {choices} with --observed")

    from bot.store.engine import DatabaseConfigError, create_engine, migrate

    tz, tz_source = business_timezone(settings.rasa_project)

    async def go() -> int:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
            plan = await observed_plan(
                engine,
                args.first_day,
                args.last_day,
                tz=tz,
                timezone_source=tz_source,
                interval_min=args.interval_min,
                wrap_up_s=settings.handoff.wrap_up_s,
                default_aht_s=settings.handoff.default_aht_s,
                targets=targets,
                channel=args.channel,
            )
        finally:
            await engine.dispose()
        print(format_table(plan), end="")
        if args.csv is not None:
            with args.csv.open("w", encoding="utf-8", newline="") as out:
                write_csv(plan, out)
            print(f"wrote {len(plan.intervals)} intervals to {args.csv}")
        return 0

    try:
        return asyncio.run(go())
    except DatabaseConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
