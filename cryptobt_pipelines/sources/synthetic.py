"""Deterministic synthetic crypto prices for the demo and the benchmarks.

The series look like exchange data where backtests and quality checks care: fat-tailed returns (Student-t
innovations) with volatility clustering (GARCH(1,1) variance), starting prices from 0.0001 to 50,000 on a tick
grid, late listings and a few delistings, outages (some shared by every crypto at once, some per crypto),
opens that mostly equal the previous close, volume that rises with the size of the move, and the zero-volume
flat bars Binance prints while a pair does not trade. Nothing is ever NaN or non-positive.

Determinism: every crypto draws from its own generator seeded by ``(seed, symbol)``, so its bars do not depend
on which other symbols are requested; shared outages are seeded by ``seed`` alone. Only uniform doubles are
drawn (``Generator.random``, whose bits numpy defines exactly) and shaped here into normals and Student-t
variates, so numpy's own distribution algorithms cannot change the output (exp/log may still differ in the last
bit between builds; rounding to the tick grid hides nearly all of that). Listing dates, outages and the
random streams are laid out relative to the requested window: another ``start``/``end`` gives other series.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from cryptobt_pipelines.sources.batch import PRICE_COLUMNS, PriceBatch

# Bar lengths with a Binance interval name whose bars tile the UTC day, so the grid starts at midnight.
BINANCE_INTERVALS = {
    60: "1m",
    180: "3m",
    300: "5m",
    900: "15m",
    1800: "30m",
    3600: "1h",
    7200: "2h",
    14400: "4h",
    21600: "6h",
    28800: "8h",
    43200: "12h",
    86400: "1d",
}
BINANCE_CSV_HEADER = b"timestamp,open,high,low,close,volume\n"

_US_PER_SECOND = 1_000_000
_SECONDS_PER_YEAR = 365.25 * 86400
_SHARED_OUTAGE_STREAM = 0x0A7A6E  # any constant that is not a symbol's key
_MAX_WRITTEN_DECIMALS = 12

# Realism knobs; rates are per year of the window, durations in hours.
_LATE_LISTING_SHARE = 0.25
_DELISTED_SHARE = 0.05
_SHARED_OUTAGES_PER_YEAR = 3.0
_SHARED_OUTAGE_MEAN_HOURS = 2.0
_OWN_OUTAGES_PER_YEAR = (0.5, 6.0)
_OWN_OUTAGE_MEAN_HOURS = 4.0
_OPEN_GAP_SHARE = 0.02
_ILLIQUID_SHARE = 0.15
_PRICE_SIGNIFICANT_DIGITS = 7
# A 12-sigma move and a variance 50 times its long-run level are already extreme for crypto; beyond that,
# Student-t draws with 3 degrees of freedom would reach exp() overflow over millions of bars.
_INNOVATION_CAP = 12.0
_VARIANCE_CAP = 50.0
_LOG_PRICE_RANGE = 12.0


def generate_prices(
    symbols: Sequence[str],
    start: datetime,
    end: datetime,
    bar_seconds: int = 3600,
    seed: int = 7,
) -> PriceBatch:
    """Bars opening in ``[start, end)`` on the UTC grid of ``bar_seconds``, rows by symbol order then time.

    Naive datetimes are taken as UTC. ``bar_seconds`` must be a Binance interval up to one day.
    """
    if bar_seconds not in BINANCE_INTERVALS:
        raise ValueError(f"bar_seconds must be one of {sorted(BINANCE_INTERVALS)}, got {bar_seconds}")
    symbols = list(symbols)
    bad = [s for s in symbols if not isinstance(s, str) or not s or s != s.strip().upper()]
    if bad:
        raise ValueError(f"symbols must be upper-case tickers, got {bad[:5]}")
    if len(set(symbols)) != len(symbols):
        raise ValueError("symbols must be unique")

    bar_us = bar_seconds * _US_PER_SECOND
    start_us, end_us = _utc_microseconds(start), _utc_microseconds(end)
    first_bar_us = -(-start_us // bar_us) * bar_us
    n_bars = max(0, -(-(end_us - first_bar_us) // bar_us))
    years = n_bars * bar_seconds / _SECONDS_PER_YEAR

    profiles = [_CryptoProfile(seed, symbol, bar_seconds) for symbol in symbols]
    innovations = np.empty((n_bars, len(symbols)))
    for column, profile in enumerate(profiles):
        innovations[:, column] = profile.innovations(n_bars)
    variances = _garch_variances(innovations, profiles)
    shared_outage = _outage_mask(
        np.random.default_rng([seed, _SHARED_OUTAGE_STREAM]),
        n_bars,
        _SHARED_OUTAGES_PER_YEAR * years,
        _SHARED_OUTAGE_MEAN_HOURS * 3600 / bar_seconds,
    )

    per_symbol = [
        profile.bars(innovations[:, column], np.sqrt(variances[:, column]), shared_outage, years)
        for column, profile in enumerate(profiles)
    ]
    del innovations, variances
    counts = [len(bars["bar_index"]) for bars in per_symbol]
    # Column by column, dropping each symbol's piece once copied: peak memory stays near one copy of the output.
    columns = {
        name: np.concatenate([bars.pop(name) for bars in per_symbol]) if per_symbol else np.empty(0)
        for name in ["bar_index", *PRICE_COLUMNS]
    }
    ts_us = first_bar_us + columns.pop("bar_index").astype(np.int64) * bar_us
    bars = pd.DataFrame(
        {
            "line": np.arange(1, len(ts_us) + 1, dtype=np.int64),
            "symbol": pd.Series(np.repeat(np.array(symbols, dtype=object), counts), dtype="str"),
            "ts": pd.DatetimeIndex(ts_us.view("datetime64[us]")).tz_localize("UTC"),
            **columns,
        },
        copy=False,
    )
    return PriceBatch(source=f"synthetic:seed={seed}", format="synthetic", bars=bars, bar_seconds=bar_seconds)


class _CryptoProfile:
    """One crypto's character, drawn from its own ``(seed, symbol)`` stream."""

    def __init__(self, seed: int, symbol: str, bar_seconds: int) -> None:
        symbol_key = int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=8).digest(), "little")
        profile_seed, innovation_seed, bar_seed = np.random.SeedSequence([seed, symbol_key]).spawn(3)
        self._innovation_rng = np.random.default_rng(innovation_seed)
        self._bar_rng = np.random.default_rng(bar_seed)
        u = np.random.default_rng(profile_seed).random(16)

        bars_per_year = _SECONDS_PER_YEAR / bar_seconds
        self.bar_seconds = bar_seconds
        self.start_price = 10 ** _between(u[0], -4.0, np.log10(50_000.0))
        self.price_decimals = int(np.clip(_PRICE_SIGNIFICANT_DIGITS - 1 - np.floor(np.log10(self.start_price)), 0, 12))
        # Base-asset quantity step: at most a thousandth of a dollar at the starting price.
        self.volume_decimals = int(np.clip(np.ceil(np.log10(self.start_price)) + 3, 0, 8))
        annual_volatility = 10 ** _between(u[1], np.log10(0.45), np.log10(1.6))
        self.long_run_variance = annual_volatility**2 / bars_per_year
        self.drift = _between(u[2], -0.5, 0.6) / bars_per_year
        self.degrees_of_freedom = _between(u[3], 3.0, 5.0)
        self.arch = _between(u[4], 0.04, 0.12)
        persistence = _between(u[5], 0.96, 0.99)
        self.garch = persistence - self.arch
        self.listing_fraction = _between(u[7], 0.02, 0.6) if u[6] < _LATE_LISTING_SHARE else 0.0
        self.delisting_fraction = _between(u[9], 0.7, 0.97) if u[8] < _DELISTED_SHARE else 1.0
        self.outages_per_year = _between(u[10], *_OWN_OUTAGES_PER_YEAR)
        illiquid = u[11] < _ILLIQUID_SHARE
        self.placeholder_share = _between(u[12], 0.005, 0.03) if illiquid else _between(u[12], 0.0002, 0.001)
        hourly_dollar_volume = 10 ** (_between(u[13], 2.0, 4.0) if illiquid else _between(u[13], 4.0, 7.5))
        self.dollar_volume = hourly_dollar_volume * bar_seconds / 3600

    def innovations(self, n_bars: int) -> np.ndarray:
        """Student-t shocks scaled to unit variance, capped (Bailey's polar method: exact for any df)."""
        df = self.degrees_of_freedom
        radius_u = 1.0 - self._innovation_rng.random(n_bars)  # (0, 1]: keeps the power finite
        angle_u = self._innovation_rng.random(n_bars)
        t = np.sqrt(df * (radius_u ** (-2.0 / df) - 1.0)) * np.cos(2.0 * np.pi * angle_u)
        return np.clip(t * np.sqrt((df - 2.0) / df), -_INNOVATION_CAP, _INNOVATION_CAP)

    def bars(
        self, innovations: np.ndarray, volatility: np.ndarray, shared_outage: np.ndarray, years: float
    ) -> dict[str, np.ndarray]:
        """``bar_index`` (position on the window's grid) of the bars kept, and their prices and volume."""
        n_bars = len(innovations)
        if n_bars == 0:
            return {name: np.empty(0) for name in ["bar_index", *PRICE_COLUMNS]}
        rng = self._bar_rng
        listing = int(self.listing_fraction * n_bars)
        delisting = max(listing + 1, int(self.delisting_fraction * n_bars))
        own_outage = _outage_mask(
            rng, n_bars, self.outages_per_year * years, _OWN_OUTAGE_MEAN_HOURS * 3600 / self.bar_seconds
        )
        u = rng.random((6, n_bars))
        placeholder = u[0] < self.placeholder_share
        traded = ~placeholder
        gap_size, volume_noise = _normals(u[2], u[3])
        open_gap = np.where((u[1] < _OPEN_GAP_SHARE) & traded, 0.2 * volatility * gap_size, 0.0)
        log_return = np.where(traded, self.drift + volatility * innovations, 0.0)
        log_start = np.log(self.start_price)
        log_close = np.clip(
            log_start + np.cumsum(log_return + open_gap), log_start - _LOG_PRICE_RANGE, log_start + _LOG_PRICE_RANGE
        )

        close = np.exp(log_close)
        previous_close = np.concatenate([[self.start_price], close[:-1]])
        open_ = previous_close * np.exp(open_gap)  # exp(0) == 1: open is exactly the previous close
        # Exponential wick lengths: a cheap long-tailed shape, 0.4 sigma on average.
        upper_wick, lower_wick = -np.log1p(-u[4:6]) * (0.4 * volatility * traded)
        high = np.maximum(open_, close) * np.exp(upper_wick)
        low = np.minimum(open_, close) * np.exp(-lower_wick)
        # Ticks last: rounding is monotone, so low <= open, close <= high survives it.
        open_, high, low, close = (_round_to_step(p, self.price_decimals) for p in (open_, high, low, close))

        surprise = np.minimum(np.abs(log_return) / np.sqrt(self.long_run_variance), 8.0)
        dollar_volume = self.dollar_volume * np.exp(0.9 * surprise + 0.5 * volume_noise - 0.6)
        volume = np.where(traded, _round_to_step(dollar_volume / close, self.volume_decimals), 0.0)

        kept = np.zeros(n_bars, dtype=bool)
        kept[listing:delisting] = True
        kept &= ~(shared_outage | own_outage)
        index = np.flatnonzero(kept)
        return {
            "bar_index": index,
            "open": open_[index],
            "high": high[index],
            "low": low[index],
            "close": close[index],
            "volume": volume[index],
        }


