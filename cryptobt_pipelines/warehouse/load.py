"""The one load path for every source: bulk validation, binary COPY into staging, upsert, invalidation log.

Everything of one batch commits in one transaction: the bars, the refused rows, the invalidation ranges and
the per-crypto data versions become visible together or not at all. The one exception in how (not when):
new yearly partitions are filled and indexed in parallel on worker connections, as tables nobody reads,
which that transaction then attaches.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql as pgsql
from psycopg.copy import QueuedLibpqWriter

from cryptobt_pipelines.sources.batch import PRICE_COLUMNS, PriceBatch
from cryptobt_pipelines.warehouse.database import query, transaction

PG_EPOCH_US = 946_684_800 * 1_000_000  # PostgreSQL counts timestamps from 2000-01-01
COPY_CHUNK_ROWS = 500_000
PARTITION_LOCK_KEY = 7_311_002  # serialises creating yearly partitions of market.prices
LOAD_LOCK_SPACE = 7_311_003  # with a load's id: held while the load runs (lock_load.sql)
# New years are filled and indexed on this many connections at once: one per core of the machine measured
# (2); more only queue up on the server's cores.
PARTITION_WORKERS = 2
WORKER_TABLE = re.compile(r"^prices_load_(\d+)_(\d+)$")  # create_price_worker_table.sql
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BINARY_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
BINARY_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# One staged row as PostgreSQL's binary COPY wants it: field count, then (length, big-endian value) pairs.
STAGING_ROW = np.dtype(
    [("fields", ">i2"), ("id_len", ">i4"), ("crypto_id", ">i4"), ("ts_len", ">i4"), ("ts", ">i8")]
    + [item for c in PRICE_COLUMNS for item in ((f"{c}_len", ">i4"), (c, ">f8"))]
)


def _row_template() -> np.ndarray:
    """The bytes every COPY row starts from: field count and lengths set, values zero."""
    row = np.zeros(1, dtype=STAGING_ROW)
    row["fields"] = 2 + len(PRICE_COLUMNS)
    row["id_len"], row["ts_len"] = 4, 8
    for col in PRICE_COLUMNS:
        row[f"{col}_len"] = 8
    return row.view(np.uint8)


STAGING_ROW_TEMPLATE = _row_template()

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    load_id: int
    source: str
    format: str
    rows_read: int
    rows_inserted: int
    rows_updated: int
    rows_unchanged: int
    rows_collapsed: int
    rows_rejected: int
    changed_symbols: list[str]
    min_ts: datetime | None
    max_ts: datetime | None
    seconds: float
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rows_loaded(self) -> int:
        return self.rows_inserted + self.rows_updated + self.rows_unchanged


def interval_name(seconds: int) -> str:
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Refusals:
    """Why each refused row is refused: the first rule a row breaks is the one it is refused for.

    Kept sparse (positions, rule, reason) so a clean batch of millions of rows costs one boolean array.
    """

    def __init__(self, n: int):
        self.refused = np.zeros(n, dtype=bool)
        self._rows: list[np.ndarray] = []
        self._rules: list[str] = []
        self._reasons: list[list[str]] = []

    @property
    def ok(self) -> np.ndarray:
        return ~self.refused

    def add(self, rule: str, rows: np.ndarray, make: Callable[[np.ndarray], list[str]]) -> None:
        """Refuse the given row positions for ``rule`` unless an earlier rule already did."""
        rows = rows[~self.refused[rows]]
        if len(rows):
            self.refused[rows] = True
            self._rows.append(rows)
            self._rules.append(rule)
            self._reasons.append(make(rows))

    def listed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions of the refused rows in batch order, with their rule and reason."""
        if not self._rows:
            return np.empty(0, np.int64), np.empty(0, object), np.empty(0, object)
        rows = np.concatenate(self._rows)
        rules = np.repeat(np.array(self._rules, dtype=object), [len(r) for r in self._rows])
        reasons = np.array([r for chunk in self._reasons for r in chunk], dtype=object)
        order = np.argsort(rows, kind="stable")
        return rows[order], rules[order], reasons[order]


