"""Benchmark of the one load path: full-scale synthetic load against the bare COPY ceiling, then appends.

    PYTHONPATH=. python bench/ingest.py [--cryptos 263] [--years 5] [--appends 30]

Uses ``CRYPTOBT_DATABASE_URL`` when set, else an embedded server under a scratch home in /tmp; every run
loads into fresh databases that it drops at the end. Three full loads into empty warehouses and three bare
binary COPYs of the same rows into an UNLOGGED table without indexes, interleaved (median, min and max of
each); then, on the warehouse the first load filled, a re-load of the same rows, a correction of 1 % of them
and one-hour appends. Prints a table and writes ``bench/results/ingest.json``.
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
from common import (FullScale, bench_arguments, fresh_warehouse, full_scale_warehouse, load_with_progress, machine,
                    print_table, server_url, spread)
from tqdm import tqdm

from cryptobt_pipelines.sources.batch import PRICE_COLUMNS, PriceBatch
from cryptobt_pipelines.warehouse.database import close_pools
from cryptobt_pipelines.warehouse.load import BINARY_COPY_HEADER, BINARY_COPY_TRAILER, copy_rows, load_batch

RESULTS = Path(__file__).parent / "results" / "ingest.json"
START = datetime(2019, 6, 1, tzinfo=UTC)  # five years ending mid-2024: the appends stay inside one partition
CORRECTED_SHARE = 0.01


def corrected(batch: PriceBatch, share: float, seed: int = 11) -> tuple[PriceBatch, int]:
    """The same batch with ``share`` of its bars changed (volume up by half: the bar stays valid)."""
    bars = batch.bars.copy()
    changed = np.random.default_rng(seed).random(len(bars)) < share
    bars.loc[changed, "volume"] = bars.loc[changed, "volume"] * 1.5 + 1.0
    fixed = PriceBatch(batch.source + ":corrected", batch.format, bars, bar_seconds=batch.bar_seconds)
    return fixed, int(changed.sum())


def ceiling_copy(url: str, buffer: bytes) -> float:
    """Seconds for a bare binary COPY of the prebuilt rows into an UNLOGGED table without indexes."""
    columns = ", ".join(f"{c} double precision" for c in PRICE_COLUMNS)
    with psycopg.connect(url) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_ceiling")
        conn.execute(f"CREATE UNLOGGED TABLE bench_ceiling (crypto_id integer, ts timestamptz, {columns})")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor().copy("COPY bench_ceiling FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(BINARY_COPY_HEADER)
            copy.write(buffer)
            copy.write(BINARY_COPY_TRAILER)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE bench_ceiling")
    return seconds


def main() -> None:
    parser = bench_arguments(__doc__, RESULTS)
    parser.add_argument("--appends", type=int, default=30, help="one-hour appends to time")
    args = parser.parse_args()

    admin_url = server_url(args.home)
    info = machine(admin_url)
    with full_scale_warehouse(admin_url, f"bench_ingest_{os.getpid()}", args.cryptos, args.years, START,
                              keep_batch=True) as warehouse:
        metrics = measure(admin_url, warehouse, args.appends)

    print_table(metrics)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metrics": metrics, "machine": info,
                                       "run_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def measure(admin_url: str, warehouse: FullScale, appends: int) -> list[dict]:
    """The warehouse's own load is the first of three full loads; the other two go into scratch databases,
    between the ceiling's copies, so all six see the same machine."""
    batch, rows = warehouse.batch, warehouse.rows
    bars = batch.bars
    ids = {s: i for i, s in enumerate(warehouse.symbols, start=1)}
    encoded = copy_rows(
        bars["symbol"].map(ids).to_numpy(np.int32),
        bars["ts"].to_numpy(dtype="datetime64[us]").view(np.int64),
        {c: bars[c].to_numpy() for c in PRICE_COLUMNS},
    ).tobytes()
    del bars

    pid = os.getpid()
    load_seconds, ceiling_seconds = [warehouse.load.seconds], []
    with fresh_warehouse(admin_url, f"bench_ingest_ceiling_{pid}", warehouse.csv) as scratch_url:
        for spare in (1, 2):
            ceiling_seconds.append(ceiling_copy(scratch_url, encoded))
            with fresh_warehouse(admin_url, f"bench_ingest_spare_{pid}", warehouse.csv) as spare_url:
                report = load_with_progress(batch, spare_url, f"full load {spare + 1}/3")
                assert report.rows_inserted == rows and report.rows_rejected == 0, report
                load_seconds.append(report.seconds)
        ceiling_seconds.append(ceiling_copy(scratch_url, encoded))
    del encoded
    ingest_rate = rows / statistics.median(load_seconds)
    ceiling_rate = rows / statistics.median(ceiling_seconds)
    return [
        {"name": "rows", "value": rows, "unit": "rows"},
        {"name": "ingest_rows_per_s", "value": round(ingest_rate), "unit": "rows/s",
         "min": round(rows / max(load_seconds)), "max": round(rows / min(load_seconds)), "repeats": len(load_seconds),
         "seconds": [round(s, 2) for s in load_seconds], "what": "full load into an empty warehouse"},
        {"name": "copy_unlogged_rows_per_s", "value": round(ceiling_rate), "unit": "rows/s",
         "min": round(rows / max(ceiling_seconds)), "max": round(rows / min(ceiling_seconds)),
         "repeats": len(ceiling_seconds), "seconds": [round(s, 2) for s in ceiling_seconds],
         "what": "bare binary COPY of the same rows into an UNLOGGED table without indexes"},
        {"name": "ingest_share_of_ceiling", "value": round(ingest_rate / ceiling_rate, 3), "unit": "ratio",
         "goal": 0.5},
        *after_full_load(warehouse, appends),
    ]


