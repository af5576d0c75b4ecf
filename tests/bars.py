"""Small price batches for tests: flat hourly bars of one symbol."""

from datetime import datetime, timedelta

import pandas as pd

from cryptobt_pipelines.sources.batch import PriceBatch


def hourly(symbol: str, start: datetime, hours: int, price: float = 50.0) -> PriceBatch:
    ts = [start + timedelta(hours=h) for h in range(hours)]
    bars = pd.DataFrame({"line": range(1, hours + 1), "symbol": symbol, "ts": ts, "open": price, "high": price + 1,
                         "low": price - 1, "close": price + 0.5, "volume": 2.0})
    return PriceBatch("test", "test", bars, bar_seconds=3600)
