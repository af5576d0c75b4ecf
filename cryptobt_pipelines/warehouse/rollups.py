"""Continuous aggregates on portable PostgreSQL: daily and weekly rollups refreshed from the invalidation log.

A refresh takes the pending ranges that meet its window off ``market.invalidations``, turns them into whole
buckets and re-aggregates only those (days from raw bars, weeks from days), all in one transaction
under an advisory lock: concurrent refreshes queue, and one that dies leaves rollups and log as they were.
Its cost follows the new data, not the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from cryptobt_pipelines.warehouse.database import query, transaction

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
    with transaction(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_KEY])
        spans = conn.execute(query("aggregates/consume_invalidations"), window).fetchall()
        arrays = {
            "crypto_ids": [s[0] for s in spans],
            "first_days": [s[1] for s in spans],
            "last_days": [s[2] for s in spans],
        }
        days = sum((last - first).days + 1 for _, first, last, _ in spans)
        weeks = 0
        if spans:
            conn.execute(query("aggregates/refresh_daily"), arrays)
            weeks = conn.execute(query("aggregates/refresh_weekly"), arrays).fetchone()[0]
        consumed = sum(s[3] for s in spans)
        refresh_id, pending = conn.execute(
            query("aggregates/record_refresh"),
            {**window, "ranges_consumed": consumed, "days_refreshed": days, "weeks_refreshed": weeks,
             "milliseconds": (time.perf_counter() - started) * 1000},
        ).fetchone()
    return RefreshReport(refresh_id, consumed, days, weeks, pending, time.perf_counter() - started)


def rebuild_rollups(url: str | None = None) -> float:
    """Both rollups from scratch in one pass each, under the refresh lock; returns seconds.

    For repairs and for measuring what the incremental refresh saves: pending ranges stay on the log.
    """
    started = time.perf_counter()
    with transaction(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_KEY])
        conn.execute("SET LOCAL jit = off")
        conn.execute("TRUNCATE market.prices_daily, market.prices_weekly")
        conn.execute(query("aggregates/rebuild_daily"))
        conn.execute(query("aggregates/rebuild_weekly"))
    return time.perf_counter() - started
