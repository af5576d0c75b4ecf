"""Benchmark of the backtest cache: entry sizes, round trips of the request path, one invalidation.

    PYTHONPATH=. python bench/cache.py [--cryptos 263] [--days 730] [--repeats 2000]

On a fresh warehouse of N cryptos × D days of daily synthetic bars and the Redis of CRYPTOBT_REDIS_URL (else the
embedded one): the engine's SMA 20/50 results per crypto as cache values (metrics only; with trades; with the
daily equity curve), their stored size and Redis's MEMORY USAGE; then the median and 99th percentile of
get-many / put-many of 5 entries, a get-many of every crypto, the data-version query a reader makes first, the
whole cached read (query + get), and a call while Redis is down (circuit breaker open). Last, 20 parameter
sets cached for every crypto, one appended day, and the cache asset's work: advance every version and delete
the superseded entries. Prints a table and writes ``bench/results/cache.json``; figures only, never asserts.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from common import fresh_warehouse, machine, print_table, server_url, universe_csv

from cryptobt_pipelines import settings
from cryptobt_pipelines.cache import BacktestCache, backtest_keys, encode_result, read_data_versions
from cryptobt_pipelines.engine.backtest import run_backtests
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.sources.synthetic import generate_prices
from cryptobt_pipelines.warehouse.database import transaction
from cryptobt_pipelines.warehouse.load import load_batch

RESULTS = Path(__file__).parent / "results" / "cache.json"
START = datetime(2023, 1, 2, tzinfo=UTC)
PARAMS = {"initial_investment": 10000.0, "fee": 0.001, "slippage": 0.0, "fill": "open", "fast_window": 20,
          "slow_window": 50}
WINDOW = (date(2023, 1, 2), date(2024, 12, 31))
BATCH = 5


def redis_url(home: Path) -> str:
    external = settings.external_redis_url()
    if external:
        return external
    from cryptobt_pipelines.warehouse.servers import EmbeddedRedis

    return EmbeddedRedis(home).ensure_running().url()


def results_per_crypto(batch: PriceBatch, symbols: list[str]) -> tuple[list[dict], list[dict], list[dict]]:
    """Per crypto: its metrics; metrics and trades; metrics and the daily equity curve (as an API would send)."""
    wide = {c: batch.bars.pivot(index="ts", columns="symbol", values=c).reindex(columns=symbols).to_numpy()
            for c in ("open", "high", "low", "close")}
    run = run_backtests("sma_cross", wide["open"], wide["high"], wide["low"], wide["close"], [PARAMS],
                        bar_seconds=86400, equity=True, trades=True)
    metrics = [{"symbol": s, "metrics": {name: float(v[i, 0]) for name, v in run.metrics.items()}}
               for i, s in enumerate(symbols)]
    trades = [{**m, "trades": [{name: t[name].item() for name in ("entry_bar", "exit_bar", "entry_price",
                                                                   "exit_price", "pnl", "return")}
                               for t in run.trades[run.trades["crypto"] == i]]}
              for i, m in enumerate(metrics)]
    equity = [{**m, "equity": np.round(run.equity[i, 0], 2)} for i, m in enumerate(metrics)]
    return metrics, trades, equity


def one_day(symbols: list[str], day: datetime, rng: np.random.Generator) -> PriceBatch:
    price = rng.uniform(1, 100, len(symbols))
    bars = pd.DataFrame({"line": np.arange(1, len(symbols) + 1), "symbol": symbols, "ts": pd.Timestamp(day),
                         "open": price, "high": price * 1.01, "low": price * 0.99, "close": price,
                         "volume": rng.uniform(0, 10, len(symbols))})
    return PriceBatch(f"bench:append:{day:%Y-%m-%d}", "synthetic", bars, bar_seconds=86400)


def timed_ms(call, repeats: int) -> list[float]:
    call()  # warm: script loaded, connection open
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def latency(name: str, times: list[float], **detail) -> dict:
    p99 = float(np.percentile(times, 99))
    return {"name": name, "value": round(statistics.median(times), 3), "unit": "ms", "p99": round(p99, 3),
            "repeats": len(times), **detail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cryptos", type=int, default=263)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "cryptobt-bench-home")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    admin_url = server_url(args.home)
    cache_url = redis_url(args.home)
    info = {**machine(admin_url),
            "redis": "external (CRYPTOBT_REDIS_URL)" if settings.external_redis_url() else "embedded (unix socket)"}
    with tempfile.TemporaryDirectory() as scratch:
        csv, symbols = universe_csv(args.cryptos, Path(scratch))
        batch = generate_prices(symbols, START, START + timedelta(days=args.days), bar_seconds=86400)
        with fresh_warehouse(admin_url, "bench_cache", csv) as url:
            load_batch(batch, url=url)
            cache = BacktestCache.for_warehouse(url, cache_url)
            try:
                metrics = run(args, url, cache, batch, symbols)
            finally:
                cache.clear()
                cache.close()

    print_table(metrics)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"metrics": metrics, "machine": info,
                                       "run_at": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


def run(args, url: str, cache: BacktestCache, batch: PriceBatch, symbols: list[str]) -> list[dict]:
    with transaction(url) as conn:
        ids = dict(conn.execute("SELECT symbol, crypto_id FROM market.cryptos WHERE symbol = ANY(%s)",
                                [symbols]).fetchall())
        versions = read_data_versions(conn, ids.values())
    keys = backtest_keys(versions, "sma_cross", PARAMS, *WINDOW, 86400)
    plain, with_trades, with_equity = results_per_crypto(batch, symbols)
    metrics = []

    # Sizes: what one entry costs.
    for name, values in (("metrics", plain), ("metrics + trades", with_trades), ("metrics + daily equity", with_equity)):
        as_json = [len(json.dumps(v, separators=(",", ":"), default=lambda a: a.tolist())) for v in values]
        stored = [len(encode_result(v)) for v in values]
        cache.put_many({keys[ids[v["symbol"]]]: v for v in values})
        memory = [cache.client.memory_usage(keys[ids[s]].redis_key(cache.prefix), samples=0) for s in symbols]
        metrics.append({"name": f"entry_bytes[{name}]", "value": int(statistics.median(stored)), "unit": "bytes",
                        "json_bytes": int(statistics.median(as_json)),
                        "redis_memory_usage": int(statistics.median(memory)), "what": "median over cryptos"})
    cache.put_many({keys[ids[v["symbol"]]]: v for v in plain})

    # The request path: 5 cryptos at once, as the batch API asks.
    five = [keys[ids[s]] for s in symbols[:BATCH]]
    absent = backtest_keys({ids[s]: versions[ids[s]] for s in symbols[:BATCH]}, "ema_cross", PARAMS, *WINDOW,
                           86400).values()
    five_ids = [ids[s] for s in symbols[:BATCH]]
    every = list(keys.values())
    by_key = {keys[ids[v["symbol"]]]: v for v in plain[:BATCH]}

    def read_versions():
        with transaction(url) as conn:
            read_data_versions(conn, five_ids)

    def cached_read():
        with transaction(url) as conn:
            current = read_data_versions(conn, five_ids)
        cache.get_many(backtest_keys(current, "sma_cross", PARAMS, *WINDOW, 86400).values())

    assert len(cache.get_many(five)) == BATCH
    metrics += [
        latency("get_many_5_hits_ms", timed_ms(lambda: cache.get_many(five), args.repeats), entries=BATCH),
        latency("get_many_5_misses_ms", timed_ms(lambda: cache.get_many(absent), args.repeats), entries=BATCH),
        latency("put_many_5_ms", timed_ms(lambda: cache.put_many(by_key), args.repeats), entries=BATCH),
        latency(f"get_many_{len(every)}_hits_ms", timed_ms(lambda: cache.get_many(every), args.repeats // 10),
                entries=len(every)),
        latency("data_versions_query_5_ms", timed_ms(read_versions, args.repeats), what="pooled connection"),
        latency("cached_read_5_ms", timed_ms(cached_read, args.repeats), what="versions query + keys + get_many"),
    ]

    # Redis down: the breaker answers without touching the network.
    logging.getLogger("cryptobt_pipelines.cache").setLevel(logging.ERROR)
    down = BacktestCache("redis://127.0.0.1:9/0", cache.namespace, retry_after=3600)
    metrics.append(latency("get_many_5_redis_down_ms", timed_ms(lambda: down.get_many(five), args.repeats),
                           what="circuit breaker open"))

    # Invalidation: 20 parameter sets cached per crypto, one appended day, then the cache asset's work.
    grid = [{**PARAMS, "fast_window": fast, "slow_window": 60} for fast in range(5, 45, 2)]
    for params in grid:
        cache.put_many({k: plain[0] for k in backtest_keys(versions, "sma_cross", params, *WINDOW, 86400).values()})
    before = cache.usage()
    last_day = batch.bars["ts"].max().to_pydatetime()
    load_batch(one_day(symbols, last_day + timedelta(days=1), np.random.default_rng(3)), url=url)
    with transaction(url) as conn:
        current = read_data_versions(conn)
    started = time.perf_counter()
    advance = cache.advance_versions(current)
    seconds = time.perf_counter() - started
    after = cache.usage()
    metrics += [
        {"name": "advance_versions_ms", "value": round(seconds * 1000, 1), "unit": "ms",
         "cryptos": len(current), "entries_deleted": advance.entries_deleted},
        {"name": "entry_memory_before_after", "value": before.entry_bytes, "unit": "bytes",
         "entries_before": before.entries, "after_bytes": after.entry_bytes, "entries_after": after.entries},
    ]
    return metrics


if __name__ == "__main__":
    main()
