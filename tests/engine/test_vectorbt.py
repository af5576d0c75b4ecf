"""The engine against vectorbt's Portfolio.from_signals (DESIGN.md names it as the reference).

Signals are computed independently here (vectorbt's MA for the SMA cross, pandas for the others), shifted one bar
for next-open fills, and simulated by vectorbt with size=inf, longonly, price=open.
"""

import numpy as np
import pandas as pd
import pytest

from cryptobt_pipelines.engine import run_backtests
from engine_data import random_walk

vbt = pytest.importorskip("vectorbt")


def reference_signals(strategy, params, high, low, close):
    if strategy == "sma_cross":
        fast = vbt.MA.run(close, params["fast_window"])
        slow = vbt.MA.run(close, params["slow_window"])
        return fast.ma_crossed_above(slow).to_numpy(), fast.ma_crossed_below(slow).to_numpy()
    if strategy == "momentum":
        change = close / close.shift(params["lookback"]) - 1
        return (change > params["threshold"]).to_numpy(), (change < 0).to_numpy()
    if strategy == "donchian_breakout":
        upper = high.rolling(params["entry_window"]).max().shift(1)
        lower = low.rolling(params["exit_window"]).min().shift(1)
        return (close > upper).to_numpy(), (close < lower).to_numpy()
    if strategy == "bollinger_reversion":
        mean = close.rolling(params["window"]).mean()
        std = close.rolling(params["window"]).std(ddof=0)
        return (close < mean - params["num_std"] * std).to_numpy(), (close > mean).to_numpy()
    raise AssertionError(strategy)


CASES = [
    ("sma_cross", {"fast_window": 10, "slow_window": 30}),
    ("sma_cross", {"fast_window": 20, "slow_window": 50, "fee": 0.0}),
    ("sma_cross", {"fast_window": 5, "slow_window": 15, "fee": 0.002, "slippage": 0.001, "fill": "close"}),
    ("momentum", {"lookback": 10, "threshold": 0.02, "fee": 0.0025}),
    ("donchian_breakout", {"entry_window": 20, "exit_window": 10, "slippage": 0.003}),
    ("bollinger_reversion", {"window": 20, "num_std": 1.5, "fill": "close"}),
]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("strategy, params", CASES)
def test_final_values_and_trade_counts_match_vectorbt(strategy, params, seed):
    open, high, low, close = random_walk(600, 5, seed)
    result = run_backtests(strategy, open, high, low, close, [params])
    full = result.param_sets[0]

    index = pd.date_range("2020-01-01", periods=len(close), freq="D")
    frames = [pd.DataFrame(a, index=index) for a in (open, high, low, close)]
    entries, exits = reference_signals(strategy, full, *frames[1:])
    if full["fill"] == "open":
        entries = np.vstack([np.zeros((1, entries.shape[1]), bool), entries[:-1]])
        exits = np.vstack([np.zeros((1, exits.shape[1]), bool), exits[:-1]])
    portfolio = vbt.Portfolio.from_signals(
        frames[3], entries, exits, init_cash=full["initial_investment"], fees=full["fee"],
        slippage=full["slippage"], size=np.inf, size_type="amount", direction="longonly",
        price=frames[0] if full["fill"] == "open" else frames[3], freq="1D",
    )
    np.testing.assert_allclose(result.metrics["final_value"][:, 0], portfolio.final_value().to_numpy(), rtol=1e-9)
    np.testing.assert_array_equal(result.metrics["n_trades"][:, 0], portfolio.trades.count().to_numpy())
    assert result.metrics["n_trades"].sum() > 10  # the case exercises the simulator
    # Where the definitions coincide, the statistics agree as well.
    np.testing.assert_allclose(result.metrics["sharpe"][:, 0], portfolio.sharpe_ratio().to_numpy(), rtol=1e-9)
    closed = portfolio.trades.closed
    np.testing.assert_allclose(result.metrics["win_rate"][:, 0], closed.win_rate().fillna(0).to_numpy(), rtol=1e-9)
