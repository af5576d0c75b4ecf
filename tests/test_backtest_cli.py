"""`cryptobt backtest` against a real warehouse: JSON shape, the readable table, and every kind of bad input."""

import json
from datetime import date

import pandas as pd
import pytest
from backtest_data import load_daily
from click.testing import CliRunner

from cryptobt_pipelines.backtests import backtest_cryptos, resolve_symbols
from cryptobt_pipelines.cli import main
from cryptobt_pipelines.engine import METRIC_NAMES
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import refresh_rollups


def cryptobt(*args):
    return CliRunner().invoke(main, ["backtest", *args])


def test_json_holds_one_object_per_crypto_with_symbol_and_every_metric(warehouse_url):
    load_daily(warehouse_url)

    result = cryptobt("--strategy", "sma_cross", "--crypto", "btc,ETH", "--param", "fast_window=10",
                      "--start", "2021-02-01", "--end", "2022-01-31", "--json")

    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert [item["symbol"] for item in answer] == ["BTC", "ETH"]
    assert all(set(METRIC_NAMES) <= set(item) for item in answer)
    assert all(item["first_bar"] >= "2021-02-01" and item["last_bar"] < "2022-02-01" for item in answer)
    ids = [c.crypto_id for c in resolve_symbols(["BTC", "ETH"], warehouse_url)]
    expected = backtest_cryptos("sma_cross", ids, {"fast_window": 10}, start=date(2021, 2, 1), end=date(2022, 1, 31))
    assert answer[0]["final_value"] == expected[0].metrics["final_value"]
    assert answer[0]["n_trades"] == expected[0].metrics["n_trades"] and isinstance(answer[0]["n_trades"], int)


def test_an_infinite_profit_factor_is_null_in_json(warehouse_url):
    # One winning trade and no loss: the one metric that is infinite.
    closes = [10, 9, 8, 9, 12, 14, 16, 15, 14, 13, 12, 11, 10]
    bars = pd.DataFrame({"line": range(1, 14), "symbol": "XRP", "open": closes, "high": closes, "low": closes,
                         "close": closes, "volume": 1.0,
                         "ts": pd.date_range("2024-01-01", periods=13, freq="D", tz="UTC")})
    load_batch(PriceBatch("test", "test", bars, bar_seconds=86_400), url=warehouse_url)
    refresh_rollups(warehouse_url)

    result = cryptobt("--strategy", "sma_cross", "--crypto", "XRP", "--param", "fast_window=1",
                      "--param", "slow_window=2", "--json")

    [answer] = json.loads(result.output)
    assert answer["win_rate"] == 1.0 and answer["n_trades"] == 1
    assert answer["profit_factor"] is None
    assert "inf" in cryptobt("--strategy", "sma_cross", "--crypto", "XRP", "--param", "fast_window=1",
                             "--param", "slow_window=2").output.splitlines()[-1]


def test_without_json_a_readable_table(warehouse_url):
    load_daily(warehouse_url)

    result = cryptobt("--strategy", "dca", "--crypto", "SOL,ADA", "--param", "n_buys=6", "--param", "fill=close")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("dca {'n_buys': 6} · 1d · fee 0.001")
    assert lines[1].split()[:4] == ["symbol", "first", "bar", "last"]
    assert [line.split()[0] for line in lines[3:]] == ["SOL", "ADA"]
    assert all(line.split()[-2] == "6" for line in lines[3:])  # trades


@pytest.mark.parametrize(("args", "message"), [
    (["--crypto", "BTC"], "--strategy is required"),
    (["--strategy", "sma_cross"], "--crypto is required"),
    (["--strategy", "nope", "--crypto", "BTC"], "no strategy 'nope' in the catalog"),
    (["--strategy", "sma_cross", "--crypto", "BTC,NOPE"], "unknown symbols: NOPE"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--start", "2021-02-30"], "--start '2021-02-30': expected a date"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--end", "yesterday"], "--end 'yesterday': expected a date"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--start", "2022-01-02", "--end", "2022-01-01"], "is not before"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "fast_window=ten"],
     "fast_window='ten': expected an integer"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "fee=lots"], "fee='lots': expected a number"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "fast_window=0"],
     "fast_window=0: expected 1 <= value <= 5000"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "fast_window=80"],
     "fast_window=80 must be below slow_window=50"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "fill=noon"], "fill='noon': expected one of"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "speed=3"], "unknown parameter 'speed' for sma_cross"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--param", "fast_window"], "expected NAME=VALUE"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--interval", "5m"], "interval must be one of ['1d', '1h']"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--interval", "1h"], "no hourly bars for BTC"),
    (["--strategy", "sma_cross", "--crypto", "BTC", "--start", "2030-01-01"], "no 1d bars in the window for BTC"),
])
def test_bad_input_is_one_line_naming_it_and_exit_1(warehouse_url, args, message):
    load_daily(warehouse_url, ["BTC"], days=60)

    result = cryptobt(*args)

    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("cryptobt: ")
    assert message in result.output
