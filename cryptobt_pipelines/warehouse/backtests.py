"""Backtests in the warehouse: the bars of many cryptos read in one query, results written with binary COPY.

Reading (``read_prices``): the cryptos' data versions and their bars — whole UTC days from
``market.prices_daily``, or hourly bars from ``market.prices`` — in one REPEATABLE READ snapshot, so the version
recorded with a result is the version of the bars it was computed from. The bars arrive as binary COPY rows and
numpy lays them out as (bars x cryptos) arrays, the engine's input.

Writing (``write_results``): one transaction per batch. Each engine call becomes a ``backtest.runs`` row; every
result replaces the stored one with the same crypto, strategy, parameter set, interval and requested window
(its curve and trades with it); results, curves and trades go in with binary COPY.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import psycopg
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb

from cryptobt_pipelines.engine import METRIC_NAMES, BacktestResult, Strategy, load_catalog
from cryptobt_pipelines.warehouse.database import query, transaction
from cryptobt_pipelines.warehouse.load import BINARY_COPY_HEADER, BINARY_COPY_TRAILER, PG_EPOCH_US

BAR_SECONDS = {"1d": 86_400, "1h": 3_600}
# Serialises writers: two batches replacing the same results would otherwise both delete, then collide.
WRITE_LOCK_KEY = 7_311_010
PRICE_FIELDS = ("open", "high", "low", "close")
ARRAY_HEADER_BYTES = 20  # dimensions, has-nulls flag, element type, length, lower bound
TRADE_ROW = np.dtype(
    [("fields", ">i2"), ("result_id_len", ">i4"), ("result_id", ">i8"), ("trade_no_len", ">i4"), ("trade_no", ">i4")]
    + [item for name, kind in (("entry_ts", ">i8"), ("exit_ts", ">i8"), ("entry_price", ">f8"),
                               ("exit_price", ">f8"), ("units", ">f8"), ("pnl", ">f8"), ("return", ">f8"),
                               ("is_open", "u1"))
       for item in ((f"{name}_len", ">i4"), (name, kind))]
)
FLOAT8_OID = 701


class UnknownCryptos(ValueError):
    pass


@dataclass(frozen=True)
class CryptoInputs:
    """A crypto as a backtest reads it: what its bars are (data_version) and whether the daily rollup lags."""

    crypto_id: int
    symbol: str
    data_version: int
    bar_seconds: int | None  # of its raw bars (None: no bars yet)
    rollup_pending: bool  # changes to its raw bars not yet in market.prices_daily


@dataclass
class PriceArrays:
    """Bars of many cryptos on one time grid: row t opens at ``timestamps[t]``, column c is ``cryptos[c]``.
    NaN where a crypto has no bar (before its listing, gaps, after its last bar)."""

    cryptos: list[CryptoInputs]
    bar_seconds: int
    timestamps: np.ndarray  # datetime64[us], UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @property
    def ohlc(self) -> list[np.ndarray]:
        return [self.open, self.high, self.low, self.close]

    def select(self, columns: Sequence[int]) -> PriceArrays:
        columns = list(columns)
        return PriceArrays([self.cryptos[c] for c in columns], self.bar_seconds, self.timestamps,
                           *(a[:, columns] for a in self.ohlc))

    def valid_bars(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per crypto: number of valid bars (as the engine defines them), first and last valid row (-1: none)."""
        valid = np.ones(self.close.shape, dtype=bool)
        for a in self.ohlc:
            valid &= np.isfinite(a) & (a > 0)
        counts = valid.sum(axis=0)
        if not len(valid):
            return counts, np.full(len(counts), -1), np.full(len(counts), -1)
        first = np.where(counts > 0, valid.argmax(axis=0), -1)
        last = np.where(counts > 0, len(valid) - 1 - valid[::-1].argmax(axis=0), -1)
        return counts, first, last


