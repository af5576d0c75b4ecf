"""Benchmark of the rollups: full build beside the incremental refresh after appending one hour.

    PYTHONPATH=. python bench/rollups.py [--cryptos 263] [--years 5] [--warmup 10] [--appends 20]

On one fresh warehouse filled with the full-scale synthetic set (263 cryptos × 5 years hourly): the daily and
weekly rollups built by a plain full `INSERT … SELECT … GROUP BY` (the rebuild the incremental path avoids;
median of 3), then built again through the refresh path, then refreshed after each of warm-up + N one-hour
appends (263 bars). An incremental refresh is timed as its caller sees it: the whole `refresh_rollups()` call, commit
included (the refresh's own figure, which stops before the commit, is beside it). Prints a table and writes
``bench/results/rollups.json``. Compare the figures of one run with each other.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
from common import FullScale, bench_arguments, full_scale_warehouse, machine, print_table, server_url, spread
from tqdm import tqdm

from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import rebuild_rollups, refresh_rollups

RESULTS = Path(__file__).parent / "results" / "rollups.json"
START = datetime(2019, 6, 1, tzinfo=UTC)


def main() -> None:
    parser = bench_arguments(__doc__, RESULTS)
    parser.add_argument("--warmup", type=int, default=10,
                        help="one-hour appends refreshed before timing (the refresh statements get prepared)")
    parser.add_argument("--appends", type=int, default=20, help="one-hour appends, each followed by a timed refresh")
    parser.add_argument("--rebuilds", type=int, default=3, help="full rebuilds to time")
    args = parser.parse_args()

    admin_url = server_url(args.home)
    info = machine(admin_url)
    with full_scale_warehouse(admin_url, f"bench_rollups_{os.getpid()}", args.cryptos, args.years, START) as warehouse:
        metrics, called = measure(warehouse, args.warmup, args.appends, args.rebuilds)
    print_table(metrics)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metrics": metrics, "incremental_samples_ms": [round(ms, 2) for ms in called],
                                       "machine": info,
                                       "run_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def measure(warehouse: FullScale, warmup: int, appends: int, rebuilds: int) -> tuple[list[dict], list[float]]:
    """Full rebuilds, then the refresh path over everything, then append + refresh; the metrics and the
    incremental samples (ms)."""
    url, symbols = warehouse.url, warehouse.symbols
    rebuilt = [rebuild_rollups(url) * 1000 for _ in tqdm(range(rebuilds), desc="full rebuilds", leave=False)]
    with psycopg.connect(url) as conn:
        conn.execute("TRUNCATE market.prices_daily, market.prices_weekly, market.rollup_heads")
    full = refresh_rollups(url)  # the load's invalidations: every bucket of every crypto
    # What autovacuum does soon after such a load (and would otherwise do during the appends below).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    rng = np.random.default_rng(5)
    called, inside = [], []
    for hour in tqdm(range(warmup + appends), desc="append + refresh", leave=False):
        load_batch(warehouse.append_hour(rng), url=url)
        started = time.perf_counter()
        report = refresh_rollups(url)
        seconds = time.perf_counter() - started
        assert report.days_refreshed == len(symbols) and report.ranges_pending == 0, report
        assert report.cryptos_appended == len(symbols), report  # every crypto took the append path
        if hour >= warmup:
            called.append(seconds * 1000)
            inside.append(report.seconds * 1000)

    median, rebuild = statistics.median(called), statistics.median(rebuilt)
    metrics = [
        {"name": "rows", "value": warehouse.rows, "unit": "rows"},
        {"name": "rollup_full_ms", "value": round(rebuild, 1), "unit": "ms", **spread(rebuilt, 1),
         "what": "TRUNCATE + INSERT ... SELECT ... GROUP BY of both rollups"},
        {"name": "rollup_full_refresh_ms", "value": round(full.seconds * 1000, 1), "unit": "ms",
         "days": full.days_refreshed, "weeks": full.weeks_refreshed, "what": "the refresh path over everything"},
        {"name": "rollup_incremental_ms", "value": round(median, 2), "unit": "ms", **spread(called),
         "warmup": warmup, "goal": 20,
         "what": "refresh_rollups() after a one-hour append, as its caller sees it (commit included)"},
        {"name": "rollup_incremental_before_commit_ms", "value": round(statistics.median(inside), 2), "unit": "ms",
         **spread(inside), "what": "the same refreshes' own report.seconds"},
        {"name": "rollup_incremental_speedup", "value": round(rebuild / median), "unit": "x", "goal": 500},
    ]
    return metrics, called


if __name__ == "__main__":
    main()
