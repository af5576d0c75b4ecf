"""Daily and weekly rollups of raw prices (the continuous aggregates), refreshed from the invalidation log."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from psycopg import sql as pgsql

from cryptobt_pipelines.defs.ingest.assets import price_assets
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.defs.run_tags import REFRESH_RUN_TAGS
from cryptobt_pipelines.warehouse.database import query
from cryptobt_pipelines.warehouse.rollups import refresh_rollups

DAILY = dg.AssetKey(["market", "prices_daily"])
WEEKLY = dg.AssetKey(["market", "prices_weekly"])
SAMPLE_BUCKETS = 200


class RefreshConfig(dg.Config):
    # Only changes to bars in the last `window_days` days (None: all pending changes), as a TimescaleDB
    # refresh policy does; older pending ranges stay on the log for a wider refresh.
    window_days: int | None = None


@dg.multi_asset(
    specs=[
        dg.AssetSpec(DAILY, deps=price_assets, group_name="aggregates", kinds={"postgres"},
                     description="UTC daily OHLCV per crypto (open first, close last, volume summed, n_bars)."),
        dg.AssetSpec(WEEKLY, deps=[DAILY], group_name="aggregates", kinds={"postgres"},
                     description="Monday-to-Sunday UTC weeks rolled up from the daily buckets."),
    ],
    description="Refresh both rollups from the invalidation log: only the buckets that changed are recomputed.",
)
def price_rollups(context: dg.AssetExecutionContext, config: RefreshConfig, warehouse: WarehouseResource):
    window_start = datetime.now(UTC) - timedelta(days=config.window_days) if config.window_days else None
    report = refresh_rollups(warehouse.url, window_start=window_start)
    context.log.info(f"refreshed {report.days_refreshed} days and {report.weeks_refreshed} weeks from "
                     f"{report.ranges_consumed} ranges in {report.seconds * 1000:.1f} ms ({report.cryptos_appended} "
                     f"cryptos' new bars merged in); {report.ranges_pending} pending")
    common = {
        "ranges_consumed": dg.MetadataValue.int(report.ranges_consumed),
        "ranges_left_pending": dg.MetadataValue.int(report.ranges_pending),
        "cryptos_appended": dg.MetadataValue.int(report.cryptos_appended),
        "refresh_ms": dg.MetadataValue.float(round(report.seconds * 1000, 2)),
        "window_start": dg.MetadataValue.text(window_start.isoformat() if window_start else "unbounded"),
    }
    yield dg.MaterializeResult(asset_key=DAILY,
                               metadata={**common, "buckets_refreshed": dg.MetadataValue.int(report.days_refreshed)})
    yield dg.MaterializeResult(asset_key=WEEKLY,
                               metadata={**common, "buckets_refreshed": dg.MetadataValue.int(report.weeks_refreshed)})


def _matches_scratch(asset_key: dg.AssetKey, width: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name="matches_scratch_aggregation",
        description=f"{SAMPLE_BUCKETS} random buckets equal the same buckets aggregated from market.prices "
                    "(prices exactly, volume to 1e-9 relative).",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        statement = pgsql.SQL(query("aggregates/rollup_sample_vs_scratch")).format(
            rollup=pgsql.Identifier(*asset_key.path))
        with warehouse.connect() as conn:
            conn.execute("SET LOCAL jit = off")
            rows = conn.execute(statement, {"width": width, "limit": SAMPLE_BUCKETS}).fetchall()
        mismatched = [row[:2] for row in rows if not _same_bucket(row)]
        return dg.AssetCheckResult(
            passed=not mismatched,
            metadata={
                "buckets_sampled": dg.MetadataValue.int(len(rows)),
                "buckets_mismatched": dg.MetadataValue.int(len(mismatched)),
                "first_mismatches": dg.MetadataValue.json([[c, b.isoformat()] for c, b in mismatched[:10]]),
            },
        )

    return check


def _same_bucket(row: tuple) -> bool:
    _, _, o, h, low, c, volume, n_bars, so, sh, sl, sc, s_volume, s_n_bars = row
    volume_ok = s_volume is not None and abs(volume - s_volume) <= 1e-9 * max(abs(s_volume), 1e-300)
    return (o, h, low, c, n_bars) == (so, sh, sl, sc, s_n_bars) and volume_ok


rollup_checks = [_matches_scratch(DAILY, "24 hours"), _matches_scratch(WEEKLY, "168 hours")]
refresh_rollups_job = dg.define_asset_job(
    "refresh_rollups", selection=dg.AssetSelection.assets(DAILY, WEEKLY), tags=REFRESH_RUN_TAGS,
    description="Refresh the daily and weekly rollups from the invalidation log.",
)
