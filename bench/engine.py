"""Backtest engine benchmark: the engine beside vectorbt (when installed) on the same generated data.

    python bench/engine.py [--runs 3] [--no-vectorbt] [--nightly-only | --no-nightly] [--home DIR]

Workloads (ANCHORS.md): every catalog strategy at its defaults over 263 cryptos x 2,000 days; a 100-pair SMA grid
over the same days (26,300 backtests); SMA 20/50 over 263 cryptos x 5 years hourly. Each workload runs in its own
process per engine, so its peak memory and first call (compile or on-disk cache load) are its own: the figures are
the first call, then the median (min-max) of ``--runs`` warm calls, and the peak RSS the workload added over the
loaded data. Then the engine's cold start in a fresh process, without and with numba's on-disk cache.

Data: ``cryptobt_pipelines.sources.synthetic.generate_prices`` for the 263 coins of ``assets/cryptos.csv``, pivoted
to (bars x cryptos) arrays. Outages are forward-filled as flat bars so vectorbt, which has no notion of a missing
bar, sees the same bars as the engine; bars before a listing stay NaN. "Same numbers" compares final values and
trade counts of every crypto whose definitions coincide in both (dca and rsi have no like-for-like vectorbt setup).
Known difference: after an exact tie (fast == slow on the previous bar) vectorbt's crossed_above still fires, the
contract's strict crossover does not; flat stretches make such ties happen in ema_cross.

Then the nightly job end to end through Dagster: a fresh warehouse (``bench/common.py``) holding the daily set
(263 cryptos x 2,000 days), and in a fresh process (as a launched run would be) the ``backtest_results`` asset
materialized over all 263 crypto partitions in one run, on an instance whose run and event storage is
PostgreSQL beside it: ``nightly_wall_s`` is that run from start to end, ``nightly_engine_s`` the engine's own
time inside it (its first calls load the numba cache); the run's load/engine/write split; the same run again
warm with ``force``, and once more with nothing changed (every backtest skipped).
Prints a table and writes ``bench/results/engine.json``. Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = Path(__file__).parent / "results" / "engine.json"
DAILY_START = datetime(2019, 1, 1)
DAILY_DAYS = 2000

GRID = [(fast, slow) for fast in (5, 10, 15, 20, 25, 30, 35, 40, 45, 50) for slow in (60, 80, 100, 120, 140, 160, 180, 200, 220, 250)]
WORKLOADS = {
    "catalog, 263 x 2,000 days": "daily",
    "SMA grid, 100 pairs x 263 x 2,000 days": "daily",
    "SMA 20/50, 263 x 5 years hourly": "hourly",
}
VECTORBT_CATALOG = ("buy_and_hold", "sma_cross", "ema_cross", "bollinger_reversion", "donchian_breakout", "momentum")


# --- data ---------------------------------------------------------------------------------------------------------


def make_data(directory: Path) -> None:
    from cryptobt_pipelines.sources.synthetic import generate_prices

    symbols = pd.read_csv(ROOT / "assets" / "cryptos.csv")["symbol"].tolist()
    for name, start, end, bar_seconds in (
        ("daily", DAILY_START, DAILY_START + pd.Timedelta(days=DAILY_DAYS), 86400),
        ("hourly", datetime(2019, 1, 1), datetime(2024, 1, 1), 3600),
    ):
        bars = generate_prices(symbols, start, end, bar_seconds, seed=7).bars
        first = bars["ts"].min()
        n_bars = int((bars["ts"].max() - first).total_seconds() // bar_seconds) + 1
        rows = ((bars["ts"] - first).dt.total_seconds() // bar_seconds).to_numpy(np.int64)
        columns = pd.Index(symbols).get_indexer(bars["symbol"])
        arrays = {}
        for field in ("open", "high", "low", "close"):
            wide = np.full((n_bars, len(symbols)), np.nan)
            wide[rows, columns] = bars[field].to_numpy()
            arrays[field] = wide
        close = pd.DataFrame(arrays["close"]).ffill().to_numpy()
        gap = np.isnan(arrays["close"]) & ~np.isnan(close)
        for field in ("open", "high", "low"):
            arrays[field][gap] = close[gap]
        arrays["close"] = close
        np.savez(directory / f"{name}.npz", **arrays)
        print(f"data {name}: {n_bars} bars x {len(symbols)} cryptos, {len(bars):,} generated rows, "
              f"{int(gap.sum()):,} outage bars filled flat", flush=True)


def load(directory: Path, name: str) -> list[np.ndarray]:
    with np.load(directory / f"{name}.npz") as data:
        return [data[field] for field in ("open", "high", "low", "close")]


# --- the two engines ----------------------------------------------------------------------------------------------


def engine_workload(workload: str, prices: list[np.ndarray]):
    from cryptobt_pipelines.engine import load_catalog, run_backtests

    if workload.startswith("catalog"):
        results = {s.name: run_backtests(s.name, *prices) for s in load_catalog().strategies}
        return {name: (r.metrics["final_value"][:, 0], r.metrics["n_trades"][:, 0]) for name, r in results.items()}
    bar_seconds = 3600 if "hourly" in workload else 86400
    pairs = GRID if workload.startswith("SMA grid") else [(20, 50)]
    result = run_backtests("sma_cross", *prices, [dict(fast_window=f, slow_window=s) for f, s in pairs],
                           bar_seconds=bar_seconds)
    return {"sma_cross": (result.metrics["final_value"].T.ravel(), result.metrics["n_trades"].T.ravel())}


def vectorbt_signals(vbt, strategy: str, high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame):
    """Entries and exits as the engine defines them, computed the way a vectorbt user would."""
    if strategy == "buy_and_hold":
        entries = close.notna() & close.shift(1).isna()
        return entries, pd.DataFrame(False, index=close.index, columns=close.columns)
    if strategy in ("sma_cross", "ema_cross"):
        fast_window, slow_window = (20, 50) if strategy == "sma_cross" else (12, 26)
        fast = vbt.MA.run(close, fast_window, ewm=strategy == "ema_cross")
        slow = vbt.MA.run(close, slow_window, ewm=strategy == "ema_cross")
        return fast.ma_crossed_above(slow), fast.ma_crossed_below(slow)
    if strategy == "bollinger_reversion":
        mean, std = close.rolling(20).mean(), close.rolling(20).std(ddof=0)
        return close < mean - 2.0 * std, close > mean
    if strategy == "donchian_breakout":
        return close > high.rolling(20).max().shift(1), close < low.rolling(10).min().shift(1)
    if strategy == "momentum":
        change = close / close.shift(30) - 1
        return change > 0.0, change < 0.0
    raise ValueError(strategy)


def vectorbt_portfolio(vbt, open: pd.DataFrame, close: pd.DataFrame, entries, exits, freq: str):
    shift = lambda signals: signals.shift(1, fill_value=False).astype(bool)  # next-open fills  # noqa: E731
    portfolio = vbt.Portfolio.from_signals(
        close, shift(entries), shift(exits), init_cash=10000.0, fees=0.001, size=np.inf, size_type="amount",
        direction="longonly", price=open, freq=freq,
    )
    # The metrics the engine returns, so both sides do the same work.
    closed = portfolio.trades.closed
    for metric in (portfolio.total_return, portfolio.annualized_return, portfolio.sharpe_ratio,
                   portfolio.sortino_ratio, portfolio.max_drawdown, portfolio.calmar_ratio, closed.win_rate,
                   closed.profit_factor):
        metric()
    portfolio.position_mask().mean()
    return portfolio.final_value().to_numpy(), portfolio.trades.count().to_numpy()


def vectorbt_workload(workload: str, prices: list[np.ndarray]):
    import vectorbt as vbt

    hourly = "hourly" in workload
    index = pd.date_range("2019-01-01", periods=len(prices[0]), freq="h" if hourly else "D")
    open, high, low, close = (pd.DataFrame(a, index=index) for a in prices)
    freq = "1h" if hourly else "1D"
    if workload.startswith("catalog"):
        return {s: vectorbt_portfolio(vbt, open, close, *vectorbt_signals(vbt, s, high, low, close), freq)
                for s in VECTORBT_CATALOG}
    if not workload.startswith("SMA grid"):
        return {"sma_cross": vectorbt_portfolio(vbt, open, close, *vectorbt_signals(vbt, "sma_cross", high, low, close), freq)}
    fast = vbt.MA.run(close, [f for f, _ in GRID], short_name="fast")
    slow = vbt.MA.run(close, [s for _, s in GRID], short_name="slow")
    # Pair fast[i] with slow[i] column by column (MA.run lays columns out window-major, as np.tile does below).
    fast_ma, slow_ma = (pd.DataFrame(ma.ma.to_numpy(), index=index) for ma in (fast, slow))
    entries, exits = fast_ma.vbt.crossed_above(slow_ma), fast_ma.vbt.crossed_below(slow_ma)
    n_sets = len(GRID)
    tiled = lambda frame: pd.DataFrame(np.tile(frame.to_numpy(), n_sets), index=index, columns=entries.columns)  # noqa: E731
    return {"sma_cross": vectorbt_portfolio(vbt, tiled(open), tiled(close), entries, exits, freq)}


# --- one workload in its own process ------------------------------------------------------------------------------


def reset_peak_rss() -> float:
    """Start a new peak (Linux: clear_refs 5 resets VmHWM) and return the resident MB it starts from."""
    Path("/proc/self/clear_refs").write_text("5")
    return status_mb("VmRSS")


def status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def worker(workload: str, engine: str, directory: Path, runs: int, output: Path) -> None:
    prices = load(directory, WORKLOADS[workload])
    run = engine_workload if engine == "engine" else vectorbt_workload
    baseline = reset_peak_rss()  # after loading the data: the workload's own peak
    start = time.perf_counter()
    numbers = run(workload, prices)
    first = time.perf_counter() - start
    warm = []
    for _ in range(runs):
        start = time.perf_counter()
        run(workload, prices)
        warm.append(time.perf_counter() - start)
    np.savez(output, **{f"{name}.final": v[0] for name, v in numbers.items()},
             **{f"{name}.trades": v[1] for name, v in numbers.items()})
    print(json.dumps({"first": first, "warm": warm, "peak_mb": status_mb("VmHWM") - baseline}))


def in_process(args: list[str], env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1]


def same_numbers(engine_file: Path, vectorbt_file: Path) -> str:
    with np.load(engine_file) as ours, np.load(vectorbt_file) as theirs:
        names = sorted({key.split(".")[0] for key in theirs.files})
        worst, compared, trades_equal, trades_total = 0.0, 0, 0, 0
        for name in names:
            final, reference = ours[f"{name}.final"], theirs[f"{name}.final"]
            comparable = np.isfinite(reference)
            worst = max(worst, float(np.max(np.abs(final[comparable] / reference[comparable] - 1), initial=0.0)))
            compared += int(comparable.sum())
            trades_equal += int((ours[f"{name}.trades"][comparable] == theirs[f"{name}.trades"][comparable]).sum())
            trades_total += int(comparable.sum())
    return (f"{len(names)} strategies, {compared} backtests: final value max rel diff {worst:.1e}, "
            f"trade counts equal {trades_equal}/{trades_total}")


def cold_start() -> None:
    """The engine's first call in a fresh process: import, compile or cache load, one daily SMA run."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import numpy as np\n"
        "from cryptobt_pipelines.engine import run_backtests\n"
        "t1 = time.perf_counter()\n"
        "close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.03, (2000, 263)), axis=0))\n"
        "t2 = time.perf_counter()\n"
        "run_backtests('sma_cross', close, close, close, close)\n"
        "t3 = time.perf_counter()\n"
        "print(f'import {t1 - t0:.2f} s, first call {t3 - t2:.2f} s, total {t1 - t0 + t3 - t2:.2f} s')\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for label in ("no on-disk cache (compiles, then writes the cache)", "warm on-disk cache"):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
            print(f"  {label}: {done.stdout.strip() or done.stderr[-500:]}")


