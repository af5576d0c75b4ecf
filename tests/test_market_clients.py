"""The Binance and CoinGecko clients against the local market stub (no internet)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from market_stub import daily_chart, make_klines, market_stub  # noqa: F401  (fixture)

from cryptobt_pipelines.sources.batch import SourceError
from cryptobt_pipelines.sources.binance_api import BinanceClient, SymbolNotListed
from cryptobt_pipelines.sources.coingecko_api import CoinGeckoClient, CoinNotFound
from cryptobt_pipelines.sources.http import SourceUnavailable

JAN_1 = datetime(2024, 1, 1, tzinfo=UTC)
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def binance(stub, **options) -> BinanceClient:
    options = {"backoff_factor": 0.0, "now": lambda: LATER, **options}
    return BinanceClient(base_url=stub.binance_url, **options)


def coingecko(stub, **options) -> CoinGeckoClient:
    options = {"backoff_factor": 0.0, "min_interval": 0.0, "now": lambda: LATER, **options}
    return CoinGeckoClient(base_url=stub.coingecko_url, **options)


def hours(n: int) -> timedelta:
    return timedelta(hours=n)


# -- Binance: data


def test_klines_page_past_the_1000_limit(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 2500))

    batch = binance(market_stub).fetch_klines("btc", JAN_1, JAN_1 + hours(2500))

    assert (batch.format, batch.bar_seconds) == ("binance_api", 3600)
    bars = batch.bars
    assert len(bars) == 2500 and batch.rejects.empty
    assert bars["line"].tolist() == list(range(1, 2501))
    assert bars["ts"].dtype == "datetime64[us, UTC]"
    assert bars["ts"].iloc[0] == pd.Timestamp(JAN_1) and bars["ts"].iloc[-1] == pd.Timestamp(JAN_1 + hours(2499))
    assert set(bars["symbol"]) == {"BTC"}
    first = bars.iloc[0]
    assert (first.open, first.high, first.low, first.close, first.volume) == (100.0, 102.0, 99.0, 101.0, 10.0)
    assert all(bars[c].dtype == np.float64 for c in ["open", "high", "low", "close", "volume"])
    calls = market_stub.requests_to("klines")
    assert [c.query["limit"] for c in calls] == ["1000"] * 3
    assert [c.query["symbol"] for c in calls] == ["BTCUSDT"] * 3
    start_ms = int(JAN_1.timestamp() * 1000)
    assert int(calls[1].query["startTime"]) == start_ms + 999 * 3_600_000 + 1
    assert int(calls[0].query["endTime"]) == start_ms + 2500 * 3_600_000 - 1


def test_range_is_half_open(market_stub):
    market_stub.set_klines("ETHUSDT", make_klines(JAN_1, 48))

    bars = binance(market_stub).fetch_klines("ETH", JAN_1 + hours(5), JAN_1 + hours(10)).bars

    assert bars["ts"].tolist() == [pd.Timestamp(JAN_1 + hours(h)) for h in range(5, 10)]


@pytest.mark.parametrize(
    ("now", "closed"),
    [
        (JAN_1 + hours(12) + timedelta(minutes=30), 12),  # the 12:00 candle is still forming
        (JAN_1 + hours(12), 12),  # 11:00 closed at 11:59:59.999, 12:00 has just opened
        (JAN_1 + hours(12) - timedelta(milliseconds=1), 11),  # 11:00 closes at this very ms: not yet
    ],
)
def test_forming_candle_is_dropped(market_stub, now, closed):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 13))  # as Binance: up to the current candle

    bars = binance(market_stub, now=lambda: now).fetch_klines("BTC", JAN_1, JAN_1 + hours(24)).bars

    assert len(bars) == closed
    assert bars["ts"].iloc[-1] == pd.Timestamp(JAN_1 + hours(closed - 1))


def test_microsecond_open_times_parse_like_milliseconds(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 1500, time_unit="us"))
    market_stub.set_klines("ETHUSDT", make_klines(JAN_1, 1500, time_unit="ms"))
    client = binance(market_stub)

    in_us = client.fetch_klines("BTC", JAN_1, JAN_1 + hours(1500)).bars
    in_ms = client.fetch_klines("ETH", JAN_1, JAN_1 + hours(1500)).bars

    pd.testing.assert_frame_equal(in_us.drop(columns="symbol"), in_ms.drop(columns="symbol"))
    assert len(market_stub.requests_to("klines")) == 4  # two pages each: paging works on µs too


def test_unparsable_klines_are_rejected_with_their_position(market_stub):
    rows = make_klines(JAN_1, 4)
    rows[1][2] = "n/a"
    rows[2] = rows[2][:5]
    market_stub.set_klines("BTCUSDT", rows)

    batch = binance(market_stub).fetch_klines("BTC", JAN_1, JAN_1 + hours(4))

    assert batch.bars["line"].tolist() == [1, 4]
    assert batch.rejects["line"].tolist() == [2, 3]
    assert batch.rejects["reason"].tolist() == ["high is not a number: 'n/a'", "expected a list of 12 fields"]
    assert set(batch.rejects["symbol"]) == {"BTC"}


def test_invalid_symbol_raises_symbol_not_listed(market_stub):
    with pytest.raises(SymbolNotListed, match="NOPEUSDT") as raised:
        binance(market_stub).fetch_klines("nope", JAN_1, JAN_1 + hours(1))

    assert isinstance(raised.value, SourceError) and raised.value.pair == "NOPEUSDT"
    assert len(market_stub.requests) == 1  # a 400 is an answer, not a reason to retry


# -- Binance: retries, timeouts, pace (the shared http layer)


def test_retry_after_is_honoured_on_429(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 3))
    market_stub.inject("klines", status=429, headers={"Retry-After": "1"}, body={"code": -1003, "msg": "Too many"})

    started = time.monotonic()
    bars = binance(market_stub).fetch_klines("BTC", JAN_1, JAN_1 + hours(3)).bars

    assert len(bars) == 3
    assert time.monotonic() - started >= 1.0
    first, second = market_stub.requests_to("klines")
    assert second.at - first.at >= 1.0


def test_retry_after_beyond_the_cap_fails_at_once(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 3))
    market_stub.inject("klines", status=418, headers={"Retry-After": "120"})

    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match="120 s.*max_retry_after=5") as raised:
        binance(market_stub, max_retry_after=5).fetch_klines("BTC", JAN_1, JAN_1 + hours(3))

    assert time.monotonic() - started < 2
    assert (raised.value.status, raised.value.retry_after) == (418, 120)


def test_server_errors_are_retried_with_backoff(market_stub, caplog):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 3))
    market_stub.inject("klines", status=503, times=2)

    with caplog.at_level(logging.WARNING, logger="cryptobt_pipelines.sources.http"):
        bars = binance(market_stub, backoff_factor=0.1).fetch_klines("BTC", JAN_1, JAN_1 + hours(3)).bars

    assert len(bars) == 3
    calls = market_stub.requests_to("klines")
    assert len(calls) == 3
    assert calls[2].at - calls[1].at >= 0.2  # urllib3: 2nd retry waits backoff_factor * 2
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 503" in retries[0]


def test_exhausted_retries_name_the_url_and_last_status(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 3))
    market_stub.inject("klines", status=502, times=10)

    with pytest.raises(SourceUnavailable, match=r"/api/v3/klines\?symbol=BTCUSDT.*last status 502") as raised:
        binance(market_stub, max_retries=2).fetch_klines("BTC", JAN_1, JAN_1 + hours(3))

    assert raised.value.status == 502
    assert len(market_stub.requests_to("klines")) == 3


def test_read_timeout_is_retried(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 3))
    market_stub.inject("klines", delay=1.0)

    bars = binance(market_stub, timeout=(1.0, 0.2)).fetch_klines("BTC", JAN_1, JAN_1 + hours(3)).bars

    assert len(bars) == 3
    assert len(market_stub.requests_to("klines")) == 2


def test_read_timeouts_past_the_retries_fail_clearly(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 3))
    market_stub.inject("klines", delay=1.0, times=10)

    with pytest.raises(SourceUnavailable, match="klines.*ReadTimeoutError"):
        binance(market_stub, timeout=(1.0, 0.2), max_retries=1).fetch_klines("BTC", JAN_1, JAN_1 + hours(3))

    assert len(market_stub.requests_to("klines")) == 2


def test_min_interval_spaces_requests(market_stub):
    market_stub.set_klines("BTCUSDT", make_klines(JAN_1, 2100))

    binance(market_stub, min_interval=0.15).fetch_klines("BTC", JAN_1, JAN_1 + hours(2100))

    starts = [call.at for call in market_stub.requests_to("klines")]
    assert len(starts) == 3 and min(np.diff(starts)) >= 0.14


# -- CoinGecko

MAY_1 = datetime(2024, 5, 1, tzinfo=UTC)


def test_daily_prices_join_volumes_by_timestamp(market_stub):
    prices, volumes = daily_chart(MAY_1, 5)
    del volumes[2]  # day 2 has a price but no volume
    volumes.append([prices[-1][0] + 86_400_000, 9.0])  # a volume without a price
    market_stub.set_chart("bitcoin", prices, volumes, market_caps=[[t, 1e12] for t, _ in prices])

    batch = coingecko(market_stub).fetch_daily("bitcoin", "btc", MAY_1, MAY_1 + timedelta(days=30))

    assert (batch.format, batch.bar_seconds) == ("coingecko_api", 86_400)
    bars = batch.bars
    assert bars["ts"].tolist() == [pd.Timestamp(MAY_1 + timedelta(days=n)) for n in range(5)]
    assert bars["close"].tolist() == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert (bars["open"] == bars["close"]).all() and (bars["high"] == bars["low"]).all()
    assert bars["volume"].tolist()[:2] == [1e6, 1e6 + 1] and np.isnan(bars["volume"].iloc[2])
    assert set(bars["symbol"]) == {"BTC"} and bars["line"].tolist() == [1, 2, 3, 4, 5]
    (call,) = market_stub.requests_to("market_chart")
    assert call.query == {
        "vs_currency": "usd",
        "from": str(int(MAY_1.timestamp())),
        "to": str(int((MAY_1 + timedelta(days=30)).timestamp())),
        "interval": "daily",
    }


def test_off_grid_snapshot_and_current_day_are_dropped(market_stub):
    now = MAY_1 + timedelta(days=4, hours=15, minutes=7)
    prices, volumes = daily_chart(MAY_1, 5)  # the last point is today's 00:00
    prices.append([int(now.timestamp() * 1000), 999.0])  # CoinGecko's live snapshot
    volumes.append([int(now.timestamp() * 1000), 999.0])
    market_stub.set_chart("bitcoin", prices, volumes)

    bars = coingecko(market_stub, now=lambda: now).fetch_daily("bitcoin", "BTC", MAY_1, MAY_1 + timedelta(days=30)).bars

    assert bars["ts"].tolist() == [pd.Timestamp(MAY_1 + timedelta(days=n)) for n in range(4)]


def test_hourly_answer_keeps_only_midnight_points(market_stub):
    hourly = [[int((MAY_1 + hours(h)).timestamp() * 1000), 100.0 + h] for h in range(72)]
    market_stub.set_chart("bitcoin", hourly, hourly)

    bars = coingecko(market_stub).fetch_daily("bitcoin", "BTC", MAY_1, MAY_1 + timedelta(days=3)).bars

    assert bars["close"].tolist() == [100.0, 124.0, 148.0]


def test_unparsable_points_are_rejected(market_stub):
    prices, volumes = daily_chart(MAY_1, 3)
    prices[1] = [prices[1][0], None]
    market_stub.set_chart("bitcoin", prices, volumes)

    batch = coingecko(market_stub).fetch_daily("bitcoin", "BTC", MAY_1, MAY_1 + timedelta(days=3))

    assert batch.bars["line"].tolist() == [1, 3]
    assert batch.rejects[["line", "reason"]].values.tolist() == [[2, "price point: value is not a number: None"]]


def test_api_key_goes_in_the_demo_header(market_stub):
    market_stub.set_chart("bitcoin", *daily_chart(MAY_1, 2))

    coingecko(market_stub, api_key="CG-secret").fetch_daily("bitcoin", "BTC", MAY_1, MAY_1 + timedelta(days=2))
    coingecko(market_stub).fetch_daily("bitcoin", "BTC", MAY_1, MAY_1 + timedelta(days=2))

    with_key, without_key = market_stub.requests_to("market_chart")
    assert with_key.headers["x-cg-demo-api-key"] == "CG-secret"
    assert "x-cg-demo-api-key" not in without_key.headers


def test_unknown_coin_raises_coin_not_found(market_stub):
    with pytest.raises(CoinNotFound, match="'no-such-coin'") as raised:
        coingecko(market_stub).fetch_daily("no-such-coin", "NSC", MAY_1, MAY_1 + timedelta(days=2))

    assert isinstance(raised.value, SourceError)
    assert len(market_stub.requests) == 1


def test_coingecko_rate_limit_is_retried(market_stub):
    market_stub.set_chart("bitcoin", *daily_chart(MAY_1, 2))
    market_stub.inject("market_chart", status=429, body={"status": {"error_code": 429}})

    bars = coingecko(market_stub).fetch_daily("bitcoin", "BTC", MAY_1, MAY_1 + timedelta(days=2)).bars

    assert len(bars) == 2 and len(market_stub.requests_to("market_chart")) == 2
