import numpy as np
import pytest

from cryptobt_pipelines.engine import load_catalog, param_grid, run_backtests
from cryptobt_pipelines.engine.backtest import _STRATEGY_CODES

REQUIRED = {"buy_and_hold", "dca", "sma_cross", "ema_cross", "rsi_reversion", "bollinger_reversion",
            "donchian_breakout", "momentum"}


def test_ids_are_positions_and_every_strategy_has_a_kernel():
    strategies = load_catalog().strategies
    assert [s.id for s in strategies] == list(range(1, len(strategies) + 1))
    assert {s.name for s in strategies} == set(_STRATEGY_CODES) >= REQUIRED
    assert load_catalog().get(1).name == "buy_and_hold"


def test_defaults_are_valid_and_common_parameters_come_first():
    for strategy in load_catalog().strategies:
        resolved = strategy.resolve()
        assert list(resolved)[:4] == ["initial_investment", "fee", "slippage", "fill"]
        assert resolved["initial_investment"] == 10000.0 and resolved["fee"] == 0.001
        assert resolved["slippage"] == 0.0 and resolved["fill"] == "open"


@pytest.mark.parametrize(
    "params, message",
    [
        ({"fast_window": 50, "slow_window": 20}, "must be below"),
        ({"fast_window": 2.5}, "integer"),
        ({"fee": -0.1}, "<= value <="),
        ({"fill": "vwap"}, "one of"),
        ({"window": 3}, "unknown"),
        ({"fee": float("nan")}, "finite"),
    ],
)
def test_invalid_parameter_sets_are_refused(params, message):
    with pytest.raises(ValueError, match=message):
        load_catalog().get("sma_cross").resolve(params)


def test_unknown_strategy():
    with pytest.raises(KeyError, match="no strategy"):
        load_catalog().get("martingale")


def test_param_grid_is_a_cartesian_product_accepting_numpy_values():
    grid = param_grid(fast_window=np.array([5, 10]), slow_window=[50, 100], fee=0.0)
    assert grid == [
        {"fast_window": 5, "slow_window": 50, "fee": 0.0},
        {"fast_window": 5, "slow_window": 100, "fee": 0.0},
        {"fast_window": 10, "slow_window": 50, "fee": 0.0},
        {"fast_window": 10, "slow_window": 100, "fee": 0.0},
    ]
    prices = [np.ones((3, 1))] * 4
    assert run_backtests("sma_cross", *prices, grid).param_sets[3]["fast_window"] == 10


def test_inputs_must_be_2d_of_one_shape():
    with pytest.raises(ValueError, match="2-D"):
        run_backtests("buy_and_hold", *[np.ones(3)] * 4)
    with pytest.raises(ValueError, match="datetime64"):
        run_backtests("buy_and_hold", *[np.ones((3, 1))] * 4, timestamps=np.arange(3))