def _garch_variances(innovations: np.ndarray, profiles: list[_CryptoProfile]) -> np.ndarray:
    """GARCH(1,1) per column: s2[t] = w + (a z[t-1]^2 + b) s2[t-1], looping over time with arrays over cryptos."""
    long_run = np.array([p.long_run_variance for p in profiles])
    arch = np.array([p.arch for p in profiles])
    garch = np.array([p.garch for p in profiles])
    constant = long_run * (1.0 - arch - garch)
    cap = _VARIANCE_CAP * long_run
    variances = np.empty_like(innovations)
    if len(innovations) == 0:
        return variances
    variances[0] = long_run
    np.multiply(innovations[:-1], innovations[:-1], out=variances[1:])
    variances[1:] *= arch
    variances[1:] += garch
    for t in range(1, len(variances)):
        row = variances[t]  # holds the multiplier until overwritten by the variance
        row *= variances[t - 1]
        row += constant
        np.minimum(row, cap, out=row)
    return variances


def _outage_mask(rng: np.random.Generator, n_bars: int, expected_outages: float, mean_bars: float) -> np.ndarray:
    """Bars lost to outages: an expected count of them, exponential lengths of at least one bar."""
    count = int(expected_outages + rng.random())  # dithered rounding keeps the expectation
    u = rng.random((2, count))
    starts = (u[0] * n_bars).astype(np.int64)
    lengths = np.maximum(1, np.ceil(-np.log1p(-u[1]) * mean_bars)).astype(np.int64)
    coverage = np.zeros(n_bars + 1, dtype=np.int64)
    np.add.at(coverage, starts, 1)
    np.add.at(coverage, np.minimum(starts + lengths, n_bars), -1)
    return np.cumsum(coverage[:-1]) > 0


