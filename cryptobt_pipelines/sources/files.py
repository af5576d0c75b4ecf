"""Price files: detect the format of a CSV file and parse it into a PriceBatch.

Formats (``FORMATS``):

- ``binance``: headered klines ``timestamp,open,high,low,close,volume``. ``timestamp`` is the bar open time in UTC,
  ``YYYY-MM-DD`` or ``YYYY-MM-DD HH:MM:SS`` (epoch numbers, as ccxt writes them, are read too).
- ``binance_raw``: the 12-column kline export of data.binance.vision, ``open_time,open,high,low,close,volume,
  close_time,quote_volume,trades,taker_base,taker_quote,ignore``, usually without a header. ``open_time`` is epoch
  milliseconds, or microseconds in spot files from 2025 on; the unit is told per value by its magnitude.
- ``cryptodatadownload``: an optional URL banner line, then ``unix,date,symbol,open,high,low,close,Volume <BASE>,
  Volume <QUOTE>,tradecount``, newest row first. ``unix`` mixes milliseconds and float seconds in one file.
- ``coinmarketcap``: the Kaggle "Cryptocurrency Historical Prices" files, ``SNo,Name,Symbol,Date,High,Low,Open,
  Close,Volume,Marketcap``: daily bars stamped at the end of their UTC day.
- ``coingecko``: ``timestamp,readableTimestamp,coinId,price,marketCap,totalVolume`` daily points, close only.
  Decision: each point becomes a bar with open = high = low = close = price and volume = totalVolume, so it feeds
  close-based analytics and backtests like any other bar; the highs and lows of such a crypto are daily closes.
  The symbol is the universe's ticker for ``coinId`` (``assets/cryptos.csv``) unless one is given.

Readers only parse. Rows come back in file order (CryptoDataDownload stays newest first); duplicates, off-grid
times (CoinGecko's last intraday snapshot, a still-forming last bar), non-positive prices and the like come back
as they are, for the loader to judge. Empty cells and ``NULL`` are NaN. A line with the wrong number of fields,
a time that does not read or a cell that is not a number goes to ``rejects`` with its line and the reason.

Speed: line structure is checked on the raw bytes with numpy and the cells are parsed by pandas' C reader,
so a file costs a few passes over its bytes, not a Python step per row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryptobt_pipelines.sources.batch import PRICE_COLUMNS, REJECT_COLUMNS, PriceBatch, SourceError
from cryptobt_pipelines.sources.symbols import (
    bar_seconds_from_filename,
    coingecko_symbols,
    symbol_from_filename,
    symbol_from_pair,
)

FORMATS = ("binance", "binance_raw", "cryptodatadownload", "coinmarketcap", "coingecko")

# Lower-cased header names each format must have. Detection tries the formats in this order.
_REQUIRED_COLUMNS = {
    "coingecko": ("timestamp", "coinid", "price", "totalvolume"),
    "cryptodatadownload": ("unix", "symbol", "open", "high", "low", "close"),
    "coinmarketcap": ("symbol", "date", "high", "low", "open", "close", "volume"),
    "binance_raw": ("open_time", "open", "high", "low", "close", "volume"),
    "binance": ("timestamp", "open", "high", "low", "close", "volume"),
}
_BINANCE_RAW_COLUMNS = [
    "open_time", "open", "high", "low", "close", "volume",
    "close_time", "quote_volume", "trades", "taker_base", "taker_quote", "ignore",
]  # fmt: skip
# Columns always read as text; the C reader infers the others (numbers, or text where a cell is not a number).
_TEXT_COLUMNS = ("symbol", "coinid")
_DAILY_FORMATS = ("coinmarketcap", "coingecko")
_MISSING_VALUES = ["", "NULL", "null", "NaN", "nan", "None"]
_NEWLINE, _COMMA, _QUOTE = ord("\n"), ord(","), ord('"')


@dataclass
class _Text:
    """A price file's bytes (BOM dropped, CRLF turned to LF) and where each physical line starts and ends."""

    path: Path
    data: bytes
    starts: np.ndarray  # byte offset of line n at index n - 1
    ends: np.ndarray  # exclusive, the newline is not part of the line

    def line(self, index: int) -> str:
        return self.data[self.starts[index] : self.ends[index]].decode()


@dataclass
class _Fields:
    """What a format-specific reader takes from the cells; the rest is common to every format."""

    times: pd.Series  # UTC bar open times, NaT where unreadable
    time_column: str
    price_columns: dict[str, str]  # bar column -> file column holding it
    symbols: pd.Series  # tickers, NaN where the file has none for the row


def detect_format(path: str | Path) -> str:
    """The format of a price file, from its header (or, for the headerless Binance export, its first row)."""
    return _detect(_read_text(Path(path)))


