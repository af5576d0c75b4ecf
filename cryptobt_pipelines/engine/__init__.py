"""The backtest engine: plain arrays in, arrays out. No Dagster, SQL or Redis here."""

from .backtest import METRIC_NAMES, TRADE_DTYPE, BacktestResult, run_backtests
from .catalog import Catalog, Parameter, Strategy, load_catalog, param_grid

__all__ = [
    "METRIC_NAMES",
    "TRADE_DTYPE",
    "BacktestResult",
    "Catalog",
    "Parameter",
    "Strategy",
    "load_catalog",
    "param_grid",
    "run_backtests",
]