def _normals(u1: np.ndarray, u2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independent standard normals per pair of uniforms (Box-Muller)."""
    radius = np.sqrt(-2.0 * np.log1p(-u1))  # 1 - u in (0, 1]
    angle = 2.0 * np.pi * u2
    return radius * np.cos(angle), radius * np.sin(angle)


def _between(u: float, low: float, high: float) -> float:
    return float(low + (high - low) * u)


def _round_to_step(values: np.ndarray, decimals: int) -> np.ndarray:
    """Round to ``decimals`` places, never below one step: exchange prices and quantities sit on a grid."""
    scale = 10.0**decimals
    return np.maximum(np.rint(values * scale), 1.0) / scale


def _utc_microseconds(moment: datetime) -> int:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.value // 1000


def write_binance_csv(batch: PriceBatch, folder: Path) -> list[Path]:
    """One ``<SYM>USDT_<interval>.csv`` per symbol, headered Binance klines, rows by time; returns the paths.

    Each column is printed with the fewest decimals (up to 12) that reproduce its values exactly, so bars on a
    tick grid (all generated ones) read back identical.
    """
    if batch.bar_seconds not in BINANCE_INTERVALS:
        raise ValueError(f"no Binance interval for bar_seconds={batch.bar_seconds}")
    bars = batch.bars
    columns = [bars[name].to_numpy(dtype=np.float64) for name in PRICE_COLUMNS]
    if not all(((column >= 0) & (column < 2**62)).all() for column in columns):  # NaN fails too
        raise ValueError("Binance klines hold finite, non-negative numbers only (below 2**62 here)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    interval = BINANCE_INTERVALS[batch.bar_seconds]
    daily = batch.bar_seconds == 86400

    codes, symbols = pd.factorize(bars["symbol"])
    ts_us = bars["ts"].dt.tz_convert(None).to_numpy(dtype="datetime64[us]").view(np.int64)
    order = np.lexsort((ts_us, codes))
    groups = np.split(order, np.flatnonzero(np.diff(codes[order])) + 1) if len(order) else []

    def write_one(rows: np.ndarray) -> Path:
        path = folder / f"{symbols[codes[rows[0]]]}USDT_{interval}.csv"
        path.write_bytes(BINANCE_CSV_HEADER + _klines_text(ts_us[rows], [column[rows] for column in columns], daily))
        return path

    # numpy and file writes release the GIL: threads use every core without copying the batch to processes.
    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        return list(pool.map(write_one, groups))


# The writer lays each file out as a fixed-width byte matrix, one row per bar, with a mask of the characters to
# keep (leading zeros go), then flattens the kept bytes in row order: no per-value Python formatting.
def _klines_text(ts_us: np.ndarray, columns: list[np.ndarray], daily: bool) -> bytes:
    fields = [(_timestamp_text(ts_us, daily), None)] + [_decimal_text(column) for column in columns]
    line_width = sum(chars.shape[1] + 1 for chars, _ in fields)  # each field ends in a comma or the newline
    chars = np.empty((len(ts_us), line_width), dtype=np.uint8)
    keep = np.ones(chars.shape, dtype=bool)
    position = 0
    for field_chars, field_keep in fields:
        width = field_chars.shape[1]
        chars[:, position : position + width] = field_chars
        if field_keep is not None:
            keep[:, position : position + width] = field_keep
        chars[:, position + width] = ord(",")
        position += width + 1
    chars[:, -1] = ord("\n")
    return chars[keep].tobytes()


def _timestamp_text(ts_us: np.ndarray, daily: bool) -> np.ndarray:
    """``YYYY-MM-DD`` for daily bars, ``YYYY-MM-DD HH:MM:SS`` otherwise."""
    seconds = ts_us // _US_PER_SECOND
    days = (seconds // 86400).astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    year = months.astype(np.int64) // 12 + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    date_digits = _digit_text(year * 10000 + month * 100 + day, 8)
    chars = np.empty((len(ts_us), 10 if daily else 19), dtype=np.uint8)
    chars[:, [4, 7]] = ord("-")
    chars[:, 0:4] = date_digits[:, 0:4]
    chars[:, 5:7] = date_digits[:, 4:6]
    chars[:, 8:10] = date_digits[:, 6:8]
    if not daily:
        second_of_day = seconds % 86400
        clock = second_of_day // 3600 * 10000 + second_of_day // 60 % 60 * 100 + second_of_day % 60
        clock_digits = _digit_text(clock, 6)
        chars[:, 10] = ord(" ")
        chars[:, [13, 16]] = ord(":")
        chars[:, 11:13] = clock_digits[:, 0:2]
        chars[:, 14:16] = clock_digits[:, 2:4]
        chars[:, 17:19] = clock_digits[:, 4:6]
    return chars


def _decimal_text(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point text of a non-negative column and the mask that drops leading zeros of whole parts."""
    decimals = _exact_decimals(column)
    scaled = np.rint(column * 10.0**decimals).astype(np.int64)
    width = max(len(str(int(scaled.max()))) if len(scaled) else 1, decimals + 1)
    whole_width = width - decimals
    digits = _digit_text(scaled, width)
    chars = np.empty((len(column), width + (decimals > 0)), dtype=np.uint8)
    keep = np.ones(chars.shape, dtype=bool)
    chars[:, :whole_width] = digits[:, :whole_width]
    if decimals:
        chars[:, whole_width] = ord(".")
        chars[:, whole_width + 1 :] = digits[:, whole_width:]
    # Whole-part digit i is a leading zero while the number is below its place; the units digit always shows.
    places = 10 ** np.arange(width - 1, decimals, -1, dtype=np.int64)
    keep[:, : whole_width - 1] = scaled[:, None] >= places[None, :]
    return chars, keep


def _exact_decimals(column: np.ndarray) -> int:
    """Fewest decimals that print the column exactly, within what int64 can hold (at most 12)."""
    largest = float(column.max()) if len(column) else 0.0
    decimals = 0
    # A guess from the first values is usually right: the whole column then costs one check, not one per decimal.
    for values in (column[:1000], column):
        while (
            decimals < _MAX_WRITTEN_DECIMALS
            and largest * 10.0 ** (decimals + 1) < 2**62
            and not (np.rint(values * 10.0**decimals) / 10.0**decimals == values).all()
        ):
            decimals += 1
    return decimals


_FOUR_DIGITS = np.frombuffer("".join(f"{i:04d}" for i in range(10_000)).encode(), dtype=np.uint32)


def _digit_text(numbers: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as zero-padded ASCII digits, four digits per table lookup."""
    groups = -(-width // 4)
    words = np.empty((groups, len(numbers)), dtype=np.uint32)
    rest = numbers.astype(np.int64)
    remainder = np.empty_like(rest)
    for group in range(groups - 1, -1, -1):
        np.remainder(rest, 10_000, out=remainder)
        np.take(_FOUR_DIGITS, remainder, out=words[group])
        np.floor_divide(rest, 10_000, out=rest)
    return np.ascontiguousarray(words.T).view(np.uint8)[:, 4 * groups - width :]
