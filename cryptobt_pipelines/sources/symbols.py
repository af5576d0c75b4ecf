"""Turn pair names, file names and CoinGecko ids into the upper-case tickers the warehouse knows.

Prices in this project are in US dollars (or a dollar stablecoin), so only dollar-like and fiat quote assets
are stripped from pairs: ``ETHBTC`` stays ``ETHBTC`` and the loader then refuses it as an unknown crypto,
instead of storing ETH prices counted in BTC.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pandas as pd

from cryptobt_pipelines.settings import ASSETS_DIR

UNIVERSE_CSV = ASSETS_DIR / "cryptos.csv"

# Longest first, so BTCFDUSD loses FDUSD (not USD) and BTCBUSD loses BUSD.
QUOTE_ASSETS = tuple(
    sorted(
        ["USDT", "BUSD", "USDC", "FDUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP"],
        key=len,
        reverse=True,
    )
)

_PAIR_SEPARATORS = re.compile(r"[/\-_:]")
# 1s, 3m, 15m, 1h, 4h, 1d, d, 3d, 1w: a lone token of the file name. Lower-case m only: Binance's 1M is a month.
_INTERVAL_TOKEN = re.compile(r"(?P<count>\d*)(?P<unit>[sm]|[hHdDwW])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_FILENAME_TOKEN_SEPARATORS = re.compile(r"[_\s-]+")


def symbol_from_pair(text: str) -> str:
    """``BTCUSDT``, ``BTC/USDT``, ``LINK-USD`` -> ``BTC``, ``BTC``, ``LINK``; a bare ticker comes back upper-cased."""
    pair = text.strip().upper()
    parts = _PAIR_SEPARATORS.split(pair)
    if len(parts) == 2 and parts[0] and parts[1] in QUOTE_ASSETS:
        return parts[0]
    if pair in QUOTE_ASSETS:  # USDT on its own is the coin, not an empty base
        return pair
    for quote in QUOTE_ASSETS:
        if pair.endswith(quote):
            return pair[: -len(quote)]
    return pair


def symbol_from_filename(path: str | Path) -> str | None:
    """``LINKUSDT_1h.csv``, ``Binance_BTCUSDT_1h.csv``, ``BTCUSDT-1h-2025-01.csv``, ``BTC_1d.csv`` -> ticker.

    Only a token that ends in a quote asset, or a lone upper-case token, counts as a ticker: names such as
    ``coin_Bitcoin.csv`` or ``bitcoin.csv`` give None (those formats carry the symbol inside the file).
    """
    tokens = [
        token
        for token in _FILENAME_TOKEN_SEPARATORS.split(Path(path).stem)
        if token and not token.isdigit() and not _INTERVAL_TOKEN.fullmatch(token)
    ]
    pairs = [token for token in tokens if symbol_from_pair(token) != token.upper()]
    if pairs:
        return symbol_from_pair(pairs[-1])
    if len(tokens) == 1 and re.fullmatch(r"[A-Z0-9]+", tokens[0]):
        return tokens[0]
    return None


def bar_seconds_from_filename(path: str | Path) -> int | None:
    """Bar interval in seconds from a file name token: ``_1h`` -> 3600, ``_4h``, ``_1d`` or ``_d`` -> 86400, ``_3d``,
    ``_1w``, ``_15m``, ``_3m``, ``-1s``; None when the name has none."""
    for token in reversed(_FILENAME_TOKEN_SEPARATORS.split(Path(path).stem)):
        interval = _INTERVAL_TOKEN.fullmatch(token)
        if interval:
            count = int(interval["count"] or 1)
            return count * _UNIT_SECONDS[interval["unit"].lower()]
    return None


@cache
def coingecko_symbols(universe_csv: Path = UNIVERSE_CSV) -> dict[str, str]:
    """CoinGecko id -> ticker for every crypto of the universe (``bitcoin`` -> ``BTC``)."""
    universe = pd.read_csv(universe_csv, usecols=["symbol", "coingecko_id"], dtype=str)
    return dict(zip(universe["coingecko_id"], universe["symbol"], strict=True))
