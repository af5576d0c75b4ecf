"""Fill timing, fee and slippage arithmetic, marking to market, and how invalid (NaN) bars are treated."""

import numpy as np
import pytest

from cryptobt_pipelines.engine import run_backtests

# sma 1/2 on these closes: buy signal on bar 2, sell signal on bar 4.
CLOSE = [5.0, 4.0, 6.0, 7.0, 5.0, 4.0]
OPEN = [5.0, 4.5, 5.5, 6.5, 6.0, 4.5]
SMA = dict(fast_window=1, slow_window=2)


def test_next_open_fill_uses_the_following_bar_open(run_one):
    _, trades, _ = run_one("sma_cross", CLOSE, open=OPEN, fee=0.0, **SMA)
    assert trades[["entry_bar", "exit_bar"]].tolist() == [(3, 5)]
    assert (trades["entry_price"][0], trades["exit_price"][0]) == (6.5, 4.5)


def test_close_fill_uses_the_signal_bar_close(run_one):
    _, trades, _ = run_one("sma_cross", CLOSE, open=OPEN, fee=0.0, fill="close", **SMA)
    assert trades[["entry_bar", "exit_bar"]].tolist() == [(2, 4)]
    assert (trades["entry_price"][0], trades["exit_price"][0]) == (6.0, 5.0)


def test_fee_and_slippage_arithmetic(run_one):
    fee, slippage = 0.01, 0.02
    metrics, trades, _ = run_one("sma_cross", CLOSE, open=OPEN, fee=fee, slippage=slippage, **SMA)
    buy_price, sell_price = 6.5 * (1 + slippage), 4.5 * (1 - slippage)
    units = 10000 / (buy_price * (1 + fee))
    proceeds = units * sell_price * (1 - fee)
    assert trades["entry_price"][0] == pytest.approx(buy_price, rel=1e-15)
    assert trades["exit_price"][0] == pytest.approx(sell_price, rel=1e-15)
    assert trades["units"][0] == pytest.approx(units, rel=1e-15)
    assert trades["pnl"][0] == pytest.approx(proceeds - 10000, rel=1e-12)
    assert trades["return"][0] == pytest.approx(proceeds / 10000 - 1, rel=1e-12)
    assert metrics["final_value"] == pytest.approx(proceeds, rel=1e-15)


def test_open_position_is_marked_to_market_at_the_last_close_without_exit_fee(run_one):
    metrics, trades, equity = run_one("buy_and_hold", [10.0, 12.0, 9.0], fee=0.01, slippage=0.02, fill="close")
    units = 10000 / (10.0 * 1.02 * 1.01)
    assert metrics["final_value"] == pytest.approx(units * 9.0, rel=1e-15)
    assert equity.tolist() == pytest.approx([units * 10.0, units * 12.0, units * 9.0], rel=1e-15)
    assert trades["is_open"][0] and trades["exit_bar"][0] == 2 and trades["exit_price"][0] == 9.0
    assert trades["pnl"][0] == pytest.approx(units * 9.0 - 10000, rel=1e-12)


def test_invalid_bars_are_skipped_signal_fills_at_the_next_valid_open():
    nan = np.nan
    # Listed on bar 2, a gap on bar 5. Over the valid bars (5, 4, 6, 3, 3.5) sma 1/2 crosses up on bar 4 and
    # down on bar 6: the buy fills at the next valid open, bar 6's, the sell at bar 7's.
    close = np.array([nan, nan, 5.0, 4.0, 6.0, nan, 3.0, 3.5])
    open = np.array([nan, nan, 5.0, 5.5, 4.5, nan, 3.8, 3.2])
    prices = [a.reshape(-1, 1) for a in (open, np.fmax(open, close), np.fmin(open, close), close)]
    result = run_backtests("sma_cross", *prices, [dict(fee=0.0, **SMA)], equity=True, trades=True)
    assert result.trades[["entry_bar", "exit_bar"]].tolist() == [(6, 7)]
    assert np.isnan(result.equity[0, 0, [0, 1, 5]]).all()
    assert result.metrics["final_value"][0, 0] == pytest.approx(10000 / 3.8 * 3.2)

    compact = [a[~np.isnan(close)] for a in prices]
    alone = run_backtests("sma_cross", *compact, [dict(fee=0.0, **SMA)])
    for name in ("final_value", "total_return", "sharpe", "sortino", "max_drawdown", "n_trades", "exposure"):
        assert alone.metrics[name][0, 0] == result.metrics[name][0, 0]


def test_a_crypto_without_valid_bars_keeps_its_cash():
    prices = [np.full((5, 1), np.nan)] * 4
    result = run_backtests("buy_and_hold", *prices, equity=True)
    assert result.metrics["final_value"][0, 0] == 10000.0
    assert all(result.metrics[name][0, 0] == 0.0 for name in result.metrics if name != "final_value")
    assert np.isnan(result.equity).all()


def test_a_non_positive_price_makes_the_bar_invalid(run_one):
    metrics, trades, equity = run_one("buy_and_hold", [10.0, 0.0, 12.0], open=[10.0, 11.0, 12.0], fee=0.0)
    assert trades["entry_bar"].tolist() == [2] and np.isnan(equity[1])
    assert metrics["final_value"] == 10000.0
