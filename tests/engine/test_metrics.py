"""Each metric computed by hand on a short equity path."""

import numpy as np
import pytest

from cryptobt_pipelines.engine import METRIC_NAMES, run_backtests

from engine_data import one_crypto

QUARTER = int(365.25 * 86400 / 4)  # four such bars make exactly one calendar year


def test_return_risk_and_drawdown_metrics_by_hand():
    # buy_and_hold, fee 0, fill on the first close: equity 10000, 11000, 9900, 12100.
    result = run_backtests("buy_and_hold", *one_crypto([100.0, 110.0, 99.0, 121.0]), [dict(fee=0.0, fill="close")],
                           bar_seconds=QUARTER)
    m = {name: result.metrics[name][0, 0] for name in METRIC_NAMES}
    returns = np.array([0.0, 0.1, -0.1, 12100 / 9900 - 1])
    bars_per_year = 365 * 86400 / QUARTER
    assert m["final_value"] == pytest.approx(12100.0, rel=1e-14)
    assert m["total_return"] == pytest.approx(0.21, rel=1e-12)
    assert m["cagr"] == pytest.approx(0.21, rel=1e-12)  # the window is exactly one year
    assert m["sharpe"] == pytest.approx(returns.mean() / returns.std(ddof=1) * np.sqrt(bars_per_year), rel=1e-12)
    downside = np.sqrt((0.1**2) / 3)
    assert m["sortino"] == pytest.approx(returns.mean() / downside * np.sqrt(bars_per_year), rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(-0.1, rel=1e-12)
    assert m["calmar"] == pytest.approx(0.21 / 0.1, rel=1e-12)
    assert m["exposure"] == 1.0 and m["n_trades"] == 1


def test_cagr_uses_the_crypto_window_from_timestamps():
    # Two daily bars listed a year apart in the stamps: the window is 366 days (last open + one bar - first open).
    stamps = np.array(["2020-01-01", "2020-12-31"], dtype="datetime64[s]")
    result = run_backtests("buy_and_hold", *one_crypto([100.0, 200.0]), [dict(fee=0.0, fill="close")],
                           timestamps=stamps)
    assert result.metrics["cagr"][0, 0] == pytest.approx(2.0 ** (365.25 / 366) - 1, rel=1e-12)


def test_hourly_bars_annualise_by_8760():
    close = [100.0, 101.0, 100.5, 102.0]
    daily = run_backtests("buy_and_hold", *one_crypto(close), [dict(fill="close")])
    hourly = run_backtests("buy_and_hold", *one_crypto(close), [dict(fill="close")], bar_seconds=3600)
    assert hourly.metrics["sharpe"][0, 0] == pytest.approx(daily.metrics["sharpe"][0, 0] * np.sqrt(24), rel=1e-12)


def test_trade_metrics_by_hand(run_one):
    # sma 1/2, fill on close, fee 0: buy 3 sell 2 (pnl -3333.33), buy 3 sell 5 (pnl +4444.44).
    close = [3.0, 2.0, 1.0, 3.0, 5.0, 2.0, 1.0, 3.0, 6.0, 5.0]
    metrics, trades, _ = run_one("sma_cross", close, fee=0.0, fill="close", fast_window=1, slow_window=2)
    assert trades["pnl"].tolist() == pytest.approx([-10000 / 3, 10000 * 2 / 3 / 3 * 5 - 10000 * 2 / 3])
    assert metrics["final_value"] == pytest.approx(10000 * 2 / 3 * 5 / 3)
    assert metrics["win_rate"] == 0.5
    assert metrics["profit_factor"] == pytest.approx((10000 * 10 / 9 - 10000 * 2 / 3) / (10000 / 3))
    assert metrics["n_trades"] == 2
    assert metrics["exposure"] == 0.4  # holding at the close of bars 3, 4, 7, 8


def test_edge_cases_without_trades(run_one):
    metrics, trades, equity = run_one("sma_cross", [1.0, 2.0, 3.0, 4.0], fast_window=1, slow_window=2)
    assert len(trades) == 0 and (equity == 10000.0).all()
    assert metrics["final_value"] == 10000.0
    for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "win_rate",
                 "profit_factor", "n_trades", "exposure"):
        assert metrics[name] == 0.0, name


def test_profit_factor_is_infinite_with_gains_and_no_loss(run_one):
    metrics, _, _ = run_one("sma_cross", [3.0, 2.0, 4.0, 6.0, 5.0], fee=0.0, fill="close",
                            fast_window=1, slow_window=2)
    assert metrics["win_rate"] == 1.0 and metrics["profit_factor"] == np.inf


def test_open_trades_count_but_do_not_enter_win_rate(run_one):
    metrics, _, _ = run_one("buy_and_hold", [1.0, 2.0, 3.0])
    assert metrics["n_trades"] == 1 and metrics["win_rate"] == 0.0 and metrics["profit_factor"] == 0.0


def test_no_downside_gives_zero_sortino_and_a_single_bar_zero_sharpe(run_one):
    metrics, _, _ = run_one("buy_and_hold", [1.0, 2.0, 3.0], fee=0.0, fill="close")
    assert metrics["sortino"] == 0.0 and metrics["sharpe"] > 0 and metrics["max_drawdown"] == 0.0
    assert metrics["calmar"] == 0.0
    metrics, _, _ = run_one("buy_and_hold", [1.0], fill="close")
    assert metrics["sharpe"] == 0.0 and metrics["sortino"] == 0.0
