"""The dashboard domain in Dagster: the view's asset and its check, the job, and the after-rollups sensor."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
from dashboard_expected import assert_dashboard_matches

from cryptobt_pipelines.definitions import defs
from cryptobt_pipelines.defs.dashboard.assets import (
    DASHBOARD,
    crypto_dashboard_summary,
    dashboard_matches_live_computation,
)
from cryptobt_pipelines.defs.dashboard.sensors import dashboard_after_rollups_sensor
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse.dashboard import refresh_dashboard
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import refresh_rollups

START = datetime(2024, 5, 6, tzinfo=UTC)


def hourly(symbol: str, start: datetime, hours: int, price: float) -> PriceBatch:
    ts = [start + timedelta(hours=h) for h in range(hours)]
    close = np.array([price + h / 100 for h in range(hours)])
    bars = pd.DataFrame({"line": range(1, hours + 1), "symbol": symbol, "ts": ts, "open": close,
                         "high": close * 1.02, "low": close * 0.98, "close": close, "volume": 2.0})
    return PriceBatch("test", "test", bars, bar_seconds=3600)


def execute(url: str, sql: str):
    with psycopg.connect(url) as conn:
        conn.execute(sql)


def materialize(url: str, selection=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [crypto_dashboard_summary, dashboard_matches_live_computation], instance=dg.DagsterInstance.ephemeral(),
        resources={"warehouse": WarehouseResource(database_url=url)}, selection=selection, raise_on_error=False,
    )


def test_the_asset_refreshes_the_view_reports_it_and_passes_its_check(warehouse_url):
    load_batch(hourly("BTC", START, 72, 100.0), url=warehouse_url)
    load_batch(hourly("ETH", START, 72, 10.0), url=warehouse_url)
    refresh_rollups(warehouse_url)

    result = materialize(warehouse_url)

    assert result.success
    (materialization,) = result.asset_materializations_for_node(crypto_dashboard_summary.node_def.name)
    metadata = materialization.metadata
    assert metadata["dagster/row_count"].value == 2
    assert metadata["rollup_changes_applied"].value == 2 and metadata["extremes_rebuilt"].value
    assert metadata["extremes_changed_for"].value == "BTC, ETH"
    movers = metadata["top_movers"].value
    assert [r.data["symbol"] for r in movers.records] == ["ETH", "BTC"]  # +0.24 % on 10 beats +0.024 % on 100
    assert metadata["refresh_ms"].value > 0
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["cryptos_compared"].value == 2
    assert_dashboard_matches(warehouse_url)


def test_the_check_catches_a_view_that_drifted_from_the_data(warehouse_url):
    load_batch(hourly("BTC", START, 48, 100.0), url=warehouse_url)
    refresh_rollups(warehouse_url)
    materialize(warehouse_url)
    execute(warehouse_url, "UPDATE serving.crypto_extremes SET ath = ath + 1")
    execute(warehouse_url, "REFRESH MATERIALIZED VIEW serving.crypto_dashboard_summary")

    (check,) = materialize(warehouse_url, dg.AssetSelection.checks(dashboard_matches_live_computation)
                           ).get_asset_check_evaluations()

    assert not check.passed and check.metadata["first_mismatches"].value == {"1": ["ath"]}


def test_the_check_leaves_out_cryptos_with_changes_still_pending(warehouse_url):
    load_batch(hourly("BTC", START, 48, 100.0), url=warehouse_url)
    load_batch(hourly("ETH", START, 48, 10.0), url=warehouse_url)
    refresh_rollups(warehouse_url)
    materialize(warehouse_url)
    load_batch(hourly("ETH", START + timedelta(hours=48), 5, 50.0), url=warehouse_url)  # not refreshed yet

    (check,) = materialize(warehouse_url, dg.AssetSelection.checks(dashboard_matches_live_computation)
                           ).get_asset_check_evaluations()

    assert check.passed
    assert (check.metadata["cryptos_compared"].value, check.metadata["cryptos_pending"].value) == (1, 1)


def test_sensor_requests_one_refresh_per_pending_state_and_none_when_up_to_date(warehouse_url):
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                      resources={"warehouse": WarehouseResource(database_url=warehouse_url)})
    assert isinstance(dashboard_after_rollups_sensor(context), dg.SkipReason)  # empty warehouse

    for day in range(3):  # several ingests and rollup refreshes between two ticks
        load_batch(hourly("SOL", START + timedelta(days=day), 24, 20.0 + day), url=warehouse_url)
        refresh_rollups(warehouse_url)
    with psycopg.connect(warehouse_url) as conn:
        newest = conn.execute("SELECT max(change_id) FROM market.rollup_changes").fetchone()[0]
    first = dashboard_after_rollups_sensor(context)
    assert isinstance(first, dg.RunRequest) and first.run_key == f"rollup-changes-through-{newest}"
    assert dashboard_after_rollups_sensor(context).run_key == first.run_key  # same state, same (deduplicated) run

    assert materialize(warehouse_url).success
    assert isinstance(dashboard_after_rollups_sensor(context), dg.SkipReason)

    load_batch(hourly("SOL", START + timedelta(days=3), 1, 30.0), url=warehouse_url)
    assert isinstance(dashboard_after_rollups_sensor(context), dg.SkipReason)  # the rollups come first
    refresh_rollups(warehouse_url)
    assert dashboard_after_rollups_sensor(context).run_key == f"rollup-changes-through-{newest + 1}"

    # Bars loaded since: the dashboard waits for the rollups to take them in, for a while.
    load_batch(hourly("SOL", START + timedelta(days=4), 1, 31.0), url=warehouse_url)
    assert isinstance(dashboard_after_rollups_sensor(context), dg.SkipReason)
    execute(warehouse_url, "UPDATE market.invalidations SET created_at = now() - interval '1 hour'")
    assert dashboard_after_rollups_sensor(context).run_key == f"rollup-changes-through-{newest + 1}"


def test_sensor_refreshes_a_warehouse_never_refreshed_and_after_the_universe_moved(warehouse_url):
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                      resources={"warehouse": WarehouseResource(database_url=warehouse_url)})
    load_batch(hourly("BTC", START, 30, 100.0), url=warehouse_url)
    load_batch(hourly("ETH", START, 30, 10.0), url=warehouse_url)
    refresh_rollups(warehouse_url)
    execute(warehouse_url, "DELETE FROM market.rollup_changes")  # data from before the dashboard existed

    assert dashboard_after_rollups_sensor(context).run_key == "first-dashboard-refresh"
    refresh_dashboard(warehouse_url)
    assert isinstance(dashboard_after_rollups_sensor(context), dg.SkipReason)

    execute(warehouse_url, "UPDATE market.cryptos SET in_universe = false WHERE symbol = 'ETH'")
    moved = dashboard_after_rollups_sensor(context)
    assert isinstance(moved, dg.RunRequest) and moved.run_key.startswith("universe-moved-after-refresh-")
    refresh_dashboard(warehouse_url)
    assert isinstance(dashboard_after_rollups_sensor(context), dg.SkipReason)


def test_the_sensor_job_refreshes_the_view_and_runs_its_check(warehouse_url):
    load_batch(hourly("ADA", START, 30, 1.0), url=warehouse_url)
    refresh_rollups(warehouse_url)
    job = defs().resolve_job_def("refresh_dashboard")

    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(),
                                    resources={"warehouse": WarehouseResource(database_url=warehouse_url)})

    assert result.success
    assert [e.asset_key for e in result.get_asset_materialization_events()] == [DASHBOARD]
    assert [c.passed for c in result.get_asset_check_evaluations()] == [True]
    assert_dashboard_matches(warehouse_url)
