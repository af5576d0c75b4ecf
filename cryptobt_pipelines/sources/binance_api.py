"""Closed klines (candles) from Binance's public REST API.

``GET /api/v3/klines`` answers at most 1000 klines per call, oldest first; we page forward from the last
open time until ``end``. Each kline is 12 fields::

    [open_time, open, high, low, close, volume, close_time, quote_asset_volume, trades,
     taker_buy_base_volume, taker_buy_quote_volume, ignore]

with prices and volumes as decimal strings. Times are ms, or µs when the account/endpoint uses
``X-MBX-TIME-UNIT: MICROSECOND``; both are told apart by size. Binance also returns the candle still forming:
it is dropped (its close time has not passed), so a stored bar never changes afterwards.
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

KLINES_PATH = "/api/v3/klines"
PAGE_LIMIT = 1000
INVALID_SYMBOL_CODE = -1121
KLINE_FIELDS = 12
PRICE_FIELDS = ["open", "high", "low", "close", "volume"]
# Epoch µs passed 1e14 in 1973 and epoch ms will not reach it before year 5138.
MICROSECONDS_FROM = 10**14
# Fixed-length intervals only: "1M" (calendar month) has no fixed bar length.
INTERVAL_SECONDS = {
    "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "2h": 7200, "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200,
    "1d": 86400, "3d": 259200, "1w": 604800,
}  # fmt: skip


class SymbolNotListed(SourceError):
    """Binance does not list this trading pair (``{"code": -1121, "msg": "Invalid symbol."}``)."""

    def __init__(self, pair: str, url: str):
        self.pair = pair
        super().__init__(f"Binance does not list {pair} (GET {url} answered 'Invalid symbol.')")


class BinanceClient:
    """Fetches closed klines; see :meth:`fetch_klines`.

    ``now`` returns the current UTC time and decides which candle is still forming (tests pass a fixed clock).
    ``max_retry_after`` caps how long a 429/418 ``Retry-After`` may make us wait before giving up.
    """

    def __init__(
        self,
        base_url: str = "https://api.binance.com",
        timeout: Timeout = 10.0,
        max_retries: int = 5,
        backoff_factor: float = 0.5,
        min_interval: float = 0.0,
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
        self.now = now

    def fetch_klines(
        self, symbol: str, start: datetime, end: datetime, interval: str = "1h", quote: str = "USDT"
    ) -> PriceBatch:
        """Closed ``interval`` klines of ``symbol``/``quote`` opening in ``[start, end)``.

        Raises :class:`SymbolNotListed` for an unknown pair, :class:`SourceUnavailable` when the API keeps
        failing, :class:`SourceError` for any other refusal.
        """
        if interval not in INTERVAL_SECONDS:
            raise ValueError(f"unsupported Binance interval {interval!r}; use one of {sorted(INTERVAL_SECONDS)}")
        symbol = symbol.upper()
        pair = symbol + quote.upper()
        start_ms, end_ms = epoch_ms(start), epoch_ms(end)
        rows = self._fetch_rows(pair, interval, start_ms, end_ms)
        bars, rejects = parse_klines(rows, symbol)
        now_us = epoch_ms(self.now()) * 1000
        in_range = (bars["open_us"] >= start_ms * 1000) & (bars["open_us"] < end_ms * 1000)
        forming = bars["close_us"] >= now_us
        if (in_range & forming).any():
            logger.info("%s: dropped %d kline(s) still forming", pair, int((in_range & forming).sum()))
        bars = bars[in_range & ~forming].drop(columns=["open_us", "close_us"])
        source = self.http.url(
            KLINES_PATH, {"symbol": pair, "interval": interval, "startTime": start_ms, "endTime": end_ms - 1}
        )
        return PriceBatch(
            source=source,
            format="binance_api",
            bars=bars.reset_index(drop=True),
            rejects=rejects,
            bar_seconds=INTERVAL_SECONDS[interval],
        )

    def _fetch_rows(self, pair: str, interval: str, start_ms: int, end_ms: int) -> list:
        rows: list = []
        cursor = start_ms
        while cursor < end_ms:
            response = self.http.get(
                KLINES_PATH,
                {"symbol": pair, "interval": interval, "startTime": cursor, "endTime": end_ms - 1, "limit": PAGE_LIMIT},
            )
            if response.status_code == 400 and error_code(response) == INVALID_SYMBOL_CODE:
                raise SymbolNotListed(pair, response.url)
            page = read_json(response)
            if not isinstance(page, list):
                raise SourceError(f"GET {response.url}: expected a list of klines, got {str(page)[:200]}")
            logger.debug("%s: %d klines from %d", pair, len(page), cursor)
            rows.extend(page)
            if len(page) < PAGE_LIMIT:
                break
            last_open_ms = max((ms for ms in map(open_time_ms, page) if ms is not None), default=None)
            if last_open_ms is None or last_open_ms < cursor:
                raise SourceError(f"GET {response.url}: a full page without a usable open time after {cursor}")
            cursor = last_open_ms + 1
        return rows


def parse_klines(rows: list, symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars (plus ``open_us``/``close_us`` helper columns) and rejects; ``line`` is the 1-based position in ``rows``."""
    parsed: list[tuple] = []
    rejects: list[dict] = []
    for line, row in enumerate(rows, start=1):
        try:
            parsed.append((line, *parse_kline(row)))
        except (TypeError, ValueError) as exc:
            rejects.append({"line": line, "symbol": symbol, "reason": str(exc), "raw": json.dumps(row)})
    columns = ["line", "open_us", "open", "high", "low", "close", "volume", "close_us"]
    frame = pd.DataFrame(parsed, columns=columns)
    bars = pd.DataFrame(
        {
            "line": frame["line"].astype(np.int64),
            "symbol": pd.Series([symbol] * len(frame), dtype=object),
            "ts": pd.to_datetime(frame["open_us"].astype(np.int64), unit="us", utc=True).astype("datetime64[us, UTC]"),
            **{name: frame[name].astype(np.float64) for name in PRICE_FIELDS},
            "open_us": frame["open_us"].astype(np.int64),
            "close_us": frame["close_us"].astype(np.int64),
        }
    )
    return bars, (pd.DataFrame(rejects, columns=empty_rejects().columns) if rejects else empty_rejects())


