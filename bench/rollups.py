"""Benchmark of the rollups: full build beside the incremental refresh after appending one hour.

    PYTHONPATH=. python bench/rollups.py [--cryptos 263] [--years 5] [--warmup 10] [--appends 20]

On one fresh warehouse filled with the full-scale synthetic set (263 cryptos × 5 years hourly): the daily and
weekly rollups built by a plain full `INSERT … SELECT … GROUP BY` (the rebuild the incremental path avoids),
then built again through the refresh path, then refreshed after each of warm-up + N one-hour appends (263
bars). An incremental refresh is timed as its caller sees it: the whole `refresh_rollups()` call, commit
included (the refresh's own figure, which stops before the commit, is beside it). Prints a table and writes
``bench/results/rollups.json``. Compare the figures of one run with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from common import fresh_warehouse, machine, one_hour, print_table, server_url, synthetic_prices, universe_csv
from tqdm import tqdm

from cryptobt_pipelines.warehouse.indexes import roll_recent_indexes
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import rebuild_rollups, refresh_rollups

RESULTS = Path(__file__).parent / "results" / "rollups.json"
START = datetime(2019, 6, 1, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cryptos", type=int, default=263)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--warmup", type=int, default=10,
                        help="one-hour appends refreshed before timing (the refresh statements get prepared)")
    parser.add_argument("--appends", type=int, default=20, help="one-hour appends, each followed by a timed refresh")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "cryptobt-bench-home")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    admin_url = server_url(args.home)
    info = machine(admin_url)
    end = START + timedelta(days=round(365.25 * args.years))
    with tempfile.TemporaryDirectory() as scratch:
        csv, symbols = universe_csv(args.cryptos, Path(scratch))
        batch = synthetic_prices(symbols, START, end)
        rows = len(batch.bars)
        print(f"{rows:,} bars of {len(symbols)} cryptos, {START:%Y-%m-%d} to {end:%Y-%m-%d}", flush=True)
        with fresh_warehouse(admin_url, f"bench_rollups_{os.getpid()}", csv) as url:
            load_batch(batch, url=url)
            del batch
            # The warehouse as it stands in production a while after the load: statistics gathered and the
            # nightly recent-window indexes in place for data that ends now.
            roll_recent_indexes(url, now=end)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            rebuild = rebuild_rollups(url)
            with psycopg.connect(url) as conn:
                conn.execute("TRUNCATE market.prices_daily, market.prices_weekly, market.rollup_heads")
            full = refresh_rollups(url)  # the initial load's invalidations: every bucket of every crypto
            # What autovacuum does soon after such a load (and would otherwise do during the appends below).
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
            rng = np.random.default_rng(5)
            called, inside = [], []
            for hour in tqdm(range(args.warmup + args.appends), desc="append + refresh", leave=False):
                load_batch(one_hour(symbols, end + timedelta(hours=hour), rng), url=url)
                started = time.perf_counter()
                report = refresh_rollups(url)
                seconds = time.perf_counter() - started
                assert report.days_refreshed == len(symbols) and report.ranges_pending == 0, report
                assert report.cryptos_appended == len(symbols), report  # every crypto took the append path
                if hour >= args.warmup:
                    called.append(seconds * 1000)
                    inside.append(report.seconds * 1000)

    median = statistics.median(called)
    metrics = [
        {"name": "rows", "value": rows, "unit": "rows"},
        {"name": "rollup_full_ms", "value": round(rebuild * 1000, 1), "unit": "ms",
         "what": "TRUNCATE + INSERT ... SELECT ... GROUP BY of both rollups"},
        {"name": "rollup_full_refresh_ms", "value": round(full.seconds * 1000, 1), "unit": "ms",
         "days": full.days_refreshed, "weeks": full.weeks_refreshed, "what": "the refresh path over everything"},
        {"name": "rollup_incremental_ms", "value": round(median, 2), "unit": "ms", "min": round(min(called), 2),
         "max": round(max(called), 2), "repeats": len(called), "warmup": args.warmup, "goal": 20,
         "what": "refresh_rollups() after a one-hour append, as its caller sees it (commit included)"},
        {"name": "rollup_incremental_before_commit_ms", "value": round(statistics.median(inside), 2), "unit": "ms",
         "min": round(min(inside), 2), "max": round(max(inside), 2), "what": "the same refreshes' own report.seconds"},
        {"name": "rollup_incremental_speedup", "value": round(rebuild * 1000 / median), "unit": "x", "goal": 500},
    ]
    print_table(metrics)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metrics": metrics, "incremental_samples_ms": [round(ms, 2) for ms in called],
                                       "machine": info,
                                       "run_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