def crypto_inputs(conn: psycopg.Connection, *, symbols: Sequence[str] | None = None,
                  crypto_ids: Sequence[int] | None = None) -> list[CryptoInputs]:
    """The cryptos named (by symbol or id), in the order given; UnknownCryptos names those not in the warehouse."""
    wanted = list(symbols) if symbols is not None else list(crypto_ids or [])
    rows = conn.execute(query("backtests/crypto_inputs"), {
        "symbols": list(symbols) if symbols is not None else None,
        "crypto_ids": list(crypto_ids) if crypto_ids is not None else None,
    }).fetchall()
    found = {(row[1] if symbols is not None else row[0]): CryptoInputs(*row) for row in rows}
    unknown = [w for w in wanted if w not in found]
    if unknown:
        what = "symbols" if symbols is not None else "crypto ids"
        raise UnknownCryptos(f"unknown {what}: {', '.join(map(str, unknown))}")
    return [found[w] for w in wanted]


def read_prices(url: str | None, crypto_ids: Sequence[int], bar_seconds: int, start: datetime | None = None,
                end: datetime | None = None) -> PriceArrays:
    """The bars of every crypto in ``crypto_ids`` opening in [start, end), in one query and one snapshot.

    Daily bars are whole UTC days (the day still forming is left out); hourly bars need cryptos whose raw bars
    are hourly (ValueError names the others).
    """
    if bar_seconds not in BAR_SECONDS.values():
        raise ValueError(f"bar_seconds must be one of {sorted(BAR_SECONDS.values())}, got {bar_seconds}")
    with transaction(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cryptos = crypto_inputs(conn, crypto_ids=crypto_ids)
        if bar_seconds == BAR_SECONDS["1h"]:
            other = [f"{c.symbol} ({c.bar_seconds} s)" for c in cryptos if c.bar_seconds not in (None, bar_seconds)]
            if other:
                raise ValueError(f"no hourly bars for {', '.join(other)}: hourly backtests need hourly raw bars")
            cryptos = [CryptoInputs(c.crypto_id, c.symbol, c.data_version, c.bar_seconds, False) for c in cryptos]
        daily = bar_seconds == BAR_SECONDS["1d"]
        statement = pgsql.SQL(query("backtests/bars")).format(
            bars=pgsql.Identifier("market", "prices_daily" if daily else "prices"),
            time=pgsql.Identifier("bucket" if daily else "ts"))
        per_crypto = _copy_out(conn, statement, {"crypto_ids": list(crypto_ids), "start": start, "end": end,
                                                 "bar_seconds": bar_seconds})
    return _on_grid(cryptos, bar_seconds, per_crypto)


def _copy_out(conn: psycopg.Connection, statement: pgsql.Composable, params: dict) -> dict[int, list[np.ndarray]]:
    """crypto_id -> [bar times (µs since 2000), open, high, low, close] from binary COPY rows of
    (crypto_id, timestamptz[], four float8[])."""
    data = bytearray()
    with conn.cursor().copy(statement, params) as copy:
        for chunk in copy:
            data += chunk
    view = memoryview(data)
    position = len(BINARY_COPY_HEADER)
    per_crypto = {}
    while int.from_bytes(view[position: position + 2], "big", signed=True) != -1:  # the trailer
        crypto_id = int.from_bytes(view[position + 6: position + 10], "big", signed=True)
        position += 10  # field count, then the crypto_id's length and value
        arrays = []
        for kind in (">i8", ">f8", ">f8", ">f8", ">f8"):
            length = int.from_bytes(view[position: position + 4], "big", signed=True)
            n = int.from_bytes(view[position + 16: position + 20], "big", signed=True)
            start = position + 4 + ARRAY_HEADER_BYTES
            # Every element is its own (length, value) pair; no element is NULL (the columns are NOT NULL).
            elements = np.frombuffer(view[start: start + 12 * n], dtype=[("len", ">i4"), ("value", kind)])
            arrays.append(elements["value"].astype(kind[1:]))
            position += 4 + length
        per_crypto[crypto_id] = arrays
    return per_crypto


def _on_grid(cryptos: list[CryptoInputs], bar_seconds: int, per_crypto: dict[int, list[np.ndarray]]) -> PriceArrays:
    step_us = bar_seconds * 1_000_000
    stamps = [arrays[0] for arrays in per_crypto.values()]
    first = min((int(t.min()) for t in stamps), default=0)
    n_bars = max((int(t.max() - first) // step_us + 1 for t in stamps), default=0)
    wide = {field: np.full((n_bars, len(cryptos)), np.nan) for field in PRICE_FIELDS}
    for column, crypto in enumerate(cryptos):
        if crypto.crypto_id not in per_crypto:
            continue
        ts, *values = per_crypto[crypto.crypto_id]
        rows = (ts - first) // step_us
        for field, value in zip(PRICE_FIELDS, values):
            wide[field][rows, column] = value
    timestamps = (np.arange(n_bars, dtype=np.int64) * step_us + first + PG_EPOCH_US).astype("datetime64[us]")
    return PriceArrays(cryptos, bar_seconds, timestamps, **wide)


# --- writing ------------------------------------------------------------------------------------------------


@dataclass
class EngineRun:
    """One engine call to store: ``result`` over ``prices``' cryptos; ``curves``: store equity and trades too."""

    result: BacktestResult
    prices: PriceArrays
    window_start: datetime | None
    window_end: datetime | None
    params_hashes: list[str]  # one per parameter set, in engine order
    default_set: int | None  # position of the catalog-default set, if any
    definition_hash: str
    engine_version: str
    started_at: datetime
    load_seconds: float
    engine_seconds: float
    curves: bool


@dataclass
class WriteReport:
    run_ids: list[int]
    results: int
    replaced: int
    equity_points: int
    trades: int
    seconds: float


def sync_strategies(conn: psycopg.Connection) -> None:
    """Mirror assets/strategies.json into backtest.strategies (rows change only where the catalog did)."""
    catalog = load_catalog()
    common = [_parameter_json(p) for p in catalog.common_parameters]
    rows = [(s.id, s.name, s.description, Jsonb(common + [_parameter_json(p) for p in s.parameters]),
             definition_hash(s)) for s in catalog.strategies]
    with conn.cursor() as cursor:
        cursor.executemany(query("backtests/upsert_strategy"), rows)


def definition_hash(strategy: Strategy) -> str:
    """What identifies a strategy's definition: its catalog entry and the common parameters."""
    text = json.dumps({"strategy": asdict(strategy), "common": [asdict(p) for p in load_catalog().common_parameters]},
                      sort_keys=True, default=list)
    return _sha(text)


def params_hash(param_set: dict) -> str:
    """16 hex digits of sha256 over the canonical JSON of a resolved parameter set (keys sorted, compact): the
    same parameters give the same hash whatever order they came in. The Redis cache keys results the same way."""
    return _sha(json.dumps(dict(param_set), sort_keys=True, separators=(",", ":")))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _parameter_json(parameter) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(parameter).items() if v is not None}


def current_results(url: str | None, crypto_ids: Sequence[int], bar_seconds: int, window_start: datetime | None,
                    window_end: datetime | None, engine_version: str,
                    definition_hashes: dict[int, str]) -> set[tuple[int, int, str]]:
    """(crypto_id, strategy_id, params_hash) of stored results that are still current: computed from the
    crypto's present data version with no rollup change pending, by this engine and strategy definition."""
    with transaction(url) as conn:
        rows = conn.execute(query("backtests/current_results"), {
            "crypto_ids": list(crypto_ids), "bar_seconds": bar_seconds, "window_start": window_start,
            "window_end": window_end, "engine_version": engine_version,
            "strategy_ids": list(definition_hashes), "definition_hashes": list(definition_hashes.values()),
        }).fetchall()
    return set(rows)


def write_results(url: str | None, runs: list[EngineRun], dagster_run_id: str | None = None) -> WriteReport:
    """Store every run's results (and curves and trades where asked), replacing the same backtests' old rows."""
    started = time.perf_counter()
    run_ids, n_results, n_replaced, n_points, n_trades = [], 0, 0, 0, 0
    with transaction(url) as conn:
        # Results are recomputed when missing: a commit lost in a crash costs a recomputation, no need to
        # wait for the WAL flush.
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK_KEY])
        sync_strategies(conn)
        for run in runs:
            run_id = _insert_run(conn, run, dagster_run_id)
            run_ids.append(run_id)
            n_replaced += _delete_replaced(conn, run)
            result_ids = _allocate_result_ids(conn, len(run.prices.cryptos) * len(run.result.param_sets))
            _copy_results(conn, run, run_id, result_ids)
            n_results += len(result_ids)
            if run.curves:
                n_points += _copy_equity(conn, run, result_ids)
                n_trades += _copy_trades(conn, run, result_ids)
        seconds = time.perf_counter() - started
        conn.execute(query("backtests/finish_runs"), {"run_ids": run_ids, "write_ms": seconds * 1000})
    return WriteReport(run_ids, n_results, n_replaced, n_points, n_trades, time.perf_counter() - started)


