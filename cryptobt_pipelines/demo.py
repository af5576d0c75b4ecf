"""The demo data set: synthetic bars for the top of the universe, ending at the last whole bar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.sources.synthetic import generate_prices
from cryptobt_pipelines.warehouse.database import connect, query
from cryptobt_pipelines.warehouse.load import LoadReport, load_batch
from cryptobt_pipelines.warehouse.universe import read_universe

DEMO_CRYPTOS = 20
DEMO_HISTORY = timedelta(days=365)


def generate_universe_prices(cryptos: int, history: timedelta, bar_seconds: int = 3600, seed: int = 7) -> PriceBatch:
    """Bars for the first ``cryptos`` of the universe over ``history``, up to the last closed bar."""
    now = datetime.now(UTC).timestamp()
    end = datetime.fromtimestamp(now - now % bar_seconds, UTC)  # the bar opening now is still forming
    symbols = read_universe()["symbol"].head(cryptos).tolist()
    return generate_prices(symbols, end - history, end, bar_seconds=bar_seconds, seed=seed)


def load_demo_if_empty(url: str) -> LoadReport | None:
    with connect(url) as conn:
        if conn.execute(query("ingest/warehouse_has_prices")).fetchone()[0]:
            return None
    return load_batch(generate_universe_prices(DEMO_CRYPTOS, DEMO_HISTORY), url=url)
