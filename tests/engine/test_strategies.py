"""Hand-computed cases, a few bars each, one per strategy. Fee 0 unless the case is about fees; open = the
previous close so that next-open fills are easy to read off the closes."""

import numpy as np
import pandas as pd
import pytest

from cryptobt_pipelines.engine import kernel


def opens_from(close):
    return [close[0], *close[:-1]]


def test_buy_and_hold_buys_on_the_second_bar_open_and_holds(run_one):
    close = [10.0, 11.0, 12.0, 15.0]
    metrics, trades, equity = run_one("buy_and_hold", close, open=[9.0, 10.0, 12.0, 14.0], fee=0.001)
    units = 10000 / (10.0 * 1.001)
    assert trades["entry_bar"].tolist() == [1]
    assert metrics["final_value"] == pytest.approx(units * 15.0, rel=1e-12)
    assert np.isnan(equity).sum() == 0 and equity[0] == 10000.0
    assert metrics["n_trades"] == 1 and metrics["exposure"] == 0.75


def test_dca_splits_the_investment_into_equal_buys_over_the_window(run_one):
    # n_buys=2 over 4 bars: signals on bars 0 and 2, fills at the opens of bars 1 and 3.
    metrics, trades, _ = run_one("dca", [10.0, 20.0, 30.0, 40.0], fee=0.0, n_buys=2)
    assert trades["entry_bar"].tolist() == [1, 3]
    assert trades["units"].tolist() == pytest.approx([5000 / 20.0, 5000 / 40.0])
    assert metrics["final_value"] == pytest.approx((250 + 125) * 40.0)
    assert metrics["n_trades"] == 2 and trades["is_open"].all()


def test_dca_buys_due_on_one_bar_are_merged(run_one):
    # 5 buys over 2 bars: 3 due on bar 0, 2 on bar 1; under fill=close all cash is spent.
    metrics, trades, _ = run_one("dca", [10.0, 20.0], fee=0.0, n_buys=5, fill="close")
    assert trades["units"].tolist() == pytest.approx([6000 / 10.0, 4000 / 20.0])
    assert metrics["final_value"] == pytest.approx(800 * 20.0)


def test_sma_cross_enters_on_the_cross_above_and_exits_on_the_cross_below(run_one):
    # fast=close, slow=mean of 2: fast - slow = [-, -.5, -.5, 1, 1, -1.5, -.5] -> up at bar 3, down at bar 5.
    close = [3.0, 2.0, 1.0, 3.0, 5.0, 2.0, 1.0]
    metrics, trades, _ = run_one("sma_cross", close, open=opens_from(close), fee=0.0, fast_window=1, slow_window=2)
    assert (trades["entry_bar"].tolist(), trades["exit_bar"].tolist()) == ([4], [6])
    assert trades["entry_price"].tolist() == [3.0] and trades["exit_price"].tolist() == [2.0]
    assert metrics["final_value"] == pytest.approx(10000 / 3.0 * 2.0)


def test_sma_cross_is_strict_a_touch_is_not_a_cross(run_one):
    # fast - slow = [-, 0, 0.5]: it was equal, not below, before going above.
    metrics, _, _ = run_one("sma_cross", [1.0, 1.0, 2.0, 2.0], fee=0.0, fast_window=1, slow_window=2)
    assert metrics["n_trades"] == 0


def test_ema_cross(run_one):
    # slow EMA span 3 (alpha 1/2) of [4, 4, 2, 8, 2, 2] = [4, 4, 3, 5.5, 3.75, 2.875]: up at bar 3, down at bar 4.
    close = [4.0, 4.0, 2.0, 8.0, 2.0, 2.0]
    metrics, trades, _ = run_one("ema_cross", close, open=opens_from(close), fee=0.0, fast_window=1, slow_window=3)
    assert (trades["entry_bar"].tolist(), trades["exit_bar"].tolist()) == ([4], [5])
    assert metrics["final_value"] == pytest.approx(10000 / 8.0 * 2.0)


