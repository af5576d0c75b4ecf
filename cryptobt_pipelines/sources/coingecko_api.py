"""Daily closing snapshots from CoinGecko's ``/coins/{id}/market_chart/range``.

Granularity: without ``interval`` the range endpoint picks it from the range length (about 1 day: 5-minutely,
2-90 days: hourly, above 90 days: daily at 00:00 UTC). The Demo API reference
(https://docs.coingecko.com/demo/reference/coins-id-market-chart-range) documents ``interval=daily`` as an
override, so we send it and get one point per day whatever the range. We still keep only points on the 00:00 UTC
grid, so an answer at a finer granularity (a server that ignores ``interval``) and the live snapshot CoinGecko
appends after the last daily point are both dropped rather than stored as days.

A point is a price, not a candle: the bar is ``open = high = low = close = price`` with ``volume`` = the 24 h
total volume CoinGecko reports at that instant, and ``ts`` = the point's 00:00 UTC. The bar of the current UTC
day is never returned (its day has not ended), the same rule as Binance's forming candle.

Same page, worth knowing: the last completed day is published about 00:35 UTC, and Demo keys only reach the
past 365 days (an older range is refused; the SourceError carries CoinGecko's message).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import requests

from cryptobt_pipelines.sources.batch import PriceBatch, SourceError, empty_rejects
from cryptobt_pipelines.sources.http import JsonHttp, Timeout, epoch_ms, read_json

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000


class CoinNotFound(SourceError):
    """CoinGecko has no coin with this API id (HTTP 404)."""

    def __init__(self, coin_id: str, url: str):
        self.coin_id = coin_id
        super().__init__(f"CoinGecko has no coin with id {coin_id!r} (GET {url} answered 404)")


class CoinGeckoClient:
    """Fetches daily points; see :meth:`fetch_daily`.

    ``api_key`` goes in ``x-cg-demo-api-key``, or ``x-cg-pro-api-key`` when ``base_url`` is the Pro host.
    The default ``min_interval`` of 2 s keeps one client under the Demo plan's 30 calls per minute.
    """

    def __init__(
        self,
        base_url: str = "https://api.coingecko.com/api/v3",
        api_key: str | None = None,
        timeout: Timeout = 10.0,
        max_retries: int = 5,
        backoff_factor: float = 1.0,
        min_interval: float = 2.0,
        session: requests.Session | None = None,
        *,
        max_retry_after: float = 60.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.http = JsonHttp(
            base_url,
            timeout=timeout,
            max_retries=max_retries,
            backoff_factor=backoff_factor,
            min_interval=min_interval,
            max_retry_after=max_retry_after,
            session=session,
        )
        header = "x-cg-pro-api-key" if "pro-api." in base_url else "x-cg-demo-api-key"
        self.headers = {header: api_key} if api_key else {}
        self.now = now

    def fetch_daily(self, coin_id: str, symbol: str, start: datetime, end: datetime) -> PriceBatch:
        """Daily points of ``coin_id`` (reported as ``symbol``) at 00:00 UTC in ``[start, end)``, in USD.

        Raises :class:`CoinNotFound` for an unknown id, :class:`SourceUnavailable` when the API keeps failing,
        :class:`SourceError` for any other refusal (a bad key, a range the plan does not reach).
        """
        symbol = symbol.upper()
        start_ms, end_ms = epoch_ms(start), epoch_ms(end)
        path = f"/coins/{coin_id}/market_chart/range"
        # Whole seconds that still cover [start, end); the exact bounds are applied below.
        params = {"vs_currency": "usd", "from": start_ms // 1000, "to": -(-end_ms // 1000), "interval": "daily"}
        response = self.http.get(path, params, headers=self.headers)
        if response.status_code == 404:
            raise CoinNotFound(coin_id, response.url)
        chart = read_json(response)
        if not isinstance(chart, dict) or not isinstance(chart.get("prices"), list):
            raise SourceError(f"GET {response.url}: expected {{'prices': [...], ...}}, got {str(chart)[:200]}")

        bars, rejects = parse_chart(chart, symbol)
        today_ms = epoch_ms(self.now()) // DAY_MS * DAY_MS
        on_grid = bars["ms"] % DAY_MS == 0
        keep = on_grid & (bars["ms"] >= start_ms) & (bars["ms"] < min(end_ms, today_ms))
        logger.debug("%s: kept %d of %d points (%d off the grid)", coin_id, keep.sum(), len(bars), (~on_grid).sum())
        return PriceBatch(
            source=response.url,
            format="coingecko_api",
            bars=bars[keep].drop(columns="ms").reset_index(drop=True),
            rejects=rejects,
            bar_seconds=86_400,
        )


def parse_chart(chart: dict, symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars from ``prices`` joined with ``total_volumes`` on the timestamp (plus a helper ``ms`` column).

    ``line`` is the 1-based position in ``prices``; a point without a usable time or price is a reject,
    a price without a volume keeps volume NaN.
    """
    points: list[tuple[int, int, float]] = []
    rejects: list[dict] = []
    for line, point in enumerate(chart["prices"], start=1):
        try:
            points.append((line, *parse_point(point)))
        except (TypeError, ValueError) as exc:
            rejects.append({"line": line, "symbol": symbol, "reason": f"price point: {exc}", "raw": json.dumps(point)})
    volumes: dict[int, float] = {}
    for point in chart.get("total_volumes") or []:
        try:
            ms, volume = parse_point(point)
        except (TypeError, ValueError):
            continue  # a bad volume leaves that bar's volume NaN, it does not lose the price
        volumes[ms] = volume

    frame = pd.DataFrame(points, columns=["line", "ms", "price"])
    ms = frame["ms"].astype(np.int64)
    price = frame["price"].astype(np.float64)
    bars = pd.DataFrame(
        {
            "line": frame["line"].astype(np.int64),
            "symbol": pd.Series([symbol] * len(frame), dtype=object),
            "ts": pd.to_datetime(ms, unit="ms", utc=True).astype("datetime64[us, UTC]"),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": ms.map(volumes).astype(np.float64),
            "ms": ms,
        }
    )
    return bars, (pd.DataFrame(rejects, columns=empty_rejects().columns) if rejects else empty_rejects())


def parse_point(point) -> tuple[int, float]:
    """``[ms, value]`` with a whole-number time and a numeric, non-null value."""
    if not isinstance(point, list) or len(point) != 2:
        raise ValueError("expected [timestamp_ms, value]")
    ms, value = point
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms != int(ms):
        raise ValueError(f"timestamp is not whole milliseconds: {ms!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"value is not a number: {value!r}")
    return int(ms), float(value)
