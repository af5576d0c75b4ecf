"""``run_backtests``: one catalog strategy over a universe of cryptos and a grid of parameter sets, in one call.

Semantics (DESIGN.md, "Backtest semantics"):

- Inputs are (bars x cryptos) float arrays. A bar is *valid* for a crypto when its open, high, low and close are all
  finite and > 0. Invalid bars (before listing, after delisting, gaps) do not exist for the strategy: no indicator
  value, no signal, no fill; a signal fills at the next *valid* bar. A crypto's window runs from its first to its
  last valid bar; a crypto without valid bars keeps its initial cash and zero metrics.
- One position, long-only, fractional units, all-in: a buy spends all cash (dca: its tranche), a sell sells all.
  Signals are taken on a bar's close and fill at the next valid bar's open (``fill="close"``: at that close). A
  signal on the window's last bar never fills under ``fill="open"``.
- A buy of cash C at price P gets ``C / (P' * (1 + fee))`` units with ``P' = P * (1 + slippage)``; a sell of u units
  returns ``u * P' * (1 - fee)`` with ``P' = P * (1 - slippage)``. A position open at the end is marked to market at
  the last close, not sold (no exit fee).

Metrics, per (crypto, parameter set), over the crypto's window (valid bars only):

- ``final_value``: equity at the last valid close; ``total_return = final_value / initial - 1``.
- ``cagr = (final_value / initial) ** (1 / years) - 1``, ``years`` = (last valid bar's open time + one bar - first
  valid bar's open time) / 365.25 days: the exact time the money was at work. Windows under a year extrapolate.
- Per-bar returns ``r[k] = equity[k] / equity[k-1] - 1`` with ``equity[-1] = initial``, one per valid bar.
  ``sharpe = mean(r) / std(r, ddof=1) * sqrt(bars_per_year)``; ``sortino`` the same over the downside deviation
  ``sqrt(sum(min(r, 0)**2) / (n - 1))``; ``bars_per_year = 365 days / bar_seconds`` (365 daily, 8,760 hourly).
  Both are 0 when the deviation is 0 (no trade, no loss) or there is a single bar.
- ``max_drawdown = min(equity / running peak - 1)``, the peak starting at the initial cash: a negative fraction, 0
  without drawdown. ``calmar = cagr / |max_drawdown|``, 0 when max_drawdown is 0.
- ``win_rate``: closed trades with pnl > 0 over closed trades, 0 without closed trades. ``profit_factor``: gross pnl
  of winning closed trades over that of losing ones; 0 without closed gains, ``inf`` with gains and no loss (the
  one metric that can be non-finite).
- ``n_trades``: trades opened, the one still open at the end included (vectorbt's ``trades.count()``); each dca buy
  is a trade. ``exposure``: fraction of valid bars that end holding units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import kernel
from .catalog import Strategy, load_catalog

_STRATEGY_CODES = {
    "buy_and_hold": kernel.BUY_AND_HOLD,
    "dca": kernel.DCA,
    "sma_cross": kernel.SMA_CROSS,
    "ema_cross": kernel.EMA_CROSS,
    "rsi_reversion": kernel.RSI_REVERSION,
    "bollinger_reversion": kernel.BOLLINGER_REVERSION,
    "donchian_breakout": kernel.DONCHIAN_BREAKOUT,
    "momentum": kernel.MOMENTUM,
}

METRIC_NAMES = kernel.METRIC_NAMES
SECONDS_PER_YEAR = 365.25 * 86400.0  # calendar years, for cagr
SECONDS_PER_TRADING_YEAR = 365.0 * 86400.0  # crypto trades every day: 365 daily bars, 8,760 hourly

TRADE_DTYPE = np.dtype(
    [
        ("crypto", np.int64),  # column of the input arrays
        ("param_set", np.int64),  # position in BacktestResult.param_sets
        ("entry_bar", np.int64),  # row of the input arrays where the buy filled
        ("exit_bar", np.int64),  # row of the sell, or of the last valid bar when still open
        ("entry_price", np.float64),  # fill price, slippage included
        ("exit_price", np.float64),  # fill price, or the last close when still open
        ("units", np.float64),
        ("pnl", np.float64),  # proceeds (or marked value) - cash spent, fees included
        ("return", np.float64),  # pnl / cash spent
        ("is_open", np.bool_),
    ]
)


@dataclass(frozen=True)
class BacktestResult:
    strategy: Strategy
    param_sets: list[dict[str, Any]]  # complete (defaults filled in), in the order of the second axis below
    metrics: dict[str, np.ndarray]  # name -> (n_cryptos, n_param_sets) float64
    equity: np.ndarray | None  # (n_cryptos, n_param_sets, n_bars) marked-to-market value, NaN on invalid bars
    trades: np.ndarray | None  # TRADE_DTYPE records ordered by crypto, param set, entry


def run_backtests(
    strategy: str | int,
    open: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    param_sets: list[dict[str, Any]] | None = None,
    *,
    bar_seconds: int = 86400,
    timestamps: np.ndarray | None = None,
    equity: bool = False,
    trades: bool = False,
) -> BacktestResult:
    """Run ``strategy`` (catalog name or id) over every crypto (column) and every parameter set.

    ``param_sets``: a list of dicts, each partial (catalog defaults fill the rest); None means the defaults once.
    ``catalog.param_grid`` builds a cartesian grid. ``bar_seconds``: bar length (86400 daily, 3600 hourly).
    ``timestamps``: the bars' open times as datetime64 (length n_bars); None means evenly spaced bars.
    ``equity`` / ``trades``: also return the equity curves / the trade records (asking for trades runs the
    kernel twice: once to count them, once to write them).
    """
    spec = load_catalog().get(strategy)
    resolved = [spec.resolve(p) for p in (param_sets if param_sets is not None else [{}])]
    if not resolved:
        raise ValueError("param_sets is empty")
    prices = [np.asarray(a, dtype=np.float64) for a in (open, high, low, close)]
    shape = prices[3].shape
    if len(shape) != 2 or any(a.shape != shape for a in prices):
        raise ValueError(f"open, high, low and close must be 2-D (bars x cryptos) of one shape, got {[a.shape for a in prices]}")
    n_bars, n_cryptos = shape

    offsets, bar_index, *packed = kernel.pack_valid_bars(*prices)
    years = _window_years(offsets, bar_index, n_bars, bar_seconds, timestamps)
    param_matrix = np.array([list(_encode(p).values()) for p in resolved], dtype=np.float64)
    bars_per_year = SECONDS_PER_TRADING_YEAR / bar_seconds
    n_sets = len(resolved)

    def run(metrics, equity_out, record_trades, trade_offsets, trade_rows):
        kernel.run_kernel(
            _STRATEGY_CODES[spec.name], offsets, bar_index, *packed, years, param_matrix, bars_per_year,
            metrics, equity_out is not None, equity_out if equity_out is not None else np.empty((0, 0, 0)),
            record_trades, trade_offsets, trade_rows,
        )

    metrics = np.empty((n_cryptos, n_sets, len(METRIC_NAMES)))
    equity_out = np.empty((n_cryptos, n_sets, n_bars)) if equity else None
    no_offsets = np.zeros(n_cryptos * n_sets, np.int64)
    run(metrics, equity_out, False, no_offsets, np.empty((0, len(kernel.TRADE_COLUMNS))))

    trade_records = None
    if trades:
        counts = metrics[:, :, METRIC_NAMES.index("n_trades")].astype(np.int64).ravel()
        trade_offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rows = np.empty((int(counts.sum()), len(kernel.TRADE_COLUMNS)))
        run(np.empty_like(metrics), None, True, trade_offsets, rows)
        trade_records = _trade_records(rows, counts, n_sets)

    return BacktestResult(
        strategy=spec,
        param_sets=resolved,
        metrics={name: metrics[:, :, i] for i, name in enumerate(METRIC_NAMES)},
        equity=equity_out,
        trades=trade_records,
    )


def _encode(param_set: dict[str, Any]) -> dict[str, float]:
    """A resolved parameter set as the kernel's float row (common parameters first, as ``resolve`` orders them)."""
    return {name: float(value == "close") if name == "fill" else float(value) for name, value in param_set.items()}


