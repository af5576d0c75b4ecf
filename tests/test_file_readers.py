"""Price file readers: each format's quirks, exact values, physical line numbers, rejects and unreadable files.

The fixtures in ``tests/fixtures/files`` are small hand-written files that reproduce the quirks of the real
exports (CRLF and BOM bytes are kept exact by their ``.gitattributes``).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cryptobt_pipelines.sources.batch import SourceError
from cryptobt_pipelines.sources.files import FORMATS, detect_format, read_price_file
from cryptobt_pipelines.sources.symbols import bar_seconds_from_filename, symbol_from_filename, symbol_from_pair

FIXTURES = Path(__file__).parent / "fixtures" / "files"


def utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(stamp, tz="UTC") for stamp in stamps]


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


@pytest.mark.parametrize(
    ("name", "format"),
    [
        ("LINKUSDT_1h.csv", "binance"),
        ("BTCUSDT_1d.csv", "binance"),
        ("BTCUSDT-1h-2024-12_2025-01.csv", "binance_raw"),
        ("Binance_BTCUSDT_1h.csv", "cryptodatadownload"),
        ("Binance_BNBUSDT_d.csv", "cryptodatadownload"),
        ("coin_Bitcoin.csv", "coinmarketcap"),
        ("bitcoin.csv", "coingecko"),
    ],
)
def test_detects_each_format(name, format):
    assert format in FORMATS
    assert detect_format(FIXTURES / name) == format
    assert read_price_file(FIXTURES / name).format == format


def test_binance_klines_values_lines_and_rejects():
    batch = read_price_file(FIXTURES / "LINKUSDT_1h.csv")
    bars = batch.bars
    assert batch.source == str(FIXTURES / "LINKUSDT_1h.csv")
    assert (batch.format, batch.bar_seconds) == ("binance", 3600)
    assert bars["line"].tolist() == [2, 3, 4, 8, 10]  # line 9 is blank; CRLF and trailing blank lines ignored
    assert set(bars["symbol"]) == {"LINK"}
    assert bars["ts"].tolist() == utc(
        "2021-02-11 01:00", "2021-02-11 02:00", "2021-02-11 03:00", "2021-02-11 07:00", "2021-02-11 08:00"
    )
    assert bars.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [24.05, 24.31, 23.9, 24.2, 151234.5]
    assert bars.iloc[2][["open", "high", "low", "close", "volume"]].tolist() == [24.38, 24.38, 24.38, 24.38, 0.0]
    assert np.isnan(bars.iloc[3]["volume"])  # an empty cell is a missing value, not a reject
    assert bars.iloc[4]["volume"] == 150_000.0

    rejects = batch.rejects
    assert rejects["line"].tolist() == [5, 6, 7]
    assert rejects["reason"].tolist() == [
        "unparsable timestamp '2021-13-45 04:00:00'",
        "unparsable high 'abc'",
        "expected 6 fields, found 4",
    ]
    assert rejects["raw"].tolist()[1] == "2021-02-11 05:00:00,24.85,abc,24.7,24.95,88000"
    assert set(rejects["symbol"]) == {"LINK"}
    assert batch.rows_read == 8


def test_batch_dtypes_follow_the_contract():
    batch = read_price_file(FIXTURES / "LINKUSDT_1h.csv")
    dtypes = batch.bars.dtypes
    assert dtypes["line"] == np.int64
    assert dtypes["ts"] == "datetime64[us, UTC]"
    assert all(dtypes[column] == np.float64 for column in ["open", "high", "low", "close", "volume"])
    assert batch.rejects["line"].dtype == np.int64


def test_binance_daily_with_bom_and_capitalised_header():
    batch = read_price_file(FIXTURES / "BTCUSDT_1d.csv")
    assert batch.bar_seconds == 86_400
    assert batch.bars["line"].tolist() == [2, 3, 4]
    assert batch.bars["ts"].tolist() == utc("2017-08-17", "2017-08-18", "2017-08-19")
    first = batch.bars.iloc[0]
    assert first[["open", "high", "low", "close", "volume"]].tolist() == [4300, 4480.5, 4200.25, 4280, 800.125]
    assert batch.rejects.empty


def test_binance_raw_export_reads_milliseconds_and_microseconds_per_value():
    batch = read_price_file(FIXTURES / "BTCUSDT-1h-2024-12_2025-01.csv")
    assert (batch.format, batch.bar_seconds) == ("binance_raw", 3600)
    assert batch.bars["line"].tolist() == [1, 2, 3]  # no header: data starts on line 1
    assert batch.bars["ts"].tolist() == utc("2024-12-31 23:00", "2025-01-01 00:00", "2025-01-01 01:00")
    second = batch.bars.iloc[1]
    assert second[["open", "high", "low", "close", "volume"]].tolist() == [93650.1, 94100, 93600, 94000, 530.25]
    assert set(batch.bars["symbol"]) == {"BTC"}
    assert batch.rejects[["line", "reason"]].values.tolist() == [[4, "expected 12 fields, found 5"]]


def test_binance_raw_export_with_header(tmp_path):
    path = write(
        tmp_path / "ETHUSDT-1d-2025-02.csv",
        "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
        "taker_buy_volume,taker_buy_quote_volume,ignore\n"
        "1738368000000000,3300.5,3350,3250,3310,1000.5,1738454399999999,3300000,5000,500,1650000,0\n",
    )
    batch = read_price_file(path)
    assert batch.format == "binance_raw"
    assert batch.bars[["line", "symbol"]].values.tolist() == [[2, "ETH"]]
    assert batch.bars["ts"].tolist() == utc("2025-02-01")
    assert batch.bar_seconds == 86_400


def test_cryptodatadownload_banner_newest_first_mixed_units_and_duplicates():
    batch = read_price_file(FIXTURES / "Binance_BTCUSDT_1h.csv")
    bars = batch.bars
    assert (batch.format, batch.bar_seconds) == ("cryptodatadownload", 3600)
    # Line 1 is the banner, line 2 the header; file order (newest first) is kept.
    assert bars["line"].tolist() == [3, 4, 5, 7, 8, 9]
    assert bars["ts"].tolist() == utc(
        "2020-09-20 00:00",  # unix in milliseconds
        "2020-09-19 23:00",
        "2020-09-19 23:00",  # the same bar again in old style (float seconds), conflicting values: kept
        "2017-09-23 00:00",  # unix wins over the date text, which says 2017-09-22 08-PM (local time)
        "2017-08-17 05:00",
        "2017-08-17 04:00",
    )
    assert bars.iloc[1]["close"] == 11080.0
    assert bars.iloc[2]["close"] == 11080.2
    assert bars["volume"].tolist() == [812.345, 640.1, 640.2, 210.5, 23.5, 44.75]  # Volume BTC, not Volume USDT
    assert bars.iloc[5]["open"] == 16000.1  # dirty first print: a value rule for the loader, not a parse error
    assert set(bars["symbol"]) == {"BTC"}  # from the BTC/USDT column
    assert batch.rejects[["line", "symbol", "reason"]].values.tolist() == [[6, "BTC", "unparsable low 'n/a'"]]


def test_cryptodatadownload_daily_without_banner():
    batch = read_price_file(FIXTURES / "Binance_BNBUSDT_d.csv")
    assert batch.bar_seconds == 86_400
    assert batch.bars["line"].tolist() == [2, 3, 4]
    assert batch.bars["ts"].tolist() == utc("2021-06-11", "2021-06-10", "2017-12-18")
    assert batch.bars["volume"].tolist() == [1200.5, 250000.25, 300000.5]
    assert set(batch.bars["symbol"]) == {"BNB"}


def test_coinmarketcap_end_of_day_stamps_become_the_days_open():
    batch = read_price_file(FIXTURES / "coin_Bitcoin.csv")
    bars = batch.bars
    assert (batch.format, batch.bar_seconds) == ("coinmarketcap", 86_400)
    assert bars["line"].tolist() == [2, 3, 5]
    assert bars["ts"].tolist() == utc("2013-04-29", "2013-04-30", "2013-05-02")
    # High and Low come before Open in the file.
    assert bars.iloc[0][["open", "high", "low", "close", "volume"]].tolist() == [134.25, 147.5, 134.0, 144.75, 0.0]
    assert bars.iloc[1]["low"] == 134.1999969482422
    assert set(bars["symbol"]) == {"BTC"}
    assert batch.rejects[["line", "symbol", "reason"]].values.tolist() == [[4, "BTC", "unparsable date 'yesterday'"]]


def test_coingecko_points_become_flat_bars_and_the_intraday_snapshot_is_kept():
    batch = read_price_file(FIXTURES / "bitcoin.csv")
    bars = batch.bars
    assert (batch.format, batch.bar_seconds) == ("coingecko", 86_400)
    assert bars["line"].tolist() == [2, 3, 5]
    assert bars["ts"].tolist() == utc("2021-01-01", "2021-01-02", "2021-01-03 13:30:45")  # off grid: the loader's call
    first = bars.iloc[0]
    assert [first["open"], first["high"], first["low"], first["close"]] == [29000.5] * 4
    assert first["volume"] == 43000000000.5
    assert set(bars["symbol"]) == {"BTC"}  # coinId bitcoin, through the universe
    assert batch.rejects[["line", "reason"]].values.tolist() == [[4, "unmatched or misplaced quote"]]


def test_coingecko_id_outside_the_universe_needs_a_symbol(tmp_path):
    path = write(
        tmp_path / "no-such-coin.csv",
        'timestamp,readableTimestamp,coinId,price,marketCap,totalVolume\n'
        '1609459200000,"1/1/2021, 12:00:00 AM",no-such-coin,1.5,100,10\n',
    )
    with pytest.raises(SourceError, match="no-such-coin.csv: CoinGecko id.*no-such-coin.*not in the universe"):
        read_price_file(path)
    assert read_price_file(path, symbol="nsc").bars["symbol"].tolist() == ["NSC"]


def test_symbol_argument_overrides_the_file_and_its_name():
    assert set(read_price_file(FIXTURES / "Binance_BTCUSDT_1h.csv", symbol="eth").bars["symbol"]) == {"ETH"}
    assert set(read_price_file(FIXTURES / "LINKUSDT_1h.csv", symbol="LINK2").rejects["symbol"]) == {"LINK2"}


def test_symbol_column_wins_over_the_file_name(tmp_path):
    path = tmp_path / "ETHUSDT_1h.csv"
    path.write_bytes((FIXTURES / "Binance_BTCUSDT_1h.csv").read_bytes())
    assert set(read_price_file(path).bars["symbol"]) == {"BTC"}


def test_no_symbol_anywhere_is_a_source_error(tmp_path):
    path = write(tmp_path / "prices.csv", "timestamp,open,high,low,close,volume\n2021-01-01,1,2,0.5,1.5,10\n")
    with pytest.raises(SourceError, match="prices.csv: no symbol"):
        read_price_file(path)


def test_bar_seconds_from_the_median_step_when_the_name_has_no_interval(tmp_path):
    rows = "".join(f"2021-01-01 {hour:02d}:00:00,1,2,0.5,1.5,10\n" for hour in (0, 1, 2, 4, 5))
    path = write(tmp_path / "prices.csv", "timestamp,open,high,low,close,volume\n" + rows)
    assert read_price_file(path, symbol="BTC").bar_seconds == 3600
    single = write(tmp_path / "one.csv", "timestamp,open,high,low,close,volume\n2021-01-01,1,2,0.5,1.5,10\n")
    assert read_price_file(single, symbol="BTC").bar_seconds is None


def test_explicit_format_skips_detection_and_checks_the_columns(tmp_path):
    assert read_price_file(FIXTURES / "LINKUSDT_1h.csv", format="binance").format == "binance"
    with pytest.raises(SourceError, match=r"LINKUSDT_1h.csv: coinmarketcap header lacks column\(s\) symbol, date"):
        read_price_file(FIXTURES / "LINKUSDT_1h.csv", format="coinmarketcap")
    with pytest.raises(SourceError, match="unknown format 'parquet'"):
        read_price_file(FIXTURES / "LINKUSDT_1h.csv", format="parquet")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\r\n  \n\n", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (b"timestamp,open\xff,high\n", "not UTF-8 text"),
        (b"date,price,market_cap\n2021-01-01,1,2\n", "unknown price file format"),
        (b"timestamp,open,high,close\n2021-01-01,1,2,3\n", "unknown price file format"),
        (b"just some text\nwithout a separator\n", "no comma-separated line"),
        (b"timestamp,open,high,low,close,volume\r\n\r\n", "no data rows"),
    ],
)
def test_unreadable_files_raise_one_line_source_errors(tmp_path, content, message):
    path = tmp_path / "BTCUSDT_1h.csv"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message) as error:
        read_price_file(path)
    assert str(error.value).startswith(f"{path}: ")
    assert "\n" not in str(error.value)


def test_missing_file_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="cannot read the file"):
        read_price_file(tmp_path / "BTCUSDT_1h.csv")


def test_quotes_that_do_not_wrap_a_whole_field_are_rejected(tmp_path):
    rows = [
        '"2021-01-01 00:00:00","1",2,0.5,1.5,10',  # quoted fields: fine
        '"2021-01-01 01:00:00,1",2,0.5,1.5,10',  # one quoted field swallowing a comma: 5 fields
        '2021-01-01 02:00:00,1"2",2,0.5,1.5,10',  # quote inside a field
        '"2021-01-01 03:00:00,"1",2,0.5,1.5,10"',  # closing quote not at a field end
        '2021-01-01 04:00:00,"1,2,0.5,1.5,10',  # unmatched
    ]
    path = write(tmp_path / "BTCUSDT_1h.csv", "timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    batch = read_price_file(path)
    assert batch.bars["line"].tolist() == [2]
    assert batch.rejects[["line", "reason"]].values.tolist() == [
        [3, "expected 6 fields, found 5"],
        [4, "unmatched or misplaced quote"],
        [5, "unmatched or misplaced quote"],
        [6, "unmatched or misplaced quote"],
    ]


def test_every_row_rejected_still_returns_a_batch(tmp_path):
    path = write(tmp_path / "BTCUSDT_1h.csv", "timestamp,open,high,low,close,volume\n1,2\n3,4,5\n")
    batch = read_price_file(path)
    assert batch.bars.empty
    assert batch.rejects["line"].tolist() == [2, 3]


def test_large_file_keeps_line_numbers_exact(tmp_path):
    """50,000 rows with a few bad ones spread through: every bar and reject keeps its physical line."""
    times = pd.date_range("2020-01-01", periods=50_000, freq="h")
    lines = [f"{stamp:%Y-%m-%d %H:%M:%S},{i + 1},{i + 2},{i + 0.5},{i + 1.5},{i * 10}" for i, stamp in enumerate(times)]
    bad = {10: "garbage", 20_000: "2020-01-01 00:00:00,1,2,3", 49_999: "2020-99-01 00:00:00,1,2,3,4,5"}
    for index, line in bad.items():
        lines[index] = line
    path = write(tmp_path / "BTCUSDT_1h.csv", "timestamp,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    batch = read_price_file(path)
    assert len(batch.bars) == 50_000 - len(bad)
    assert batch.rejects["line"].tolist() == [index + 2 for index in bad]
    row = batch.bars.set_index("line").loc[30_002]  # data index 30,000
    assert (row["ts"], row["open"], row["volume"]) == (pd.Timestamp(times[30_000], tz="UTC"), 30_001.0, 300_000.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["good", "blank", "short", "long", "bad_time", "bad_number", "null_volume", "quoted"]),
        min_size=1,
        max_size=30,
    )
)
def test_any_mix_of_lines_maps_back_to_its_physical_line(tmp_path_factory, kinds):
    assume(set(kinds) != {"blank"})  # a file of blank lines has no data rows: a SourceError, tested above
    row = {
        "good": "2021-01-01 00:00:00,1,2,0.5,1.5,10",
        "blank": "   ",
        "short": "2021-01-01 00:00:00,1,2",
        "long": "2021-01-01 00:00:00,1,2,0.5,1.5,10,11",
        "bad_time": "soon,1,2,0.5,1.5,10",
        "bad_number": "2021-01-01 00:00:00,1,x,0.5,1.5,10",
        "null_volume": "2021-01-01 00:00:00,1,2,0.5,1.5,NULL",
        "quoted": '"2021-01-01 00:00:00","1","2","0.5","1.5","10"',
    }
    path = tmp_path_factory.mktemp("mix") / "BTCUSDT_1h.csv"
    path.write_text("timestamp,open,high,low,close,volume\r\n" + "\r\n".join(row[kind] for kind in kinds) + "\r\n")
    batch = read_price_file(path)
    lines = {kind: [number for number, k in enumerate(kinds, start=2) if k == kind] for kind in row}
    assert batch.bars["line"].tolist() == sorted(lines["good"] + lines["null_volume"] + lines["quoted"])
    assert batch.rejects["line"].tolist() == sorted(
        lines["short"] + lines["long"] + lines["bad_time"] + lines["bad_number"]
    )
    assert batch.rejects["raw"].tolist() == [row[kinds[line - 2]] for line in batch.rejects["line"]]


@pytest.mark.parametrize(
    ("text", "symbol"),
    [
        ("BTCUSDT", "BTC"),
        ("BTC/USDT", "BTC"),
        ("LINK-USD", "LINK"),
        ("ethfdusd", "ETH"),
        ("BTCBUSD", "BTC"),
        ("BTCTUSD", "BTC"),
        ("ADAEUR", "ADA"),
        ("USDCUSDT", "USDC"),
        ("USDT", "USDT"),
        ("ETHBTC", "ETHBTC"),  # priced in BTC: left whole so the loader refuses it
    ],
)
def test_symbol_from_pair(text, symbol):
    assert symbol_from_pair(text) == symbol


@pytest.mark.parametrize(
    ("name", "symbol", "bar_seconds"),
    [
        ("LINKUSDT_1h.csv", "LINK", 3600),
        ("data/Binance_BTCUSDT_1h.csv", "BTC", 3600),
        ("Binance_BTCUSDT_d.csv", "BTC", 86_400),
        ("ADAUSDT_4h.csv", "ADA", 14_400),
        ("ETHUSDT_3d.csv", "ETH", 259_200),
        ("DOGEUSDT_1w.csv", "DOGE", 604_800),
        ("XRPUSDT_15m.csv", "XRP", 900),
        ("SHIBUSDT_3m.csv", "SHIB", 180),
        ("BTCUSDT-1s-2025-01-02.csv", "BTC", 1),
        ("ETHUSDT-1M-2024-01.csv", "ETH", None),  # 1M is a month, not a fixed number of seconds
        ("BTC_1d.csv", "BTC", 86_400),
        ("coin_Bitcoin.csv", None, None),
        ("bitcoin.csv", None, None),
    ],
)
def test_symbol_and_bar_seconds_from_filename(name, symbol, bar_seconds):
    assert symbol_from_filename(name) == symbol
    assert bar_seconds_from_filename(name) == bar_seconds


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet='0123456789,". -:eNUL\t', max_size=40), min_size=1, max_size=20))
def test_garbage_lines_never_crash_and_every_data_line_is_accounted_for(tmp_path_factory, lines):
    """Each non-blank line after the header ends up exactly once, as a bar or as a reject."""
    path = tmp_path_factory.mktemp("fuzz") / "BTCUSDT_1h.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(lines) + "\n")
    try:
        batch = read_price_file(path)
    except SourceError as error:
        assert "no data rows" in str(error)
        assert all(not line.strip() for line in lines)
        return
    data_lines = [number for number, line in enumerate(lines, start=2) if line.strip()]
    assert sorted(batch.bars["line"].tolist() + batch.rejects["line"].tolist()) == data_lines
