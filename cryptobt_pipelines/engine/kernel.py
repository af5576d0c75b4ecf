"""The compiled part of the engine: valid-bar packing, indicators, signals, simulation and metrics in one kernel.

Everything numba compiles lives in this one file on purpose: numba's on-disk cache (``cache=True``) checks only the
file of the function it loads, so a helper in another module could change without the cached kernel noticing.

Each crypto is simulated over its *valid* bars only (open, high, low and close all finite and > 0), packed
contiguously: indicators look back over valid bars, a signal fills at the next valid bar, and gaps simply do not exist
for the strategy. The wrapper (``backtest.py``) owns the public API; nothing here is meant to be called directly.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Internal strategy codes (the kernel's dispatch); catalog names map onto them in backtest.py.
BUY_AND_HOLD = 0
DCA = 1
SMA_CROSS = 2
EMA_CROSS = 3
RSI_REVERSION = 4
BOLLINGER_REVERSION = 5
DONCHIAN_BREAKOUT = 6
MOMENTUM = 7

# Layout of a parameter row: the common parameters, then the strategy's own in catalog order.
P_INITIAL, P_FEE, P_SLIPPAGE, P_FILL_ON_CLOSE = 0, 1, 2, 3
N_COMMON_PARAMS = 4

METRIC_NAMES = (
    "final_value",
    "total_return",
    "cagr",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "win_rate",
    "profit_factor",
    "n_trades",
    "exposure",
)
TRADE_COLUMNS = ("entry_bar", "exit_bar", "entry_price", "exit_price", "units", "pnl", "return", "is_open")


@njit(cache=True)
def _is_valid_bar(o, h, l, c):
    # NaN fails every comparison, so this also rejects missing values.
    return 0.0 < o < np.inf and 0.0 < h < np.inf and 0.0 < l < np.inf and 0.0 < c < np.inf


@njit(cache=True, parallel=True)
def pack_valid_bars(open_, high, low, close):
    """Per crypto (column), its valid bars packed contiguously: offsets into the packed arrays and bar indices."""
    n_bars, n_cryptos = close.shape
    counts = np.zeros(n_cryptos, np.int64)
    for ci in prange(n_cryptos):
        count = 0
        for t in range(n_bars):
            if _is_valid_bar(open_[t, ci], high[t, ci], low[t, ci], close[t, ci]):
                count += 1
        counts[ci] = count
    offsets = np.zeros(n_cryptos + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    total = offsets[n_cryptos]
    bar_index = np.empty(total, np.int64)
    packed_open = np.empty(total)
    packed_high = np.empty(total)
    packed_low = np.empty(total)
    packed_close = np.empty(total)
    for ci in prange(n_cryptos):
        k = offsets[ci]
        for t in range(n_bars):
            if _is_valid_bar(open_[t, ci], high[t, ci], low[t, ci], close[t, ci]):
                bar_index[k] = t
                packed_open[k] = open_[t, ci]
                packed_high[k] = high[t, ci]
                packed_low[k] = low[t, ci]
                packed_close[k] = close[t, ci]
                k += 1
    return offsets, bar_index, packed_open, packed_high, packed_low, packed_close


# --- indicators (NaN until defined) -------------------------------------------------------------------------------


@njit(cache=True)
def sma(x, window):
    """Mean of the last ``window`` values. Over a flat window it is that value exactly: a running sum's rounding
    would otherwise leave fast and slow averages of a flat stretch 1e-12 apart and cross them at random."""
    n = x.size
    out = np.full(n, np.nan)
    total = 0.0
    flat_run = 0
    for k in range(n):
        total += x[k]
        if k >= window:
            total -= x[k - window]
        flat_run = flat_run + 1 if k > 0 and x[k] == x[k - 1] else 1
        if flat_run >= window:
            out[k] = x[k]
        elif k >= window - 1:
            out[k] = total / window
    return out


@njit(cache=True)
def ema(x, span):
    """pandas ``ewm(span=span, adjust=False, min_periods=span).mean()``: seeded with x[0], defined from span - 1."""
    n = x.size
    out = np.full(n, np.nan)
    alpha = 2.0 / (span + 1.0)
    value = x[0]
    for k in range(n):
        if k > 0:
            value = alpha * x[k] + (1.0 - alpha) * value
        if k >= span - 1:
            out[k] = value
    return out


@njit(cache=True)
def rsi(x, period):
    """Wilder's RSI: averages seeded with the plain mean of the first ``period`` changes, defined from bar ``period``."""
    n = x.size
    out = np.full(n, np.nan)
    if n <= period:
        return out
    gain = 0.0
    loss = 0.0
    for k in range(1, period + 1):
        change = x[k] - x[k - 1]
        if change > 0:
            gain += change
        else:
            loss -= change
    gain /= period
    loss /= period
    for k in range(period, n):
        if k > period:
            change = x[k] - x[k - 1]
            gain = (gain * (period - 1) + max(change, 0.0)) / period
            loss = (loss * (period - 1) + max(-change, 0.0)) / period
        if loss == 0.0:
            out[k] = 50.0 if gain == 0.0 else 100.0
        else:
            out[k] = 100.0 - 100.0 / (1.0 + gain / loss)
    return out


