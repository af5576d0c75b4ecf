from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from cryptobt_pipelines.sources.batch import BAR_COLUMNS, PriceBatch
from cryptobt_pipelines.sources.synthetic import generate_prices, write_binance_csv

UTC = timezone.utc
YEAR_START = datetime(2023, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2024, 1, 1, tzinfo=UTC)
PRICES = ["open", "high", "low", "close"]


@pytest.fixture(scope="module")
def year_of_bars() -> pd.DataFrame:
    """40 cryptos, one year hourly: large enough for the statistical properties, fast enough for every run."""
    return generate_prices([f"C{i:02d}" for i in range(40)], YEAR_START, YEAR_END).bars


def log_returns(bars: pd.DataFrame) -> pd.Series:
    return np.log(bars["close"]).groupby(bars["symbol"], sort=False).diff().dropna()


def test_batch_shape_and_order():
    batch = generate_prices(["ETH", "BTC"], datetime(2024, 1, 1), datetime(2024, 1, 8), seed=3)
    bars = batch.bars
    assert isinstance(batch, PriceBatch)
    assert (batch.format, batch.source, batch.bar_seconds) == ("synthetic", "synthetic:seed=3", 3600)
    assert list(bars.columns) == BAR_COLUMNS
    assert str(bars["ts"].dtype) == "datetime64[us, UTC]"
    assert bars["line"].tolist() == list(range(1, len(bars) + 1))
    assert bars["symbol"].unique().tolist() == ["ETH", "BTC"]
    assert (bars.groupby("symbol")["ts"].diff().dropna() > pd.Timedelta(0)).all()
    assert batch.rejects.empty


def test_same_arguments_give_identical_bars():
    args = (["BTC", "ETH", "SOL"], datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
    pd.testing.assert_frame_equal(generate_prices(*args).bars, generate_prices(*args).bars)
    assert not generate_prices(*args).bars.equals(generate_prices(*args, seed=8).bars)


def test_a_symbol_does_not_depend_on_the_others_requested():
    start, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)
    alone = generate_prices(["BTC"], start, end).bars.drop(columns="line")
    crowd = generate_prices(["DOGE", "BTC", "ETH"], start, end).bars
    in_crowd = crowd[crowd["symbol"] == "BTC"].drop(columns="line").reset_index(drop=True)
    pd.testing.assert_frame_equal(alone, in_crowd)


def test_naive_datetimes_are_utc():
    naive = generate_prices(["BTC"], datetime(2024, 1, 1), datetime(2024, 1, 10)).bars
    aware = generate_prices(["BTC"], datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 10, tzinfo=UTC)).bars
    pd.testing.assert_frame_equal(naive, aware)


@pytest.mark.parametrize("bar_seconds", [300, 3600, 14400, 86400])
def test_bars_sit_on_the_utc_grid_inside_half_open_window(bar_seconds):
    start = datetime(2024, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 2023-12-31 22:30 UTC
    end = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    bars = generate_prices(["BTC", "ETH", "XRP"], start, end, bar_seconds=bar_seconds).bars
    ts = bars["ts"]
    assert ts.min() >= pd.Timestamp(start) and ts.max() < pd.Timestamp(end)
    assert (ts.astype("int64") % (bar_seconds * 1_000_000) == 0).all()
    first = pd.Timestamp(start).tz_convert("UTC").ceil(f"{bar_seconds}s")
    grid = pd.date_range(first, end, freq=f"{bar_seconds}s", inclusive="left")
    assert ts.isin(grid).all()


def test_end_is_excluded_on_the_grid():
    bars = generate_prices(["BTC"], datetime(2024, 1, 1), datetime(2024, 1, 1, 5)).bars
    assert bars["ts"].max() <= pd.Timestamp("2024-01-01 04:00", tz="UTC")
    assert generate_prices(["BTC"], datetime(2024, 1, 1), datetime(2024, 1, 1)).bars.empty


def test_ohlc_is_valid_positive_and_never_nan(year_of_bars):
    bars = year_of_bars
    assert not bars[PRICES + ["volume"]].isna().any().any()
    assert (bars[PRICES] > 0).all().all() and (bars["volume"] >= 0).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "close"]].max(axis=1) <= bars["high"]).all()


def test_open_is_usually_the_previous_close(year_of_bars):
    previous_close = year_of_bars.groupby("symbol", sort=False)["close"].shift()
    same = (year_of_bars["open"] == previous_close)[previous_close.notna()]
    assert 0.9 < same.mean() < 1.0


def test_starting_prices_span_many_magnitudes(year_of_bars):
    first_open = year_of_bars.groupby("symbol")["open"].first()
    assert first_open.min() < 0.01 and first_open.max() > 1000


def test_listings_and_delistings_differ(year_of_bars):
    by_symbol = year_of_bars.groupby("symbol")["ts"]
    first, last = by_symbol.min(), by_symbol.max()
    assert (first == first.min()).sum() > len(first) / 2, "most cryptos trade from the start"
    assert (first > first.min()).sum() >= 3 and first.nunique() >= 4
    assert (last < last.max() - pd.Timedelta(days=7)).any(), "some crypto is delisted"


