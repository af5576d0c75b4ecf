"""The rolling 90-day partial indexes: built for the new cutoff, the old ones dropped, and used by queries."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd
import psycopg

from cryptobt_pipelines.defs.aggregates.maintenance import roll_recent_indexes_job
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse.indexes import roll_recent_indexes
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import refresh_rollups


def indexes(url):
    with psycopg.connect(url) as conn:
        return sorted(r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'market' AND indexname ~ '_recent_'"))


def plan(url, sql):
    with psycopg.connect(url) as conn:
        # Tiny test tables: ask whether the index can serve the query at all, not whether it is worth it here.
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET enable_bitmapscan = off")
        return "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql))


def load_two_years(url):
    hours = pd.date_range("2023-06-01", "2024-06-01", freq="6h", tz="UTC")
    bars = pd.DataFrame({"line": range(1, len(hours) + 1), "symbol": "BTC", "ts": hours, "open": 10.0,
                         "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1.0})
    load_batch(PriceBatch("t", "t", bars, bar_seconds=6 * 3600), url=url)
    refresh_rollups(url)


def test_a_roll_builds_the_new_window_and_drops_the_old_one(warehouse_url):
    load_two_years(warehouse_url)

    first = roll_recent_indexes(warehouse_url, now=datetime(2024, 5, 1, tzinfo=UTC))
    assert first.cutoff == datetime(2024, 2, 1, tzinfo=UTC)
    assert indexes(warehouse_url) == ["prices_2024_recent_20240201", "prices_daily_recent_20240201"]

    second = roll_recent_indexes(warehouse_url, now=datetime(2024, 5, 2, tzinfo=UTC))
    assert sorted(second.dropped) == ["prices_2024_recent_20240201", "prices_daily_recent_20240201"]
    assert indexes(warehouse_url) == ["prices_2024_recent_20240202", "prices_daily_recent_20240202"]
    assert roll_recent_indexes(warehouse_url, now=datetime(2024, 5, 2, tzinfo=UTC)).created == []


def test_queries_with_a_cutoff_inside_the_window_use_the_partial_indexes(warehouse_url):
    load_two_years(warehouse_url)
    roll_recent_indexes(warehouse_url, now=datetime(2024, 5, 1, tzinfo=UTC))

    raw = plan(warehouse_url, "SELECT crypto_id, close FROM market.prices WHERE ts >= '2024-04-01 00:00+00'")
    daily = plan(warehouse_url, "SELECT crypto_id, max(high) FROM market.prices_daily "
                                "WHERE bucket >= '2024-04-01 00:00+00' GROUP BY 1")
    assert "Index Only Scan using prices_2024_recent_20240201" in raw
    assert "Index Only Scan using prices_daily_recent_20240201" in daily


def test_the_roll_job_runs_in_dagster(warehouse_url):
    load_two_years(warehouse_url)
    result = roll_recent_indexes_job.execute_in_process(
        resources={"warehouse": WarehouseResource(database_url=warehouse_url)})
    assert result.success
    cutoff = (datetime.now(UTC) - timedelta(days=90)).strftime("%Y%m%d")
    assert f"prices_daily_recent_{cutoff}" in indexes(warehouse_url)