def read_price_file(path: str | Path, symbol: str | None = None, format: str | None = None) -> PriceBatch:
    """Parse a price file; ``symbol`` overrides the file's own symbol, ``format`` skips detection."""
    text = _read_text(Path(path))
    format = format or _detect(text)
    if format not in FORMATS:
        raise SourceError(f"{text.path}: unknown format {format!r}, expected one of {', '.join(FORMATS)}")
    cells, shape_rejects = _split_cells(text, format)
    fields = _READERS[format](cells, text.path, symbol)
    bars, value_rejects = _bars_and_rejects(cells, fields, text)
    shape_rejects["symbol"] = symbol.strip().upper() if symbol else symbol_from_filename(text.path)
    rejects = pd.concat([shape_rejects, value_rejects])[REJECT_COLUMNS].sort_values("line", ignore_index=True)
    if format in _DAILY_FORMATS:
        bar_seconds = 86_400
    else:
        bar_seconds = bar_seconds_from_filename(text.path) or _median_step_seconds(bars["ts"])
    return PriceBatch(source=str(text.path), format=format, bars=bars, rejects=rejects, bar_seconds=bar_seconds)


def _read_text(path: Path) -> _Text:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceError(f"{path}: cannot read the file ({error.strerror})") from None
    if b"\0" in data:
        raise SourceError(f"{path}: binary data, not a CSV text file")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(f"{path}: not UTF-8 text (undecodable byte at offset {error.start})") from None
    data = data.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n")
    if not data.strip():
        raise SourceError(f"{path}: the file is empty")
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == _NEWLINE)
    return _Text(path, data, starts=np.append(0, newlines + 1), ends=np.append(newlines, len(data)))


def _first_row_index(text: _Text) -> int:
    """Index of the header (or first data row): the first line with a comma. Leading blank lines and banners,
    such as CryptoDataDownload's ``https://www.CryptoDataDownload.com``, come before it."""
    first_comma = text.data.find(b",")
    if first_comma < 0:
        raise SourceError(f"{text.path}: no comma-separated line, not a CSV price file")
    return int(np.searchsorted(text.starts, first_comma, side="right")) - 1


def _header_names(line: str) -> list[str]:
    return [name.strip().lower() for name in next(csv.reader([line]))]


def _is_headerless_binance_raw(line: str) -> bool:
    fields = line.split(",")
    return len(fields) == len(_BINANCE_RAW_COLUMNS) and fields[0].strip().isdigit()


def _detect(text: _Text) -> str:
    first_row = text.line(_first_row_index(text))
    names = set(_header_names(first_row))
    for format, required in _REQUIRED_COLUMNS.items():
        if names.issuperset(required):
            return format
    if _is_headerless_binance_raw(first_row):
        return "binance_raw"
    raise SourceError(f"{text.path}: unknown price file format (first row {first_row[:100]!r})")


