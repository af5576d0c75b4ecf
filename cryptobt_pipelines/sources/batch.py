"""The one shape every price source hands to the loader.

Readers and clients only parse: a row they cannot parse goes to ``rejects`` with its line and reason.
Value rules (positive prices, high >= low, ...) live in the loader so every source is judged alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

PRICE_COLUMNS = ["open", "high", "low", "close", "volume"]
BAR_COLUMNS = ["line", "symbol", "ts", *PRICE_COLUMNS]
REJECT_COLUMNS = ["line", "symbol", "reason", "raw"]


@dataclass
class PriceBatch:
    """Bars from one source.

    ``bars`` columns: ``line`` (int64, 1-based physical line in the file, or position for APIs),
    ``symbol`` (upper-case ticker, e.g. ``BTC``), ``ts`` (``datetime64[us, UTC]``, bar open time),
    ``open, high, low, close, volume`` (float64, NaN where the source had no value).
    ``rejects`` columns: ``line, symbol, reason, raw`` for rows that could not be parsed at all.
    ``bar_seconds`` is the bar interval the source declares or implies (None when unknown).
    """

    source: str
    format: str
    bars: pd.DataFrame
    rejects: pd.DataFrame = field(default_factory=lambda: empty_rejects())
    bar_seconds: int | None = None

    def __post_init__(self) -> None:
        missing = [c for c in BAR_COLUMNS if c not in self.bars.columns]
        if missing:
            raise ValueError(f"{self.format} reader returned bars without columns {missing}")
        self.bars = self.bars[BAR_COLUMNS]
        if self.bars["ts"].dtype != "datetime64[us, UTC]":
            self.bars["ts"] = pd.to_datetime(self.bars["ts"], utc=True).astype("datetime64[us, UTC]")

    @property
    def rows_read(self) -> int:
        return len(self.bars) + len(self.rejects)


def empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line": pd.Series([], dtype=np.int64),
            "symbol": pd.Series([], dtype=object),
            "reason": pd.Series([], dtype=object),
            "raw": pd.Series([], dtype=object),
        }
    )


class SourceError(ValueError):
    """A source that cannot be read at all: nothing from it is loaded."""
