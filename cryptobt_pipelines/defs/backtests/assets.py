"""Backtest results per crypto: every catalog strategy over the cryptos of a run, one engine call per strategy.

One partition per crypto (the dynamic ``cryptos`` partitions); a backfill or the nightly schedule covers many
cryptos in a single run (``BackfillPolicy.single_run``): their bars are read in one query, each strategy runs
once over all of them, and the results go in with COPY (``cryptobt_pipelines.backtests.run_batch``). Backtests
whose inputs did not change since they were stored are skipped. The asset returns MaterializeResult metadata,
never data: Dagster records one materialization per partition of the run, each with the run's summary and
leaderboard; in small runs also its crypto's own results, and for the best results a picture (both added per
partition with ``add_asset_metadata``).
"""


from datetime import date

import dagster as dg
import pandas as pd

from cryptobt_pipelines.backtests import BatchReport, PlannedRun, plan_runs, run_batch
from cryptobt_pipelines.defs.aggregates.assets import DAILY
from cryptobt_pipelines.defs.backtests.charts import equity_chart_png, markdown_image
from cryptobt_pipelines.defs.partitions import crypto_partitions
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.defs.run_tags import BACKTEST_RUN_TAGS
from cryptobt_pipelines.warehouse.database import query

SUMMARY_COLUMNS = ["strategy", "total_return", "cagr", "sharpe", "max_drawdown", "n_trades"]
LEADERBOARD_COLUMNS = ["symbol", *SUMMARY_COLUMNS, "win_rate", "exposure"]


class BacktestConfig(dg.Config):
    strategies: list[str] = []  # catalog names; empty: the whole catalog
    # Extra parameter sets per strategy as axes of a grid, e.g. {"sma_cross": {"fast_window": [10, 20],
    # "slow_window": [50, 100]}}; numeric parameters only (fill stays at its default).
    grids: dict[str, dict[str, list[float]]] = {}
    grid_curves: bool = False  # also store equity curves and trades of grid parameter sets
    start: str | None = None  # first day of the window (YYYY-MM-DD); None: each crypto's first bar
    end: str | None = None  # last day of the window, included; None: each crypto's last whole day
    interval: str = "1d"  # "1d" (market.prices_daily) or "1h" (market.prices: cryptos with hourly bars)
    force: bool = False  # recompute even backtests whose inputs did not change
    leaderboard_size: int = 10
    charts: int = 3  # equity and drawdown pictures of the best results (by Sharpe ratio)
    # Each partition's own results table and data version, in runs of at most this many cryptos. Over the
    # whole universe it would cost more than everything else: Dagster re-reads the partitions from its storage
    # for every partition given metadata, and stores the larger events (measured: a 263-crypto run took
    # 35 s with it, 12 s without). The views hold the same per-crypto figures.
    crypto_metadata_up_to: int = 25


def planned_runs(config: BacktestConfig) -> list[PlannedRun]:
    try:
        return plan_runs(config.strategies, config.grids, interval=config.interval, grid_curves=config.grid_curves,
                         start=date.fromisoformat(config.start) if config.start else None,
                         end=date.fromisoformat(config.end) if config.end else None)
    except ValueError as error:
        raise dg.Failure(description=f"bad backtest config: {error}") from None


