"""The backtest cache on a real Redis and warehouse: keys, batches, TTL, versions, namespaces and outages."""

import logging
import os
import signal
import time
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest
from bars import hourly

from cryptobt_pipelines.cache import (
    TTL_SECONDS,
    BacktestCache,
    PutReport,
    VersionAdvance,
    backtest_key,
    backtest_keys,
    params_hash,
    read_data_versions,
)
from cryptobt_pipelines.warehouse.database import create_database, drop_database, with_database
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.servers import EmbeddedRedis

PARAMS = {"initial_investment": 10000.0, "fee": 0.001, "slippage": 0.0, "fill": "open", "fast_window": 20,
          "slow_window": 50}
START, END = date(2024, 1, 1), date(2024, 12, 31)
RESULT = {"final_value": 12500.0, "total_return": 0.25, "sharpe": 1.3, "max_drawdown": -0.18,
          "profit_factor": float("inf"), "n_trades": 7}


def key(crypto_id: int, version: int, params=PARAMS, start=START, end=END, bar_seconds=86400,
        strategy="sma_cross"):
    return backtest_key(crypto_id, version, strategy, params, start, end, bar_seconds)


def crypto_ids(url: str, *symbols: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT symbol, crypto_id FROM market.cryptos WHERE symbol = ANY(%s)",
                                 [list(symbols)]).fetchall())


def versions_of(url: str, ids) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        return read_data_versions(conn, ids)


def exists(cache: BacktestCache, *keys) -> int:
    return cache.client.exists(*(k.redis_key(cache.prefix) for k in keys))


def test_a_stored_result_is_a_hit_and_any_other_version_parameters_window_or_interval_a_miss(backtest_cache):
    stored = key(1, 3)
    assert backtest_cache.put(stored, RESULT)

    assert backtest_cache.get(stored) == RESULT
    others = [key(1, 4), key(2, 3), key(1, 3, params={**PARAMS, "fast_window": 21}),
              key(1, 3, start=date(2024, 1, 2)), key(1, 3, end=date(2024, 12, 30)), key(1, 3, bar_seconds=3600),
              key(1, 3, strategy="ema_cross")]
    assert len(set(others)) == len(others)
    assert all(backtest_cache.get(other) is None for other in others)


def test_batches_get_and_put_many_cryptos_at_once(backtest_cache):
    keys = [key(crypto_id, 1) for crypto_id in range(1, 6)]

    report = backtest_cache.put_many({k: {**RESULT, "crypto_id": k.crypto_id} for k in keys[:3]})
    found = backtest_cache.get_many(keys)

    assert report == PutReport(written=3, refused_stale=0, dropped=0)
    assert set(found) == set(keys[:3])
    assert [found[k]["crypto_id"] for k in keys[:3]] == [1, 2, 3]
    stats = backtest_cache.stats()
    assert (stats.hits, stats.misses) == (3, 2)
    assert backtest_cache.get_many([]) == {} and backtest_cache.put_many({}) == PutReport(0, 0, 0)


def test_entries_and_their_index_live_24_hours(backtest_cache):
    stored = key(7, 2)
    backtest_cache.put(stored, RESULT)

    assert TTL_SECONDS - 5 <= backtest_cache.client.ttl(stored.redis_key(backtest_cache.prefix)) <= TTL_SECONDS
    assert TTL_SECONDS - 5 <= backtest_cache.client.ttl(f"{backtest_cache.prefix}:i:7") <= TTL_SECONDS
    assert TTL_SECONDS == 86_400


def test_values_keep_numpy_numbers_and_infinity_and_large_ones_are_compressed(backtest_cache):
    equity = np.linspace(10_000, 12_000, 2_000)
    result = {"sharpe": np.float64(1.5), "n_trades": np.int64(4), "profit_factor": float("inf"), "equity": equity}

    backtest_cache.put(key(1, 1), result)
    stored = backtest_cache.client.get(key(1, 1).redis_key(backtest_cache.prefix))

    assert stored[:1] != b"{" and len(stored) < len(str(equity.tolist()))  # zlib, smaller than the JSON
    assert backtest_cache.get(key(1, 1)) == {"sharpe": 1.5, "n_trades": 4, "profit_factor": float("inf"),
                                             "equity": equity.tolist()}
    with pytest.raises(TypeError, match="cannot cache a value of type object"):
        backtest_cache.put(key(1, 1), {"x": object()})


def test_keys_name_their_window_strategy_and_interval_unambiguously_or_refuse():
    instant = datetime(2024, 1, 1, tzinfo=UTC)
    same_instant = instant.astimezone(timezone(timedelta(hours=2)))
    assert key(1, 1, start=instant) == key(1, 1, start=same_instant)
    assert key(1, 1, start=instant) != key(1, 1, start=date(2024, 1, 1))  # a day is not an instant
    assert params_hash({"a": 1, "b": 2.0}) == params_hash({"b": 2.0, "a": 1}) != params_hash({"a": 1, "b": 2})
    assert key(1, 1).redis_key("cryptobt:ns") == (
        f"cryptobt:ns:r:1:1:sma_cross:{params_hash(PARAMS)}:20240101:20241231:1d")
    with pytest.raises(ValueError, match="start=.*time zone"):
        key(1, 1, start=datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="end='2024-12-31'"):
        key(1, 1, end="2024-12-31")
    with pytest.raises(ValueError, match="strategy='SMA Cross'"):
        key(1, 1, strategy="SMA Cross")
    with pytest.raises(ValueError, match="bar_seconds=0"):
        key(1, 1, bar_seconds=0)
    with pytest.raises(ValueError, match="namespace='a:b'"):
        BacktestCache("redis://127.0.0.1:9", "a:b")


