"""Data quality of raw prices: a blocking great-expectations validation of every load, and cheap SQL checks.

dagster-ge pins great-expectations < 1.0, so GX 1.x runs inside the asset checks themselves.
"""


import logging

import dagster as dg
import pandas as pd

from cryptobt_pipelines.defs.ingest.assets import PRICE_FILES, binance_klines, coingecko_prices
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.warehouse.database import query

# Validating more bars than this samples them evenly: a 10-million-bar backfill must not pull it all into memory.
MAX_BARS_VALIDATED = 500_000
# A load that refuses more than this share of what it read is more likely a wrong file than bad rows.
MAX_REFUSED_SHARE = 0.5
# Real markets do move +392 % in a day; a 1e-35 price print is not a move. At most 0.1 % of bars may jump.
CLOSE_CHANGE_RANGE = (-0.95, 20.0)


def price_expectations():
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name="raw_price_load")
    for column in ("ts", "open", "high", "low", "close", "volume"):
        suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(e.ExpectCompoundColumnsToBeUnique(column_list=["crypto_id", "ts"]))
    suite.add_expectation(e.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="low", min_value=0, strict_min=True))
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    low, high = CLOSE_CHANGE_RANGE
    suite.add_expectation(e.ExpectColumnValuesToBeBetween(column="close_change", min_value=low, max_value=high,
                                                          mostly=0.999))
    return suite


def validate_bars(bars: pd.DataFrame):
    """Run the raw-price suite over a frame of bars; returns the GX validation result."""
    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch_definition = (
        context.data_sources.add_pandas("warehouse")
        .add_dataframe_asset("raw_prices")
        .add_batch_definition_whole_dataframe("load")
    )
    frame = bars.assign(close_change=bars["close"] / bars["previous_close"] - 1.0)
    return batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(price_expectations())


def _bars_changed_by_run(warehouse: WarehouseResource, run_id: str) -> tuple[pd.DataFrame, dict[str, int]]:
    with warehouse.connect() as conn:
        totals = dict(zip(("rows_read", "rows_changed", "rows_refused"),
                          conn.execute(query("quality/run_load_totals"), {"run_id": run_id}).fetchone()))
        every_nth = max(1, -(-int(totals["rows_changed"]) // MAX_BARS_VALIDATED))
        cursor = conn.execute(query("quality/bars_changed_by_run"), {"run_id": run_id, "every_nth": every_nth})
        bars = pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description])
    return bars.astype({c: "float64" for c in ("open", "high", "low", "close", "volume", "previous_close")}), totals


def _load_validation(asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_key,
        name="load_passes_validation",
        blocking=True,
        description=(
            "great-expectations suite over the bars this run changed (non-null, unique per crypto and time, "
            "high >= low, positive prices, non-negative volume, no absurd close-to-close jumps), and at most "
            f"{MAX_REFUSED_SHARE:.0%} of the rows read refused. Blocking: downstream waits for a clean load."
        ),
    )
    def check(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
        bars, totals = _bars_changed_by_run(warehouse, context.run.run_id)
        result = validate_bars(bars)
        failed = {
            r.expectation_config.type: int(r.result.get("unexpected_count") or 0)
            for r in result.results if not r.success
        }
        refused_share = totals["rows_refused"] / totals["rows_read"] if totals["rows_read"] else 0.0
        return dg.AssetCheckResult(
            passed=bool(result.success) and refused_share <= MAX_REFUSED_SHARE,
            metadata={
                "bars_validated": dg.MetadataValue.int(len(bars)),
                "rows_changed": dg.MetadataValue.int(int(totals["rows_changed"])),
                "refused_share": dg.MetadataValue.float(round(refused_share, 4)),
                "expectations_evaluated": dg.MetadataValue.int(len(result.results)),
                "expectations_failed": dg.MetadataValue.json(failed),
            },
        )

    return check


load_checks = [_load_validation(key) for key in (PRICE_FILES, binance_klines.key, coingecko_prices.key)]


@dg.asset_check(
    asset=PRICE_FILES,
    description="Every crypto's newest bar is at most two bar intervals (at least a day) old.",
)
def prices_are_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        stale = conn.execute(query("quality/stale_cryptos")).fetchall()
    return dg.AssetCheckResult(
        passed=not stale,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stale_cryptos": dg.MetadataValue.int(len(stale)),
            "stalest": dg.MetadataValue.json({s: ts.isoformat() for s, ts, _ in stale[:20]}),
        },
    )


@dg.asset_check(
    asset=PRICE_FILES,
    description="No crypto is missing bars over the last 30 days of its data (exchange outages show up here).",
)
def prices_have_no_recent_gaps(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as conn:
        gaps = conn.execute(query("quality/recent_gaps")).fetchall()
    return dg.AssetCheckResult(
        passed=not gaps,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "cryptos_with_gaps": dg.MetadataValue.int(len(gaps)),
            "missing_bars": dg.MetadataValue.int(sum(expected - bars for _, expected, bars in gaps)),
            "worst": dg.MetadataValue.json(
                {s: expected - bars for s, expected, bars in sorted(gaps, key=lambda g: g[2] - g[1])[:20]}
            ),
        },
    )
