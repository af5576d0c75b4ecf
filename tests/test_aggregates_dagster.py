"""The aggregates domain in Dagster: the rollup assets, their check, the after-ingest sensor and the policy."""

from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
from bars import hourly
from click.testing import CliRunner

from cryptobt_pipelines.cli import main
from cryptobt_pipelines.defs.aggregates.assets import DAILY, WEEKLY, RefreshConfig, price_rollups, rollup_checks
from cryptobt_pipelines.defs.aggregates.sensors import rollups_after_ingest_sensor, rollups_policy_schedule
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.warehouse.load import load_batch


def execute(sql: str, url: str, params=None):
    with psycopg.connect(url) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def materialize_rollups(url: str, config: RefreshConfig | None = None):
    return dg.materialize(
        [price_rollups, *rollup_checks], instance=dg.DagsterInstance.ephemeral(),
        resources={"warehouse": WarehouseResource(database_url=url)},
        run_config=dg.RunConfig(ops={"price_rollups": config or RefreshConfig()}),
        raise_on_error=False,
    )


def test_rollup_assets_report_what_they_refreshed_and_pass_their_check(warehouse_url):
    load_batch(hourly("BTC", datetime(2024, 5, 6, tzinfo=UTC), 72), url=warehouse_url)

    result = materialize_rollups(warehouse_url)

    assert result.success
    daily = result.asset_materializations_for_node("price_rollups")
    by_key = {m.asset_key: m.metadata for m in daily}
    assert by_key[DAILY]["buckets_refreshed"].value == 3 and by_key[WEEKLY]["buckets_refreshed"].value == 1
    assert by_key[DAILY]["ranges_left_pending"].value == 0
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 2 and all(c.passed for c in checks)
    assert {c.metadata["buckets_sampled"].value for c in checks} == {3, 1}
    assert by_key[DAILY]["cryptos_appended"].value == 0  # first refresh: buckets aggregated from their bars

    load_batch(hourly("BTC", datetime(2024, 5, 9, tzinfo=UTC), 2, price=60.0), url=warehouse_url)
    appended = {m.asset_key: m.metadata for m in
                materialize_rollups(warehouse_url).asset_materializations_for_node("price_rollups")}
    assert appended[DAILY]["cryptos_appended"].value == 1
    assert appended[DAILY]["buckets_refreshed"].value == 1 and appended[WEEKLY]["buckets_refreshed"].value == 1


def test_the_check_catches_a_bucket_that_drifted_from_the_raw_bars(warehouse_url):
    load_batch(hourly("ETH", datetime(2024, 5, 6, tzinfo=UTC), 48), url=warehouse_url)
    materialize_rollups(warehouse_url)
    execute("UPDATE market.prices_daily SET close = close * 2 WHERE bucket = '2024-05-07'", warehouse_url)

    check = dg.materialize(
        [price_rollups, *rollup_checks], instance=dg.DagsterInstance.ephemeral(),
        resources={"warehouse": WarehouseResource(database_url=warehouse_url)},
        selection=dg.AssetSelection.checks(*[c.check_key for c in rollup_checks[:1]]),
        raise_on_error=False,
    ).get_asset_check_evaluations()[0]

    assert not check.passed and check.metadata["buckets_mismatched"].value == 1


def test_sensor_requests_one_refresh_per_pending_state_and_none_when_up_to_date(warehouse_url):
    resources = {"warehouse": WarehouseResource(database_url=warehouse_url)}
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources)
    assert isinstance(rollups_after_ingest_sensor(context), dg.SkipReason)

    for day in range(3):  # several ingests between two ticks
        load_batch(hourly("SOL", datetime(2024, 5, 6 + day, tzinfo=UTC), 24), url=warehouse_url)
    first = rollups_after_ingest_sensor(context)
    assert isinstance(first, dg.RunRequest)
    assert rollups_after_ingest_sensor(context).run_key == first.run_key  # same state, same (deduplicated) run

    materialize_rollups(warehouse_url)
    assert isinstance(rollups_after_ingest_sensor(context), dg.SkipReason)


def test_the_policy_schedule_refreshes_recent_changes_and_leaves_old_ones_pending(warehouse_url):
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    load_batch(hourly("ADA", now - timedelta(hours=5), 4), url=warehouse_url)
    load_batch(hourly("ADA", datetime(2024, 1, 1, tzinfo=UTC), 4), url=warehouse_url)
    run_config = rollups_policy_schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0].run_config

    result = materialize_rollups(warehouse_url, RefreshConfig(**run_config["ops"]["price_rollups"]["config"]))

    assert result.success
    assert execute("SELECT count(*) FROM market.invalidations", warehouse_url) == [(1,)]
    assert execute("SELECT min(bucket) >= now() - interval '2 days' FROM market.prices_daily", warehouse_url) == [(True,)]


def test_cli_refresh(warehouse_url):
    load_batch(hourly("XRP", datetime(2024, 5, 6, tzinfo=UTC), 30), url=warehouse_url)

    result = CliRunner().invoke(main, ["refresh"])

    assert result.exit_code == 0, result.output
    assert "rollups: 2 days and 1 weeks refreshed from 1 changed ranges" in result.output