def after_full_load(warehouse: FullScale, appends: int) -> list[dict]:
    """Re-load, correction and appends on the warehouse the full load filled."""
    url, batch, symbols, rows = warehouse.url, warehouse.batch, warehouse.symbols, warehouse.rows
    with psycopg.connect(url) as conn:
        logged_before = conn.execute("SELECT count(*) FROM market.invalidations").fetchone()[0]
    again = load_with_progress(batch, url, "re-load")
    assert again.rows_unchanged == rows and not again.changed_symbols, again

    fixed_batch, n_changed = corrected(batch, CORRECTED_SHARE)
    fixed = load_with_progress(fixed_batch, url, "correction")
    assert fixed.rows_updated == n_changed and fixed.rows_inserted == 0, fixed
    del fixed_batch

    rng = np.random.default_rng(3)

    def append(cold: bool) -> float:
        if cold:
            close_pools()  # what a new process pays: a new connection and a cold backend
        report = load_batch(warehouse.append_hour(rng), url=url)
        assert report.rows_inserted == len(symbols) and len(report.changed_symbols) == len(symbols), report
        return report.seconds * 1000

    warm_ms = [append(cold=False) for _ in tqdm(range(appends), desc="appends", leave=False)]
    cold_ms = [append(cold=True) for _ in tqdm(range(appends), desc="appends, new connection", leave=False)]
    with psycopg.connect(url) as conn:
        logged = conn.execute("SELECT count(*) FROM market.invalidations").fetchone()[0]
    # One entry per changed crypto for the correction, per crypto and append; none for the re-load.
    assert logged - logged_before == len(symbols) * 2 * appends + len(fixed.changed_symbols), logged

    return [
        {"name": "reload_unchanged_rows_per_s", "value": round(rows / again.seconds), "unit": "rows/s",
         "seconds": round(again.seconds, 2)},
        {"name": "correction_rows_per_s", "value": round(rows / fixed.seconds), "unit": "rows/s",
         "seconds": round(fixed.seconds, 2), "rows_changed": fixed.rows_updated},
        {"name": "append_one_hour_ms", "value": round(statistics.median(warm_ms), 2), "unit": "ms",
         **spread(warm_ms), "rows": len(symbols), "goal": 20},
        {"name": "append_one_hour_new_connection_ms", "value": round(statistics.median(cold_ms), 2), "unit": "ms",
         **spread(cold_ms), "rows": len(symbols)},
    ]


if __name__ == "__main__":
    main()