def test_ema_matches_pandas_ewm_without_adjustment():
    x = np.random.default_rng(3).uniform(1, 2, 50)
    expected = pd.Series(x).ewm(span=7, adjust=False, min_periods=7).mean().to_numpy()
    np.testing.assert_allclose(kernel.ema(x, 7), expected, rtol=1e-12)


def test_rsi_reversion(run_one):
    # period 2, changes -1 -1 +1 +1 +1 -1: RSI = [-, -, 0, 50, 75, 87.5, 43.75] -> buy on bar 2, sell on bar 4.
    close = [10.0, 9.0, 8.0, 9.0, 10.0, 11.0, 10.0]
    np.testing.assert_allclose(kernel.rsi(np.array(close), 2)[2:], [0.0, 50.0, 75.0, 87.5, 43.75])
    metrics, trades, _ = run_one("rsi_reversion", close, open=opens_from(close), fee=0.0, period=2)
    assert (trades["entry_bar"].tolist(), trades["exit_bar"].tolist()) == ([3], [5])
    assert metrics["final_value"] == pytest.approx(10000 / 8.0 * 10.0)


def test_bollinger_reversion(run_one):
    # window 2: mean 9, population std 1 on bar 2 -> lower band 8.5 at num_std 0.5; close 8 buys, 9 > 8.5 sells.
    close = [10.0, 10.0, 8.0, 9.0, 11.0]
    metrics, trades, _ = run_one("bollinger_reversion", close, open=opens_from(close), fee=0.0, window=2, num_std=0.5)
    assert (trades["entry_bar"].tolist(), trades["exit_bar"].tolist()) == ([3], [4])
    assert metrics["final_value"] == pytest.approx(10000 / 8.0 * 9.0)


def test_donchian_breakout(run_one):
    # highs = close + .5, lows = close - .5; bar 2 closes 7 above the prior 2 highs (6.5), bar 4 closes 6 below
    # the prior low (8.5).
    close = np.array([5.0, 6.0, 7.0, 9.0, 6.0, 4.0])
    metrics, trades, _ = run_one(
        "donchian_breakout", close, open=opens_from(close), high=close + 0.5, low=close - 0.5,
        fee=0.0, entry_window=2, exit_window=1,
    )
    assert (trades["entry_bar"].tolist(), trades["exit_bar"].tolist()) == ([3], [5])
    assert metrics["final_value"] == pytest.approx(10000 / 7.0 * 6.0)


def test_momentum_and_a_sell_signal_on_the_last_bar_that_never_fills(run_one):
    # lookback 2: change = [-, -, .2, .3, 0, -.15]: buy on bar 2; the sell signal comes on the last bar.
    close = [10.0, 10.0, 12.0, 13.0, 12.0, 11.0]
    metrics, trades, _ = run_one("momentum", close, open=opens_from(close), fee=0.0, lookback=2, threshold=0.1)
    assert trades["entry_bar"].tolist() == [3] and trades["is_open"].tolist() == [True]
    assert metrics["final_value"] == pytest.approx(10000 / 12.0 * 11.0)
    metrics, trades, _ = run_one("momentum", close, fee=0.0, lookback=2, threshold=0.1, fill="close")
    assert (trades["entry_bar"].tolist(), trades["exit_bar"].tolist()) == ([2], [5])
    assert not trades["is_open"][0]
    assert metrics["final_value"] == pytest.approx(10000 / 12.0 * 11.0)


def test_averages_of_a_flat_stretch_are_exact_so_it_never_crosses(run_one):
    # 0.1 summed in a running window drifts by 1e-17s; without exactness fast - slow would flicker around zero.
    close = [0.3, 0.2, 0.7] + [0.1] * 40
    np.testing.assert_array_equal(kernel.sma(np.array(close), 5)[10:], 0.1)
    np.testing.assert_array_equal(kernel.rolling_std(np.array(close), 5)[10:], 0.0)
    _, trades, _ = run_one("sma_cross", close, fast_window=2, slow_window=5)
    assert trades["entry_bar"].tolist() in ([], [4])  # nothing once the stretch is flat
    assert (trades["exit_bar"] < 10).all()
