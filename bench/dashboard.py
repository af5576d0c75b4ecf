"""Benchmark of the dashboard view: its refresh after an appended hour beside a naive view's full refresh.

    PYTHONPATH=. python bench/dashboard.py [--cryptos 263] [--years 5] [--appends 20]

On one fresh warehouse filled with the full-scale synthetic set (263 cryptos × 5 years hourly, rollups
refreshed, statistics and recent-window indexes in place):
* after each of N one-hour appends (263 bars): the rollup refresh (reported on its own), then ours (extremes
  from market.rollup_changes + concurrent refresh of the view), then the naive view: the same columns
  computed straight from the whole daily rollup and the raw bars (sql/dashboard/live_summary.sql), created
  beside ours and refreshed CONCURRENTLY in full;
* ours after a correction that lowers the all-time high of a few cryptos (they are rescanned);
* the dashboard query, ``SELECT * ... ORDER BY change_24h_percent DESC``, fetched in full, right after the
  refreshes and after a vacuum (as autovacuum leaves the view between hourly refreshes).
Ours is checked equal to the naive view's query at the end. Prints a table and the plans, writes
``bench/results/dashboard.json``. Compare the figures of one run with each other.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from common import FullScale, bench_arguments, full_scale_warehouse, machine, print_table, server_url, spread
from tqdm import tqdm

from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse.dashboard import compare_with_live, refresh_dashboard
from cryptobt_pipelines.warehouse.database import query, transaction
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import refresh_rollups

RESULTS = Path(__file__).parent / "results" / "dashboard.json"
START = datetime(2019, 6, 1, tzinfo=UTC)
NAIVE = "serving.crypto_dashboard_summary_naive"
DASHBOARD_QUERY = "SELECT * FROM serving.crypto_dashboard_summary ORDER BY change_24h_percent DESC"


def create_naive_view(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(f"CREATE MATERIALIZED VIEW {NAIVE} AS {query('dashboard/live_summary')}")
        conn.execute(f"CREATE UNIQUE INDEX ON {NAIVE} (crypto_id)")


def refresh_naive(url: str) -> float:
    """One full concurrent refresh of the naive view, with jit off as ours; milliseconds."""
    started = time.perf_counter()
    with transaction(url) as conn:  # a pooled connection, as ours
        conn.execute("SET LOCAL jit = off")
        conn.execute(f"REFRESH MATERIALIZED VIEW CONCURRENTLY {NAIVE}")
    return (time.perf_counter() - started) * 1000


def time_query(url: str, repeats: int) -> list[float]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DASHBOARD_QUERY).fetchall()  # parse and plan once, as a server-side app would
        ms = []
        for _ in range(repeats):
            started = time.perf_counter()
            rows = conn.execute(DASHBOARD_QUERY).fetchall()
            ms.append((time.perf_counter() - started) * 1000)
    assert rows
    return ms


def time_query_on_server(url: str, repeats: int) -> list[float]:
    """The server's own execution time of the query (EXPLAIN ANALYZE), without the client's decoding."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {DASHBOARD_QUERY}").fetchone()[0][0]["Execution Time"]
                for _ in range(repeats)]


