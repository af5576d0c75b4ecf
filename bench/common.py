"""What more than one benchmark needs: the server, a universe, synthetic bars, a fresh warehouse, the table.

Imported as ``from common import ...`` by the scripts beside it (``python bench/<name>.py`` puts this folder
on the import path).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
from tqdm import tqdm

from cryptobt_pipelines import settings
from cryptobt_pipelines.sources.batch import PriceBatch
from cryptobt_pipelines.sources.synthetic import generate_prices
from cryptobt_pipelines.warehouse.database import close_pools, create_database, drop_database, migrate, with_database
from cryptobt_pipelines.warehouse.indexes import roll_recent_indexes
from cryptobt_pipelines.warehouse.load import LoadReport, load_batch
from cryptobt_pipelines.warehouse.universe import UNIVERSE_CSV, sync_universe


def server_url(home: Path) -> str:
    """``CRYPTOBT_DATABASE_URL`` when set, else the embedded server under ``home`` (started if need be)."""
    external = settings.external_database_url()
    if external:
        return external
    from cryptobt_pipelines.warehouse.servers import EmbeddedPostgres

    return EmbeddedPostgres(home).ensure_running().url("postgres")


def universe_csv(n: int, scratch: Path) -> tuple[Path, list[str]]:
    """The project's universe when it has ``n`` cryptos, else a made-up one of the same shape in ``scratch``."""
    if UNIVERSE_CSV.exists():
        symbols = pd.read_csv(UNIVERSE_CSV, keep_default_na=False)["symbol"].tolist()
        if len(symbols) >= n:
            return UNIVERSE_CSV, symbols[:n]
    path = scratch / "cryptos.csv"
    symbols = [f"C{i:03d}" for i in range(1, n + 1)]
    path.write_text("crypto_id,symbol,name,coingecko_id\n" + "".join(
        f"{i},{s},Coin {i},coin-{i}\n" for i, s in enumerate(symbols, start=1)))
    return path, symbols


def synthetic_prices(symbols: list[str], start: datetime, end: datetime) -> PriceBatch:
    """The deterministic hourly data set of ``cryptobt generate`` (seed 7) for these symbols."""
    return generate_prices(symbols, start, end, bar_seconds=3600, seed=7)


def one_hour(symbols: list[str], hour: datetime, rng: np.random.Generator) -> PriceBatch:
    """One hourly bar per symbol at ``hour``: what an hourly append brings."""
    price = rng.uniform(1, 100, len(symbols))
    bars = pd.DataFrame({
        "line": np.arange(1, len(symbols) + 1), "symbol": symbols, "ts": pd.Timestamp(hour),
        "open": price, "high": price * 1.01, "low": price * 0.99, "close": price,
        "volume": rng.uniform(0, 10, len(symbols)),
    })
    return PriceBatch(f"bench:append:{hour.isoformat()}", "synthetic", bars, bar_seconds=3600)


def machine(url: str) -> dict:
    """What the figures were measured on: hardware, library versions and the server's main settings."""
    with psycopg.connect(url) as conn:
        server = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("server_version", "wal_level", "shared_buffers", "max_wal_size", "synchronous_commit")
        }
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {
        "cpus": os.cpu_count(), "cpu_model": cpu, "load_average_at_start": os.getloadavg(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "numpy": np.__version__, "pandas": pd.__version__,
        "psycopg": psycopg.__version__, "postgres": server,
        "server": "external (CRYPTOBT_DATABASE_URL)" if settings.external_database_url() else "embedded",
    }


@contextmanager
def fresh_warehouse(admin_url: str, name: str, csv: Path) -> Iterator[str]:
    """An empty, migrated warehouse database with the universe loaded; dropped afterwards."""
    create_database(admin_url, name)
    url = with_database(admin_url, name)
    try:
        migrate(url)
        sync_universe(url, csv)
        yield url
    finally:
        close_pools()  # pooled connections to it would only be ended by DROP ... WITH (FORCE)
        drop_database(admin_url, name)


def bench_arguments(doc: str, results: Path) -> argparse.ArgumentParser:
    """The options of every full-scale benchmark: its scale, the embedded server's home, where results go."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cryptos", type=int, default=263)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "cryptobt-bench-home")
    parser.add_argument("--output", type=Path, default=results)
    return parser


def load_with_progress(batch: PriceBatch, url: str, label: str) -> LoadReport:
    """``load_batch`` with a progress bar of its stages."""
    with tqdm(total=len(batch.bars), desc=label, unit="row", unit_scale=True, leave=False) as bar:
        def progress(stage: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(stage)
            bar.update(done - bar.n)

        return load_batch(batch, url=url, progress=progress)


@dataclass
class FullScale:
    url: str
    csv: Path  # the universe it was made with
    symbols: list[str]
    rows: int
    end: datetime  # the hour after the last bar; appends move it on
    load: LoadReport  # the load that filled it
    batch: PriceBatch | None  # what was loaded, when asked to keep it

    def append_hour(self, rng: np.random.Generator) -> PriceBatch:
        """The next hour's bars of every crypto (what an hourly ingest brings); the benchmarks that share one
        warehouse append one after another."""
        batch = one_hour(self.symbols, self.end, rng)
        self.end += timedelta(hours=1)
        return batch


@contextmanager
def full_scale_warehouse(admin_url: str, name: str, cryptos: int, years: float, start: datetime,
                         keep_batch: bool = False) -> Iterator[FullScale]:
    """A fresh warehouse holding the synthetic hourly set, as it stands in production a while after the load:
    statistics gathered and the nightly recent-window indexes in place for data that ends now."""
    end = start + timedelta(days=round(365.25 * years))
    with tempfile.TemporaryDirectory() as scratch:
        csv, symbols = universe_csv(cryptos, Path(scratch))
        batch = synthetic_prices(symbols, start, end)
        rows = len(batch.bars)
        print(f"{rows:,} bars of {len(symbols)} cryptos, {start:%Y-%m-%d} to {end:%Y-%m-%d}", flush=True)
        with fresh_warehouse(admin_url, name, csv) as url:
            report = load_with_progress(batch, url, "full load")
            if not keep_batch:
                batch = None
            roll_recent_indexes(url, now=end)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("ANALYZE")
            yield FullScale(url, csv, symbols, rows, end, report, batch)


def spread(samples: list[float], digits: int = 2) -> dict:
    """What goes beside a median: the smallest and largest sample and how many there were."""
    return {"min": round(min(samples), digits), "max": round(max(samples), digits), "repeats": len(samples)}


def print_table(metrics: list[dict]) -> None:
    """One line per metric: name, value, unit, and every other key as detail."""
    print()
    print(f"{'metric':<34} {'value':>14}  {'unit':<7} detail")
    print("-" * 94)
    for m in metrics:
        detail = ", ".join(f"{k}={v}" for k, v in m.items() if k not in ("name", "value", "unit"))
        value = f"{m['value']:,}" if isinstance(m["value"], int) else f"{m['value']:,.3f}".rstrip("0").rstrip(".")
        print(f"{m['name']:<34} {value:>14}  {m['unit']:<7} {detail}")
