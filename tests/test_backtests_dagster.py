"""The backtests domain in Dagster: one run over many crypto partitions, skipping, metadata, the nightly schedule."""

import base64
from datetime import UTC, datetime

import dagster as dg
import pytest
from backtest_data import SYMBOLS, correct_one_bar, load_daily, rows
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from cryptobt_pipelines import backtests
from cryptobt_pipelines.definitions import defs
from cryptobt_pipelines.defs.backtests.assets import BacktestConfig, backtest_results
from cryptobt_pipelines.defs.backtests.schedules import nightly_backtests_schedule
from cryptobt_pipelines.defs.resources import WarehouseResource
from cryptobt_pipelines.engine import load_catalog
from cryptobt_pipelines.warehouse.rollups import refresh_rollups

N_STRATEGIES = len(load_catalog().strategies)


@pytest.fixture
def instance():
    # Persistent (in a temporary folder): a schedule context reaches its instance through a reference.
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("cryptos", SYMBOLS)
        yield instance


def materialize(url, instance, first=SYMBOLS[0], last=SYMBOLS[-1], config: BacktestConfig | None = None, **kwargs):
    return dg.materialize(
        [backtest_results], instance=instance, resources={"warehouse": WarehouseResource(database_url=url)},
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        run_config=dg.RunConfig(ops={"backtest_results": config or BacktestConfig()}), **kwargs,
    )


def by_partition(result):
    return {m.partition: m.metadata for m in result.asset_materializations_for_node("backtest_results")}


def test_the_definitions_hold_the_asset_its_job_and_the_schedule():
    repository = defs().get_repository_def()
    assert repository.get_schedule_def("nightly_backtests_schedule").default_status == dg.DefaultScheduleStatus.RUNNING
    assert repository.get_job("nightly_backtests").partitions_def.name == "cryptos"
    node = repository.asset_graph.get(dg.AssetKey("backtest_results"))
    assert node.group_name == "backtests" and node.backfill_policy == dg.BackfillPolicy.single_run()


def test_one_run_over_several_partitions_reads_the_bars_once_and_writes_every_result(warehouse_url, instance,
                                                                                      monkeypatch):
    load_daily(warehouse_url)
    reads = []
    read_prices = backtests.read_prices
    monkeypatch.setattr(backtests, "read_prices", lambda *a, **k: reads.append(a[1]) or read_prices(*a, **k))

    result = materialize(warehouse_url, instance, "ETH", "ADA")

    assert result.success
    assert len(reads) == 1  # one query for the three cryptos
    assert sorted(reads[0]) == sorted(c for c, in rows(warehouse_url, "SELECT crypto_id FROM market.cryptos "
                                                                       "WHERE symbol IN ('ETH', 'SOL', 'ADA')"))
    partitions = by_partition(result)
    assert sorted(partitions) == ["ADA", "ETH", "SOL"]
    assert rows(warehouse_url, "SELECT count(*), count(DISTINCT crypto_id) FROM backtest.results") == [
        (3 * N_STRATEGIES, 3)]
    assert rows(warehouse_url, "SELECT count(*), count(DISTINCT dagster_run_id), min(dagster_run_id) "
                               "FROM backtest.runs") == [(N_STRATEGIES, 1, result.run_id)]
    sol = partitions["SOL"]
    assert sol["backtests_computed"].value == 3 * N_STRATEGIES  # the run's summary, on every partition
    assert sol["backtests"].value == f"{N_STRATEGIES} computed, 0 current (skipped)"  # the crypto's own
    assert sol["data_version"].value == 1
    assert [r.data["strategy"] for r in sol["results"].records] == sorted(s.name for s in load_catalog().strategies)
    leaderboard = sol["leaderboard"].records
    assert len(leaderboard) == 10
    assert [r.data["sharpe"] for r in leaderboard] == sorted((r.data["sharpe"] for r in leaderboard), reverse=True)