def _insert_run(conn: psycopg.Connection, run: EngineRun, dagster_run_id: str | None) -> int:
    sets = run.result.param_sets
    return conn.execute(query("backtests/insert_run"), {
        "dagster_run_id": dagster_run_id, "strategy_id": run.result.strategy.id, "param_sets": Jsonb(sets),
        "params_hash": _sha(json.dumps(run.params_hashes)), "bar_seconds": run.prices.bar_seconds,
        "window_start": run.window_start, "window_end": run.window_end,
        "crypto_ids": [c.crypto_id for c in run.prices.cryptos],
        "data_versions": [c.data_version for c in run.prices.cryptos],
        "definition_hash": run.definition_hash, "engine_version": run.engine_version,
        "started_at": run.started_at, "load_ms": run.load_seconds * 1000, "engine_ms": run.engine_seconds * 1000,
    }).fetchone()[0]


def _delete_replaced(conn: psycopg.Connection, run: EngineRun) -> int:
    deleted = conn.execute(query("backtests/delete_replaced_results"), {
        "crypto_ids": [c.crypto_id for c in run.prices.cryptos], "strategy_id": run.result.strategy.id,
        "params_hashes": run.params_hashes, "bar_seconds": run.prices.bar_seconds,
        "window_start": run.window_start, "window_end": run.window_end,
    }).fetchall()
    ids = [row[0] for row in deleted]
    if ids:
        conn.execute(query("backtests/delete_trades"), {"result_ids": ids})
    if run.default_set is not None:
        conn.execute(query("backtests/retire_old_defaults"), {
            "crypto_ids": [c.crypto_id for c in run.prices.cryptos], "strategy_id": run.result.strategy.id,
            "params_hash": run.params_hashes[run.default_set], "bar_seconds": run.prices.bar_seconds,
            "window_start": run.window_start, "window_end": run.window_end,
        })
    return len(ids)


