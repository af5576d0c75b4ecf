import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptobt_pipelines.engine import METRIC_NAMES, load_catalog, run_backtests
from engine_data import random_walk

SETTINGS = settings(max_examples=40, deadline=None)
STRATEGIES = [s.name for s in load_catalog().strategies]
# Small windows so short random series actually trade.
SMALL_WINDOWS = {
    "dca": {"n_buys": 3},
    "sma_cross": {"fast_window": 2, "slow_window": 4},
    "ema_cross": {"fast_window": 2, "slow_window": 4},
    "rsi_reversion": {"period": 3, "lower": 40.0, "upper": 60.0},
    "bollinger_reversion": {"window": 3, "num_std": 0.5},
    "donchian_breakout": {"entry_window": 2, "exit_window": 2},
    "momentum": {"lookback": 2},
}

costs = st.fixed_dictionaries({
    "fee": st.sampled_from([0.0, 0.001, 0.01]),
    "slippage": st.sampled_from([0.0, 0.0005, 0.02]),
    "fill": st.sampled_from(["open", "close"]),
})


def universe(n_bars, n_cryptos, seed, listed_from):
    """Random walks with each crypto listed from its own bar (NaN before) and a few random gaps."""
    prices = random_walk(n_bars, n_cryptos, seed, volatility=0.05)
    rng = np.random.default_rng(seed + 1)
    invalid = (np.arange(n_bars)[:, None] < np.asarray(listed_from)[None, :]) | (rng.random((n_bars, n_cryptos)) < 0.05)
    return [np.where(invalid, np.nan, a) for a in prices]


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 40), params=costs)
def test_no_signal_leaves_the_value_unchanged(seed, n_bars, params):
    # A slow average longer than the series never exists, so there is never a signal.
    result = run_backtests("sma_cross", *random_walk(n_bars, 2, seed),
                           [dict(fast_window=n_bars, slow_window=n_bars + 1, **params)], equity=True)
    assert (result.metrics["final_value"] == 10000.0).all()
    assert (result.equity == 10000.0).all()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 40), params=costs)
def test_buy_and_hold_is_the_price_ratio_less_one_fee(seed, n_bars, params):
    open, high, low, close = random_walk(n_bars, 1, seed)
    result = run_backtests("buy_and_hold", open, high, low, close, [params])
    entry = close[0, 0] if params["fill"] == "close" else open[1, 0]
    expected = 10000.0 * close[-1, 0] / (entry * (1 + params["slippage"])) / (1 + params["fee"])
    assert result.metrics["final_value"][0, 0] == pytest.approx(expected, rel=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 60), strategy=st.sampled_from(STRATEGIES),
       params=costs)
def test_equity_is_never_negative(seed, n_bars, strategy, params):
    result = run_backtests(strategy, *universe(n_bars, 3, seed, [0, 1, n_bars // 2]),
                           [{**SMALL_WINDOWS.get(strategy, {}), **params}], equity=True)
    curves = result.equity[~np.isnan(result.equity)]
    assert (curves > 0).all()
    assert np.isfinite(result.metrics["final_value"]).all()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 60), strategy=st.sampled_from(STRATEGIES),
       listed_from=st.lists(st.integers(0, 70), min_size=4, max_size=4), params=costs)
def test_a_crypto_result_does_not_depend_on_the_rest_of_the_batch(seed, n_bars, strategy, listed_from, params):
    prices = universe(n_bars, 4, seed, listed_from)
    params = [{**SMALL_WINDOWS.get(strategy, {}), **params}]
    batch = run_backtests(strategy, *prices, params, equity=True, trades=True)
    for ci in range(4):
        alone = run_backtests(strategy, *[a[:, [ci]] for a in prices], params, equity=True, trades=True)
        for name in METRIC_NAMES:
            np.testing.assert_array_equal(alone.metrics[name][0], batch.metrics[name][ci])
        np.testing.assert_array_equal(alone.equity[0], batch.equity[ci])
        mine = batch.trades[batch.trades["crypto"] == ci]
        assert alone.trades[list(alone.trades.dtype.names[1:])].tolist() == mine[list(mine.dtype.names[1:])].tolist()


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 80),
       windows=st.lists(st.tuples(st.integers(1, 10), st.integers(1, 10)), min_size=1, max_size=6), params=costs)
def test_grid_results_equal_one_at_a_time_results(seed, n_bars, windows, params):
    prices = universe(n_bars, 2, seed, [0, 3])
    grid = [dict(fast_window=a, slow_window=a + b, **params) for a, b in windows]
    batch = run_backtests("sma_cross", *prices, grid, equity=True)
    for pi, param_set in enumerate(grid):
        alone = run_backtests("sma_cross", *prices, [param_set], equity=True)
        for name in METRIC_NAMES:
            np.testing.assert_array_equal(alone.metrics[name][:, 0], batch.metrics[name][:, pi])
        np.testing.assert_array_equal(alone.equity[:, 0], batch.equity[:, pi])
