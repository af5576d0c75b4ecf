"""The dashboard summary view, refreshed from the rollup change log, and its check against a live computation."""

import dagster as dg

from cryptobt_pipelines.defs.aggregates.assets import DAILY
from cryptobt_pipelines.defs.ingest.assets import CRYPTOS, price_assets
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.defs.run_tags import REFRESH_RUN_TAGS
from cryptobt_pipelines.warehouse.dashboard import compare_with_live, refresh_dashboard, top_movers

DASHBOARD = dg.AssetKey(["serving", "crypto_dashboard_summary"])
MOVERS_PER_SIDE = 5
MOVERS_SCHEMA = dg.TableSchema(columns=[
    dg.TableColumn("symbol", "string"),
    dg.TableColumn("current_price", "float"),
    dg.TableColumn("price_24h_ago", "float"),
    dg.TableColumn("change_24h_percent", "float"),
    dg.TableColumn("as_of", "string", description="UTC time of the latest bar"),
])


@dg.asset(
    key=DASHBOARD,
    # The latest bars come from the raw prices, the 7- and 30-day figures and the extremes from the daily
    # rollup, symbols and membership from the universe.
    deps=[DAILY, *price_assets, CRYPTOS],
    group_name="dashboard",
    kinds={"postgres"},
    description="One row per crypto of the universe: current price and 24 h change, 7- and 30-day high, low "
                "and volume, all-time high and low with their dates (materialized view, refreshed concurrently).",
)
def crypto_dashboard_summary(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    report = refresh_dashboard(warehouse.url)
    context.log.info(f"applied {report.changes_applied} rollup changes, rescanned {report.cryptos_rescanned} "
                     f"cryptos, extremes changed for {len(report.extremes_changed)}; {report.rows} rows in "
                     f"{report.seconds * 1000:.1f} ms{' (extremes rebuilt)' if report.rebuilt else ''}")
    movers = [dg.TableRecord({"symbol": symbol, "current_price": price, "price_24h_ago": before,
                              "change_24h_percent": round(change, 4), "as_of": as_of.isoformat()})
              for symbol, price, before, change, as_of in top_movers(warehouse.url, MOVERS_PER_SIDE)]
    changed = report.extremes_changed
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(report.rows),
        "refresh_ms": dg.MetadataValue.float(round(report.seconds * 1000, 2)),
        "rollup_changes_applied": dg.MetadataValue.int(report.changes_applied),
        "through_change_id": dg.MetadataValue.int(report.through_change_id or 0),
        "extremes_rebuilt": dg.MetadataValue.bool(report.rebuilt),
        "cryptos_rescanned": dg.MetadataValue.int(report.cryptos_rescanned),
        "extremes_changed": dg.MetadataValue.int(len(changed)),
        "extremes_changed_for": dg.MetadataValue.text(", ".join(changed[:50]) + (" …" if len(changed) > 50 else "")),
        "top_movers": dg.MetadataValue.table(movers, MOVERS_SCHEMA),
    })


@dg.asset_check(
    asset=DASHBOARD,
    name="matches_live_computation",
    description="Every row equals the same summary computed live from the whole daily rollup and the raw bars "
                "(volumes to 1e-9 relative), for every crypto with no change still pending.",
)
def dashboard_matches_live_computation(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    comparison = compare_with_live(warehouse.url)
    return dg.AssetCheckResult(
        passed=not comparison.mismatched,
        metadata={
            "cryptos_compared": dg.MetadataValue.int(comparison.compared),
            "cryptos_pending": dg.MetadataValue.int(len(comparison.pending)),
            "cryptos_mismatched": dg.MetadataValue.int(len(comparison.mismatched)),
            "first_mismatches": dg.MetadataValue.json(
                {str(crypto_id): columns for crypto_id, columns in list(comparison.mismatched.items())[:10]}),
        },
    )


refresh_dashboard_job = dg.define_asset_job(
    "refresh_dashboard", selection=dg.AssetSelection.assets(DASHBOARD),
    description="Apply the rollup changes to the all-time extremes and refresh the dashboard view.",
    tags=REFRESH_RUN_TAGS,
)