def lower_all_time_highs(url: str, cryptos: int) -> PriceBatch:
    """Corrections of the bar that set the all-time high of ``cryptos`` cryptos: high down to max(open, close)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.symbol, p.ts, p.open, greatest(p.open, p.close), p.low, p.close, p.volume "
            "FROM serving.crypto_extremes e JOIN market.cryptos c USING (crypto_id) "
            "CROSS JOIN LATERAL (SELECT * FROM market.prices p WHERE p.crypto_id = e.crypto_id "
            "  AND p.ts >= e.ath_day AND p.ts < e.ath_day + interval '24 hours' ORDER BY p.high DESC LIMIT 1) p "
            "WHERE p.high > greatest(p.open, p.close) ORDER BY random() LIMIT %s", [cryptos]).fetchall()
    bars = pd.DataFrame(rows, columns=["symbol", "ts", "open", "high", "low", "close", "volume"])
    bars.insert(0, "line", range(1, len(bars) + 1))
    return PriceBatch("bench:correction", "synthetic", bars, bar_seconds=3600)


def plans(url: str) -> str:
    with psycopg.connect(url) as conn:
        conn.execute("SET jit = off")
        definition = conn.execute("SELECT pg_get_viewdef('serving.crypto_dashboard_summary')").fetchone()[0]
        out = []
        for title, sql in (("dashboard query", DASHBOARD_QUERY), ("the view's defining query", definition)):
            lines = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql.rstrip().rstrip(';')}")]
            out.append(f"--- EXPLAIN (ANALYZE, BUFFERS) {title}\n" + "\n".join(lines))
    return "\n\n".join(out)


def main() -> None:
    parser = bench_arguments(__doc__, RESULTS)
    parser.add_argument("--appends", type=int, default=20, help="one-hour appends, each followed by the refreshes")
    parser.add_argument("--corrections", type=int, default=5, help="rounds of all-time-high corrections")
    parser.add_argument("--query-repeats", type=int, default=500)
    args = parser.parse_args()

    admin_url = server_url(args.home)
    info = machine(admin_url)
    with full_scale_warehouse(admin_url, f"bench_dashboard_{os.getpid()}", args.cryptos, args.years, START) as warehouse:
        metrics, explained = measure(warehouse, args.appends, args.corrections, args.query_repeats)
    print_table(metrics)
    print()
    print(explained)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metrics": metrics, "plans": explained, "machine": info,
                                       "run_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def measure(warehouse: FullScale, appends: int, corrections: int, query_repeats: int) -> tuple[list[dict], str]:
    """Ours beside the naive view after each appended hour, after corrections, then the query; the metrics and
    the plans."""
    url, symbols, rows = warehouse.url, warehouse.symbols, warehouse.rows
    refresh_rollups(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE market.prices_daily")
    first = refresh_dashboard(url)  # the first refresh builds the extremes from the whole rollup
    create_naive_view(url)

    rng = np.random.default_rng(5)
    # Naive and ours alternate, one of each per appended hour: both see the same data and the same
    # load from whatever else runs on the machine.
    naive, rollup_ms, ours, changed = [], [], [], []
    for _ in tqdm(range(appends), desc="append + refreshes", leave=False):
        load_batch(warehouse.append_hour(rng), url=url)
        rollups = refresh_rollups(url)
        assert rollups.days_refreshed == len(symbols) and rollups.ranges_pending == 0, rollups
        report = refresh_dashboard(url)
        assert report.changes_applied == len(symbols) and report.cryptos_rescanned == 0, report
        naive.append(refresh_naive(url))
        rollup_ms.append(rollups.seconds * 1000)
        ours.append(report.seconds * 1000)
        changed.append(len(report.extremes_changed))
    corrected, rescanned = [], []
    for _ in tqdm(range(corrections), desc="corrections", leave=False):
        load_batch(lower_all_time_highs(url, 5), url=url)
        refresh_rollups(url)
        report = refresh_dashboard(url)
        corrected.append(report.seconds * 1000)
        rescanned.append(report.cryptos_rescanned)
    query_after_refreshes_ms = time_query(url, query_repeats)
    with psycopg.connect(url, autocommit=True) as conn:
        # What autovacuum leaves between hourly refreshes: each refresh rewrites every changed row.
        conn.execute("VACUUM ANALYZE serving.crypto_dashboard_summary")
    query_ms = time_query(url, query_repeats)
    query_server_ms = time_query_on_server(url, query_repeats)
    comparison = compare_with_live(url)  # the naive view's query, live
    assert not comparison.mismatched and comparison.compared == len(symbols), comparison
    explained = plans(url)
    with psycopg.connect(url) as conn:
        conn.execute(f"DROP MATERIALIZED VIEW {NAIVE}")  # the benchmarks after this one share the warehouse

    median_ours = statistics.median(ours)
    metrics = [
        {"name": "rows", "value": rows, "unit": "rows"},
        {"name": "dashboard_first_refresh_ms", "value": round(first.seconds * 1000, 1), "unit": "ms",
         "what": "extremes built from the whole rollup + view"},
        {"name": "dashboard_refresh_naive_ms", "value": round(statistics.median(naive), 2), "unit": "ms",
         **spread(naive), "what": "REFRESH CONCURRENTLY of the view computed from all daily + raw"},
        {"name": "dashboard_rollup_refresh_after_append_ms", "value": round(statistics.median(rollup_ms), 2),
         "unit": "ms", **spread(rollup_ms), "what": "the rollup refresh before ours (not in ours)"},
        {"name": "dashboard_refresh_after_append_ms", "value": round(median_ours, 2), "unit": "ms", **spread(ours),
         "extremes_changed_median": statistics.median(changed), "goal": "<= naive / 10"},
        {"name": "dashboard_refresh_speedup", "value": round(statistics.median(naive) / median_ours, 1), "unit": "x",
         "per_hour_min": round(min(n / o for n, o in zip(naive, ours, strict=True)), 1), "goal": 10},
        {"name": "dashboard_refresh_after_correction_ms", "value": round(statistics.median(corrected), 2),
         "unit": "ms", **spread(corrected), "cryptos_rescanned": max(rescanned),
         "what": "all-time highs of 5 cryptos corrected down"},
        {"name": "dashboard_query_ms", "value": round(statistics.median(query_ms), 3), "unit": "ms",
         **spread(query_ms), "what": "ORDER BY change_24h_percent DESC, all rows fetched, vacuumed", "goal": "~1"},
        {"name": "dashboard_query_server_ms", "value": round(statistics.median(query_server_ms), 3), "unit": "ms",
         **spread(query_server_ms), "what": "the same, the server's execution time (EXPLAIN ANALYZE)"},
        {"name": "dashboard_query_after_refreshes_ms", "value": round(statistics.median(query_after_refreshes_ms), 3),
         "unit": "ms", **spread(query_after_refreshes_ms),
         "what": f"the same right after {appends + corrections} back-to-back refreshes, before any vacuum"},
    ]
    return metrics, explained


if __name__ == "__main__":
    main()