def _symbol_codes(symbols: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(code per row, -1 where missing; the distinct symbols). Files and generators give runs of one symbol:
    factorizing only the first row of each run is several times faster than hashing every row."""
    values = symbols.to_numpy(dtype=object)
    if len(values) == 0:
        return np.empty(0, np.int64), np.empty(0, object)
    run_starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    if len(run_starts) > len(values) // 8:
        codes, uniques = pd.factorize(values)
        return codes, np.asarray(uniques, dtype=object)
    run_codes, uniques = pd.factorize(values[run_starts])
    return np.repeat(run_codes, np.diff(np.r_[run_starts, len(values)])), np.asarray(uniques, dtype=object)


class _LazySymbols:
    """The symbol of each row, looked up only for the few rows a reason is written for."""

    def __init__(self, codes: np.ndarray, symbol_of_code: np.ndarray):
        self.codes, self.symbol_of_code = codes, symbol_of_code

    def __getitem__(self, rows):
        return self.symbol_of_code[self.codes[rows]]


def _in_key_order(ids: np.ndarray, ts: np.ndarray) -> bool:
    """Strictly increasing (crypto_id, ts): sorted and free of duplicate keys."""
    if len(ids) < 2:
        return True
    same_id = ids[1:] == ids[:-1]
    return bool(((ids[1:] > ids[:-1]) | (same_id & (ts[1:] > ts[:-1]))).all())


def _iso(micros: int) -> str:
    return pd.Timestamp(int(micros), unit="us", tz="UTC").isoformat()


def validate(
    bars: pd.DataFrame,
    crypto_ids: dict[str, int],
    held_intervals: dict[int, int | None],
    bar_seconds: int | None,
    now: datetime,
    symbol_codes: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Split bars into (good bars with crypto_id in key order, refused rows with reason, identical
    duplicates dropped). ``ts`` of the good bars is in microseconds since 1970. ``symbol_codes`` is
    ``_symbol_codes(bars["symbol"])`` when the caller has it already."""
    n = len(bars)
    refusals = Refusals(n)
    codes, uniques = symbol_codes or _symbol_codes(bars["symbol"])
    id_of_code = np.array([crypto_ids.get(s, -1) for s in uniques] + [-1], dtype=np.int32)
    ids = id_of_code[codes]  # code -1 (missing symbol) picks the trailing -1
    symbols = _LazySymbols(codes, np.r_[uniques, [np.nan]])
    ts_us = bars["ts"].to_numpy(dtype="datetime64[us]").view(np.int64)  # NaT becomes int64 min
    values = {c: bars[c].to_numpy(dtype=np.float64) for c in PRICE_COLUMNS}
    o, h, low, c, v = (values[k] for k in PRICE_COLUMNS)
    missing_ts = ts_us == np.iinfo(np.int64).min

    refusals.add("unknown_symbol", np.flatnonzero(ids < 0),
                 lambda i: [f"unknown symbol {symbols[k]!r} (not in market.cryptos)" for k in i])

    # The same test as the prices_valid_bar constraint, in one pass: NaN fails every comparison. Only the
    # rows it flags are looked at rule by rule.
    valid_bar = (low > 0) & (h < np.inf) & (low <= h) & (o >= low) & (o <= h) & (c >= low) & (c <= h)
    valid_bar &= (v >= 0) & (v < np.inf)
    suspects = np.flatnonzero(~valid_bar)
    if len(suspects):
        _refuse_bad_values(refusals, suspects, {col: x[suspects] for col, x in values.items()})

    refusals.add("missing_value", np.flatnonzero(missing_ts), lambda i: ["timestamp is missing"] * len(i))
    now_us = int(now.timestamp() * 1_000_000)
    refusals.add("future_timestamp", np.flatnonzero(ts_us > now_us),
                 lambda i: [f"timestamp {_iso(ts_us[k])} is in the future" for k in i])
    if bar_seconds and 86_400 % bar_seconds == 0:
        grid = interval_name(bar_seconds)
        refusals.add("off_grid", np.flatnonzero(~missing_ts & (ts_us % (bar_seconds * 1_000_000) != 0)),
                     lambda i: [f"timestamp {_iso(ts_us[k])} is off the {grid} grid" for k in i])
    if bar_seconds:
        clashing = [cid for cid, held in held_intervals.items() if held and held != bar_seconds]
        if clashing:
            refusals.add(
                "interval_clash",
                np.flatnonzero(np.isin(ids, clashing)),
                lambda i: [
                    f"{symbols[k]} holds {interval_name(held_intervals[ids[k]])} bars; "
                    f"this source has {interval_name(bar_seconds)} bars"
                    for k in i
                ],
            )

    lines = bars["line"].to_numpy()
    candidates = np.flatnonzero(refusals.ok) if refusals.refused.any() else None
    key_ids = ids if candidates is None else ids[candidates]
    key_ts = ts_us if candidates is None else ts_us[candidates]
    keep = candidates  # positions of the good rows in key order; None: all rows, as they are
    collapsed = 0
    if not _in_key_order(key_ids, key_ts):
        order = np.lexsort((key_ts, key_ids))
        keep = order if candidates is None else candidates[order]
        same_key = (ids[keep][1:] == ids[keep][:-1]) & (ts_us[keep][1:] == ts_us[keep][:-1])
        if same_key.any():
            keep, collapsed = _settle_duplicates(refusals, keep, same_key, ids, ts_us, values, lines, symbols)

    rows, rules, reasons = refusals.listed()
    rejects = pd.DataFrame(
        {
            "line": lines[rows],
            "symbol": symbols[rows],
            "ts": bars["ts"].array[rows],
            **{col: values[col][rows] for col in PRICE_COLUMNS},
            "rule": rules,
            "reason": reasons,
            "raw": None,
        }
    )
    picked = (lambda x: x) if keep is None else (lambda x: x[keep])
    good = pd.DataFrame(
        {"crypto_id": picked(ids), "ts": picked(ts_us), **{col: picked(x) for col, x in values.items()}},
        copy=False,
    )
    return good, rejects, collapsed


def _refuse_bad_values(refusals: Refusals, rows: np.ndarray, values: dict[str, np.ndarray]) -> None:
    """The value rules, in order, over the rows that failed the one-pass test (``values`` are theirs)."""

    def text(i: np.ndarray, col: str) -> list[str]:
        return [repr(float(x)) for x in values[col][i]]

    def add(rule: str, mask: np.ndarray, make: Callable[[np.ndarray], list[str]]) -> None:
        # ``mask`` and ``make`` work on positions within ``rows`` (sorted), refusals on batch positions.
        refusals.add(rule, rows[mask], lambda i: make(np.searchsorted(rows, i)))

    o, h, low, c, v = (values[k] for k in PRICE_COLUMNS)
    for col in ("open", "high", "low", "close"):
        x = values[col]
        add("missing_value", np.isnan(x), lambda i, col=col: [f"{col} is missing"] * len(i))
        add("not_finite", ~np.isfinite(x), lambda i, col=col: [f"{col} is not finite"] * len(i))
        add("not_positive", x <= 0, lambda i, col=col: [f"{col} is not positive ({t})" for t in text(i, col)])
    add("high_below_low", h < low,
        lambda i: [f"high {a} is below low {b}" for a, b in zip(text(i, "high"), text(i, "low"))])
    for col, x in (("open", o), ("close", c)):
        add(
            "outside_range",
            (x < low) | (x > h),
            lambda i, col=col: [
                f"{col} {a} is outside [low {b}, high {d}]"
                for a, b, d in zip(text(i, col), text(i, "low"), text(i, "high"))
            ],
        )
    add("missing_value", np.isnan(v), lambda i: ["volume is missing"] * len(i))
    add("not_finite", ~np.isfinite(v), lambda i: ["volume is not finite"] * len(i))
    add("negative_volume", v < 0, lambda i: [f"volume is negative ({t})" for t in text(i, "volume")])


def _settle_duplicates(
    refusals: Refusals,
    keep: np.ndarray,
    same_key: np.ndarray,
    ids: np.ndarray,
    ts_us: np.ndarray,
    values: dict[str, np.ndarray],
    lines: np.ndarray,
    symbols: _LazySymbols,
) -> tuple[np.ndarray, int]:
    """Duplicates of one (crypto, bar) inside the batch: identical copies collapse to one, conflicting
    copies are all refused since nothing says which is right. ``keep`` is in key order, ``same_key[k]``
    says keep[k + 1] repeats the key of keep[k]. Returns the rows kept and how many copies collapsed."""
    in_group = np.r_[same_key, False] | np.r_[False, same_key]
    dupes = pd.DataFrame(
        {"position": keep[in_group], "crypto_id": ids[keep[in_group]], "ts": ts_us[keep[in_group]],
         **{col: x[keep[in_group]] for col, x in values.items()}, "line": lines[keep[in_group]]}
    ).sort_values(["crypto_id", "ts", "position"], kind="stable")
    variants = dupes.drop_duplicates(["crypto_id", "ts", *PRICE_COLUMNS]).groupby(["crypto_id", "ts"]).size()
    conflicting_keys = variants[variants > 1].index
    in_conflict = pd.MultiIndex.from_frame(dupes[["crypto_id", "ts"]]).isin(conflicting_keys)
    conflicts = dupes[in_conflict]
    if len(conflicts):
        lines_of = conflicts.groupby(["crypto_id", "ts"])["line"].apply(lambda s: ", ".join(map(str, sorted(s))))
        refusals.add(
            "conflicting_duplicate",
            conflicts["position"].to_numpy(),
            lambda i: [
                f"conflicting duplicate of {symbols[k]} {_iso(ts_us[k])} (lines {lines_of[(ids[k], ts_us[k])]})"
                for k in i
            ],
        )
    # Of identical copies the first in the batch stays; conflicting ones all go.
    extra = dupes[~in_conflict].duplicated(["crypto_id", "ts"], keep="first")
    dropped = np.r_[conflicts["position"].to_numpy(), dupes[~in_conflict][extra.to_numpy()]["position"].to_numpy()]
    return keep[~np.isin(keep, dropped)], int(extra.sum())


def _timestamp(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


def copy_rows(crypto_ids: np.ndarray, ts_micros: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """Bars laid out as binary COPY rows (without header and trailer); ``.view(np.uint8)`` is what to send."""
    rows = np.empty(len(crypto_ids), dtype=STAGING_ROW)
    # The field count and lengths are the same in every row: one broadcast copy instead of eight passes.
    rows.view(np.uint8).reshape(len(rows), STAGING_ROW.itemsize)[:] = STAGING_ROW_TEMPLATE
    rows["crypto_id"] = crypto_ids
    rows["ts"] = ts_micros - PG_EPOCH_US
    for col in PRICE_COLUMNS:
        rows[col] = values[col]
    return rows


@dataclass
class Bars:
    """Validated bars as arrays, in (crypto_id, ts) order; ts in microseconds since 1970."""

    crypto_ids: np.ndarray
    ts: np.ndarray
    values: dict[str, np.ndarray]

    @classmethod
    def of(cls, good: pd.DataFrame) -> "Bars":
        return cls(good["crypto_id"].to_numpy(), good["ts"].to_numpy(), {c: good[c].to_numpy() for c in PRICE_COLUMNS})

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, rows: np.ndarray) -> "Bars":
        return Bars(self.crypto_ids[rows], self.ts[rows], {c: x[rows] for c, x in self.values.items()})


def _copy_statement(table: pgsql.Composable, freeze: bool = False) -> pgsql.Composed:
    return pgsql.SQL(query("ingest/copy_prices")).format(table=table, freeze=pgsql.SQL(", FREEZE" if freeze else ""))


def _copy_bars(conn: psycopg.Connection, table: pgsql.Composable, bars: Bars, progress: Progress, done: int,
               total: int) -> None:
    cursor = conn.cursor()
    # The queued writer sends from its own thread, so encoding the next chunk overlaps sending this one;
    # a batch of one chunk has nothing to overlap and would only pay for starting the thread.
    writer = QueuedLibpqWriter(cursor) if len(bars) > COPY_CHUNK_ROWS else None
    with cursor.copy(_copy_statement(table), writer=writer) as copy:
        copy.write(BINARY_COPY_HEADER)
        for start in range(0, len(bars), COPY_CHUNK_ROWS):
            chunk = slice(start, start + COPY_CHUNK_ROWS)
            rows = copy_rows(bars.crypto_ids[chunk], bars.ts[chunk], {c: x[chunk] for c, x in bars.values.items()})
            copy.write(rows.view(np.uint8).data)
            progress("load", done + min(start + COPY_CHUNK_ROWS, len(bars)), total)
        copy.write(BINARY_COPY_TRAILER)


def _run_starts(ids: np.ndarray) -> np.ndarray:
    """Positions where a new crypto starts in key-sorted ids."""
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.empty(0, np.int64)


@dataclass
class Changes:
    """Per crypto, what a load changed: the range of bar times (µs since 1970) and rows inserted, updated."""

    crypto_ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    inserted: np.ndarray
    updated: np.ndarray

    @classmethod
    def inserts(cls, bars: Bars) -> "Changes":
        """Key-sorted bars that were all inserted."""
        firsts = _run_starts(bars.crypto_ids)
        lasts = np.r_[firsts[1:] - 1, len(bars) - 1] if len(firsts) else firsts
        return cls(bars.crypto_ids[firsts], bars.ts[firsts], bars.ts[lasts], lasts - firsts + 1,
                   np.zeros(len(firsts), dtype=np.int64))

    @classmethod
    def merged(cls, parts: list["Changes"]) -> "Changes":
        """One entry per crypto: a crypto's bars can span new and existing partitions."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls(*(np.empty(0, dtype=np.int64) for _ in range(5)))
        ids, at = np.unique(np.concatenate([p.crypto_ids for p in parts]), return_inverse=True)
        starts = np.full(len(ids), np.iinfo(np.int64).max)
        ends = np.full(len(ids), np.iinfo(np.int64).min)
        inserted, updated = np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=np.int64)
        np.minimum.at(starts, at, np.concatenate([p.starts for p in parts]))
        np.maximum.at(ends, at, np.concatenate([p.ends for p in parts]))
        np.add.at(inserted, at, np.concatenate([p.inserted for p in parts]))
        np.add.at(updated, at, np.concatenate([p.updated for p in parts]))
        return cls(ids, starts, ends, inserted, updated)


@dataclass
class NewPartition:
    """A yearly partition of market.prices this load creates: filled and indexed as a plain worker table on a
    connection of its own, then attached by the load's main transaction."""

    year: int
    load_id: int

    @property
    def name(self) -> str:
        return f"prices_{self.year}"

    @property
    def worker_table(self) -> str:
        return f"prices_load_{self.load_id}_{self.year}"

    @property
    def bounds_us(self) -> tuple[int, int]:
        return (_micros(datetime(self.year, 1, 1, tzinfo=UTC)), _micros(datetime(self.year + 1, 1, 1, tzinfo=UTC)))

    def sql(self, name: str) -> pgsql.Composed:
        return pgsql.SQL(query(name)).format(
            partition=pgsql.Identifier(self.name),
            primary_key=pgsql.Identifier(f"{self.name}_pkey"),
            worker_table=pgsql.Identifier(self.worker_table),
            worker_primary_key=pgsql.Identifier(f"{self.worker_table}_pkey"),
            bound=pgsql.Identifier(f"{self.worker_table}_bound"),
            year_start=pgsql.Literal(f"{self.year}-01-01 00:00:00+00"),
            next_year_start=pgsql.Literal(f"{self.year + 1}-01-01 00:00:00+00"),
        )


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _load_key(load_id: int) -> int:
    """The load's advisory lock key inside LOAD_LOCK_SPACE (an int4: ids repeat only 2^31 loads apart)."""
    return load_id % 2**31


def _plan_new_partitions(conn: psycopg.Connection, ts_micros: np.ndarray, load_id: int) -> list[NewPartition]:
    """The yearly partitions the batch needs and market.prices lacks; this load creates them.

    Also drops the worker tables of loads that ended without attaching them (a crash between a worker's
    commit and the main transaction's end). When it returns partitions, this transaction holds the partition
    lock and its load lock until it ends: another load needing the same year waits and then finds it made.
    """
    partitioned, existing, worker_tables = conn.execute(query("ingest/price_partitions")).fetchone()
    _drop_leftover_worker_tables(conn, worker_tables)
    if not partitioned or len(ts_micros) == 0:
        return []  # a plain table, or a TimescaleDB hypertable that makes its own chunks
    first, last = _timestamp(ts_micros.min()), _timestamp(ts_micros.max())
    wanted = {f"prices_{year}": year for year in range(first.year, last.year + 1)}
    if set(wanted) <= set(existing):
        return []
    # Serialise creators, then look again: another load may have created some while this one waited.
    conn.execute(query("ingest/lock_partition_creation"), {"key": PARTITION_LOCK_KEY})
    _, existing, _ = conn.execute(query("ingest/price_partitions")).fetchone()
    created = [NewPartition(year, load_id) for name, year in sorted(wanted.items()) if name not in existing]
    if created:
        conn.execute(query("ingest/lock_load"), {"space": LOAD_LOCK_SPACE, "load_key": _load_key(load_id)})
    return created


def _drop_leftover_worker_tables(conn: psycopg.Connection, worker_tables: list[str]) -> None:
    for table in worker_tables:
        match = WORKER_TABLE.match(table)
        if not match:
            continue
        load_key = _load_key(int(match.group(1)))
        if conn.execute(query("ingest/try_lock_load"), {"space": LOAD_LOCK_SPACE, "load_key": load_key}).fetchone()[0]:
            conn.execute(pgsql.SQL(query("ingest/drop_price_worker_table")).format(
                worker_table=pgsql.Identifier(table)))


def _drop_worker_tables(url: str | None, partitions: list[NewPartition]) -> None:
    """Best effort after a failed load: a table left here is dropped by the next load anyway."""
    try:
        with transaction(url) as conn:
            for partition in partitions:
                conn.execute(partition.sql("ingest/drop_price_worker_table"))
    except Exception as error:  # noqa: BLE001 - the load's own error is the one to raise
        log.warning("could not drop the worker tables of a failed load (the next load will): %s", error)


HeldSpans = dict[int, tuple[datetime | None, datetime | None]]


def _write_bars(conn: psycopg.Connection, url: str | None, bars: Bars, new_partitions: list[NewPartition],
                held: HeldSpans, progress: Progress) -> Changes:
    """Write key-sorted validated bars; returns what changed per crypto."""
    changes, in_new_partition = _fill_new_partitions(conn, url, bars, new_partitions, progress)
    done = int(in_new_partition.sum())
    rest = bars.take(np.flatnonzero(~in_new_partition)) if new_partitions else bars
    if len(rest):
        changes += _write_into_existing(conn, rest, held, progress, done, len(bars))
    return Changes.merged(changes)


def _fill_new_partitions(conn: psycopg.Connection, url: str | None, bars: Bars, new_partitions: list[NewPartition],
                         progress: Progress) -> tuple[list[Changes], np.ndarray]:
    """Fill and index each new year on a worker connection, PARTITION_WORKERS years at a time, then attach
    them all in the main transaction (``conn``).

    One session cannot overlap building a year's primary key with the next year's COPY; workers in parallel
    keep both cores busy. A worker commits its table, which nobody reads until the main transaction attaches
    it, so the rows become visible at the main commit, together with the rest of the load.

    Returns what was inserted and which bars went into new partitions."""
    changes = []
    in_new_partition = np.zeros(len(bars), dtype=bool)
    if not new_partitions:
        return changes, in_new_partition
    rows_of = {}
    for partition in new_partitions:
        start, end = partition.bounds_us
        rows_of[partition.year] = np.flatnonzero((bars.ts >= start) & (bars.ts < end))
        in_new_partition[rows_of[partition.year]] = True
    total, done = len(bars), 0
    progress("load", done, total)
    workers = ThreadPoolExecutor(max_workers=min(PARTITION_WORKERS, len(new_partitions)),
                                 thread_name_prefix="fill-partition")
    try:
        # Biggest years first: the small ones (a first or last year in part) then fill the gaps at the end.
        by_size = sorted(new_partitions, key=lambda partition: -len(rows_of[partition.year]))
        filling = {workers.submit(_fill_worker_table, url, partition, bars, rows_of[partition.year]): partition
                   for partition in by_size}
        for filled in as_completed(filling):
            changes.append(filled.result())
            done += len(rows_of[filling[filled].year])
            progress("load", done, total)
    finally:
        workers.shutdown(wait=True, cancel_futures=True)  # on failure: the years not started yet never start
    for partition in new_partitions:
        conn.execute(partition.sql("ingest/attach_price_partition"))
    return changes, in_new_partition


def _fill_worker_table(url: str | None, partition: NewPartition, bars: Bars, rows: np.ndarray) -> Changes:
    """Create, fill and index one worker table, committed on its own connection; returns what it inserted."""
    fresh = bars.take(rows)
    encoded = copy_rows(fresh.crypto_ids, fresh.ts, fresh.values)
    with transaction(url) as conn:
        conn.execute(partition.sql("ingest/create_price_worker_table"))
        # FREEZE: the table is new in this transaction, so its rows are written frozen and all-visible (and,
        # at wal_level=minimal, without WAL); the first reads and VACUUM need not rewrite every page.
        with conn.cursor().copy(_copy_statement(pgsql.Identifier("market", partition.worker_table),
                                                freeze=True)) as copy:
            copy.write(BINARY_COPY_HEADER)
            copy.write(encoded.view(np.uint8).data)
            copy.write(BINARY_COPY_TRAILER)
        del encoded
        conn.execute(partition.sql("ingest/index_price_worker_table"))
    return Changes.inserts(fresh)


def _meets_held_span(span: tuple[datetime | None, datetime | None], start_us: int, end_us: int) -> bool:
    first, last = span
    return first is not None and last is not None and start_us <= _micros(last) and end_us >= _micros(first)


def _write_into_existing(conn: psycopg.Connection, bars: Bars, held: HeldSpans, progress: Progress, done: int,
                         total: int) -> list[Changes]:
    ranges = Changes.inserts(bars)
    # Only a crypto whose batch range meets the span it holds can have bars there (appends never do).
    to_ask = [
        (crypto_id, start, end)
        for crypto_id, start, end in zip(ranges.crypto_ids.tolist(), ranges.starts.tolist(), ranges.ends.tolist())
        if _meets_held_span(held[crypto_id], start, end)
    ]
    overlapping = set()
    if to_ask:
        ids, starts, ends = zip(*to_ask)
        overlapping = {
            crypto_id
            for (crypto_id,) in conn.execute(
                query("ingest/cryptos_with_bars_in_range"),
                {"crypto_ids": list(ids), "range_starts_us": list(starts), "range_ends_us": list(ends)},
            )
        }
    # A crypto with no bars yet inside its range cannot conflict (this load holds its row lock), so its rows
    # are copied straight into market.prices; the others go through staging and the upsert.
    needs_upsert = np.isin(bars.crypto_ids, list(overlapping))
    changes = []
    if not needs_upsert.all():
        direct = bars.take(np.flatnonzero(~needs_upsert)) if needs_upsert.any() else bars
        _copy_bars(conn, pgsql.Identifier("market", "prices"), direct, progress, done, total)
        changes.append(Changes.inserts(direct))
        done += len(direct)
    if needs_upsert.any():
        staged = bars.take(np.flatnonzero(needs_upsert)) if not needs_upsert.all() else bars
        conn.execute(query("ingest/create_staging"))
        _copy_bars(conn, pgsql.Identifier("staging_prices"), staged, progress, done, total)
        progress("upsert", done, total)
        conn.execute(query("ingest/drop_unchanged_staged"))
        upserted = conn.execute(query("ingest/upsert_prices")).fetchall()
        changes.append(Changes(*(np.array(column, dtype=np.int64).reshape(-1) for column in (
            [r[0] for r in upserted], [_micros(r[1]) for r in upserted], [_micros(r[2]) for r in upserted],
            [r[3] for r in upserted], [r[4] for r in upserted],
        ))))
        progress("upsert", total, total)
    return changes


def load_batch(
    batch: PriceBatch,
    *,
    url: str | None = None,
    run_id: str | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> LoadReport:
    """Load one batch in one transaction and report what happened."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    progress = progress or (lambda stage, done, total: None)
    symbol_codes = _symbol_codes(batch.bars["symbol"])

    new_partitions: list[NewPartition] = []  # their worker tables are committed before the main transaction
    try:
        with transaction(url) as conn:
            report = _load_in_transaction(conn, url, batch, run_id, now, progress, symbol_codes, new_partitions)
    except BaseException:
        if new_partitions:
            _drop_worker_tables(url, new_partitions)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _load_in_transaction(conn: psycopg.Connection, url: str | None, batch: PriceBatch, run_id: str | None,
                         now: datetime, progress: Progress, symbol_codes: tuple[np.ndarray, np.ndarray],
                         new_partitions: list[NewPartition]) -> LoadReport:
    """Everything of one load inside the main transaction; ``new_partitions`` gets the years it creates."""
    bars = batch.bars
    symbols = symbol_codes[1].tolist()
    locked = conn.execute(query("ingest/lock_cryptos"), {"symbols": symbols}).fetchall()
    crypto_ids = {symbol: crypto_id for crypto_id, symbol, *_ in locked}
    held_intervals = {crypto_id: interval for crypto_id, _, interval, *_ in locked}
    held_spans = {crypto_id: (first, last) for crypto_id, _, _, first, last in locked}
    symbol_of = {crypto_id: symbol for symbol, crypto_id in crypto_ids.items()}

    good, rejects, collapsed = validate(bars, crypto_ids, held_intervals, batch.bar_seconds, now, symbol_codes)
    if len(batch.rejects):
        parse_rejects = batch.rejects.assign(
            ts=pd.Series(pd.NaT, index=batch.rejects.index, dtype=rejects["ts"].dtype),
            rule="unparsable", **{c: np.nan for c in PRICE_COLUMNS},
        )[rejects.columns]
        rejects = pd.concat([parse_rejects.astype(rejects.dtypes.to_dict()), rejects], ignore_index=True)

    load_id = conn.execute(
        query("ingest/start_load"),
        {"source": batch.source, "format": batch.format, "run_id": run_id, "rows_read": batch.rows_read},
    ).fetchone()[0]
    bars_to_write = Bars.of(good)
    new_partitions += _plan_new_partitions(conn, bars_to_write.ts, load_id)
    changes = _write_bars(conn, url, bars_to_write, new_partitions, held_spans, progress)
    changed_ids, changed_starts, changed_ends = (
        changes.crypto_ids.tolist(), changes.starts.tolist(), changes.ends.tolist()
    )
    conn.execute(
        query("ingest/log_invalidations"),
        {"load_id": load_id, "crypto_ids": changed_ids,
         "range_starts_us": changed_starts, "range_ends_us": changed_ends},
    )
    if len(rejects):
        _record_rejects(conn, rejects, load_id, batch.source)

    changed = dict(zip(changed_ids, zip(changed_starts, changed_ends)))
    batch_ids = sorted(set(bars_to_write.crypto_ids[_run_starts(bars_to_write.crypto_ids)].tolist()) | set(changed))
    conn.execute(
        query("ingest/finish_load"),
        {
            "crypto_ids": batch_ids,
            "range_starts_us": [changed[i][0] if i in changed else None for i in batch_ids],
            "range_ends_us": [changed[i][1] if i in changed else None for i in batch_ids],
            "bar_seconds": batch.bar_seconds,
        },
    )
    inserted, updated = int(changes.inserted.sum()), int(changes.updated.sum())
    report = LoadReport(
        load_id=load_id,
        source=batch.source,
        format=batch.format,
        rows_read=batch.rows_read,
        rows_inserted=inserted,
        rows_updated=updated,
        rows_unchanged=len(good) - inserted - updated,
        rows_collapsed=collapsed,
        rows_rejected=len(rejects),
        changed_symbols=sorted(symbol_of[i] for i in changed),
        min_ts=_timestamp(min(changed_starts)) if changed else None,
        max_ts=_timestamp(max(changed_ends)) if changed else None,
        seconds=0.0,
        reject_reasons=_reason_counts(rejects),
    )
    conn.execute(
        query("ingest/close_load"),
        {
            "load_id": load_id,
            "rows_inserted": report.rows_inserted,
            "rows_updated": report.rows_updated,
            "rows_unchanged": report.rows_unchanged,
            "rows_collapsed": report.rows_collapsed,
            "rows_rejected": report.rows_rejected,
            "min_ts": report.min_ts,
            "max_ts": report.max_ts,
        },
    )
    return report


def _record_rejects(conn: psycopg.Connection, rejects: pd.DataFrame, load_id: int, source: str) -> None:
    conn.execute(query("ingest/create_staging_rejects"))
    columns = ["line", "symbol", "ts", *PRICE_COLUMNS, "rule", "reason", "raw"]
    with conn.cursor().copy(f"COPY pg_temp.staging_rejects ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rejects[columns].itertuples(index=False):
            copy.write_row([None if _is_missing(x) else x for x in row])
    conn.execute(query("ingest/record_rejects"), {"load_id": load_id, "source": source})


def _is_missing(value) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _reason_counts(rejects: pd.DataFrame) -> dict[str, int]:
    """Refusals per rule, most common first."""
    return rejects["rule"].value_counts().to_dict() if len(rejects) else {}