@njit(cache=True)
def rolling_std(x, window):
    """Population standard deviation (ddof=0) of the last ``window`` values, as in Bollinger's bands."""
    n = x.size
    out = np.full(n, np.nan)
    # Sums of deviations from the first value keep the variance formula away from catastrophic cancellation.
    origin = x[0]
    total = 0.0
    total_sq = 0.0
    flat_run = 0
    for k in range(n):
        d = x[k] - origin
        total += d
        total_sq += d * d
        if k >= window:
            d_old = x[k - window] - origin
            total -= d_old
            total_sq -= d_old * d_old
        flat_run = flat_run + 1 if k > 0 and x[k] == x[k - 1] else 1
        if flat_run >= window:
            out[k] = 0.0  # exactly, as sma() is exact there
        elif k >= window - 1:
            mean = total / window
            out[k] = np.sqrt(max(total_sq / window - mean * mean, 0.0))
    return out


@njit(cache=True)
def previous_max(x, window):
    """Max of the ``window`` values before each bar (the bar itself excluded)."""
    n = x.size
    out = np.full(n, np.nan)
    for k in range(window, n):
        out[k] = x[k - window : k].max()
    return out


@njit(cache=True)
def previous_min(x, window):
    n = x.size
    out = np.full(n, np.nan)
    for k in range(window, n):
        out[k] = x[k - window : k].min()
    return out


# --- signals: +1 buy, -1 sell, 0 nothing (dca: the number of equal buys due on that bar) -------------------------


@njit(cache=True)
def crossover_signals(fast, slow, signals):
    for k in range(1, fast.size):
        if fast[k] > slow[k] and fast[k - 1] < slow[k - 1]:
            signals[k] = 1
        elif fast[k] < slow[k] and fast[k - 1] > slow[k - 1]:
            signals[k] = -1