def test_the_best_results_get_equity_and_drawdown_pictures(warehouse_url, instance):
    load_daily(warehouse_url)

    partitions = by_partition(materialize(warehouse_url, instance,
                                          config=BacktestConfig(charts=2, crypto_metadata_up_to=3)))

    assert not any("results" in metadata for metadata in partitions.values())  # 4 cryptos: run summary only

    best = [r.data["symbol"] for r in partitions["BTC"]["leaderboard"].records[:2]]
    charted = {p for p, metadata in partitions.items() if "best_result_charts" in metadata}
    assert charted == set(best)
    markdown = partitions[best[0]]["best_result_charts"].value
    assert markdown.count("](data:image/png;base64,") == best.count(best[0])
    png = base64.b64decode(markdown.split("base64,")[1].split(")")[0])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_rerun_replaces_unchanged_inputs_skip_and_a_new_data_version_recomputes(warehouse_url, instance):
    batch = load_daily(warehouse_url)
    materialize(warehouse_url, instance)
    stored = rows(warehouse_url, "SELECT count(*) FROM backtest.results")

    forced = materialize(warehouse_url, instance, config=BacktestConfig(force=True))
    skipped = materialize(warehouse_url, instance)
    correct_one_bar(warehouse_url, batch, "BTC")
    refresh_rollups(warehouse_url)
    changed = materialize(warehouse_url, instance)

    assert by_partition(forced)["ETH"]["results_written"].value == len(SYMBOLS) * N_STRATEGIES
    assert rows(warehouse_url, "SELECT count(*) FROM backtest.results") == stored
    assert by_partition(skipped)["ETH"]["backtests_skipped"].value == len(SYMBOLS) * N_STRATEGIES
    assert by_partition(skipped)["ETH"]["results_written"].value == 0
    after = by_partition(changed)
    assert after["BTC"]["backtests"].value == f"{N_STRATEGIES} computed, 0 current (skipped)"
    assert after["BTC"]["data_version"].value == 2
    assert after["ETH"]["backtests"].value == f"0 computed, {N_STRATEGIES} current (skipped)"
    assert rows(warehouse_url, "SELECT count(*) FROM backtest.results") == stored


def test_grids_come_from_run_config_and_bad_config_fails_the_run(warehouse_url, instance):
    load_daily(warehouse_url)
    config = BacktestConfig(strategies=["sma_cross"], grids={"sma_cross": {"fast_window": [5, 10]}})

    result = materialize(warehouse_url, instance, config=config)

    assert by_partition(result)["BTC"]["backtests_computed"].value == 3 * len(SYMBOLS)
    bad = materialize(warehouse_url, instance, config=BacktestConfig(strategies=["nope"]), raise_on_error=False)
    assert not bad.success
    failure = bad.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert "bad backtest config: no strategy 'nope' in the catalog" in failure.description


def test_the_nightly_schedule_requests_one_run_over_every_crypto_while_something_changed(warehouse_url, instance):
    batch = load_daily(warehouse_url)
    resources = {"warehouse": WarehouseResource(database_url=warehouse_url)}
    when = datetime(2026, 1, 2, 1, 30, tzinfo=UTC)

    def tick():
        # As a context manager: the context's own instance handle is released when the tick is done.
        with dg.build_schedule_context(instance=instance, resources=resources,
                                       scheduled_execution_time=when) as context:
            return nightly_backtests_schedule.evaluate_tick(context)

    [request] = tick().run_requests
    assert request.run_key == "nightly-2026-01-02"
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "BTC"
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "ADA"

    run = dg.materialize([backtest_results], instance=instance, resources=resources, tags=request.tags)
    assert sorted(by_partition(run)) == sorted(SYMBOLS)
    assert "backtests of all 4 cryptos are current" in tick().skip_message

    correct_one_bar(warehouse_url, batch, "ADA")
    refresh_rollups(warehouse_url)
    assert len(tick().run_requests) == 1


def test_the_schedule_waits_for_the_universe(warehouse_url):
    resources = {"warehouse": WarehouseResource(database_url=warehouse_url)}
    with dg.instance_for_test() as empty, dg.build_schedule_context(instance=empty, resources=resources) as context:
        assert "no crypto partitions yet" in nightly_backtests_schedule.evaluate_tick(context).skip_message