def _allocate_result_ids(conn: psycopg.Connection, n: int) -> np.ndarray:
    # Ids known before the COPY let curves and trades reference their result in the same pass.
    rows = conn.execute(query("backtests/allocate_result_ids"), {"n": n}).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


RESULT_COLUMNS = ("result_id", "run_id", "crypto_id", "strategy_id", "params", "params_hash", "is_default",
                  "bar_seconds", "window_start", "window_end", "first_bar", "last_bar", "n_bars", "data_version",
                  "rollup_pending", *METRIC_NAMES)
RESULT_TYPES = ("int8", "int8", "int4", "int4", "jsonb", "text", "bool", "int4", "timestamptz", "timestamptz",
                "timestamptz", "timestamptz", "int4", "int8", "bool",
                *("int4" if m == "n_trades" else "float8" for m in METRIC_NAMES))


def _copy_results(conn: psycopg.Connection, run: EngineRun, run_id: int, result_ids: np.ndarray) -> None:
    prices, result = run.prices, run.result
    counts, first, last = prices.valid_bars()
    stamps = prices.timestamps.astype("datetime64[us]").astype(datetime)  # naive UTC
    metrics = {name: values.tolist() for name, values in result.metrics.items()}
    statement = f"COPY backtest.results ({', '.join(RESULT_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with conn.cursor().copy(statement) as copy:
        copy.set_types(RESULT_TYPES)
        row_no = 0
        for ci, crypto in enumerate(prices.cryptos):
            first_bar = stamps[first[ci]].replace(tzinfo=UTC) if counts[ci] else None
            last_bar = stamps[last[ci]].replace(tzinfo=UTC) if counts[ci] else None
            for pi, param_set in enumerate(result.param_sets):
                values = [metrics[m][ci][pi] for m in METRIC_NAMES]
                values[METRIC_NAMES.index("n_trades")] = int(values[METRIC_NAMES.index("n_trades")])
                copy.write_row([
                    int(result_ids[row_no]), run_id, crypto.crypto_id, result.strategy.id, Jsonb(param_set),
                    run.params_hashes[pi], pi == run.default_set, prices.bar_seconds, run.window_start,
                    run.window_end, first_bar, last_bar, int(counts[ci]), crypto.data_version, crypto.rollup_pending,
                    *values,
                ])
                row_no += 1