def test_data_versions_of_many_cryptos_come_from_one_query(warehouse_url):
    ids = crypto_ids(warehouse_url, "BTC", "ETH")
    load_batch(hourly("BTC", datetime(2024, 3, 1, tzinfo=UTC), 24), url=warehouse_url)

    with psycopg.connect(warehouse_url) as conn:
        every = read_data_versions(conn)
        asked = read_data_versions(conn, [ids["BTC"], ids["ETH"], 999_999])

    assert len(every) == 263
    assert asked == {ids["BTC"]: 1, ids["ETH"]: 0}  # unknown ids are absent


def test_a_cached_result_is_never_served_after_an_ingest_that_touched_its_crypto(warehouse_url, backtest_cache):
    ids = crypto_ids(warehouse_url, "BTC", "ETH")
    btc, eth = ids["BTC"], ids["ETH"]
    for symbol in ids:
        load_batch(hourly(symbol, datetime(2024, 3, 1, tzinfo=UTC), 48), url=warehouse_url)
    before = backtest_keys(versions_of(warehouse_url, ids.values()), "sma_cross", PARAMS, START, END, 3600)
    backtest_cache.put_many({before[btc]: {**RESULT, "symbol": "BTC"}, before[eth]: {**RESULT, "symbol": "ETH"}})
    assert len(backtest_cache.get_many(before.values())) == 2

    # An ingest that touches BTC only; no sensor has ticked, no cache asset has run.
    load_batch(hourly("BTC", datetime(2024, 3, 3, tzinfo=UTC), 1, price=51.0), url=warehouse_url)
    after = backtest_keys(versions_of(warehouse_url, ids.values()), "sma_cross", PARAMS, START, END, 3600)

    assert after[btc] != before[btc] and after[eth] == before[eth]
    assert backtest_cache.get_many(after.values()) == {after[eth]: {**RESULT, "symbol": "ETH"}}

    # A load that changes nothing (the same bar again) keeps the version, and the entries stay reachable.
    backtest_cache.put(after[btc], {**RESULT, "symbol": "BTC"})
    load_batch(hourly("BTC", datetime(2024, 3, 3, tzinfo=UTC), 1, price=51.0), url=warehouse_url)
    again = backtest_keys(versions_of(warehouse_url, ids.values()), "sma_cross", PARAMS, START, END, 3600)
    assert again == after and len(backtest_cache.get_many(again.values())) == 2


def test_a_writer_that_read_a_version_redis_knows_is_superseded_is_refused(warehouse_url, backtest_cache):
    btc = crypto_ids(warehouse_url, "BTC")["BTC"]
    load_batch(hourly("BTC", datetime(2024, 3, 1, tzinfo=UTC), 24), url=warehouse_url)
    read_before_ingest = versions_of(warehouse_url, [btc])[btc]
    load_batch(hourly("BTC", datetime(2024, 3, 2, tzinfo=UTC), 24), url=warehouse_url)
    backtest_cache.advance_versions(versions_of(warehouse_url, None))  # the cache asset ran

    late = backtest_cache.put_many({key(btc, read_before_ingest): RESULT})
    current = backtest_cache.put_many({key(btc, read_before_ingest + 1): RESULT})

    assert late == PutReport(written=0, refused_stale=1, dropped=0)
    assert not exists(backtest_cache, key(btc, read_before_ingest))
    assert current == PutReport(written=1, refused_stale=0, dropped=0)


def test_advancing_versions_deletes_superseded_entries_at_once_and_is_idempotent(backtest_cache):
    old = [key(1, 1), key(1, 1, params={**PARAMS, "fee": 0.002})]
    ahead = key(1, 2)  # written by a reader that saw the ingest before Redis's record did
    other = key(2, 1)
    backtest_cache.put_many({k: RESULT for k in [*old, ahead, other]})

    first = backtest_cache.advance_versions({1: 2, 2: 1, 3: 0})
    again = backtest_cache.advance_versions({1: 2, 2: 1, 3: 0})

    assert first == VersionAdvance(versions_bumped=0, versions_recorded=2, versions_reset=0, entries_deleted=2)
    assert again == VersionAdvance(0, 0, 0, 0)
    assert exists(backtest_cache, *old) == 0 and exists(backtest_cache, ahead, other) == 2
    assert backtest_cache.recorded_versions() == {1: 2, 2: 1}  # version 0 needs no record

    assert backtest_cache.advance_versions({1: 3, 2: 1}) == VersionAdvance(1, 0, 0, 1)
    assert exists(backtest_cache, ahead) == 0
    stats = backtest_cache.stats()
    assert (stats.versions_bumped, stats.entries_invalidated) == (1, 3)


