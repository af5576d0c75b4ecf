"""The crypto universe: ``assets/cryptos.csv`` mirrored into ``market.cryptos``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from cryptobt_pipelines import settings
from cryptobt_pipelines.warehouse.database import connect, query

UNIVERSE_CSV = settings.ASSETS_DIR / "cryptos.csv"


def read_universe(path: Path = UNIVERSE_CSV) -> pd.DataFrame:
    universe = pd.read_csv(path, dtype={"crypto_id": "int64", "symbol": str, "name": str, "coingecko_id": str},
                           keep_default_na=False)
    for column, values in (("crypto_id", universe["crypto_id"]), ("symbol", universe["symbol"])):
        duplicated = values[values.duplicated()].tolist()
        if duplicated:
            raise ValueError(f"{path}: duplicate {column} values {duplicated[:5]}")
    bad = universe[(universe["symbol"] == "") | (universe["symbol"] != universe["symbol"].str.upper())]
    if len(bad):
        raise ValueError(f"{path}: symbols must be non-empty upper case, got {bad['symbol'].tolist()[:5]}")
    return universe


@dataclass
class UniverseSync:
    added: int
    changed: int
    retired: int
    symbols: list[str]


def sync_universe(url: str | None = None, path: Path = UNIVERSE_CSV) -> UniverseSync:
    universe = read_universe(path)
    with connect(url) as conn:
        added, changed, retired = conn.execute(
            query("ingest/upsert_cryptos"),
            {
                "crypto_ids": universe["crypto_id"].tolist(),
                "symbols": universe["symbol"].tolist(),
                "names": universe["name"].tolist(),
                "coingecko_ids": [c or None for c in universe["coingecko_id"]],
            },
        ).fetchone()
    return UniverseSync(added, changed, retired, universe["symbol"].tolist())
