"""The bundled crypto universe: 263 real coins, ids 1..263 by market-cap rank, one row per ticker."""

import pandas as pd

from cryptobt_pipelines.sources.symbols import UNIVERSE_CSV, coingecko_symbols

# Every coin that appears in the sample price data the project was built against.
BINANCE_COINS = "ADA ATOM AVAX BCH BNB BTC DOGE DOT ETC ETH LINK LTC MATIC PAXG SHIB SOL TRX UNI XLM XMR XRP"
KAGGLE_COINS = "AAVE BNB BTC ADA LINK ATOM CRO DOGE EOS ETH MIOTA LTC XMR XEM DOT SOL XLM USDT TRX USDC UNI WBTC XRP"
CRYPTODATADOWNLOAD_COINS = "BTC ETH BNB ADA"


def read_universe() -> pd.DataFrame:
    return pd.read_csv(UNIVERSE_CSV, dtype={"symbol": str, "name": str, "coingecko_id": str})


def test_universe_has_263_cryptos_with_ids_1_to_263_in_order():
    universe = read_universe()
    assert list(universe.columns) == ["crypto_id", "symbol", "name", "coingecko_id"]
    assert len(universe) == 263
    assert universe["crypto_id"].tolist() == list(range(1, 264))


def test_symbols_are_unique_upper_case_tickers():
    symbols = read_universe()["symbol"]
    assert symbols.is_unique
    assert symbols.str.fullmatch(r"[A-Z0-9]+").all()


def test_names_and_coingecko_ids_are_filled_and_ids_unique():
    universe = read_universe()
    assert universe["name"].notna().all()
    assert universe["coingecko_id"].notna().all()
    assert universe["coingecko_id"].is_unique


def test_every_coin_of_the_sample_data_is_in_the_universe():
    required = set(f"{BINANCE_COINS} {KAGGLE_COINS} {CRYPTODATADOWNLOAD_COINS}".split())
    assert required <= set(read_universe()["symbol"])


def test_ordered_by_market_cap_rank():
    universe = read_universe().set_index("symbol")
    assert universe.loc["BTC", "crypto_id"] == 1
    assert universe.loc["ETH", "crypto_id"] == 2


def test_coingecko_ids_map_to_tickers():
    symbols = coingecko_symbols()
    assert symbols["bitcoin"] == "BTC"
    assert symbols["matic-network"] == "MATIC"
    assert symbols["iota"] == "MIOTA"
    assert len(symbols) == 263
