"""The cache domain in Dagster: the invalidation sensor and the cache asset on a real warehouse and Redis."""

from datetime import UTC, datetime

import dagster as dg
import psycopg
from bars import hourly

from cryptobt_pipelines.cache import backtest_keys, read_data_versions
from cryptobt_pipelines.definitions import defs
from cryptobt_pipelines.defs.cache.assets import BACKTEST_CACHE, backtest_results_cache
from cryptobt_pipelines.defs.cache.sensors import cache_invalidation_sensor
from cryptobt_pipelines.defs.resources import BacktestCacheResource, WarehouseResource
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.servers import EmbeddedRedis

PARAMS = {"initial_investment": 10000.0, "fee": 0.001, "slippage": 0.0, "fill": "open"}
WINDOW = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 12, 31, tzinfo=UTC))


def resources(warehouse_url: str, redis_url: str) -> dict:
    return {"warehouse": WarehouseResource(database_url=warehouse_url),
            "backtest_cache": BacktestCacheResource(redis_url=redis_url, retry_after_seconds=0.1)}


def materialize_cache(warehouse_url: str, redis_url: str) -> dict:
    result = dg.materialize([backtest_results_cache], instance=dg.DagsterInstance.ephemeral(),
                            resources=resources(warehouse_url, redis_url))
    assert result.success
    return {k: v.value for k, v in result.asset_materializations_for_node(BACKTEST_CACHE.to_python_identifier())[0].metadata.items()}


def keys_now(url: str, *symbols: str) -> dict[str, object]:
    """Every symbol's cache key as a reader would build it now (buy and hold, one window)."""
    with psycopg.connect(url) as conn:
        ids = dict(conn.execute("SELECT symbol, crypto_id FROM market.cryptos WHERE symbol = ANY(%s)",
                                [list(symbols)]).fetchall())
        keys = backtest_keys(read_data_versions(conn, ids.values()), "buy_and_hold", PARAMS, *WINDOW, 3600)
    return {symbol: keys[crypto_id] for symbol, crypto_id in ids.items()}


def test_the_cache_domain_is_defined_with_its_sensor_on():
    repository = defs().get_repository_def()
    assert repository.asset_graph.get(BACKTEST_CACHE).group_name == "cache"
    assert repository.get_sensor_def("cache_invalidation_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    assert repository.get_schedule_def("backtest_cache_hourly").job_name == "refresh_backtest_cache"


def test_sensor_requests_one_run_per_lagging_state_and_none_when_the_cache_is_current(
        warehouse_url, redis_url, backtest_cache):
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                      resources=resources(warehouse_url, redis_url))
    assert isinstance(cache_invalidation_sensor(context), dg.SkipReason)  # nothing ingested yet

    load_batch(hourly("BTC", datetime(2024, 5, 6, tzinfo=UTC), 24), url=warehouse_url)
    after_one = cache_invalidation_sensor(context)
    assert isinstance(after_one, dg.RunRequest) and after_one.tags["cryptobt/cryptos_behind"] == "1"
    assert cache_invalidation_sensor(context).run_key == after_one.run_key  # same state, same (deduplicated) run

    for symbol, day in (("ETH", 6), ("BTC", 7), ("BTC", 8)):  # several ingests between two ticks
        load_batch(hourly(symbol, datetime(2024, 5, day, tzinfo=UTC), 24), url=warehouse_url)
    after_several = cache_invalidation_sensor(context)
    assert isinstance(after_several, dg.RunRequest) and after_several.run_key != after_one.run_key
    assert after_several.tags["cryptobt/cryptos_behind"] == "2"

    materialize_cache(warehouse_url, redis_url)
    assert isinstance(cache_invalidation_sensor(context), dg.SkipReason)


def test_the_cache_asset_moves_versions_deletes_superseded_entries_and_reports_the_hit_rate(
        warehouse_url, redis_url, backtest_cache):
    for symbol in ("BTC", "ETH"):
        load_batch(hourly(symbol, datetime(2024, 5, 6, tzinfo=UTC), 24), url=warehouse_url)
    first = materialize_cache(warehouse_url, redis_url)
    assert (first["versions_recorded"], first["versions_bumped"], first["entries_deleted"]) == (2, 0, 0)

    before = keys_now(warehouse_url, "BTC", "ETH")
    backtest_cache.put_many({k: {"symbol": s} for s, k in before.items()})
    missing = backtest_keys({before["BTC"].crypto_id: 0}, "dca", PARAMS, *WINDOW, 3600)
    backtest_cache.get_many([*before.values(), *missing.values()])  # 2 hits, 1 miss
    load_batch(hourly("BTC", datetime(2024, 5, 7, tzinfo=UTC), 24), url=warehouse_url)
    after = keys_now(warehouse_url, "BTC", "ETH")
    backtest_cache.put(after["BTC"], {"symbol": "BTC"})  # a reader that already saw the new version

    metadata = materialize_cache(warehouse_url, redis_url)

    assert metadata["redis_available"] is True
    assert (metadata["versions_bumped"], metadata["entries_deleted"], metadata["entries"]) == (1, 1, 2)
    assert (metadata["hits"], metadata["misses"], metadata["hit_rate"]) == (2, 1, 0.6667)
    assert metadata["entry_memory_bytes"] > 0 and metadata["namespace"] == backtest_cache.prefix
    assert backtest_cache.client.exists(before["BTC"].redis_key(backtest_cache.prefix)) == 0  # memory back
    assert backtest_cache.get_many(after.values()) == {after["BTC"]: {"symbol": "BTC"}, after["ETH"]: {"symbol": "ETH"}}

    quiet = materialize_cache(warehouse_url, redis_url)  # a new window: the two hits just above, no misses
    assert (quiet["hits"], quiet["misses"], quiet["versions_bumped"], quiet["entries_deleted"]) == (2, 0, 0, 0)


def test_sensor_and_asset_report_redis_down_and_catch_up_once_it_is_back(warehouse_url, tmp_path):
    server = EmbeddedRedis(tmp_path)  # private: the shared one must stay up for everyone else
    try:
        server.ensure_running()
        url = server.url()
        server.stop()
        load_batch(hourly("SOL", datetime(2024, 5, 6, tzinfo=UTC), 24), url=warehouse_url)
        context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources(warehouse_url, url))

        skipped = cache_invalidation_sensor(context)
        down = materialize_cache(warehouse_url, url)

        assert isinstance(skipped, dg.SkipReason) and "unavailable" in skipped.skip_message
        assert down["redis_available"] is False and "ConnectionError" in down["redis_error"]

        server.ensure_running()
        context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources(warehouse_url, url))
        assert isinstance(cache_invalidation_sensor(context), dg.RunRequest)
        back = materialize_cache(warehouse_url, url)
        assert back["redis_available"] is True and back["versions_recorded"] == 1
        assert isinstance(cache_invalidation_sensor(context), dg.SkipReason)
    finally:
        server.stop()
