"""The ingest domain as Dagster runs it: assets, checks and the landing sensor on a real warehouse."""

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from market_stub import daily_chart, make_klines, market_stub  # noqa: F401 - the fixture

from cryptobt_pipelines.definitions import defs
from cryptobt_pipelines.defs.ingest.assets import (
    PRICE_FILES,
    BinanceKlinesConfig,
    CoinGeckoConfig,
    PriceFilesConfig,
    binance_klines,
    coingecko_prices,
    cryptos,
    prices,
)
from cryptobt_pipelines.defs.ingest.sensors import landing_files_sensor
from cryptobt_pipelines.defs.quality.checks import load_checks, prices_are_fresh, prices_have_no_recent_gaps
from cryptobt_pipelines.defs.resources import BinanceResource, CoinGeckoResource, LandingResource, WarehouseResource

GOOD_CSV = """timestamp,open,high,low,close,volume
2024-01-01 00:00:00,100,110,95,105,12.5
2024-01-01 01:00:00,105,106,101,102,8
2024-01-01 02:00:00,102,104,100,103,9
2024-01-01 03:00:00,103,103,-1,103,9
"""


def resources(url: str, landing: Path, stub=None) -> dict:
    return {
        "warehouse": WarehouseResource(database_url=url),
        "landing": LandingResource(path=str(landing)),
        "binance": BinanceResource(base_url=stub.binance_url if stub else "http://127.0.0.1:9", max_retries=0),
        "coingecko": CoinGeckoResource(base_url=stub.coingecko_url if stub else "http://127.0.0.1:9",
                                       min_interval_seconds=0, max_retries=0),
    }


def query(url: str, sql: str, params=None):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def settled(path: Path) -> Path:
    old = time.time() - 60
    os.utime(path, (old, old))
    return path


def test_definitions_load_with_every_domain_object():
    repository = defs().get_repository_def()
    keys = {k.to_user_string() for k in repository.asset_graph.get_all_asset_keys()}
    assert {"market/cryptos", "market/prices", "binance_klines", "coingecko_prices"} <= keys
    assert repository.get_sensor_def("landing_files_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    groups = {repository.asset_graph.get(k).group_name for k in repository.asset_graph.get_all_asset_keys()}
    assert groups == {"ingest", "aggregates", "cache", "dashboard", "backtests"}
    assert repository.get_sensor_def("dashboard_after_rollups_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def test_cryptos_asset_keeps_one_dynamic_partition_per_crypto(warehouse_url, tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cryptos", ["GONE", "BTC"])

    result = dg.materialize([cryptos], instance=instance, resources=resources(warehouse_url, tmp_path))

    assert result.success
    keys = set(instance.get_dynamic_partitions("cryptos"))
    assert len(keys) == 263 and "BTC" in keys and "GONE" not in keys
    metadata = result.asset_materializations_for_node("market__cryptos")[0].metadata
    assert metadata["cryptos"].value == 263 and metadata["partitions_removed"].value == 1


def test_price_files_are_loaded_checked_and_moved_aside(warehouse_url, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    good = landing / "LINKUSDT_1h.csv"
    good.write_text(GOOD_CSV)
    unreadable = landing / "notes.csv"
    unreadable.write_text("this is not a price file\n")

    result = dg.materialize(
        [prices, *load_checks[:1]],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources(warehouse_url, landing),
        run_config=dg.RunConfig(ops={"market__prices": PriceFilesConfig(paths=[str(good), str(unreadable)])}),
        selection=dg.AssetSelection.assets(PRICE_FILES),
    )

    assert result.success
    metadata = result.asset_materializations_for_node("market__prices")[0].metadata
    assert metadata["rows_loaded"].value == 3 and metadata["rows_refused"].value == 1
    assert metadata["files_failed"].value == 1 and metadata["cryptos"].value == "LINK"
    assert metadata["refused_by_rule"].value == {"not_positive": 1}
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and check.metadata["bars_validated"].value == 3
    assert query(warehouse_url, "SELECT count(*) FROM market.prices") == [(3,)]
    assert [p.name.split("-", 1)[1] for p in (landing / "processed").iterdir()] == ["LINKUSDT_1h.csv"]
    failed = sorted(p.name.split("-", 1)[1] for p in (landing / "failed").iterdir())
    assert failed == ["notes.csv", "notes.csv.reason"]
    assert not good.exists() and not unreadable.exists()


def test_a_failed_load_check_keeps_downstream_from_running(warehouse_url, tmp_path):
    mostly_bad = tmp_path / "DOGEUSDT_1h.csv"
    mostly_bad.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"2024-01-01 {h:02d}:00:00,1,2,0.5,{-1 if h % 4 else 1},3\n" for h in range(12)
    ))
    ran = []

    @dg.asset(deps=[PRICE_FILES])
    def downstream() -> None:
        ran.append(True)

    result = dg.materialize(
        [prices, *load_checks, downstream],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources(warehouse_url, tmp_path / "landing"),
        run_config=dg.RunConfig(ops={"market__prices": PriceFilesConfig(paths=[str(mostly_bad)])}),
        selection=dg.AssetSelection.assets(PRICE_FILES, downstream.key),
        raise_on_error=False,
    )

    check = next(e for e in result.get_asset_check_evaluations() if e.asset_key == PRICE_FILES)
    assert not check.passed and check.metadata["refused_share"].value == 0.75
    assert ran == []
    assert not result.success


