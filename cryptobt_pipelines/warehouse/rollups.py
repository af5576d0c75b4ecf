"""Continuous aggregates on portable PostgreSQL: daily and weekly rollups refreshed from the invalidation log.

A refresh takes the pending ranges that meet its window off ``market.invalidations``, turns them into whole
buckets, deletes and re-aggregates only those (days from raw bars, weeks from days), all in one transaction
under an advisory lock: concurrent refreshes queue, and one that dies leaves rollups and log as they were.
Its cost follows the new data, not the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from cryptobt_pipelines.warehouse.database import connect, query

REFRESH_LOCK_KEY = 7_311_003


@dataclass
class RefreshReport:
    refresh_id: int
    ranges_consumed: int
    days_refreshed: int
    weeks_refreshed: int
    ranges_pending: int
    seconds: float


def refresh_rollups(url: str | None = None, window_start: datetime | None = None,
                    window_end: datetime | None = None) -> RefreshReport:
    """Bring market.prices_daily and market.prices_weekly up to date for changes inside [start, end)."""
    started = time.perf_counter()
    window = {"window_start": window_start or "-infinity", "window_end": window_end or "infinity"}
    with connect(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_KEY])
        conn.execute(query("aggregates/create_refresh_ranges"))
        conn.execute(query("aggregates/consume_invalidations"), window)
        conn.execute(query("aggregates/refresh_daily"))
        conn.execute(query("aggregates/refresh_weekly"))
        milliseconds = (time.perf_counter() - started) * 1000
        refresh_id, consumed, days, weeks, pending = conn.execute(
            query("aggregates/record_refresh"), {**window, "milliseconds": milliseconds}
        ).fetchone()
    return RefreshReport(refresh_id, consumed, days, weeks, pending, time.perf_counter() - started)