def _line_shapes(text: _Text) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per physical line: its number of fields, whether it is blank, whether its quotes are unusable.

    Quotes pair up within a line and each pair wraps a whole field, as in CoinGecko's ``"1/1/2021, 12:00:00 AM"``:
    the opening quote follows a comma or the line start, the closing one precedes a comma or the line end. Commas
    inside such a field do not separate fields. Any other quote would make pandas split the line differently.
    Works on the positions of commas, quotes and blanks only, so it costs a few passes over the bytes.
    """
    buffer = np.frombuffer(text.data, np.uint8)
    line_count = len(text.starts)

    def line_of(positions: np.ndarray) -> np.ndarray:
        return np.searchsorted(text.starts, positions, side="right") - 1

    def count_per_line(positions: np.ndarray) -> np.ndarray:
        return np.bincount(line_of(positions), minlength=line_count)

    quotes = np.flatnonzero(buffer == _QUOTE)
    commas = np.flatnonzero(buffer == _COMMA)
    quotes_before_in_line = np.searchsorted(quotes, commas) - np.searchsorted(quotes, text.starts[line_of(commas)])
    fields = count_per_line(commas[quotes_before_in_line % 2 == 0]) + 1

    last = len(buffer) - 1
    before = np.where(quotes > 0, buffer[np.maximum(quotes - 1, 0)], _NEWLINE)
    after = np.where(quotes < last, buffer[np.minimum(quotes + 1, last)], _NEWLINE)
    opening = (np.arange(len(quotes)) - np.searchsorted(quotes, text.starts[line_of(quotes)])) % 2 == 0
    at_field_edge = np.isin(np.where(opening, before, after), (_COMMA, _NEWLINE))
    bad_quotes = (count_per_line(quotes) % 2 == 1) | (count_per_line(quotes[~at_field_edge]) > 0)

    blanks = np.flatnonzero((buffer <= ord(" ")) & (buffer != _NEWLINE))  # spaces, tabs, stray CRs
    blank = count_per_line(blanks) == text.ends - text.starts
    return fields, blank, bad_quotes


def _split_cells(text: _Text, format: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cells of the data lines, one column per header name, indexed by line number; and the lines that do not
    split into one cell per column, as rejects."""
    first_row = _first_row_index(text)
    header = text.line(first_row)
    if format == "binance_raw" and _is_headerless_binance_raw(header):
        names, first_data = _BINANCE_RAW_COLUMNS, first_row
    else:
        names, first_data = _header_names(header), first_row + 1
        missing = [name for name in _REQUIRED_COLUMNS[format] if name not in names]
        if missing:
            raise SourceError(f"{text.path}: {format} header lacks column(s) {', '.join(missing)}: {header!r}")
        if len(set(names)) < len(names):
            raise SourceError(f"{text.path}: repeated column names in header {header!r}")

    fields, blank, bad_quotes = _line_shapes(text)
    is_data = (np.arange(len(fields)) >= first_data) & ~blank
    if not is_data.any():
        raise SourceError(f"{text.path}: no data rows after the header")
    splits = is_data & ~bad_quotes & (fields == len(names))

    misfits = np.flatnonzero(is_data & ~splits)
    shape_rejects = pd.DataFrame(
        {
            "line": misfits + 1,
            # A Python pass over the misfit lines only, to name each reason.
            "reason": [
                "unmatched or misplaced quote"
                if bad_quotes[index]
                else f"expected {len(names)} fields, found {fields[index]}"
                for index in misfits
            ],
            "raw": [text.line(index) for index in misfits],
        },
        columns=["line", "reason", "raw"],
    )

    line_lengths = text.ends - text.starts + 1  # with its newline
    keep_byte = np.repeat(splits, line_lengths)[: len(text.data)]
    cells = pd.read_csv(
        io.BytesIO(np.frombuffer(text.data, np.uint8)[keep_byte].tobytes()),
        header=None,
        names=names,
        dtype={name: "str" for name in names if name in _TEXT_COLUMNS},
        keep_default_na=False,
        na_values=_MISSING_VALUES,
        lineterminator="\n",  # a stray carriage return stays inside its line
        skip_blank_lines=False,
        low_memory=False,
    )
    if len(cells) != splits.sum():  # would shift every line number after it
        raise SourceError(f"{text.path}: rows did not split as their line shapes promised")
    cells.index = np.flatnonzero(splits) + 1
    return cells, shape_rejects


def _parse_times(values: pd.Series) -> pd.Series:
    """UTC times, NaT where a value does not read: text that reads as ISO-8601 (naive means UTC), else an epoch
    number whose unit is told by its magnitude, value by value: seconds below 1e11 (year 5138 in seconds),
    milliseconds below 1e14, microseconds below 1e17. Binance moved spot klines from ms to µs in 2025, and
    CryptoDataDownload mixes ms with float seconds in one file.
    """
    if pd.api.types.is_numeric_dtype(values):
        return _epoch_times(values)
    times = pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce").astype("datetime64[us, UTC]")
    not_iso = times.isna() & values.notna()
    if not_iso.any():
        times[not_iso] = _epoch_times(pd.to_numeric(values[not_iso], errors="coerce"))
    return times