def parse_kline(row) -> tuple[int, float, float, float, float, float, int]:
    """``(open_us, open, high, low, close, volume, close_us)``; every one of the 12 fields must parse."""
    if not isinstance(row, list) or len(row) != KLINE_FIELDS:
        raise ValueError(f"expected a list of {KLINE_FIELDS} fields")
    open_us, close_us = to_us(as_int(row[0], "open time")), to_us(as_int(row[6], "close time"))
    open_, high, low, close, volume = (as_float(row[i], name) for i, name in enumerate(PRICE_FIELDS, start=1))
    for i, name in [(7, "quote asset volume"), (9, "taker buy base volume"), (10, "taker buy quote volume")]:
        as_float(row[i], name)
    as_int(row[8], "number of trades")
    return open_us, open_, high, low, close, volume, close_us


def as_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{name} is not an integer: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} is not an integer: {value!r}") from None


def as_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} is not a number: {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} is not a number: {value!r}") from None


def to_us(epoch: int) -> int:
    return epoch if epoch >= MICROSECONDS_FROM else epoch * 1000


def open_time_ms(row) -> int | None:
    """Open time of a kline that parses, else None: only sound rows steer the paging."""
    try:
        return parse_kline(row)[0] // 1000
    except (TypeError, ValueError):
        return None


def error_code(response: requests.Response) -> int | None:
    """Binance's numeric error code from a ``{"code": ..., "msg": ...}`` body, if there is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