# --- the nightly job through Dagster -------------------------------------------------------------------------


def nightly_worker(url: str, storage_url: str, dagster_home: str, crypto_metadata: str) -> None:
    """In a fresh process: the asset over every crypto partition in one run, three times (first, forced, unchanged)."""
    started = time.perf_counter()
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from cryptobt_pipelines.defs.backtests.assets import BacktestConfig, backtest_results
    from cryptobt_pipelines.defs.resources import WarehouseResource
    from cryptobt_pipelines.warehouse.universe import read_universe

    imported = time.perf_counter() - started
    Path(dagster_home, "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {json.dumps(storage_url)}\ntelemetry:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = dagster_home
    symbols = read_universe()["symbol"].tolist()
    runs = {}
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cryptos", symbols)
        for label, force in (("first", False), ("warm", True), ("unchanged", False)):
            run_started = time.perf_counter()
            result = dg.materialize(
                [backtest_results], instance=instance, resources={"warehouse": WarehouseResource(database_url=url)},
                tags={ASSET_PARTITION_RANGE_START_TAG: symbols[0], ASSET_PARTITION_RANGE_END_TAG: symbols[-1]},
                run_config=dg.RunConfig(ops={"backtest_results": BacktestConfig(
                    force=force, **({"crypto_metadata_up_to": len(symbols)} if crypto_metadata == "True" else {}))}),
            )
            wall = time.perf_counter() - run_started
            events = result.asset_materializations_for_node("backtest_results")
            summary = {k: v.value for k, v in events[0].metadata.items()
                       if k in ("backtests_computed", "backtests_skipped", "results_written", "equity_points_written",
                                "trades_written", "bars_read", "load_ms", "engine_ms", "write_ms", "batch_ms")}
            runs[label] = {"wall_s": wall, "materializations": len(events), **summary}
    print(json.dumps({"import_s": imported, "runs": runs}))


def nightly(home: Path, metrics: list[dict], event_batch_size: int = 0, crypto_metadata: bool = False) -> None:
    from common import fresh_warehouse, server_url, universe_csv

    from cryptobt_pipelines.sources.synthetic import generate_prices
    from cryptobt_pipelines.warehouse.database import create_database, drop_database, with_database
    from cryptobt_pipelines.warehouse.load import load_batch
    from cryptobt_pipelines.warehouse.rollups import refresh_rollups

    admin_url = server_url(home)
    storage_db = "bench_engine_dagster"
    with tempfile.TemporaryDirectory() as scratch:
        csv, symbols = universe_csv(263, Path(scratch))
        with fresh_warehouse(admin_url, "bench_engine_nightly", csv) as url:
            batch = generate_prices(symbols, DAILY_START, DAILY_START + pd.Timedelta(days=DAILY_DAYS), 86400, seed=7)
            load_batch(batch, url=url)
            refresh_rollups(url)
            with __import__("psycopg").connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            print(f"\nnightly job through Dagster: {len(batch.bars):,} daily bars of {len(symbols)} cryptos", flush=True)
            drop_database(admin_url, storage_db)
            create_database(admin_url, storage_db)
            storage_url = with_database(admin_url, storage_db).replace("postgresql://", "postgresql+psycopg2://", 1)
            try:
                process_started = time.perf_counter()
                figures = json.loads(in_process(["--nightly-worker", url, storage_url, scratch, str(crypto_metadata)],
                                                {"PYTHONPATH": str(ROOT), "DAGSTER_EVENT_BATCH_SIZE": str(event_batch_size)}))
                process = time.perf_counter() - process_started
            finally:
                drop_database(admin_url, storage_db)
    first, warm, unchanged = (figures["runs"][k] for k in ("first", "warm", "unchanged"))
    for label, run in figures["runs"].items():
        print(f"  {label:9s} run {run['wall_s']:6.2f} s: read {run['load_ms']:6.0f} ms, engine {run['engine_ms']:6.0f} ms, "
              f"write {run['write_ms']:6.0f} ms, whole batch {run['batch_ms']:6.0f} ms, Dagster and metadata "
              f"{run['wall_s'] * 1000 - run['batch_ms']:6.0f} ms; {run['backtests_computed']} computed, "
              f"{run['backtests_skipped']} skipped, {run['materializations']} materializations")
    print(f"  process: {process:.2f} s in all (imports {figures['import_s']:.2f} s)")
    wall, engine = first["wall_s"], first["engine_ms"] / 1000
    metrics += [
        {"name": "nightly_wall_s", "value": round(wall, 3), "unit": "s", "cryptos": 263, "days": DAILY_DAYS,
         "dagster_event_batch_size": event_batch_size, "crypto_metadata": crypto_metadata,
         "what": "backtest_results over every crypto partition in one run, fresh process, fresh warehouse"},
        {"name": "nightly_engine_s", "value": round(engine, 3), "unit": "s",
         "what": "engine calls inside that run (first calls load the numba cache)"},
        {"name": "nightly_wall_over_engine", "value": round(wall / engine, 1), "unit": "x", "goal": 2},
        {"name": "nightly_batch_s", "value": round(first["batch_ms"] / 1000, 3), "unit": "s",
         "what": "the plain batch inside the run: skip check, read, engine, write"},
        {"name": "nightly_read_s", "value": round(first["load_ms"] / 1000, 3), "unit": "s",
         "bars": first["bars_read"]},
        {"name": "nightly_write_s", "value": round(first["write_ms"] / 1000, 3), "unit": "s",
         "results": first["results_written"], "equity_points": first["equity_points_written"],
         "trades": first["trades_written"]},
        {"name": "nightly_dagster_s", "value": round(wall - first["batch_ms"] / 1000, 3), "unit": "s",
         "what": "run start/end, 263 materialization events, leaderboard and charts"},
        {"name": "nightly_warm_wall_s", "value": round(warm["wall_s"], 3), "unit": "s",
         "engine_s": round(warm["engine_ms"] / 1000, 3), "what": "the same run again, forced, same process"},
        {"name": "nightly_unchanged_wall_s", "value": round(unchanged["wall_s"], 3), "unit": "s",
         "skipped": unchanged["backtests_skipped"], "what": "nothing changed: every backtest skipped"},
        {"name": "nightly_process_s", "value": round(process, 3), "unit": "s",
         "imports_s": round(figures["import_s"], 3), "what": "the fresh process with its three runs"},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-vectorbt", action="store_true")
    parser.add_argument("--nightly-only", action="store_true", help="only the nightly job through Dagster")
    parser.add_argument("--no-nightly", action="store_true", help="skip the nightly job through Dagster")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "cryptobt-bench-home",
                        help="embedded servers' folder (when CRYPTOBT_DATABASE_URL is unset)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--crypto-metadata", action="store_true",
                        help="the nightly run with per-partition metadata (BacktestConfig.crypto_metadata_up_to)")
    parser.add_argument("--event-batch-size", type=int, default=0,
                        help="DAGSTER_EVENT_BATCH_SIZE of the nightly run's process (0: Dagster's default, no batching)")
    parser.add_argument("--worker", nargs=4, metavar=("WORKLOAD", "ENGINE", "DATA_DIR", "OUTPUT"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--nightly-worker", nargs=4, metavar=("URL", "STORAGE_URL", "DAGSTER_HOME", "CRYPTO_METADATA"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        workload, engine, directory, output = args.worker
        worker(workload, engine, Path(directory), args.runs, Path(output))
        return
    if args.nightly_worker:
        nightly_worker(*args.nightly_worker)
        return
    metrics: list[dict] = []
    if not args.nightly_only:
        engines_beside_vectorbt(args, metrics)
    if not args.no_nightly:
        nightly(args.home, metrics, args.event_batch_size, args.crypto_metadata)
    write_results(args.output, metrics, args.home)


def write_results(output: Path, metrics: list[dict], home: Path) -> None:
    from common import machine, print_table, server_url

    print_table(metrics)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"metrics": metrics, "machine": machine(server_url(home)),
                                  "run_at": datetime.now().astimezone().isoformat(timespec="seconds")}, indent=2) + "\n")
    print(f"\nwrote {output}")


