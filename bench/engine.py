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

Then the nightly job end to end through Dagster, launched as the daemon launches it: a fresh warehouse
(``bench/common.py``) holding the daily set (263 cryptos x 2,000 days; on TimescaleDB its daily rollup's old
chunks compressed, as the compression policy leaves them in production), an instance configured by the project's
dagster.yaml on PostgreSQL beside it, a code server for the code location (long-lived in production: started
before the clock), then the ``nightly_backtests`` run over all 263 crypto partitions created (Dagster writes its
planned events), launched (the code server spawns a fresh run worker) and waited for. ``nightly_wall_s`` is that
run from its creation to RUN_SUCCESS, ``nightly_engine_s`` the engine's own time inside it (its first calls load
the numba cache, warm as deployed), each the median of the first run and two more with ``force`` (every result
recomputed and replaced); the breakdown of the first comes from the run's event log: start-up (launch, the
worker's imports, the code location), Dagster's event bookkeeping, our batch (read, engine, write) and what
follows it (leaderboard, charts). Then once more with nothing changed (every backtest skipped). Also the floor every run worker pays: a fresh Python importing Dagster and loading the code location.
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
import psycopg

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
    # The figures are the last JSON line (a code server the worker started may log after it).
    return next(line for line in reversed(done.stdout.splitlines()) if line.startswith("{"))


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


def cold_start() -> list[dict]:
    """The engine's first call in a fresh process: import, compile or cache load, one daily SMA run."""
    code = (
        "import json, time; t0 = time.perf_counter()\n"
        "import numpy as np\n"
        "from cryptobt_pipelines.engine import run_backtests\n"
        "t1 = time.perf_counter()\n"
        "close = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.03, (2000, 263)), axis=0))\n"
        "t2 = time.perf_counter()\n"
        "run_backtests('sma_cross', close, close, close, close)\n"
        "t3 = time.perf_counter()\n"
        "print(json.dumps({'import_s': t1 - t0, 'first_call_s': t3 - t2}))\n"
    )
    metrics = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for name, label in (("engine_cold_compile_s", "no on-disk cache (compiles, then writes the cache)"),
                            ("engine_cold_cached_s", "warm on-disk cache")):
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
            figures = json.loads(done.stdout.splitlines()[-1])
            total = figures["import_s"] + figures["first_call_s"]
            print(f"  {label}: import {figures['import_s']:.2f} s, first call {figures['first_call_s']:.2f} s, "
                  f"total {total:.2f} s")
            metrics.append({"name": name, "value": round(total, 3), "unit": "s",
                            "import_s": round(figures["import_s"], 3), "what": f"fresh process, {label}"})
    return metrics


# --- the nightly job through Dagster, launched as the daemon launches it --------------------------------------

NIGHTLY_RUNS = (("first", False), ("forced", True), ("forced again", True), ("unchanged", False))  # label, force
COMPUTING_RUNS = ("first", "forced", "forced again")  # every backtest computed and written
FIRST_PROCESS_MESSAGE = "Started process for run"  # the run worker's first event (DefaultRunLauncher)


def nightly_instance_yaml() -> str:
    """The project's dagster.yaml (its storage as deployed), launching runs at once: no daemon dequeues here."""
    import yaml

    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    return yaml.safe_dump(config)


def nightly_worker(url: str, storage_url: str, dagster_home: str, crypto_metadata: str) -> None:
    """In a fresh process, as the daemon does it: a code server for the code location (long-lived in production,
    so started before the clock), then per run: create it (Dagster writes its planned events), launch it
    (DefaultRunLauncher: the code server spawns a fresh run worker) and wait for it to end; the breakdown
    comes from the run's own event log."""
    os.environ.update(DAGSTER_HOME=dagster_home, CRYPTOBT_DAGSTER_STORAGE_URL=storage_url, CRYPTOBT_DATABASE_URL=url)
    import dagster as dg
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    from cryptobt_pipelines.warehouse.universe import read_universe

    symbols = read_universe()["symbol"].tolist()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("cryptos", symbols)
        started = time.perf_counter()
        target = ModuleTarget("cryptobt_pipelines.definitions", None, str(ROOT), "cryptobt_pipelines")
        with WorkspaceProcessContext(instance, target) as process_context:
            workspace = process_context.create_request_context()
            location = workspace.get_code_location("cryptobt_pipelines")
            repository = location.get_repository("__repository__")
            job = repository.get_full_job("nightly_backtests")
            code_server = time.perf_counter() - started
            runs = {label: nightly_run(instance, workspace, location, repository, job, symbols, force,
                                       crypto_metadata == "True") for label, force in NIGHTLY_RUNS}
    print(json.dumps({"code_server_s": code_server, "runs": runs}))