def test_gaps_both_shared_and_per_crypto(year_of_bars):
    steps = year_of_bars.groupby("symbol")["ts"].diff().dropna()
    assert (steps > pd.Timedelta(hours=1)).sum() >= 40
    grid = pd.date_range(YEAR_START, YEAR_END, freq="h", inclusive="left")
    missing_everywhere = grid[~grid.isin(year_of_bars["ts"])]
    assert len(missing_everywhere) >= 1, "a shared outage leaves an hour with no bars at all"


def test_returns_are_fat_tailed_and_volatility_clusters(year_of_bars):
    returns = log_returns(year_of_bars)
    by_symbol = returns.groupby(year_of_bars.loc[returns.index, "symbol"])
    assert by_symbol.apply(pd.Series.kurt).median() > 1
    assert by_symbol.apply(lambda r: r.abs().autocorr(1)).median() > 0.05


def test_volume_follows_the_size_of_moves(year_of_bars):
    returns = log_returns(year_of_bars)
    volume = year_of_bars.loc[returns.index, "volume"]
    dollar_volume = (volume * year_of_bars.loc[returns.index, "close"]).where(volume > 0)
    correlation = returns.abs().groupby(year_of_bars.loc[returns.index, "symbol"]).apply(
        lambda r: r.corr(dollar_volume.loc[r.index], method="spearman")
    )
    assert correlation.median() > 0.2


def test_zero_volume_placeholders_are_flat(year_of_bars):
    placeholders = year_of_bars[year_of_bars["volume"] == 0]
    assert len(placeholders) >= 100
    assert placeholders[PRICES].nunique(axis=1).eq(1).all()
    assert (year_of_bars.loc[year_of_bars["volume"] > 0, "volume"] > 0).all()


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="bar_seconds"):
        generate_prices(["BTC"], YEAR_START, YEAR_END, bar_seconds=7)
    with pytest.raises(ValueError, match="unique"):
        generate_prices(["BTC", "BTC"], YEAR_START, YEAR_END)
    with pytest.raises(ValueError, match="upper-case"):
        generate_prices(["btc"], YEAR_START, YEAR_END)


@pytest.mark.parametrize(
    ("bar_seconds", "suffix", "ts_format"), [(3600, "1h", "%Y-%m-%d %H:%M:%S"), (86400, "1d", "%Y-%m-%d")]
)
def test_binance_csv_round_trip(tmp_path, bar_seconds, suffix, ts_format):
    symbols = [f"C{i:02d}" for i in range(12)]  # prices from fractions of a cent to tens of thousands
    batch = generate_prices(symbols, datetime(2022, 1, 1), datetime(2023, 1, 1), bar_seconds=bar_seconds)
    paths = write_binance_csv(batch, tmp_path / "out")
    assert [p.name for p in paths] == [f"{s}USDT_{suffix}.csv" for s in symbols]
    for symbol, path in zip(symbols, paths):
        text = path.read_text()
        assert text.startswith("timestamp,open,high,low,close,volume\n") and text.endswith("\n")
        read = pd.read_csv(path, dtype={"timestamp": str})
        expected = batch.bars[batch.bars["symbol"] == symbol].reset_index(drop=True)
        assert read["timestamp"].tolist() == expected["ts"].dt.strftime(ts_format).tolist()
        for column in ["open", "high", "low", "close", "volume"]:
            np.testing.assert_array_equal(read[column].to_numpy(), expected[column].to_numpy(), err_msg=column)


def test_csv_of_values_off_any_tick_grid_is_close(tmp_path):
    bars = pd.DataFrame(
        {
            "line": [1, 2, 3],
            "symbol": ["ETH", "BTC", "BTC"],
            "ts": pd.to_datetime(["2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 01:00"], utc=True),
            "open": [1 / 3, 42_000.5, 41_999.25],
            "high": [2 / 3, 42_100.0, 42_000.5],
            "low": [0.1, 41_900.0, 41_000.0],
            "close": [0.5, 42_050.0, 42_000.5],
            "volume": [1e-9, 0.0, 123_456_789.0],
        }
    )
    paths = write_binance_csv(PriceBatch("test", "test", bars, bar_seconds=3600), tmp_path)
    # Per file and column, the fewest decimals that print every value exactly; rows by time.
    assert [p.name for p in paths] == ["ETHUSDT_1h.csv", "BTCUSDT_1h.csv"]
    assert paths[1].read_text().splitlines()[1:] == [
        "2024-01-01 01:00:00,41999.25,42000.5,41000,42000.5,123456789",
        "2024-01-01 02:00:00,42000.50,42100.0,41900,42050.0,0",
    ]
    eth = pd.read_csv(paths[0])
    np.testing.assert_allclose(eth.loc[0, PRICES].to_numpy(float), [1 / 3, 2 / 3, 0.1, 0.5], rtol=1e-11)
    assert eth.loc[0, "volume"] == 1e-9


def test_csv_refuses_values_binance_never_prints(tmp_path):
    batch = generate_prices(["BTC"], datetime(2024, 1, 1), datetime(2024, 1, 2))
    batch.bars.loc[3, "low"] = np.nan
    with pytest.raises(ValueError, match="finite"):
        write_binance_csv(batch, tmp_path)
