"""Continuous aggregates: daily and weekly rollups of market.prices, refreshed from the invalidation log.

Portable PostgreSQL: a refresh takes the pending ranges that meet its window off ``market.invalidations``
and turns them into whole buckets. A crypto whose changes all lie after the latest bar its rollups hold
(``market.rollup_heads``: an append, the usual case) has its new bars merged into their day and week rows;
the buckets of the others are re-aggregated (days from raw bars, weeks from days). All in one transaction
under an advisory lock: concurrent refreshes queue, and one that dies leaves rollups and log as they were.
Its cost follows the new data, not the history.

TimescaleDB: the same two names are native continuous aggregates. A refresh calls
``refresh_continuous_aggregate`` over the pending span, then takes exactly the entries it covered off the log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from psycopg import sql as pgsql

from cryptobt_pipelines.warehouse.database import TIMESCALE, backend_of, connect, query, transaction

REFRESH_LOCK_KEY = 7_311_003
BUCKET_ORIGIN = datetime(2000, 1, 3, tzinfo=UTC)  # a Monday: TimescaleDB's default time_bucket origin
DAY, WEEK = timedelta(days=1), timedelta(days=7)
EVERY_ENTRY = 2**63 - 1


class RollupStateError(RuntimeError):
    """The rollups do not hold what market.rollup_heads says they do."""


@dataclass
class RefreshReport:
    refresh_id: int
    ranges_consumed: int
    days_refreshed: int
    weeks_refreshed: int
    ranges_pending: int
    seconds: float  # up to the record of the refresh, before the commit
    cryptos_appended: int = 0  # cryptos whose new bars were merged into their buckets, not re-aggregated


def bucket_start(moment: datetime, width: timedelta) -> datetime:
    return moment - (moment - BUCKET_ORIGIN) % width


def refresh_rollups(url: str | None = None, window_start: datetime | None = None,
                    window_end: datetime | None = None) -> RefreshReport:
    """Bring market.prices_daily and market.prices_weekly up to date for changes inside [start, end)."""
    started = time.perf_counter()
    window = {"window_start": window_start or "-infinity", "window_end": window_end or "infinity"}
    with transaction(url) as conn:
        if backend_of(conn) != TIMESCALE:
            conn.execute(query("aggregates/refresh_settings"))
            # Taken before the next statement takes its snapshot: it must see what the refresh before it did.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_KEY])
            *counts, appended, rows_missing, crypto_ids, first_days, last_days = conn.execute(
                _consuming("aggregates/consume_and_merge_appends"), {**window, "through_id": EVERY_ENTRY}
            ).fetchone()
            if rows_missing:
                raise RollupStateError(
                    f"{rows_missing} rollup rows that market.rollup_heads says hold a crypto's latest rolled-up bar "
                    "are missing (were the rollups edited by hand?): nothing was changed; rebuild them with "
                    "`cryptobt refresh --rebuild`")
            if crypto_ids:
                spans = {"crypto_ids": crypto_ids, "first_days": first_days, "last_days": last_days}
                conn.execute(query("aggregates/recompute_settings"))
                conn.execute(query("aggregates/refresh_daily"), spans)
                conn.execute(query("aggregates/refresh_weekly"), spans)
            return _record(conn, window, counts, started, appended)
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
                counts = conn.execute(_consuming("aggregates/consume_for_native"),
                                      {**window, "through_id": through_id or 0}).fetchone()
                return _record(conn, window, counts, started)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [REFRESH_LOCK_KEY])


@cache
def _consuming(name: str) -> str:
    """Statement ``name`` with the WITH list that takes ranges off the log (consume_invalidations.sql) in it."""
    return pgsql.SQL(query(name)).format(
        consume_invalidations=pgsql.SQL(query("aggregates/consume_invalidations"))).as_string()


def _record(conn, window: dict, counts: Sequence[int], started: float, appended: int = 0) -> RefreshReport:
    ranges, days, weeks = counts
    refresh_id, pending = conn.execute(
        query("aggregates/record_refresh"),
        {**window, "ranges_consumed": ranges, "days_refreshed": days, "weeks_refreshed": weeks,
         "milliseconds": (time.perf_counter() - started) * 1000},
    ).fetchone()
    return RefreshReport(refresh_id, ranges, days, weeks, pending, time.perf_counter() - started, appended)


def rebuild_rollups(url: str | None = None) -> float:
    """Both portable rollups from scratch in one pass each, under the refresh lock; returns seconds.

    For repairs and for measuring what the incremental refresh saves: pending ranges stay on the log. The
    heads go too (market.rollup_heads): the next refresh of each crypto re-aggregates its changed buckets.
    """
    started = time.perf_counter()
    with transaction(url) as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [REFRESH_LOCK_KEY])
        conn.execute("SET LOCAL jit = off")
        conn.execute("TRUNCATE market.prices_daily, market.prices_weekly, market.rollup_heads")
        conn.execute(query("aggregates/rebuild_daily"))
        conn.execute(query("aggregates/rebuild_weekly"))
    return time.perf_counter() - started
