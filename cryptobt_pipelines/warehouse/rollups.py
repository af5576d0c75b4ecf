"""Continuous aggregates: daily and weekly rollups of market.prices, refreshed from the invalidation log.

Portable PostgreSQL: a refresh takes the pending ranges that meet its window off ``market.invalidations``,
turns them into whole buckets and re-aggregates only those (days from raw bars, weeks from days), all in one
transaction under an advisory lock: concurrent refreshes queue, and one that dies leaves rollups and log as
they were. Its cost follows the new data, not the history.

TimescaleDB: the same two names are native continuous aggregates. A refresh calls
``refresh_continuous_aggregate`` over the pending span, then takes exactly the entries it covered off the log.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from psycopg import sql as pgsql

from cryptobt_pipelines.warehouse.database import TIMESCALE, backend_of, connect, query, transaction

REFRESH_LOCK_KEY = 7_311_003
BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: TimescaleDB's default time_bucket origin
DAY, WEEK = timedelta(days=1), timedelta(days=7)
EVERY_ENTRY = 2**63 - 1


@dataclass
class RefreshReport:
    refresh_id: int
    ranges_consumed: int
    days_refreshed: int
    weeks_refreshed: int
    ranges_pending: int
    seconds: float


def bucket_start(moment: datetime, width: timedelta) -> datetime:
    return moment - (moment - BUCKET_ORIGIN) % width


def refresh_rollups(url: str | None = None, window_start: datetime | None = None,
                    window_end: datetime | None = None) -> RefreshReport:
    """Bring market.prices_daily and market.prices_weekly up to date for changes inside [start, end)."""
    started = time.perf_counter()
    window = {"window_start": window_start or "-infinity", "window_end": window_end or "infinity"}
    with transaction(url) as conn:
        if backend_of(conn) != TIMESCALE:
            # Rollups and the log entries they consumed commit together: a commit lost in a crash loses both
            # and the next refresh redoes them, so there is no need to wait for the WAL flush.
            conn.execute("SET LOCAL synchronous_commit = off")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_KEY])
            spans = conn.execute(query("aggregates/consume_invalidations"),
                                 {**window, "through_id": EVERY_ENTRY}).fetchall()
            if spans:
                arrays = _span_arrays(spans)
                conn.execute(query("aggregates/refresh_daily"), arrays)
                conn.execute(query("aggregates/refresh_weekly"), arrays)
            return _record(conn, window, spans, started)
    return _refresh_native(url, window, started)


def _refresh_native(url: str | None, window: dict, started: float) -> RefreshReport:
    # CALL refresh_continuous_aggregate cannot run inside a transaction: an autocommit session holds the lock.
    with connect(url, autocommit=True) as conn:
        conn.execute("SET jit = off")  # JIT made refreshes over many chunks 17x slower (DESIGN.md pitfalls)
        conn.execute("SELECT pg_advisory_lock(%s)", [REFRESH_LOCK_KEY])
        try:
            through_id, first_ts, last_ts = conn.execute(query("aggregates/pending_window"), window).fetchone()
            if through_id is not None:
                for aggregate, width in (("market.prices_daily", DAY), ("market.prices_weekly", WEEK)):
                    conn.execute(pgsql.SQL(query("aggregates/refresh_native")).format(
                        aggregate=pgsql.Literal(aggregate),
                        window_start=pgsql.Literal(bucket_start(first_ts, width)),
                        window_end=pgsql.Literal(bucket_start(last_ts, width) + width),
                    ))
            with conn.transaction():
                spans = conn.execute(query("aggregates/consume_invalidations"),
                                     {**window, "through_id": through_id or 0}).fetchall()
                return _record(conn, window, spans, started)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK_KEY])


def _span_arrays(spans: list[tuple]) -> dict[str, list]:
    return {"crypto_ids": [s[0] for s in spans], "first_days": [s[1] for s in spans],
            "last_days": [s[2] for s in spans]}


def _record(conn, window: dict, spans: list[tuple], started: float) -> RefreshReport:
    days = sum((last - first).days + 1 for _, first, last, _ in spans)
    weeks = len({(crypto_id, bucket_start(first, WEEK) + WEEK * k)
                 for crypto_id, first, last, _ in spans
                 for k in range((bucket_start(last, WEEK) - bucket_start(first, WEEK)) // WEEK + 1)})
    consumed = sum(s[3] for s in spans)
    refresh_id, pending = conn.execute(
        query("aggregates/record_refresh"),
        {**window, "ranges_consumed": consumed, "days_refreshed": days, "weeks_refreshed": weeks,
         "milliseconds": (time.perf_counter() - started) * 1000},
    ).fetchone()
    return RefreshReport(refresh_id, consumed, days, weeks, pending, time.perf_counter() - started)


def rebuild_rollups(url: str | None = None) -> float:
    """Both portable rollups from scratch in one pass each, under the refresh lock; returns seconds.

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