def _epoch_times(numbers: pd.Series) -> pd.Series:
    magnitude = numbers.abs()
    micros_per_unit = np.select([magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [1e6, 1e3, 1.0], np.nan)
    micros = (numbers.to_numpy(np.float64) * micros_per_unit).round()
    unreadable = np.isnan(micros)
    times = np.where(unreadable, 0, micros).astype(np.int64).astype("datetime64[us]")
    times[unreadable] = np.datetime64("NaT")
    return pd.Series(times, index=numbers.index).dt.tz_localize("UTC")


def _symbols(path: Path, symbol: str | None, in_file: pd.Series | None, index: pd.Index) -> pd.Series:
    """Per-row tickers: the ``symbol`` argument, else the file's own (``in_file``), else the file name's."""
    if symbol:
        return pd.Series(symbol.strip().upper(), index=index, dtype="str")
    from_name = symbol_from_filename(path)
    if in_file is None:
        if from_name is None:
            raise SourceError(f"{path}: no symbol in the file or its name; pass the symbol explicitly")
        return pd.Series(from_name, index=index, dtype="str")
    return in_file if from_name is None else in_file.fillna(from_name)


def _binance(cells: pd.DataFrame, path: Path, symbol: str | None) -> _Fields:
    return _Fields(
        times=_parse_times(cells["timestamp"]),
        time_column="timestamp",
        price_columns={name: name for name in PRICE_COLUMNS},
        symbols=_symbols(path, symbol, None, cells.index),
    )


def _binance_raw(cells: pd.DataFrame, path: Path, symbol: str | None) -> _Fields:
    return _Fields(
        times=_parse_times(cells["open_time"]),
        time_column="open_time",
        price_columns={name: name for name in PRICE_COLUMNS},
        symbols=_symbols(path, symbol, None, cells.index),
    )


def _cryptodatadownload(cells: pd.DataFrame, path: Path, symbol: str | None) -> _Fields:
    # CryptoDataDownload writes the base-asset volume (``Volume BTC``) before the quote one (``Volume USDT``).
    volume_columns = [name for name in cells.columns if name.startswith("volume ")]
    if not volume_columns:
        raise SourceError(f"{path}: cryptodatadownload header has no 'Volume <BASE>' column")
    pairs = cells["symbol"].str.strip()
    tickers = pairs.map({pair: symbol_from_pair(pair) for pair in pairs.dropna().unique()})
    return _Fields(
        # ``unix`` is the truth: the ``date`` text is local time (4 h behind UTC) in some 2017 rows.
        times=_parse_times(cells["unix"]),
        time_column="unix",
        price_columns={"open": "open", "high": "high", "low": "low", "close": "close", "volume": volume_columns[0]},
        symbols=_symbols(path, symbol, tickers, cells.index),
    )


def _coinmarketcap(cells: pd.DataFrame, path: Path, symbol: str | None) -> _Fields:
    return _Fields(
        # ``2013-04-29 23:59:59`` closes the daily bar of that UTC day: the bar opens at 2013-04-29 00:00.
        times=_parse_times(cells["date"]).dt.floor("D"),
        time_column="date",
        price_columns={name: name for name in PRICE_COLUMNS},
        symbols=_symbols(path, symbol, cells["symbol"].str.strip().str.upper(), cells.index),
    )


def _coingecko(cells: pd.DataFrame, path: Path, symbol: str | None) -> _Fields:
    tickers = None
    if not symbol:
        coin_ids = cells["coinid"].str.strip()
        tickers = coin_ids.map(coingecko_symbols())
        unknown = sorted(set(coin_ids[tickers.isna()].dropna()))
        if unknown:
            raise SourceError(f"{path}: CoinGecko id(s) {', '.join(unknown)} not in the universe; pass the symbol")
    return _Fields(
        times=_parse_times(cells["timestamp"]),
        time_column="timestamp",
        price_columns={"open": "price", "high": "price", "low": "price", "close": "price", "volume": "totalvolume"},
        symbols=_symbols(path, symbol, tickers, cells.index),
    )


_READERS: dict[str, Callable[[pd.DataFrame, Path, str | None], _Fields]] = {
    "binance": _binance,
    "binance_raw": _binance_raw,
    "cryptodatadownload": _cryptodatadownload,
    "coinmarketcap": _coinmarketcap,
    "coingecko": _coingecko,
}


def _bars_and_rejects(cells: pd.DataFrame, fields: _Fields, text: _Text) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars from the rows whose time, symbol and numbers all read; the other rows as rejects naming the first
    field that failed."""
    numbers = {}
    unreadable = {fields.time_column: fields.times.isna(), "symbol": fields.symbols.isna()}
    for column in dict.fromkeys(fields.price_columns.values()):
        numbers[column] = pd.to_numeric(cells[column], errors="coerce").astype(np.float64)
        unreadable[column] = numbers[column].isna() & cells[column].notna()  # missing cells are already NaN
    unreadable = pd.DataFrame(unreadable)
    failed = unreadable.any(axis=1)

    bars = pd.DataFrame(
        {
            "symbol": fields.symbols,
            "ts": fields.times,
            **{bar: numbers[column] for bar, column in fields.price_columns.items()},
        }
    )[~failed]
    bars.insert(0, "line", bars.index.to_numpy(np.int64))

    reasons, symbols = [], []
    for line, column in unreadable[failed].idxmax(axis=1).items():  # the failed rows only, to name each reason
        value = cells.at[line, column] if column in cells else None
        if column == "symbol" or pd.isna(value):
            reasons.append(f"missing {column}")
        else:
            reasons.append(f"unparsable {column} {str(value).strip()!r}")
        symbol = fields.symbols.at[line]
        symbols.append(symbol if isinstance(symbol, str) else None)
    failed_lines = failed.index[failed].to_numpy(np.int64)
    rejects = pd.DataFrame(
        {
            "line": failed_lines,
            "symbol": pd.Series(symbols, dtype=object),
            "reason": pd.Series(reasons, dtype=object),
            "raw": pd.Series([text.line(line - 1) for line in failed_lines], dtype=object),
        }
    )
    return bars.reset_index(drop=True), rejects


def _median_step_seconds(times: pd.Series) -> int | None:
    """The typical bar interval: median gap between distinct times (files may be newest first or repeat bars)."""
    distinct = np.sort(times.dropna().unique())
    if len(distinct) < 2:
        return None
    return int(np.median(np.diff(distinct)) / np.timedelta64(1, "s"))
