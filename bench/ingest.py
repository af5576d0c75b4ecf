"""Benchmark of the one load path: full-scale synthetic load against the bare COPY ceiling, then appends.

    PYTHONPATH=. python bench/ingest.py [--cryptos 263] [--years 5] [--appends 30]

Uses ``CRYPTOBT_DATABASE_URL`` when set, else an embedded server under a scratch home in /tmp; every run
loads into a fresh database that it drops at the end. Prints a table and writes ``bench/results/ingest.json``.
The machine is shared and noisy: compare the figures of one run with each other, not across runs.
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

from cryptobt_pipelines.sources.batch import PRICE_COLUMNS, PriceBatch
from cryptobt_pipelines.warehouse.database import close_pools
from cryptobt_pipelines.warehouse.load import BINARY_COPY_HEADER, BINARY_COPY_TRAILER, LoadReport, copy_rows, load_batch

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


def timed_load(batch: PriceBatch, url: str, label: str) -> LoadReport:
    with tqdm(total=len(batch.bars), desc=label, unit="row", unit_scale=True, leave=False) as bar:
        def progress(stage: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(stage)
            bar.update(done - bar.n)

        return load_batch(batch, url=url, progress=progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cryptos", type=int, default=263)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--appends", type=int, default=30, help="one-hour appends to time")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "cryptobt-bench-home")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    admin_url = server_url(args.home)
    info = machine(admin_url)
    with tempfile.TemporaryDirectory() as scratch:
        csv, symbols = universe_csv(args.cryptos, Path(scratch))
        metrics = run(admin_url, csv, symbols, args)

    print_table(metrics)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metrics": metrics, "machine": info,
                                       "run_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def run(admin_url: str, csv: Path, symbols: list[str], args: argparse.Namespace) -> list[dict]:
    end = START + timedelta(days=round(365.25 * args.years))
    started = time.perf_counter()
    batch = synthetic_prices(symbols, START, end)
    rows = len(batch.bars)
    print(f"{rows:,} bars of {len(symbols)} cryptos, {START:%Y-%m-%d} to {end:%Y-%m-%d}, "
          f"generated in {time.perf_counter() - started:.1f} s", flush=True)
    bars = batch.bars
    ids = {s: i for i, s in enumerate(symbols, start=1)}
    encoded = copy_rows(
        bars["symbol"].map(ids).to_numpy(np.int32),
        bars["ts"].to_numpy(dtype="datetime64[us]").view(np.int64),
        {c: bars[c].to_numpy() for c in PRICE_COLUMNS},
    ).tobytes()
    del bars

    # The machine is shared: two full loads into empty warehouses and three ceiling copies, interleaved,
    # and the best of each counts.
    pid = os.getpid()
    ceiling_seconds, load_seconds = [], []
    with fresh_warehouse(admin_url, f"bench_ingest_ceiling_{pid}", csv) as scratch_url:
        ceiling_seconds.append(ceiling_copy(scratch_url, encoded))
        with fresh_warehouse(admin_url, f"bench_ingest_spare_{pid}", csv) as spare_url:
            spare = timed_load(batch, spare_url, "full load 1/2")
            assert spare.rows_inserted == rows and spare.rows_rejected == 0, spare
            load_seconds.append(spare.seconds)
        ceiling_seconds.append(ceiling_copy(scratch_url, encoded))
        with fresh_warehouse(admin_url, f"bench_ingest_{pid}", csv) as url:
            full = timed_load(batch, url, "full load 2/2")
            assert full.rows_inserted == rows and full.rows_rejected == 0, full
            load_seconds.append(full.seconds)
            ceiling_seconds.append(ceiling_copy(scratch_url, encoded))
            del encoded
            figures = after_full_load(url, batch, symbols, end, args)
    ingest_rate = rows / min(load_seconds)
    ceiling_rate = rows / min(ceiling_seconds)
    return [
        {"name": "rows", "value": rows, "unit": "rows"},
        {"name": "ingest_rows_per_s", "value": round(ingest_rate), "unit": "rows/s",
         "seconds": [round(s, 2) for s in load_seconds]},
        {"name": "copy_unlogged_rows_per_s", "value": round(ceiling_rate), "unit": "rows/s",
         "seconds": [round(s, 2) for s in ceiling_seconds]},
        {"name": "ingest_share_of_ceiling", "value": round(ingest_rate / ceiling_rate, 3), "unit": "ratio",
         "goal": 0.5},
        *figures,
    ]


def after_full_load(url: str, batch: PriceBatch, symbols: list[str], end: datetime,
                    args: argparse.Namespace) -> list[dict]:
    """Re-load, correction and appends on the warehouse the full load filled."""
    rows = len(batch.bars)
    again = timed_load(batch, url, "re-load")
    assert again.rows_unchanged == rows and not again.changed_symbols, again

    fixed_batch, n_changed = corrected(batch, CORRECTED_SHARE)
    fixed = timed_load(fixed_batch, url, "correction")
    assert fixed.rows_updated == n_changed and fixed.rows_inserted == 0, fixed
    del fixed_batch

    rng = np.random.default_rng(3)
    hours = iter(range(2 * args.appends))

    def append(cold: bool) -> float:
        if cold:
            close_pools()  # what a new process pays: a new connection and a cold backend
        report = load_batch(one_hour(symbols, end + timedelta(hours=next(hours)), rng), url=url)
        assert report.rows_inserted == len(symbols) and len(report.changed_symbols) == len(symbols), report
        return report.seconds * 1000

    warm_ms = [append(cold=False) for _ in tqdm(range(args.appends), desc="appends", leave=False)]
    cold_ms = [append(cold=True) for _ in tqdm(range(args.appends), desc="appends, new connection", leave=False)]
    with psycopg.connect(url) as conn:
        logged = conn.execute("SELECT count(*) FROM market.invalidations").fetchone()[0]
    # One entry per crypto for the full load, per changed crypto for the correction, per crypto and append;
    # none for the re-load.
    assert logged == len(symbols) * (1 + 2 * args.appends) + len(fixed.changed_symbols), logged

    def spread(ms: list[float]) -> dict:
        return {"min": round(min(ms), 2), "max": round(max(ms), 2), "repeats": len(ms)}

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
