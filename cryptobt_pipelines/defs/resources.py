"""Resources shared by every domain: the warehouse, the backtest cache, the landing folder and the market-data APIs."""


import os
from pathlib import Path

import dagster as dg
import psycopg
from pydantic import PrivateAttr

from cryptobt_pipelines import settings
from cryptobt_pipelines.cache import TTL_SECONDS, BacktestCache
from cryptobt_pipelines.sources.binance_api import BinanceClient
from cryptobt_pipelines.sources.coingecko_api import CoinGeckoClient
from cryptobt_pipelines.warehouse.database import connect, migrate


def env_or_default(name: str, default: str | None = None) -> dg.EnvVar | str | None:
    """An EnvVar where the variable is set (the UI shows where the value came from), else the default.

    ``dg.EnvVar`` has no default of its own, and an unset database URL is meaningful here: the embedded server.
    """
    return dg.EnvVar(name) if os.environ.get(name) else default


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse. Without a URL, the embedded server under CRYPTOBT_HOME (started if needed)."""

    database_url: str | None = None
    _url: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._url = self.database_url or settings.database_url()
        migrate(self._url)

    @property
    def url(self) -> str:
        if self._url is None:
            self._url = self.database_url or settings.database_url()
        return self._url

    def connect(self, **kwargs) -> psycopg.Connection:
        return connect(self.url, **kwargs)


class BacktestCacheResource(dg.ConfigurableResource):
    """The Redis cache of backtest results (cryptobt_pipelines/cache.py). Without a URL, the embedded Redis
    under CRYPTOBT_HOME (started if needed). Redis being down never fails a caller: see BacktestCache."""

    redis_url: str | None = None
    ttl_seconds: int = TTL_SECONDS
    # Longer than the request path's 0.5 s: Dagster's calls delete superseded entries in bulk.
    socket_timeout_seconds: float = 2.0
    retry_after_seconds: float = 5.0
    _caches: dict[str, BacktestCache] = PrivateAttr(default_factory=dict)

    def for_warehouse(self, warehouse_url: str) -> BacktestCache:
        """The cache of that warehouse (its key namespace is read from the warehouse once per resource)."""
        if warehouse_url not in self._caches:
            self._caches[warehouse_url] = BacktestCache.for_warehouse(
                warehouse_url, self.redis_url or settings.redis_url(), ttl_seconds=self.ttl_seconds,
                socket_timeout=self.socket_timeout_seconds, retry_after=self.retry_after_seconds,
            )
        return self._caches[warehouse_url]


class LandingResource(dg.ConfigurableResource):
    """The folder users and upstream jobs drop price files into; processed and failed files move aside."""

    path: str | None = None

    @property
    def folder(self) -> Path:
        return Path(self.path) if self.path else settings.landing_dir()

    @property
    def processed(self) -> Path:
        return self.folder / "processed"

    @property
    def failed(self) -> Path:
        return self.folder / "failed"


class BinanceResource(dg.ConfigurableResource):
    base_url: str = "https://api.binance.com"
    timeout_seconds: float = 10.0
    max_retries: int = 5

    def client(self) -> BinanceClient:
        return BinanceClient(base_url=self.base_url, timeout=self.timeout_seconds, max_retries=self.max_retries)


class CoinGeckoResource(dg.ConfigurableResource):
    base_url: str = "https://api.coingecko.com/api/v3"
    api_key: str | None = None
    timeout_seconds: float = 10.0
    max_retries: int = 5
    # The demo plan allows 30 calls a minute.
    min_interval_seconds: float = 2.0

    def client(self) -> CoinGeckoClient:
        return CoinGeckoClient(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
            min_interval=self.min_interval_seconds,
        )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "warehouse": WarehouseResource(database_url=env_or_default("CRYPTOBT_DATABASE_URL")),
            "backtest_cache": BacktestCacheResource(redis_url=env_or_default("CRYPTOBT_REDIS_URL")),
            "landing": LandingResource(path=env_or_default("CRYPTOBT_LANDING")),
            "binance": BinanceResource(base_url=env_or_default("CRYPTOBT_BINANCE_URL", "https://api.binance.com")),
            "coingecko": CoinGeckoResource(
                base_url=env_or_default("CRYPTOBT_COINGECKO_URL", "https://api.coingecko.com/api/v3"),
                api_key=env_or_default("COINGECKO_API_KEY"),
            ),
        }
    )
