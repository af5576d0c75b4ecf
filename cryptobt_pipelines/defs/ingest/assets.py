"""Raw prices in: the crypto universe, price files (landing folder or paths) and the market-data APIs.

Every asset here writes through the one load path and returns MaterializeResult metadata, never data, so
single-run backfills over many partitions need no IO manager.
"""


from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pandas as pd

from cryptobt_pipelines.defs.partitions import crypto_partitions
from cryptobt_pipelines.defs.resources import (
    BinanceResource,
    CoinGeckoResource,
    LandingResource,
    WarehouseResource,
)
from cryptobt_pipelines.defs.run_tags import INGEST_RUN_TAGS
from cryptobt_pipelines.ingest import FileOutcome, ingest_file, settle_landing_file
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.sources.binance_api import SymbolNotListed
from cryptobt_pipelines.sources.coingecko_api import CoinNotFound
from cryptobt_pipelines.warehouse.database import query
from cryptobt_pipelines.warehouse.load import LoadReport, load_batch
from cryptobt_pipelines.warehouse.universe import sync_universe

CRYPTOS = dg.AssetKey(["market", "cryptos"])
PRICE_FILES = dg.AssetKey(["market", "prices"])
# Transient API failures (timeouts, 5xx after the client's own retries) get a few more tries a minute apart.
API_RETRY = dg.RetryPolicy(max_retries=3, delay=60, backoff=dg.Backoff.EXPONENTIAL)


def load_metadata(reports: list[LoadReport]) -> dict[str, dg.MetadataValue]:
    """What every price materialization tells the UI about its loads."""
    starts = [r.min_ts for r in reports if r.min_ts]
    ends = [r.max_ts for r in reports if r.max_ts]
    reasons: dict[str, int] = {}
    for report in reports:
        for rule, count in report.reject_reasons.items():
            reasons[rule] = reasons.get(rule, 0) + count
    changed = sorted({s for r in reports for s in r.changed_symbols})
    return {
        "load_ids": dg.MetadataValue.json([r.load_id for r in reports]),
        "rows_read": dg.MetadataValue.int(sum(r.rows_read for r in reports)),
        "rows_loaded": dg.MetadataValue.int(sum(r.rows_loaded for r in reports)),
        "rows_inserted": dg.MetadataValue.int(sum(r.rows_inserted for r in reports)),
        "rows_updated": dg.MetadataValue.int(sum(r.rows_updated for r in reports)),
        "rows_unchanged": dg.MetadataValue.int(sum(r.rows_unchanged for r in reports)),
        "rows_refused": dg.MetadataValue.int(sum(r.rows_rejected for r in reports)),
        "refused_by_rule": dg.MetadataValue.json(reasons),
        "cryptos_touched": dg.MetadataValue.int(len(changed)),
        "cryptos": dg.MetadataValue.text(", ".join(changed[:50]) + (" …" if len(changed) > 50 else "")),
        "changed_from": dg.MetadataValue.text(min(starts).isoformat() if starts else "-"),
        "changed_to": dg.MetadataValue.text(max(ends).isoformat() if ends else "-"),
        "load_seconds": dg.MetadataValue.float(round(sum(r.seconds for r in reports), 3)),
    }


