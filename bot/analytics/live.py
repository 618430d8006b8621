"""Live KPIs for the supervisor dashboard: one computation shared by every open dashboard.

A dashboard WebSocket asks :meth:`LiveKpis.snapshot` whenever the queue changes (the handoff
service publishes ``overview_changed`` to supervisors) and on a slow tick (new conversations
and bot turns publish nothing). Snapshots younger than ``min_interval_s`` are reused, so ten
supervisors watching a busy queue cost one query set per interval, not ten per event.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.analytics.kpis import compute_kpis, timeseries
from bot.analytics.scope import KpiFilters, Period
from bot.config import AnalyticsSettings
from bot.store.schema import utcnow


def today(now: datetime) -> Period:
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return Period(start, start + timedelta(days=1))


class LiveKpis:
    def __init__(
        self, engine: AsyncEngine, settings: AnalyticsSettings, min_interval_s: float = 2.0
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._min_interval_s = min_interval_s
        self._lock = asyncio.Lock()
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0

    async def snapshot(self) -> dict[str, Any]:
        """Today's KPIs (UTC day) and today's hourly series, as the dashboard shows them."""
        async with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < (
                self._min_interval_s
            ):
                return self._cached
            now = utcnow()
            period = today(now)
            report = await compute_kpis(self._engine, period, KpiFilters(), self._settings, now=now)
            series = await timeseries(
                self._engine, period, "hour", KpiFilters(), self._settings, now=now
            )
            self._cached = {
                "type": "kpis",
                "kpis": report.as_data(),
                "series": series.as_data(),
            }
            self._cached_at = time.monotonic()
            return self._cached