WORKLOAD_NAMES = {"catalog, 263 x 2,000 days": "catalog_daily", "SMA grid, 100 pairs x 263 x 2,000 days": "sma_grid_daily",
                  "SMA 20/50, 263 x 5 years hourly": "sma_hourly"}


def engines_beside_vectorbt(args, metrics: list[dict]) -> None:
    try:
        import vectorbt

        engines = ["engine"] if args.no_vectorbt else ["engine", "vectorbt"]
        print(f"vectorbt {vectorbt.__version__}" if len(engines) == 2 else "vectorbt skipped")
    except ImportError:
        engines = ["engine"]
        print("vectorbt not installed: engine only")
    import numba

    print(f"numba {numba.__version__}, numpy {np.__version__}, {os.cpu_count()} cpus, {args.runs} warm runs")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        make_data(directory)
        for workload in WORKLOADS:
            print(f"\n{workload}")
            medians = {}
            for engine in engines:
                output = directory / f"{engine}.npz"
                figures = json.loads(in_process(["--runs", str(args.runs), "--worker", workload, engine,
                                                 str(directory), str(output)], {"PYTHONPATH": str(ROOT)}))
                warm = figures["warm"]
                medians[engine] = statistics.median(warm)
                print(f"  {engine:9s} median {medians[engine]:7.3f} s (min {min(warm):.3f}, max {max(warm):.3f}); "
                      f"first call {figures['first']:.2f} s; peak +{figures['peak_mb']:.0f} MB")
            name = WORKLOAD_NAMES[workload]
            metrics.append({"name": f"{name}_engine_s", "value": round(medians["engine"], 4), "unit": "s"})
            if len(engines) == 2:
                same = same_numbers(directory / "engine.npz", directory / "vectorbt.npz")
                print(f"  speed-up {medians['vectorbt'] / medians['engine']:.1f}x; same numbers: {same}")
                metrics += [
                    {"name": f"{name}_vectorbt_s", "value": round(medians["vectorbt"], 4), "unit": "s"},
                    {"name": f"{name}_speedup", "value": round(medians["vectorbt"] / medians["engine"], 1),
                     "unit": "x", "same_numbers": same},
                ]
    print("\ncold start, fresh process (import + first call, 263 x 2,000 daily SMA):")
    cold_start()


if __name__ == "__main__":
    main()