def _copy_equity(conn: psycopg.Connection, run: EngineRun, result_ids: np.ndarray) -> int:
    """One row per result: its curve from its first to its last valid bar as a binary float8[] field."""
    prices, equity = run.prices, run.result.equity
    counts, first, last = prices.valid_bars()
    ts_us = prices.timestamps.astype("datetime64[us]").astype(np.int64) - PG_EPOCH_US
    n_sets = equity.shape[1]
    points = 0
    with conn.cursor().copy("COPY backtest.equity (result_id, first_bar, bar_seconds, equity) "
                            "FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(BINARY_COPY_HEADER)
        for ci in range(len(prices.cryptos)):
            if not counts[ci]:
                continue
            for pi in range(n_sets):
                curve = equity[ci, pi, first[ci]: last[ci] + 1]
                copy.write(_equity_row(int(result_ids[ci * n_sets + pi]), int(ts_us[first[ci]]), prices.bar_seconds,
                                       curve))
                points += len(curve)
        copy.write(BINARY_COPY_TRAILER)
    return points


def _equity_row(result_id: int, first_bar_us: int, bar_seconds: int, curve: np.ndarray) -> bytes:
    elements = np.empty(len(curve), dtype=[("len", ">i4"), ("value", ">f8")])
    elements["len"] = 8
    elements["value"] = curve
    # Binary array: dimensions, has-nulls flag, element type, then per dimension its length and lower bound.
    array = struct.pack(">iiiii", 1, 0, FLOAT8_OID, len(curve), 1) + elements.tobytes()
    return struct.pack(">hiqiqii", 4, 8, result_id, 8, first_bar_us, 4, bar_seconds) + struct.pack(
        ">i", len(array)) + array


def _copy_trades(conn: psycopg.Connection, run: EngineRun, result_ids: np.ndarray) -> int:
    trades = run.result.trades
    if trades is None or not len(trades):
        return 0
    n_sets = len(run.result.param_sets)
    ts_us = run.prices.timestamps.astype("datetime64[us]").astype(np.int64) - PG_EPOCH_US
    job = trades["crypto"] * n_sets + trades["param_set"]
    group_start = np.concatenate(([0], np.flatnonzero(np.diff(job)) + 1))
    trade_no = np.arange(len(trades)) - np.repeat(group_start, np.diff(np.append(group_start, len(trades)))) + 1
    rows = np.zeros(len(trades), dtype=TRADE_ROW)
    rows["fields"] = 10
    for name in TRADE_ROW.names:
        if name.endswith("_len"):
            rows[name] = TRADE_ROW.fields[name[:-4]][0].itemsize
    rows["result_id"] = result_ids[job]
    rows["trade_no"] = trade_no
    rows["entry_ts"] = ts_us[trades["entry_bar"]]
    rows["exit_ts"] = ts_us[trades["exit_bar"]]
    for name in ("entry_price", "exit_price", "units", "pnl", "return"):
        rows[name] = trades[name]
    rows["is_open"] = trades["is_open"]
    with conn.cursor().copy("COPY backtest.trades (result_id, trade_no, entry_ts, exit_ts, entry_price, exit_price, "
                            "units, pnl, return, is_open) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(BINARY_COPY_HEADER)
        copy.write(rows.tobytes())
        copy.write(BINARY_COPY_TRAILER)
    return len(rows)
