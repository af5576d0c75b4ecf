"""Small warehouses with daily (or hourly) bars for the backtest tests, and the same bars as engine arrays."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg

from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.sources.synthetic import generate_prices
from cryptobt_pipelines.warehouse.load import load_batch
from cryptobt_pipelines.warehouse.rollups import refresh_rollups

START = datetime(2021, 1, 1, tzinfo=UTC)
SYMBOLS = ["BTC", "ETH", "SOL", "ADA"]


def load_daily(url: str, symbols=SYMBOLS, days: int = 500, seed: int = 3) -> PriceBatch:
    """Synthetic daily bars (late listings and gaps included), loaded and rolled up."""
    batch = generate_prices(symbols, START, START + timedelta(days=days), bar_seconds=86_400, seed=seed)
    load_batch(batch, url=url)
    refresh_rollups(url)
    return batch


def as_arrays(batch: PriceBatch, symbols) -> tuple[list[np.ndarray], np.ndarray]:
    """The batch's bars as (bars x cryptos) open/high/low/close on its time grid, and the grid's times."""
    bars = batch.bars[batch.bars["symbol"].isin(symbols)]
    grid = pd.date_range(bars["ts"].min(), bars["ts"].max(), freq=pd.Timedelta(seconds=batch.bar_seconds))
    arrays = [bars.pivot(index="ts", columns="symbol", values=f).reindex(index=grid, columns=list(symbols)).to_numpy()
              for f in ("open", "high", "low", "close")]
    return arrays, grid.tz_convert(None).to_numpy()


def correct_one_bar(url: str, batch: PriceBatch, symbol: str) -> None:
    """Reload one of ``symbol``'s bars with another close: its data version moves, nobody else's."""
    mine = batch.bars[(batch.bars["symbol"] == symbol) & (batch.bars["high"] > batch.bars["low"])]
    bar = mine.iloc[[10]].copy()
    bar["close"] = bar["low"] + (bar["high"] - bar["low"]) / 3
    bar["line"] = 1
    load_batch(PriceBatch("test:correction", "test", bar, bar_seconds=batch.bar_seconds), url=url)


def rows(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()
