import pytest

from cryptobt_pipelines.engine import run_backtests
from engine_data import one_crypto


@pytest.fixture
def run_one():
    """Metrics (as floats) and trades of one strategy, one parameter set, one crypto."""

    def run(strategy, close, open=None, high=None, low=None, **params):
        result = run_backtests(strategy, *one_crypto(close, open, high, low), [params], equity=True, trades=True)
        metrics = {name: float(values[0, 0]) for name, values in result.metrics.items()}
        return metrics, result.trades, result.equity[0, 0]

    return run