def nightly_run(instance, workspace, location, repository, job, symbols: list[str], force: bool,
                crypto_metadata: bool) -> dict:
    from dagster import DagsterEventType, DagsterRunStatus
    from dagster._cli.job import _create_run  # what `dagster job launch` and a schedule tick do
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    config = {"force": force, **({"crypto_metadata_up_to": len(symbols)} if crypto_metadata else {})}
    started = time.time()
    run = _create_run(instance=instance, code_location=location, remote_repo=repository, remote_job=job,
                      run_config={"ops": {"backtest_results": {"config": config}}},
                      tags={ASSET_PARTITION_RANGE_START_TAG: symbols[0], ASSET_PARTITION_RANGE_END_TAG: symbols[-1]},
                      op_selection=None, run_id=None)
    created = time.time()
    instance.submit_run(run.run_id, workspace)
    while not instance.get_run_by_id(run.run_id).is_finished:
        time.sleep(0.02)
    status = instance.get_run_by_id(run.run_id).status
    if status != DagsterRunStatus.SUCCESS:
        raise RuntimeError(f"the nightly run ended {status.value}")
    at, counts, metadata = {}, {}, {}
    for entry in instance.all_logs(run.run_id):
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        counts[kind.value] = counts.get(kind.value, 0) + 1
        if kind == DagsterEventType.ENGINE_EVENT and (entry.message or "").startswith(FIRST_PROCESS_MESSAGE):
            at.setdefault("worker_up", entry.timestamp)
        at.setdefault(kind.value, entry.timestamp)
        if kind == DagsterEventType.ASSET_MATERIALIZATION:
            metadata = {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()
                        if k in ("backtests_computed", "backtests_skipped", "bars_read", "results_written",
                                 "equity_points_written", "trades_written", "load_ms", "engine_ms", "write_ms",
                                 "batch_ms")}
    at["created"] = created
    seconds = {name: round(at[b] - at[a], 3) for name, (a, b) in {
        "launch_s": ("created", "worker_up"),  # the launch and the run worker's start: a new Python, Dagster imported
        "code_load_s": ("worker_up", DagsterEventType.RUN_START.value),  # the code location loaded, the plan made
        "setup_s": (DagsterEventType.RUN_START.value, DagsterEventType.STEP_START.value),  # executor, resources
        "step_s": (DagsterEventType.STEP_START.value, DagsterEventType.STEP_OUTPUT.value),  # the asset's body
        "materializations_s": (DagsterEventType.STEP_OUTPUT.value, DagsterEventType.STEP_SUCCESS.value),
        "finish_s": (DagsterEventType.STEP_SUCCESS.value, DagsterEventType.RUN_SUCCESS.value),
    }.items()}
    batch = metadata["batch_ms"] / 1000
    return {"wall_s": round(at[DagsterEventType.RUN_SUCCESS.value] - started, 3),
            "create_s": round(created - started, 3), **seconds,
            "batch_s": round(batch, 3), "after_batch_s": round(seconds["step_s"] - batch, 3),
            "planned_events": counts.get(DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value, 0),
            "materializations": counts.get(DagsterEventType.ASSET_MATERIALIZATION.value, 0), **metadata}