def test_gx_validation_catches_an_absurd_price_jump(warehouse_url, tmp_path):
    jumpy = tmp_path / "VETUSDT_1d.csv"
    rows = [("2021-09-01", 15.0), ("2021-09-02", 1e-35), ("2021-09-03", 15.1)]
    jumpy.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{day},{p},{p},{p},{p},10\n" for day, p in rows
    ))

    result = dg.materialize(
        [prices, *load_checks[:1]],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources(warehouse_url, tmp_path / "landing"),
        run_config=dg.RunConfig(ops={"market__prices": PriceFilesConfig(paths=[str(jumpy)])}),
        selection=dg.AssetSelection.assets(PRICE_FILES),
        raise_on_error=False,
    )

    check = result.get_asset_check_evaluations()[0]
    assert not check.passed
    assert "expect_column_values_to_be_between" in check.metadata["expectations_failed"].value


def test_sql_checks_report_stale_cryptos_and_gaps(warehouse_url, tmp_path):
    path = tmp_path / "ETHUSDT_1h.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"2024-01-01 {h:02d}:00:00,1,2,0.5,1,3\n" for h in (0, 1, 2, 5, 6)
    ))
    result = dg.materialize(
        [prices, prices_are_fresh, prices_have_no_recent_gaps],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources(warehouse_url, tmp_path / "landing"),
        run_config=dg.RunConfig(ops={"market__prices": PriceFilesConfig(paths=[str(path)])}),
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["prices_are_fresh"].passed and checks["prices_are_fresh"].metadata["stale_cryptos"].value == 1
    gaps = checks["prices_have_no_recent_gaps"]
    assert not gaps.passed and gaps.metadata["missing_bars"].value == 2 and gaps.metadata["worst"].value == {"ETH": 2}
    assert checks["prices_are_fresh"].severity == dg.AssetCheckSeverity.WARN


def test_landing_sensor_requests_each_settled_file_once_and_its_run_loads_it(warehouse_url, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    first = landing / "LINKUSDT_1h.csv"
    first.write_text(GOOD_CSV)
    settled(first)
    writing = landing / "ADAUSDT_1h.csv"
    writing.write_text(GOOD_CSV)  # just written: not settled yet
    (landing / "BTCUSDT_1h.csv.part").write_text("partial download")
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources={"landing": LandingResource(path=str(landing))})

    result = landing_files_sensor(context)

    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_config["ops"]["market__prices"]["config"]["paths"] == [str(first)]
    again = landing_files_sensor(dg.build_sensor_context(
        instance=instance, cursor=result.cursor, resources={"landing": LandingResource(path=str(landing))}))
    assert again.run_requests == [] or again.run_requests is None
    settled(writing)
    later = landing_files_sensor(dg.build_sensor_context(
        instance=instance, cursor=result.cursor, resources={"landing": LandingResource(path=str(landing))}))
    assert [r.run_config["ops"]["market__prices"]["config"]["paths"] for r in later.run_requests] == [[str(writing)]]

    job = defs().get_repository_def().get_job("ingest_files")
    run = job.execute_in_process(run_config=request.run_config, instance=instance,
                                 resources=resources(warehouse_url, landing))
    assert run.success
    assert query(warehouse_url, "SELECT count(*) FROM market.prices") == [(3,)]
    assert not first.exists()


def test_binance_klines_single_run_backfill_through_a_local_stub(warehouse_url, tmp_path, market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(datetime(2024, 1, 1, tzinfo=UTC), 72))
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(
        [binance_klines, *load_checks],
        instance=instance,
        resources=resources(warehouse_url, tmp_path, market_stub),
        run_config=dg.RunConfig(ops={"binance_klines": BinanceKlinesConfig(symbols=["BTC", "ETH"])}),
        selection=dg.AssetSelection.assets(binance_klines),
        tags={"dagster/asset_partition_range_start": "2024-01-01", "dagster/asset_partition_range_end": "2024-01-02"},
    )

    assert result.success
    metadata = result.asset_materializations_for_node("binance_klines")[0].metadata
    assert metadata["rows_inserted"].value == 48 and metadata["symbols_not_listed"].value == 1
    assert query(warehouse_url, "SELECT min(ts), max(ts), count(*) FROM market.prices") == [
        (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, 23, tzinfo=UTC), 48)
    ]
    assert len(market_stub.requests_to("klines")) == 2  # one page for BTCUSDT, one refusal for ETHUSDT


def test_coingecko_prices_store_close_only_bars(warehouse_url, tmp_path, market_stub):
    day = datetime(2024, 2, 1, tzinfo=UTC)
    chart, volumes = daily_chart(day - timedelta(days=1), 4)
    market_stub.set_chart("bitcoin", chart, volumes)

    result = dg.materialize(
        [coingecko_prices],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources(warehouse_url, tmp_path, market_stub),
        run_config=dg.RunConfig(ops={"coingecko_prices": CoinGeckoConfig(coin_ids=["bitcoin"])}),
        partition_key="2024-02-01",
    )

    assert result.success
    assert query(warehouse_url, "SELECT ts, open, high, low, close, volume FROM market.prices") == [
        (day, 101.0, 101.0, 101.0, 101.0, 1e6 + 1)
    ]


def test_universe_sensor_requests_a_sync_only_while_partitions_disagree(warehouse_url, tmp_path):
    from cryptobt_pipelines.defs.ingest.sensors import universe_sensor

    instance = dg.DagsterInstance.ephemeral()
    first = universe_sensor(dg.build_sensor_context(instance=instance))
    assert len(first.run_requests) == 1

    assert dg.materialize([cryptos], instance=instance, resources=resources(warehouse_url, tmp_path)).success
    assert isinstance(universe_sensor(dg.build_sensor_context(instance=instance)), dg.SkipReason)