@dg.asset(
    partitions_def=crypto_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[DAILY],
    group_name="backtests",
    kinds={"postgres"},
    description=(
        "Every catalog strategy at its defaults (plus configured grids) over each crypto's daily bars (hourly "
        "by config), in "
        "backtest.results / equity / trades (read through the backtest.* views). Unchanged inputs are skipped."
    ),
)
def backtest_results(context: dg.AssetExecutionContext, config: BacktestConfig,
                     warehouse: WarehouseResource) -> dg.MaterializeResult:
    plan = planned_runs(config)
    report = run_batch(warehouse.url, context.partition_keys, plan, dagster_run_id=context.run_id, force=config.force,
                       log=context.log.info)
    stored = _stored_results(warehouse, report, plan)
    leaderboard = stored.sort_values("sharpe", ascending=False).head(config.leaderboard_size)
    for crypto in report.cryptos if len(report.cryptos) <= config.crypto_metadata_up_to else []:
        mine = stored[stored["crypto_id"] == crypto.crypto_id].sort_values("strategy")
        context.add_asset_metadata(_crypto_metadata(report, crypto.crypto_id, crypto.data_version, mine),
                                   partition_key=crypto.symbol)
    for symbol, charts in _charts(warehouse, leaderboard.head(config.charts)).items():
        context.add_asset_metadata({"best_result_charts": dg.MetadataValue.md(charts)}, partition_key=symbol)
    write = report.write
    return dg.MaterializeResult(metadata={
        "cryptos": dg.MetadataValue.int(len(report.cryptos)),
        "backtests_computed": dg.MetadataValue.int(report.backtests_computed),
        "backtests_skipped": dg.MetadataValue.int(report.backtests_skipped),
        "cryptos_without_bars": dg.MetadataValue.int(len(report.without_bars)),
        "bars_read": dg.MetadataValue.int(report.bars_read),
        "results_written": dg.MetadataValue.int(write.results if write else 0),
        "equity_points_written": dg.MetadataValue.int(write.equity_points if write else 0),
        "trades_written": dg.MetadataValue.int(write.trades if write else 0),
        "load_ms": dg.MetadataValue.float(round(report.load_seconds * 1000, 1)),
        "engine_ms": dg.MetadataValue.float(round(report.engine_seconds * 1000, 1)),
        "write_ms": dg.MetadataValue.float(round(write.seconds * 1000, 1) if write else 0.0),
        "batch_ms": dg.MetadataValue.float(round(report.seconds * 1000, 1)),
        "leaderboard": _table(leaderboard, LEADERBOARD_COLUMNS),
    })


def _stored_results(warehouse: WarehouseResource, report: BatchReport, plan: list[PlannedRun]) -> pd.DataFrame:
    spec = plan[0].spec
    with warehouse.connect() as conn:
        cursor = conn.execute(query("backtests/batch_results"), {
            "crypto_ids": [c.crypto_id for c in report.cryptos],
            "strategy_ids": sorted({p.spec.strategy.id for p in plan}), "bar_seconds": spec.bar_seconds,
            "window_start": spec.start, "window_end": spec.end,
        })
        return pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])


def _crypto_metadata(report: BatchReport, crypto_id: int, data_version: int,
                     results: pd.DataFrame) -> dict[str, dg.MetadataValue]:
    if crypto_id in report.without_bars:
        status = "no bars in the window"
    else:
        status = f"{report.computed.get(crypto_id, 0)} computed, {report.current.get(crypto_id, 0)} current (skipped)"
    return {
        "backtests": dg.MetadataValue.text(status),
        "data_version": dg.MetadataValue.int(data_version),
        "results": _table(results, SUMMARY_COLUMNS),
    }


def _table(frame: pd.DataFrame, columns: list[str]) -> dg.MetadataValue:
    types = {"symbol": "string", "strategy": "string", "n_trades": "int"}
    schema = dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "float")) for c in columns])
    records = [
        dg.TableRecord({c: (int(row[c]) if types.get(c) == "int" else row[c] if c in types else round(float(row[c]), 4))
                        for c in columns})
        for row in frame[columns].to_dict("records")
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def _charts(warehouse: WarehouseResource, best: pd.DataFrame) -> dict[str, str]:
    """Markdown with the equity and drawdown picture of each of the best results, by crypto."""
    charts: dict[str, list[str]] = {}
    with warehouse.connect() as conn:
        for _, row in best.iterrows():
            cursor = conn.execute(query("backtests/equity_curve"), {"result_id": int(row["result_id"])})
            curve = pd.DataFrame(cursor.fetchall(), columns=["ts", "equity", "drawdown"])
            title = (f"{row['symbol']} · {row['strategy']} · Sharpe {row['sharpe']:.2f} · "
                     f"return {row['total_return']:+.0%} · max drawdown {row['max_drawdown']:.0%}")
            charts.setdefault(row["symbol"], []).append(
                f"**{row['strategy']}**\n\n" + markdown_image(equity_chart_png(curve, title), title))
    return {symbol: "\n\n".join(parts) for symbol, parts in charts.items()}


nightly_backtests_job = dg.define_asset_job(
    "nightly_backtests",
    selection=dg.AssetSelection.assets(backtest_results),
    description="Backtest every catalog strategy over the cryptos of the run (one run for many partitions).",
    tags=BACKTEST_RUN_TAGS,  # dagster.yaml: backtests never take every run slot
)