@njit(cache=True)
def write_signals(strategy, open_, high, low, close, own_params, signals):
    n = close.size
    if strategy == BUY_AND_HOLD:
        signals[0] = 1
    elif strategy == DCA:
        n_buys = int(own_params[0])
        for j in range(n_buys):
            signals[(j * n) // n_buys] += 1
    elif strategy == SMA_CROSS:
        crossover_signals(sma(close, int(own_params[0])), sma(close, int(own_params[1])), signals)
    elif strategy == EMA_CROSS:
        crossover_signals(ema(close, int(own_params[0])), ema(close, int(own_params[1])), signals)
    elif strategy == RSI_REVERSION:
        values = rsi(close, int(own_params[0]))
        lower, upper = own_params[1], own_params[2]
        for k in range(n):
            if values[k] < lower:
                signals[k] = 1
            elif values[k] > upper:
                signals[k] = -1
    elif strategy == BOLLINGER_REVERSION:
        window, num_std = int(own_params[0]), own_params[1]
        mean = sma(close, window)
        std = rolling_std(close, window)
        for k in range(n):
            if close[k] < mean[k] - num_std * std[k]:
                signals[k] = 1
            elif close[k] > mean[k]:
                signals[k] = -1
    elif strategy == DONCHIAN_BREAKOUT:
        upper = previous_max(high, int(own_params[0]))
        lower = previous_min(low, int(own_params[1]))
        for k in range(n):
            if close[k] > upper[k]:
                signals[k] = 1
            elif close[k] < lower[k]:
                signals[k] = -1
    elif strategy == MOMENTUM:
        lookback, threshold = int(own_params[0]), own_params[1]
        for k in range(lookback, n):
            change = close[k] / close[k - lookback] - 1.0
            if change > threshold:
                signals[k] = 1
            elif change < 0.0:
                signals[k] = -1


# --- simulation and metrics ---------------------------------------------------------------------------------------


@njit(cache=True)
def simulate(open_, close, signals, params, accumulate, tranche, equity, record_trades, trades, first_trade, bar_index):
    """One crypto, one parameter set, over its valid bars. Writes ``equity``; returns trade statistics.

    All-in mode (``accumulate`` False): a buy signal while flat spends all cash, a sell signal while long sells all.
    Accumulate mode (dca): each buy signal spends ``tranche`` times its count, capped by the cash left.
    Trades are recorded from row ``first_trade`` of ``trades`` when ``record_trades``.
    """
    cash = params[P_INITIAL]
    fee = params[P_FEE]
    slippage = params[P_SLIPPAGE]
    fill_on_close = params[P_FILL_ON_CLOSE] != 0.0
    units = 0.0
    n_trades = 0
    first_open = 0  # first still-open trade, as a count of trades so far
    n_closed = 0
    n_wins = 0
    gross_profit = 0.0
    gross_loss = 0.0
    cost_open = 0.0  # cash spent on the open position, fees included
    bars_in_position = 0
    pending = 0
    n = close.size
    for k in range(n):
        if fill_on_close:
            signal = signals[k]
            price = close[k]
        else:
            # The previous bar's signal fills at this bar's open; this bar's waits for the next one.
            signal = pending
            price = open_[k]
            pending = signals[k]
        if signal > 0 and cash > 0.0 and (accumulate or units == 0.0):
            spend = min(cash, tranche * signal) if accumulate else cash
            fill_price = price * (1.0 + slippage)
            bought = spend / (fill_price * (1.0 + fee))
            units += bought
            cash = cash - spend if accumulate else 0.0
            cost_open += spend
            if record_trades:
                row = first_trade + n_trades
                trades[row, 0] = bar_index[k]
                trades[row, 2] = fill_price
                trades[row, 4] = bought
                trades[row, 6] = spend  # cost for now; turned into a return when the trade ends
            n_trades += 1
        elif signal < 0 and units > 0.0:
            # Only all-in strategies sell, so the position is exactly one trade.
            fill_price = price * (1.0 - slippage)
            proceeds = units * fill_price * (1.0 - fee)
            cash += proceeds
            pnl = proceeds - cost_open
            n_closed += 1
            if pnl > 0.0:
                n_wins += 1
                gross_profit += pnl
            else:
                gross_loss -= pnl
            if record_trades:
                row = first_trade + n_trades - 1
                trades[row, 1] = bar_index[k]
                trades[row, 3] = fill_price
                trades[row, 5] = pnl
                trades[row, 6] = pnl / cost_open
                trades[row, 7] = 0.0
            units = 0.0
            cost_open = 0.0
            first_open = n_trades
        if units > 0.0:
            bars_in_position += 1
        equity[k] = cash + units * close[k]
    if record_trades:
        # Open trades are marked to market at the last close, not sold: no exit fee, no slippage.
        for row in range(first_trade + first_open, first_trade + n_trades):
            trade_pnl = trades[row, 4] * close[n - 1] - trades[row, 6]
            trades[row, 1] = bar_index[n - 1]
            trades[row, 3] = close[n - 1]
            trades[row, 5] = trade_pnl
            trades[row, 6] = trade_pnl / trades[row, 6]
            trades[row, 7] = 1.0
    return n_trades, n_closed, n_wins, gross_profit, gross_loss, bars_in_position


@njit(cache=True)
def write_metrics(equity, initial, years, bars_per_year, stats, out):
    n_trades, n_closed, n_wins, gross_profit, gross_loss, bars_in_position = stats
    n = equity.size
    final = equity[n - 1]
    # Per-bar returns; the first is measured from the initial cash, held before the window's first bar.
    mean = 0.0
    previous = initial
    for k in range(n):
        mean += equity[k] / previous - 1.0
        previous = equity[k]
    mean /= n
    sq_dev = 0.0
    sq_down = 0.0
    peak = initial
    max_drawdown = 0.0
    previous = initial
    for k in range(n):
        r = equity[k] / previous - 1.0
        previous = equity[k]
        sq_dev += (r - mean) ** 2
        if r < 0.0:
            sq_down += r * r
        peak = max(peak, equity[k])
        max_drawdown = min(max_drawdown, equity[k] / peak - 1.0)
    std = np.sqrt(sq_dev / (n - 1)) if n > 1 else 0.0
    downside = np.sqrt(sq_down / (n - 1)) if n > 1 else 0.0
    cagr = (final / initial) ** (1.0 / years) - 1.0
    out[0] = final
    out[1] = final / initial - 1.0
    out[2] = cagr
    out[3] = mean / std * np.sqrt(bars_per_year) if std > 0.0 else 0.0
    out[4] = mean / downside * np.sqrt(bars_per_year) if downside > 0.0 else 0.0
    out[5] = max_drawdown
    out[6] = cagr / -max_drawdown if max_drawdown < 0.0 else 0.0
    out[7] = n_wins / n_closed if n_closed > 0 else 0.0
    if gross_loss > 0.0:
        out[8] = gross_profit / gross_loss
    else:
        out[8] = np.inf if gross_profit > 0.0 else 0.0
    out[9] = n_trades
    out[10] = bars_in_position / n


@njit(cache=True, parallel=True)
def run_kernel(
    strategy,
    offsets,
    bar_index,
    open_,
    high,
    low,
    close,
    years,
    params,
    bars_per_year,
    metrics,
    record_equity,
    equity_out,
    record_trades,
    trade_offsets,
    trades,
):
    """Every (crypto, parameter set) pair in parallel; ``metrics`` is (cryptos, sets, metric)."""
    n_cryptos = offsets.size - 1
    n_sets = params.shape[0]
    for job in prange(n_cryptos * n_sets):
        ci = job // n_sets
        pi = job % n_sets
        row = params[pi]
        start = offsets[ci]
        end = offsets[ci + 1]
        n = end - start
        if record_equity:
            equity_out[ci, pi, :] = np.nan
        if n == 0:
            # A crypto without a valid bar never trades: its value stays the initial cash.
            metrics[ci, pi, :] = 0.0
            metrics[ci, pi, 0] = row[P_INITIAL]
            continue
        signals = np.zeros(n, np.int64)
        write_signals(strategy, open_[start:end], high[start:end], low[start:end], close[start:end],
                      row[N_COMMON_PARAMS:], signals)
        accumulate = strategy == DCA
        tranche = row[P_INITIAL] / row[N_COMMON_PARAMS] if accumulate else np.inf
        equity = np.empty(n)
        stats = simulate(open_[start:end], close[start:end], signals, row, accumulate, tranche, equity,
                         record_trades, trades, trade_offsets[job], bar_index[start:end])
        write_metrics(equity, row[P_INITIAL], years[ci], bars_per_year, stats, metrics[ci, pi])
        if record_equity:
            for k in range(n):
                equity_out[ci, pi, bar_index[start + k]] = equity[k]
