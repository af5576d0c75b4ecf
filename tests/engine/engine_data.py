"""Small price series for the engine tests."""

import numpy as np


def one_crypto(close, open=None, high=None, low=None):
    """(n, 1) OHLC arrays from lists; open defaults to close, high/low to the bar's max/min."""
    close = np.asarray(close, dtype=float)
    open = close if open is None else np.asarray(open, dtype=float)
    high = np.maximum(open, close) if high is None else np.asarray(high, dtype=float)
    low = np.minimum(open, close) if low is None else np.asarray(low, dtype=float)
    return [a.reshape(-1, 1) for a in (open, high, low, close)]


def random_walk(n_bars, n_cryptos, seed, volatility=0.03):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, volatility, (n_bars, n_cryptos)), axis=0))
    open = close * np.exp(rng.normal(0.0, volatility / 3, (n_bars, n_cryptos)))
    high = np.maximum(open, close) * (1.0 + rng.uniform(0.0, volatility, (n_bars, n_cryptos)))
    low = np.minimum(open, close) * (1.0 - rng.uniform(0.0, volatility, (n_bars, n_cryptos)))
    return open, high, low, close
