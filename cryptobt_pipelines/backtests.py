"""Backtests of warehouse data, without Dagster: on-demand questions and the nightly batch.

``backtest_cryptos`` answers one question — a strategy, a parameter set, a window and an interval over some
cryptos — with one result per crypto, computed from the warehouse's bars in one query and one engine call. A
crypto's result does not depend on which other cryptos share the call, so the Redis cache can keep results per
crypto: ask it for the cryptos' keys (``cache.backtest_keys`` on their data versions), call this for the misses
only, and put back ``result.as_dict()`` under the key of ``result.data_version`` (the version its bars were read
at) — but only ``settled`` results: one read while the daily rollup still had changes of that crypto pending
may predate its ``data_version``.

``run_batch`` is the nightly work behind the ``backtest_results`` asset: many cryptos, every planned strategy
and parameter set, bars read once, one engine call per planned run, results written with COPY. A backtest
whose inputs have not changed since it was stored (same data version, strategy definition, parameters, window,
interval and engine) is skipped.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cryptobt_pipelines.engine import METRIC_NAMES, BacktestResult, Strategy, load_catalog, param_grid, run_backtests
from cryptobt_pipelines.warehouse.backtests import (
    BAR_SECONDS,
    CryptoInputs,
    EngineRun,
    PriceArrays,
    WriteReport,
    crypto_inputs,
    current_results,
    definition_hash,
    params_hash,
    read_prices,
    write_results,
)
from cryptobt_pipelines.warehouse.database import transaction

INTERVALS = tuple(BAR_SECONDS)  # "1d", "1h"
ENGINE_DIR = Path(__file__).resolve().parent / "engine"


@cache
def engine_version() -> str:
    """A hash of the engine's source: results computed by another engine are not current."""
    digest = hashlib.sha256()
    for path in sorted(ENGINE_DIR.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def warm_engine_cache() -> None:
    """Compile the engine's kernel into numba's on-disk cache (``NUMBA_CACHE_DIR``) with the argument types
    backtests pass: each new process then loads it (under a second) instead of compiling it (15 s and more).
    The project image does this at build time, so run processes (Kubernetes pods included) start warm."""
    grid = np.full((64, 3), 100.0)
    # Bars as read (C order) and a batch's selection of columns (``PriceArrays.select``: F order), which numba
    # compiles apart.
    for prices in (grid, grid[:, [0, 2]]):
        run_backtests("sma_cross", prices, prices, prices, prices, equity=True, trades=True)


def utc_window(start: date | datetime | None, end: date | datetime | None) -> tuple[datetime | None, datetime | None]:
    """[start, end) in UTC from what people write: a date ``end`` includes that whole day."""

    def moment(value: date | datetime | None, inclusive_day: bool) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return datetime(value.year, value.month, value.day, tzinfo=UTC) + (timedelta(days=1) if inclusive_day else
                                                                            timedelta())

    window = moment(start, False), moment(end, True)
    if window[0] is not None and window[1] is not None and window[0] >= window[1]:
        raise ValueError(f"the window start {start} is not before its end {end}")
    return window


@dataclass(frozen=True)
class BacktestSpec:
    """One backtest apart from the crypto: a catalog strategy, resolved parameter sets, a window and an interval."""

    strategy: Strategy
    param_sets: tuple[dict[str, Any], ...]  # complete (defaults filled in), checked against the catalog
    interval: str  # "1d" | "1h"
    start: datetime | None  # bars opening at or after (None: each crypto's first bar)
    end: datetime | None  # bars opening before (None: through each crypto's last whole bar)

    @classmethod
    def build(cls, strategy: str | int, param_sets: Sequence[Mapping[str, Any]] | None = None, *,
              start: date | datetime | None = None, end: date | datetime | None = None,
              interval: str = "1d") -> BacktestSpec:
        """Checked against the catalog: ValueError names the unknown strategy, parameter, bad value or window."""
        try:
            spec = load_catalog().get(strategy)
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        if interval not in INTERVALS:
            raise ValueError(f"interval must be one of {list(INTERVALS)}, got {interval!r}")
        resolved = tuple(spec.resolve(dict(p)) for p in (param_sets if param_sets is not None else [{}]))
        if not resolved:
            raise ValueError("no parameter set given")
        return cls(spec, resolved, interval, *utc_window(start, end))

    @property
    def bar_seconds(self) -> int:
        return BAR_SECONDS[self.interval]

    @property
    def params_hashes(self) -> list[str]:
        return [params_hash(p) for p in self.param_sets]

    @property
    def default_set(self) -> int | None:
        defaults = self.strategy.resolve({})
        return next((i for i, p in enumerate(self.param_sets) if p == defaults), None)


# --- on demand ----------------------------------------------------------------------------------------------


@dataclass
class CryptoBacktest:
    crypto_id: int
    symbol: str
    data_version: int
    settled: bool  # False: the daily rollup had changes of this crypto pending; do not cache
    params: dict[str, Any]
    first_bar: datetime | None  # the crypto's first and last valid bar in the window (None: no bars)
    last_bar: datetime | None
    n_bars: int
    metrics: dict[str, float]  # METRIC_NAMES; n_trades as an int
    equity: pd.Series | None = None  # marked-to-market value at each valid bar's close, indexed by bar open time
    trades: pd.DataFrame | None = None  # entry_ts, exit_ts, entry_price, exit_price, units, pnl, return, is_open

    def as_dict(self) -> dict[str, Any]:
        """Plain values (``cryptobt backtest --json``, a cache entry): symbol, window, data version and metrics;
        profit_factor may be ``inf``."""
        return {
            "symbol": self.symbol, "crypto_id": self.crypto_id, "data_version": self.data_version,
            "params": self.params, "first_bar": self.first_bar.isoformat() if self.first_bar else None,
            "last_bar": self.last_bar.isoformat() if self.last_bar else None, "n_bars": self.n_bars,
            **self.metrics,
        }


def backtest_cryptos(
    strategy: str | int,
    crypto_ids: Sequence[int],
    params: Mapping[str, Any] | None = None,
    *,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    interval: str = "1d",
    url: str | None = None,
    equity: bool = False,
    trades: bool = False,
) -> list[CryptoBacktest]:
    """One backtest per crypto, in the order of ``crypto_ids`` (duplicates once), from the warehouse's bars.

    ``params`` may be partial (catalog defaults fill the rest); a date ``end`` includes that day. ValueError
    names bad input (strategy, parameter, value, window, interval, unknown crypto ids, cryptos without hourly
    bars). A crypto without bars in the window comes back with ``n_bars == 0`` and its initial cash.
    """
    spec = BacktestSpec.build(strategy, [params or {}], start=start, end=end, interval=interval)
    ids = list(dict.fromkeys(int(i) for i in crypto_ids))
    if not ids:
        raise ValueError("no crypto given")
    prices = read_prices(url, ids, spec.bar_seconds, spec.start, spec.end)
    result = run_engine(spec, prices, equity=equity, trades=trades)
    counts, first, last = prices.valid_bars()
    stamps = pd.DatetimeIndex(prices.timestamps, tz=UTC)
    out = []
    for ci, crypto in enumerate(prices.cryptos):
        metrics = {name: float(result.metrics[name][ci, 0]) for name in METRIC_NAMES}
        metrics["n_trades"] = int(metrics["n_trades"])
        curve = None
        if equity:
            values = pd.Series(result.equity[ci, 0], index=stamps, name="equity")
            curve = values[values.notna()]
        out.append(CryptoBacktest(
            crypto_id=crypto.crypto_id, symbol=crypto.symbol, data_version=crypto.data_version,
            settled=not crypto.rollup_pending, params=spec.param_sets[0],
            first_bar=stamps[first[ci]].to_pydatetime() if counts[ci] else None,
            last_bar=stamps[last[ci]].to_pydatetime() if counts[ci] else None,
            n_bars=int(counts[ci]), metrics=metrics, equity=curve,
            trades=_trades_frame(result.trades, ci, stamps) if trades else None,
        ))
    return out


def run_engine(spec: BacktestSpec, prices: PriceArrays, *, equity: bool = False, trades: bool = False) -> BacktestResult:
    return run_backtests(spec.strategy.name, *prices.ohlc, list(spec.param_sets), bar_seconds=prices.bar_seconds,
                         timestamps=prices.timestamps, equity=equity, trades=trades)


def _trades_frame(records: np.ndarray, column: int, stamps: pd.DatetimeIndex) -> pd.DataFrame:
    mine = records[(records["crypto"] == column) & (records["param_set"] == 0)]
    return pd.DataFrame({
        "entry_ts": stamps[mine["entry_bar"]], "exit_ts": stamps[mine["exit_bar"]],
        **{name: mine[name] for name in ("entry_price", "exit_price", "units", "pnl", "return", "is_open")},
    })


def params_from_text(strategy: str | int, assignments: Sequence[str]) -> dict[str, Any]:
    """``["fast_window=10", "fee=0.002"]`` as typed parameters of ``strategy``; ValueError names what is wrong.
    Ranges are checked later, by ``BacktestSpec.build``."""
    try:
        spec = load_catalog().get(strategy)
    except KeyError as error:
        raise ValueError(error.args[0]) from None
    known = {p.name: p for p in (*load_catalog().common_parameters, *spec.parameters)}
    params: dict[str, Any] = {}
    for assignment in assignments:
        name, equals, text = assignment.partition("=")
        name, text = name.strip(), text.strip()
        if not equals or not name:
            raise ValueError(f"parameter {assignment!r}: expected NAME=VALUE")
        if name not in known:
            raise ValueError(f"unknown parameter {name!r} for {spec.name}; known: {', '.join(known)}")
        if name in params:
            raise ValueError(f"parameter {name!r} given twice")
        kind = known[name].type
        try:
            params[name] = int(text) if kind == "int" else float(text) if kind == "float" else text
        except ValueError:
            raise ValueError(f"{name}={text!r}: expected {'an integer' if kind == 'int' else 'a number'}") from None
    return params


def resolve_symbols(symbols: Sequence[str], url: str | None = None) -> list[CryptoInputs]:
    """The cryptos of these symbols (case-insensitive), in order; ValueError names the unknown ones."""
    with transaction(url) as conn:
        return crypto_inputs(conn, symbols=[s.strip().upper() for s in symbols])


# --- the nightly batch --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One engine call of a batch; ``curves``: also store its equity curves and trades."""

    spec: BacktestSpec
    curves: bool


def plan_runs(strategies: Sequence[str] = (), grids: Mapping[str, Mapping[str, Sequence[Any]]] | None = None, *,
              start: date | datetime | None = None, end: date | datetime | None = None, interval: str = "1d",
              grid_curves: bool = False) -> list[PlannedRun]:
    """Every strategy (all of the catalog when none is named) at its defaults, with curves; plus, per strategy
    with a grid, the grid's other parameter sets in a run of their own (curves only with ``grid_curves``: a
    100-set grid over the universe would otherwise hold 100 curves per crypto in memory and in the tables)."""
    catalog = load_catalog()
    names = list(strategies) or [s.name for s in catalog.strategies]
    grids = dict(grids or {})
    unplanned = sorted(set(grids) - set(names))
    if unplanned:
        raise ValueError(f"grids for strategies that are not run: {unplanned}")
    plan = []
    for name in names:
        defaults = BacktestSpec.build(name, start=start, end=end, interval=interval)
        plan.append(PlannedRun(defaults, curves=True))
        if name in grids:
            sets = param_grid(**grids[name])
            grid = BacktestSpec.build(name, sets, start=start, end=end, interval=interval)
            others = tuple(p for p in dict.fromkeys(_frozen(p) for p in grid.param_sets)
                           if dict(p) != defaults.param_sets[0])
            if others:
                plan.append(PlannedRun(BacktestSpec(grid.strategy, tuple(dict(p) for p in others), interval,
                                                    grid.start, grid.end), curves=grid_curves))
    return plan


def _frozen(param_set: dict[str, Any]) -> tuple:
    return tuple(param_set.items())


@dataclass
class BatchReport:
    cryptos: list[CryptoInputs]  # every crypto asked for, data versions as last read
    computed: dict[int, int] = field(default_factory=dict)  # crypto_id -> backtests computed
    current: dict[int, int] = field(default_factory=dict)  # crypto_id -> backtests skipped as current
    without_bars: list[int] = field(default_factory=list)  # crypto ids with no bar in the window
    bars_read: int = 0  # cells of the (bars x cryptos) grid that held a bar
    load_seconds: float = 0.0
    engine_seconds: float = 0.0
    write: WriteReport | None = None
    seconds: float = 0.0

    @property
    def backtests_computed(self) -> int:
        return sum(self.computed.values())

    @property
    def backtests_skipped(self) -> int:
        return sum(self.current.values())


def run_batch(url: str | None, symbols: Sequence[str], plan: Sequence[PlannedRun], *,
              dagster_run_id: str | None = None, force: bool = False,
              log: Callable[[str], None] | None = None) -> BatchReport:
    """Run ``plan`` over the cryptos of ``symbols``: skip what is current (unless ``force``), read the bars of
    the rest in one query, one engine call per planned run, write everything in one transaction."""
    started = time.perf_counter()
    say = log or (lambda message: None)
    first = _shared_window(plan)
    cryptos = resolve_symbols(symbols, url)
    report = BatchReport(cryptos=cryptos)
    ids = [c.crypto_id for c in cryptos]
    stale = _stale(url, ids, plan, force)
    for planned, todo in zip(plan, stale):
        for i in set(ids) - set(todo):
            report.current[i] = report.current.get(i, 0) + len(planned.spec.param_sets)
    needed = sorted({i for todo in stale for i in todo})
    say(f"{len(cryptos)} cryptos: {len(needed)} with backtests to compute, "
        f"{report.backtests_skipped} backtests current")
    if not needed:
        report.seconds = time.perf_counter() - started
        return report

    load_started = time.perf_counter()
    prices = read_prices(url, needed, first.bar_seconds, first.start, first.end)
    report.load_seconds = time.perf_counter() - load_started
    report.cryptos = _with_versions_read(cryptos, prices.cryptos)
    counts, _, _ = prices.valid_bars()
    report.bars_read = int(counts.sum())
    column_of = {c.crypto_id: i for i, c in enumerate(prices.cryptos)}
    report.without_bars = [c.crypto_id for c, n in zip(prices.cryptos, counts) if n == 0]
    say(f"read {report.bars_read:,} bars of {len(needed)} cryptos in {report.load_seconds * 1000:.0f} ms")

    runs = []
    for planned, todo in zip(plan, stale):
        columns = [column_of[i] for i in todo if counts[column_of[i]] > 0]
        if not columns:
            continue
        subset = prices.select(columns)
        engine_started = time.perf_counter()
        run_at = datetime.now(UTC)
        result = run_engine(planned.spec, subset, equity=planned.curves, trades=planned.curves)
        engine_seconds = time.perf_counter() - engine_started
        report.engine_seconds += engine_seconds
        for c in subset.cryptos:
            report.computed[c.crypto_id] = report.computed.get(c.crypto_id, 0) + len(planned.spec.param_sets)
        say(f"{planned.spec.strategy.name}: {len(columns)} cryptos x {len(planned.spec.param_sets)} parameter sets "
            f"in {engine_seconds * 1000:.0f} ms")
        runs.append(EngineRun(
            result=result, prices=subset, window_start=planned.spec.start, window_end=planned.spec.end,
            params_hashes=planned.spec.params_hashes, default_set=planned.spec.default_set,
            definition_hash=definition_hash(planned.spec.strategy), engine_version=engine_version(),
            started_at=run_at, load_seconds=report.load_seconds, engine_seconds=engine_seconds,
            curves=planned.curves,
        ))
    if runs:
        report.write = write_results(url, runs, dagster_run_id)
        say(f"wrote {report.write.results} results ({report.write.replaced} replaced), "
            f"{report.write.equity_points:,} equity points, {report.write.trades:,} trades in "
            f"{report.write.seconds * 1000:.0f} ms")
    report.seconds = time.perf_counter() - started
    return report


def cryptos_to_backtest(url: str | None, symbols: Sequence[str], plan: Sequence[PlannedRun]) -> list[str]:
    """The symbols with at least one planned backtest that is not current (what ``run_batch`` would compute)."""
    cryptos = resolve_symbols(symbols, url)
    stale = {i for todo in _stale(url, [c.crypto_id for c in cryptos], plan, force=False) for i in todo}
    return [c.symbol for c in cryptos if c.crypto_id in stale]


def _stale(url: str | None, ids: list[int], plan: Sequence[PlannedRun], force: bool) -> list[list[int]]:
    """Per planned run, the crypto ids that have a parameter set without a current result."""
    first = _shared_window(plan)
    current = set() if force else current_results(
        url, ids, first.bar_seconds, first.start, first.end, engine_version(),
        {p.spec.strategy.id: definition_hash(p.spec.strategy) for p in plan})
    return [[i for i in ids if not all((i, p.spec.strategy.id, h) in current for h in p.spec.params_hashes)]
            for p in plan]


def _shared_window(plan: Sequence[PlannedRun]) -> BacktestSpec:
    if not plan:
        raise ValueError("nothing planned")
    first = plan[0].spec
    if any((p.spec.interval, p.spec.start, p.spec.end) != (first.interval, first.start, first.end) for p in plan):
        raise ValueError("every planned run of a batch shares one window and interval (the bars are read once)")
    return first


def _with_versions_read(asked: list[CryptoInputs], read: list[CryptoInputs]) -> list[CryptoInputs]:
    by_id = {c.crypto_id: c for c in read}
    return [by_id.get(c.crypto_id, c) for c in asked]