@dg.asset(
    key=CRYPTOS,
    group_name="ingest",
    kinds={"postgres"},
    description="The crypto universe (assets/cryptos.csv) in market.cryptos, one dynamic partition per crypto.",
)
def cryptos(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    sync = sync_universe(warehouse.url)
    wanted = set(sync.symbols)
    existing = set(context.instance.get_dynamic_partitions(crypto_partitions.name))
    added = sorted(wanted - existing)
    removed = sorted(existing - wanted)
    if added:
        context.instance.add_dynamic_partitions(crypto_partitions.name, added)
    for key in removed:
        context.instance.delete_dynamic_partition(crypto_partitions.name, key)
    context.log.info(f"universe: {len(wanted)} cryptos, partitions +{len(added)} -{len(removed)}")
    return dg.MaterializeResult(
        metadata={
            "cryptos": dg.MetadataValue.int(len(wanted)),
            "rows_added": dg.MetadataValue.int(sync.added),
            "rows_changed": dg.MetadataValue.int(sync.changed),
            "rows_retired": dg.MetadataValue.int(sync.retired),
            "partitions_added": dg.MetadataValue.int(len(added)),
            "partitions_removed": dg.MetadataValue.int(len(removed)),
        }
    )


class PriceFilesConfig(dg.Config):
    paths: list[str] = []
    symbol: str | None = None
    format: str | None = None


@dg.asset(
    key=PRICE_FILES,
    deps=[CRYPTOS],
    group_name="ingest",
    kinds={"postgres"},
    description=(
        "Raw OHLCV bars in market.prices. Materialized from price files: the landing-folder sensor's runs, or "
        "paths given in the run config. Refused rows land in market.rejected_prices."
    ),
)
def prices(
    context: dg.AssetExecutionContext,
    config: PriceFilesConfig,
    warehouse: WarehouseResource,
    landing: LandingResource,
) -> dg.MaterializeResult:
    outcomes: list[FileOutcome] = []
    for raw_path in config.paths:
        path = Path(raw_path)
        if not path.exists():
            # A retried run finds the files its first attempt already loaded and moved aside.
            context.log.warning(f"{path}: no longer there (already processed?)")
            continue
        outcome = ingest_file(path, url=warehouse.url, symbol=config.symbol, format=config.format,
                              run_id=context.run_id)
        if path.resolve().parent == landing.folder.resolve():
            settle_landing_file(outcome, landing.folder)
        if outcome.ok:
            r = outcome.report
            context.log.info(f"{path.name}: {r.rows_loaded} rows loaded, {r.rows_rejected} refused, "
                             f"{r.rows_inserted} new, {r.rows_updated} replaced")
        else:
            context.log.error(f"{path.name}: {outcome.error}")
        outcomes.append(outcome)

    failed = [o for o in outcomes if not o.ok]
    reports = [o.report for o in outcomes if o.ok]
    if failed and not reports:
        raise dg.Failure(
            description="no file could be read: " + "; ".join(o.error for o in failed),
            metadata={"files_failed": dg.MetadataValue.json({o.path.name: o.error for o in failed})},
        )
    per_file = pd.DataFrame(
        [
            {"file": o.path.name, "loaded": o.report.rows_loaded if o.ok else 0,
             "refused": o.report.rows_rejected if o.ok else 0, "error": o.error or ""}
            for o in outcomes
        ]
    )
    return dg.MaterializeResult(
        metadata={
            **load_metadata(reports),
            "files_loaded": dg.MetadataValue.int(len(reports)),
            "files_failed": dg.MetadataValue.int(len(failed)),
            "files": dg.MetadataValue.md(per_file.to_markdown(index=False) if len(per_file) else "no files"),
        }
    )


def _universe(warehouse: WarehouseResource) -> pd.DataFrame:
    with warehouse.connect() as conn:
        rows = conn.execute(query("ingest/universe_symbols")).fetchall()
    return pd.DataFrame(rows, columns=["symbol", "coingecko_id"])


def _combined(batches: list[PriceBatch], source: str, format: str, bar_seconds: int) -> PriceBatch:
    """Many API answers as one batch, so one run is one transaction; lines number the combined rows."""
    bars = pd.concat([b.bars for b in batches], ignore_index=True) if batches else None
    rejects = pd.concat([b.rejects for b in batches], ignore_index=True) if batches else None
    if bars is None:
        bars = pd.DataFrame({c: [] for c in ["line", "symbol", "ts", "open", "high", "low", "close", "volume"]})
    bars["line"] = range(1, len(bars) + 1)
    batch = PriceBatch(source=source, format=format, bars=bars, bar_seconds=bar_seconds)
    if rejects is not None and len(rejects):
        batch.rejects = rejects.assign(line=range(len(bars) + 1, len(bars) + 1 + len(rejects)))
    return batch


def _window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    window = context.partition_time_window
    return window.start.astimezone(UTC), window.end.astimezone(UTC)


class BinanceKlinesConfig(dg.Config):
    symbols: list[str] = []  # empty: every crypto of the universe that Binance lists against USDT
    interval: str = "1h"


@dg.asset(
    deps=[CRYPTOS],
    group_name="ingest",
    kinds={"api", "postgres"},
    partitions_def=dg.DailyPartitionsDefinition(start_date="2017-08-17"),
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=API_RETRY,
    description="Hourly Binance spot klines (USDT pairs) into market.prices; a backfill over many days is one run.",
)
def binance_klines(
    context: dg.AssetExecutionContext, config: BinanceKlinesConfig, warehouse: WarehouseResource,
    binance: BinanceResource,
) -> dg.MaterializeResult:
    start, end = _window(context)
    symbols = config.symbols or _universe(warehouse)["symbol"].tolist()
    client = binance.client()
    batches, not_listed = [], []
    for symbol in symbols:
        try:
            batches.append(client.fetch_klines(symbol, start, end, interval=config.interval))
        except SymbolNotListed:
            not_listed.append(symbol)
    bar_seconds = batches[0].bar_seconds if batches else 3600
    batch = _combined(batches, f"binance:{config.interval}:{start:%Y-%m-%d}..{end:%Y-%m-%d}", "binance_api",
                      bar_seconds)
    report = load_batch(batch, url=warehouse.url, run_id=context.run_id)
    context.log.info(f"binance {start:%Y-%m-%d}..{end:%Y-%m-%d}: {report.rows_loaded} rows, "
                     f"{len(not_listed)} symbols not listed")
    return dg.MaterializeResult(
        metadata={**load_metadata([report]), "symbols_not_listed": dg.MetadataValue.int(len(not_listed))}
    )


class CoinGeckoConfig(dg.Config):
    coin_ids: list[str] = []  # empty: every crypto of the universe with a CoinGecko id


@dg.asset(
    deps=[CRYPTOS],
    group_name="ingest",
    kinds={"api", "postgres"},
    partitions_def=dg.DailyPartitionsDefinition(start_date="2013-04-28"),
    backfill_policy=dg.BackfillPolicy.single_run(),
    retry_policy=API_RETRY,
    description=(
        "CoinGecko daily prices into market.prices. CoinGecko has no OHLC: each day is stored as a bar with "
        "open = high = low = close = the day's 00:00 UTC price and volume = its 24 h volume."
    ),
)
def coingecko_prices(
    context: dg.AssetExecutionContext, config: CoinGeckoConfig, warehouse: WarehouseResource,
    coingecko: CoinGeckoResource,
) -> dg.MaterializeResult:
    start, end = _window(context)
    universe = _universe(warehouse).dropna(subset=["coingecko_id"])
    if config.coin_ids:
        universe = universe[universe["coingecko_id"].isin(config.coin_ids)]
    client = coingecko.client()
    batches, unknown = [], []
    for symbol, coin_id in zip(universe["symbol"], universe["coingecko_id"]):
        try:
            batches.append(client.fetch_daily(coin_id, symbol, start, end))
        except CoinNotFound:
            unknown.append(coin_id)
    batch = _combined(batches, f"coingecko:{start:%Y-%m-%d}..{end:%Y-%m-%d}", "coingecko_api", 86_400)
    report = load_batch(batch, url=warehouse.url, run_id=context.run_id)
    return dg.MaterializeResult(
        metadata={**load_metadata([report]), "coins_not_found": dg.MetadataValue.int(len(unknown))}
    )


price_assets = [PRICE_FILES, binance_klines.key, coingecko_prices.key]
ingest_files_job = dg.define_asset_job(
    "ingest_files",
    selection=dg.AssetSelection.assets(PRICE_FILES),
    tags=INGEST_RUN_TAGS,
    description="Load price files into market.prices (the landing-folder sensor's job).",
)