def fresh_process_seconds(code: str, env: dict, repeat: int = 3) -> float:
    """Median wall time of ``python -c code`` in a fresh process."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def nightly(home: Path, metrics: list[dict], event_batch_size: int | None = None, crypto_metadata: bool = False) -> None:
    from common import fresh_warehouse, server_url, universe_csv

    from cryptobt_pipelines.sources.synthetic import generate_prices
    from cryptobt_pipelines.warehouse.database import TIMESCALE, backend_of, create_database, drop_database, with_database
    from cryptobt_pipelines.warehouse.load import load_batch
    from cryptobt_pipelines.warehouse.rollups import refresh_rollups

    admin_url = server_url(home)
    storage_db = "bench_engine_dagster"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if event_batch_size is not None:
        env["DAGSTER_EVENT_BATCH_SIZE"] = str(event_batch_size)
    # The numba cache as deployed (the image and its volume keep it): warm, so the run loads the kernel, not compiles it.
    fresh_process_seconds("from cryptobt_pipelines.backtests import warm_engine_cache; warm_engine_cache()", env, repeat=1)
    floor_dagster = fresh_process_seconds("import dagster", env)
    floor_code = fresh_process_seconds("from cryptobt_pipelines.definitions import defs; defs()", env)
    with tempfile.TemporaryDirectory() as scratch:
        csv, symbols = universe_csv(263, Path(scratch))
        with fresh_warehouse(admin_url, "bench_engine_nightly", csv) as url:
            batch = generate_prices(symbols, DAILY_START, DAILY_START + pd.Timedelta(days=DAILY_DAYS), 86400, seed=7)
            load_batch(batch, url=url)
            refresh_rollups(url)
            with psycopg.connect(url, autocommit=True) as conn:
                # As in production on TimescaleDB: the compression policy (0005) has compressed the daily
                # rollup's chunks older than 180 days (all of them here: the set ends in 2024).
                compressed = conn.execute(
                    "SELECT count(compress_chunk(c, if_not_compressed => true)) "
                    "FROM show_chunks('market.prices_daily', older_than => INTERVAL '180 days') c").fetchone()[0] \
                    if backend_of(conn) == TIMESCALE else 0
                conn.execute("ANALYZE")
            print(f"\nnightly job through Dagster, launched as the daemon launches it: {len(batch.bars):,} daily bars "
                  f"of {len(symbols)} cryptos ({compressed} compressed daily rollup chunks)", flush=True)
            drop_database(admin_url, storage_db)
            create_database(admin_url, storage_db)
            storage_url = with_database(admin_url, storage_db).replace("postgresql://", "postgresql+psycopg2://", 1)
            Path(scratch, "dagster.yaml").write_text(nightly_instance_yaml())
            try:
                figures = json.loads(in_process(["--nightly-worker", url, storage_url, scratch, str(crypto_metadata)],
                                                env))
            finally:
                drop_database(admin_url, storage_db)
    for label, run in figures["runs"].items():
        print(f"  {label:12s} run {run['wall_s']:6.2f} s: create {run['create_s']:.2f} ({run['planned_events']} planned "
              f"events), launch {run['launch_s']:.2f}, code load {run['code_load_s']:.2f}, setup {run['setup_s']:.2f}, "
              f"batch {run['batch_s']:.2f} (read {run['load_ms'] / 1000:.2f}, engine {run['engine_ms'] / 1000:.2f}, "
              f"write {run['write_ms'] / 1000:.2f}), after the batch {run['after_batch_s']:.2f}, "
              f"{run['materializations']} materializations {run['materializations_s']:.2f}, finish {run['finish_s']:.2f}; "
              f"{run['backtests_computed']} computed, {run['backtests_skipped']} skipped")
    print(f"  code server start {figures['code_server_s']:.2f} s (long-lived: not in the runs); fresh process floor: "
          f"python + import dagster {floor_dagster:.2f} s, + the code location {floor_code:.2f} s")
    from common import spread

    walls = [figures["runs"][label]["wall_s"] for label in COMPUTING_RUNS]
    engines = [figures["runs"][label]["engine_ms"] / 1000 for label in COMPUTING_RUNS]
    wall, engine = statistics.median(walls), statistics.median(engines)
    first = figures["runs"]["first"]  # the breakdown below: the first run into a fresh warehouse
    start_up = first["launch_s"] + first["code_load_s"]
    bookkeeping = first["create_s"] + first["setup_s"] + first["materializations_s"] + first["finish_s"]
    metrics += [
        {"name": "nightly_wall_s", "value": wall, "unit": "s", **spread(walls, 3), "cryptos": 263, "days": DAILY_DAYS,
         "dagster_event_batch_size": env.get("DAGSTER_EVENT_BATCH_SIZE", "code default"), "crypto_metadata": crypto_metadata,
         "what": "create the run, launch it (fresh run worker), run it, to RUN_SUCCESS; the first run, then twice forced"},
        {"name": "nightly_engine_s", "value": round(engine, 3), "unit": "s", **spread(engines, 3),
         "what": "engine calls inside those runs (each run worker's first calls load the numba cache)"},
        {"name": "nightly_wall_over_engine", "value": round(wall / engine, 1), "unit": "x", "goal": 2},
        {"name": "nightly_start_up_s", "value": round(start_up, 3), "unit": "s", "launch_s": first["launch_s"],
         "code_load_s": first["code_load_s"], "what": "launch to RUN_START: run worker process, imports, code location"},
        {"name": "nightly_bookkeeping_s", "value": round(bookkeeping, 3), "unit": "s", "create_s": first["create_s"],
         "setup_s": first["setup_s"], "materializations_s": first["materializations_s"], "finish_s": first["finish_s"],
         "what": "Dagster's events: planned (at creation), materializations, run and step events"},
        {"name": "nightly_batch_s", "value": first["batch_s"], "unit": "s",
         "what": "skip check, read, engine, write"},
        {"name": "nightly_read_s", "value": round(first["load_ms"] / 1000, 3), "unit": "s", "bars": first["bars_read"],
         "compressed_daily_chunks": compressed},
        {"name": "nightly_write_s", "value": round(first["write_ms"] / 1000, 3), "unit": "s",
         "results": first["results_written"], "equity_points": first["equity_points_written"],
         "trades": first["trades_written"]},
        {"name": "nightly_after_batch_s", "value": first["after_batch_s"], "unit": "s",
         "what": "leaderboard and charts (matplotlib's import included)"},
        {"name": "nightly_floor_s", "value": round(floor_code, 3), "unit": "s", "import_dagster_s": round(floor_dagster, 3),
         "what": "a fresh python importing Dagster and loading the code location: every run worker's minimum"},
        {"name": "nightly_unchanged_wall_s", "value": figures["runs"]["unchanged"]["wall_s"], "unit": "s",
         "skipped": figures["runs"]["unchanged"]["backtests_skipped"], "what": "nothing changed: every backtest skipped"},
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
    parser.add_argument("--event-batch-size", type=int, default=None,
                        help="DAGSTER_EVENT_BATCH_SIZE of the nightly run (0: no batching; default: the code "
                             "location's, defs/execution.py)")
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


WORKLOAD_NAMES = {"catalog, 263 x 2,000 days": "catalog", "SMA grid, 100 pairs x 263 x 2,000 days": "grid",
                  "SMA 20/50, 263 x 5 years hourly": "universe_hourly"}


def engines_beside_vectorbt(args, metrics: list[dict]) -> None:
    try:
        import vectorbt

        engines = ["engine"] if args.no_vectorbt else ["engine", "vectorbt"]
        print(f"vectorbt {vectorbt.__version__}" if len(engines) == 2 else "vectorbt skipped")
    except ImportError:
        engines = ["engine"]
        print("vectorbt not installed: engine only")
    import numba
    from common import spread

    print(f"numba {numba.__version__}, numpy {np.__version__}, {os.cpu_count()} cpus, {args.runs} warm runs")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        make_data(directory)
        for workload in WORKLOADS:
            print(f"\n{workload}")
            name = WORKLOAD_NAMES[workload]
            medians = {}
            for engine in engines:
                output = directory / f"{engine}.npz"
                figures = json.loads(in_process(["--runs", str(args.runs), "--worker", workload, engine,
                                                 str(directory), str(output)], {"PYTHONPATH": str(ROOT)}))
                warm = figures["warm"]
                medians[engine] = statistics.median(warm)
                print(f"  {engine:9s} median {medians[engine]:7.3f} s (min {min(warm):.3f}, max {max(warm):.3f}); "
                      f"first call {figures['first']:.2f} s; peak +{figures['peak_mb']:.0f} MB")
                metrics += [
                    {"name": f"{engine}_{name}_s", "value": round(medians[engine], 4), "unit": "s", **spread(warm, 4),
                     "first_call_s": round(figures["first"], 3), "what": workload},
                    {"name": f"{engine}_{name}_peak_mb", "value": round(figures["peak_mb"], 1), "unit": "MB",
                     "what": "peak resident memory the workload added (VmHWM over the loaded data)"},
                ]
            if len(engines) == 2:
                same = same_numbers(directory / "engine.npz", directory / "vectorbt.npz")
                print(f"  speed-up {medians['vectorbt'] / medians['engine']:.1f}x; same numbers: {same}")
                metrics.append({"name": f"{name}_speedup", "value": round(medians["vectorbt"] / medians["engine"], 1),
                                "unit": "x", "same_numbers": same})
    print("\ncold start, fresh process (import + first call, 263 x 2,000 daily SMA):")
    metrics += cold_start()


if __name__ == "__main__":
    main()
