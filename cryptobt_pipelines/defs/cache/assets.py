"""The Redis cache of backtest results as an asset: its versions kept up with the warehouse, its hit rate shown.

Materializing it advances Redis's record of each crypto's data version to the warehouse's and deletes the
entries of superseded versions (memory back at once); its metadata carries the hit rate since the previous
materialization. Correctness never waits for it: readers key on the warehouse's versions (see cache.py).
"""

import dagster as dg

from cryptobt_pipelines.cache import read_data_versions
from cryptobt_pipelines.defs.ingest.assets import price_assets
from cryptobt_pipelines.defs.resources import BacktestCacheResource, WarehouseResource
from cryptobt_pipelines.defs.run_tags import REFRESH_RUN_TAGS

BACKTEST_CACHE = dg.AssetKey(["cache", "backtest_results_cache"])


@dg.asset(
    key=BACKTEST_CACHE,
    deps=price_assets,
    group_name="cache",
    kinds={"redis"},
    description="Backtest results in Redis, keyed by each crypto's data version: superseded versions deleted, "
                "hits and misses counted.",
)
def backtest_results_cache(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                           backtest_cache: BacktestCacheResource) -> dg.MaterializeResult:
    with warehouse.connect() as conn:
        versions = read_data_versions(conn)
    cache = backtest_cache.for_warehouse(warehouse.url)
    advance = cache.advance_versions(versions)
    stats = cache.stats(reset=True)
    usage = cache.usage()
    common = {
        "redis_url": dg.MetadataValue.text(cache.url),
        "namespace": dg.MetadataValue.text(cache.prefix),
        "cryptos_checked": dg.MetadataValue.int(len(versions)),
    }
    if advance is None or stats is None or usage is None:
        # Reported, not raised: ingest and readers go on without the cache, and the invalidation sensor asks
        # again once Redis answers and its record lags behind the warehouse.
        context.log.warning(f"Redis at {cache.url} is unavailable ({cache.last_error}): cache not updated")
        return dg.MaterializeResult(metadata={
            **common,
            "redis_available": dg.MetadataValue.bool(False),
            "redis_error": dg.MetadataValue.text(cache.last_error or "unknown"),
        })
    context.log.info(f"{advance.versions_bumped} versions bumped, {advance.entries_deleted} superseded entries "
                     f"deleted; {usage.entries} entries; hit rate {_percent(stats.hit_rate)} over {stats.lookups} "
                     "lookups since the previous materialization")
    metadata = {
        **common,
        "redis_available": dg.MetadataValue.bool(True),
        "hits": dg.MetadataValue.int(stats.hits),
        "misses": dg.MetadataValue.int(stats.misses),
        "window_start": dg.MetadataValue.text(stats.since.isoformat() if stats.since else "-"),
        "entries": dg.MetadataValue.int(usage.entries),
        "entry_memory_bytes": dg.MetadataValue.int(usage.entry_bytes),
        "redis_used_memory_bytes": dg.MetadataValue.int(usage.redis_used_memory),
        "versions_bumped": dg.MetadataValue.int(advance.versions_bumped),
        "versions_recorded": dg.MetadataValue.int(advance.versions_recorded),
        "versions_reset": dg.MetadataValue.int(advance.versions_reset),
        "entries_deleted": dg.MetadataValue.int(advance.entries_deleted),
        "entries_invalidated_total": dg.MetadataValue.int(stats.entries_invalidated),
    }
    if stats.hit_rate is not None:  # a window without lookups has no rate (not 0 %)
        metadata["hit_rate"] = dg.MetadataValue.float(round(stats.hit_rate, 4))
    return dg.MaterializeResult(metadata=metadata)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


refresh_backtest_cache_job = dg.define_asset_job(
    "refresh_backtest_cache", selection=dg.AssetSelection.assets(BACKTEST_CACHE),
    description="Advance the cache's data versions to the warehouse's, delete superseded entries, report the hit rate.",
    tags=REFRESH_RUN_TAGS,
)
