"""The dashboard computed by pandas straight from the raw bars in market.prices, for tests to compare with.

Independent of the warehouse's SQL: it reads neither the rollups nor serving.crypto_extremes, and follows
the definitions pinned in DESIGN.md literally. Imported as ``from dashboard_expected import ...`` (pytest
puts tests/ on sys.path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import psycopg

COLUMNS = ["crypto_id", "symbol", "as_of", "current_price", "price_24h_ago", "change_24h_percent", "high_7d",
           "low_7d", "volume_7d", "high_30d", "low_30d", "volume_30d", "ath", "ath_date", "atl", "atl_date"]
VOLUMES = ["volume_7d", "volume_30d"]


def frame(url: str, sql: str) -> pd.DataFrame:
    with psycopg.connect(url) as conn:
        cursor = conn.execute(sql)
        return pd.DataFrame(cursor.fetchall(), columns=[d.name for d in cursor.description], dtype=object)


def expected_dashboard(url: str) -> pd.DataFrame:
    """One row per crypto of the universe that has bars, by crypto_id."""
    bars = frame(url, "SELECT crypto_id, ts, high, low, close, volume FROM market.prices")
    universe = frame(url, "SELECT crypto_id, symbol FROM market.cryptos WHERE in_universe")
    symbols = dict(zip(universe["crypto_id"], universe["symbol"], strict=True))
    rows = []
    if not bars.empty:
        bars["ts"] = pd.to_datetime(bars["ts"], utc=True)
        for column in ("high", "low", "close", "volume"):
            bars[column] = bars[column].astype(float)
        for crypto_id, own in bars.groupby("crypto_id"):
            if crypto_id in symbols:
                rows.append(_summary(crypto_id, symbols[crypto_id], own.sort_values("ts")))
    return pd.DataFrame(rows, columns=COLUMNS, dtype=object).sort_values("crypto_id", ignore_index=True)


def _summary(crypto_id: int, symbol: str, own: pd.DataFrame) -> dict:
    latest = own.iloc[-1]
    as_of = latest["ts"]
    before = own[own["ts"] <= as_of - pd.Timedelta(hours=24)]
    price_24h_ago = before["close"].iloc[-1] if len(before) else None
    change = None if price_24h_ago is None else (latest["close"] - price_24h_ago) / price_24h_ago * 100
    day = as_of.floor("D")  # the UTC day: ts is UTC
    last_7 = own[own["ts"] >= day - pd.Timedelta(days=6)]
    last_30 = own[own["ts"] >= day - pd.Timedelta(days=29)]
    ath, atl = own["high"].max(), own["low"].min()
    return {
        "crypto_id": crypto_id, "symbol": symbol, "as_of": as_of, "current_price": latest["close"],
        "price_24h_ago": price_24h_ago,
        "change_24h_percent": change,
        "high_7d": last_7["high"].max(), "low_7d": last_7["low"].min(), "volume_7d": last_7["volume"].sum(),
        "high_30d": last_30["high"].max(), "low_30d": last_30["low"].min(), "volume_30d": last_30["volume"].sum(),
        "ath": ath, "ath_date": own.loc[own["high"] == ath, "ts"].min().date(),
        "atl": atl, "atl_date": own.loc[own["low"] == atl, "ts"].min().date(),
    }


def dashboard(url: str) -> pd.DataFrame:
    return frame(url, "SELECT * FROM serving.crypto_dashboard_summary ORDER BY crypto_id")


def assert_dashboard_matches(url: str) -> pd.DataFrame:
    """The view equals the pandas computation, column by column (volumes to 1e-9 relative); returns it."""
    actual, expected = dashboard(url), expected_dashboard(url)
    assert list(actual.columns) == COLUMNS
    assert actual["crypto_id"].tolist() == expected["crypto_id"].tolist()
    for column in COLUMNS:
        got, want = actual[column].tolist(), expected[column].tolist()
        if column == "as_of":
            got = [pd.Timestamp(t).tz_convert("UTC") for t in got]
        if column in VOLUMES:
            np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float), rtol=1e-9,
                                       err_msg=column)
        else:
            assert got == want, (column, [(a, b) for a, b in zip(got, want, strict=True) if a != b][:5])
    return actual