def test_a_record_newer_than_the_warehouse_drops_that_cryptos_entries(backtest_cache):
    backtest_cache.advance_versions({1: 5})
    backtest_cache.put_many({key(1, 5): RESULT, key(2, 5): RESULT})

    restored = backtest_cache.advance_versions({1: 2})

    assert restored == VersionAdvance(versions_bumped=0, versions_recorded=0, versions_reset=1, entries_deleted=1)
    assert backtest_cache.recorded_versions() == {1: 2}
    assert backtest_cache.put(key(1, 2), RESULT) and backtest_cache.get(key(2, 5)) == RESULT


def test_two_warehouses_sharing_one_redis_never_meet(server_url, template_database, backtest_cache, redis_url):
    name = f"cryptobt_test_{uuid.uuid4().hex[:8]}"
    create_database(server_url, name, template=template_database)  # a clone: same tables, same versions
    try:
        other = BacktestCache.for_warehouse(with_database(server_url, name), redis_url)
        assert other.namespace != backtest_cache.namespace
        backtest_cache.put(key(1, 0), {"mine": 1})
        assert other.get(key(1, 0)) is None
        other.put(key(1, 0), {"theirs": 1})
        other.advance_versions({1: 1})
        other.clear()
        assert backtest_cache.get(key(1, 0)) == {"mine": 1}
        assert backtest_cache.recorded_versions() == {}
    finally:
        drop_database(server_url, name)


def test_hits_and_misses_add_up_across_clients_and_the_window_resets(backtest_cache, redis_url):
    elsewhere = BacktestCache(redis_url, backtest_cache.namespace)  # another process, say an API worker
    backtest_cache.put(key(1, 1), RESULT)
    backtest_cache.get(key(1, 1))
    elsewhere.get_many([key(1, 1), key(1, 2)])

    window = backtest_cache.stats(reset=True)
    after_reset = elsewhere.stats()

    assert (window.hits, window.misses, window.lookups) == (2, 1, 3)
    assert window.hit_rate == pytest.approx(2 / 3) and window.since is not None
    assert (after_reset.hits, after_reset.misses, after_reset.hit_rate) == (0, 0, None)
    elsewhere.close()


def warnings_from_cache(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "cryptobt_pipelines.cache" and r.levelno >= logging.WARNING]


def every_call_answers_without_redis(cache: BacktestCache) -> None:
    assert cache.get(key(1, 1)) is None
    assert cache.get_many([key(1, 1), key(2, 1)]) == {}
    assert cache.put_many({key(1, 1): RESULT, key(2, 1): RESULT}) == PutReport(written=0, refused_stale=0, dropped=2)
    assert cache.recorded_versions() is None and cache.advance_versions({1: 2}) is None
    assert cache.stats() is None and cache.usage() is None and cache.clear() is None
    assert cache.server_run_id() is None and not cache.ping()


def test_with_redis_stopped_every_call_answers_warns_once_and_the_cache_recovers_by_itself(tmp_path, caplog):
    # A private server, whatever CRYPTOBT_REDIS_URL says: stopping a shared one would break other tests.
    server = EmbeddedRedis(tmp_path).ensure_running()
    caplog.set_level(logging.INFO, logger="cryptobt_pipelines.cache")
    try:
        cache = BacktestCache(server.url(), "outage", retry_after=0.2, socket_timeout=0.2)
        assert cache.put(key(1, 1), RESULT) and cache.get(key(1, 1)) == RESULT

        server.stop()
        deadline = time.monotonic() + 0.7  # several retry periods: each retry fails again, silently
        while time.monotonic() < deadline:
            every_call_answers_without_redis(cache)
            time.sleep(0.05)
        assert not cache.available and "ConnectionError" in cache.last_error
        assert len(warnings_from_cache(caplog)) == 1
        assert "unavailable" in warnings_from_cache(caplog)[0].getMessage()

        server.ensure_running()  # a new, empty server at the same address
        time.sleep(0.25)
        assert cache.get(key(1, 1)) is None  # nothing survived the restart; the call went through
        assert cache.available
        assert cache.put(key(1, 1), RESULT) and cache.get(key(1, 1)) == RESULT
        assert len(warnings_from_cache(caplog)) == 1
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()


def test_a_hung_redis_costs_one_short_timeout_then_nothing_until_it_answers(tmp_path, caplog):
    server = EmbeddedRedis(tmp_path).ensure_running()
    pid = int(server.pidfile.read_text())
    try:
        cache = BacktestCache(server.url(), "hung", retry_after=0.3, socket_timeout=0.2)
        cache.put(key(1, 1), RESULT)
        os.kill(pid, signal.SIGSTOP)
        try:
            assert cache.get(key(1, 1)) is None  # timed out, not hung
            assert not cache.available and "Timeout" in cache.last_error
            assert cache.get(key(1, 1)) is None  # the breaker answers without waiting
        finally:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.35)
        assert cache.get(key(1, 1)) == RESULT and cache.available
        assert len(warnings_from_cache(caplog)) == 1
    finally:
        server.stop()