def _window_years(offsets, bar_index, n_bars, bar_seconds, timestamps) -> np.ndarray:
    if timestamps is None:
        seconds = np.arange(n_bars, dtype=np.float64) * bar_seconds
    else:
        stamps = np.asarray(timestamps)
        if stamps.dtype.kind != "M" or stamps.shape != (n_bars,):
            raise ValueError(
                "timestamps must be a datetime64 array with one entry per bar "
                "(for a tz-aware pandas index: index.tz_convert(None).to_numpy())"
            )
        seconds = stamps.astype("datetime64[ns]").astype(np.int64) / 1e9
    has_bars = offsets[1:] > offsets[:-1]
    first = bar_index[offsets[:-1][has_bars]]
    last = bar_index[offsets[1:][has_bars] - 1]
    years = np.ones(len(has_bars))  # cryptos without valid bars never reach cagr
    years[has_bars] = (seconds[last] - seconds[first] + bar_seconds) / SECONDS_PER_YEAR
    return years


def _trade_records(rows: np.ndarray, counts: np.ndarray, n_sets: int) -> np.ndarray:
    records = np.empty(len(rows), dtype=TRADE_DTYPE)
    jobs = np.repeat(np.arange(counts.size), counts)
    records["crypto"] = jobs // n_sets
    records["param_set"] = jobs % n_sets
    for i, name in enumerate(kernel.TRADE_COLUMNS):
        records[name] = rows[:, i]
    return records
