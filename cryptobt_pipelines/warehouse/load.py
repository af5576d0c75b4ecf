"""The one load path for every source: bulk validation, binary COPY into staging, upsert, invalidation log.

Everything of one batch happens in one transaction: the bars, the refused rows, the invalidation ranges and
the per-crypto data versions commit together or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql as pgsql

from cryptobt_pipelines.sources.batch import PRICE_COLUMNS, PriceBatch
from cryptobt_pipelines.warehouse.database import connect, query

PG_EPOCH_US = 946_684_800 * 1_000_000  # PostgreSQL counts timestamps from 2000-01-01
COPY_CHUNK_ROWS = 500_000
PARTITION_LOCK_KEY = 7_311_002  # serialises creating yearly partitions of market.prices
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BINARY_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
BINARY_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)
# One staged row as PostgreSQL's binary COPY wants it: field count, then (length, big-endian value) pairs.
STAGING_ROW = np.dtype(
    [("fields", ">i2"), ("id_len", ">i4"), ("crypto_id", ">i4"), ("ts_len", ">i4"), ("ts", ">i8")]
    + [item for c in PRICE_COLUMNS for item in ((f"{c}_len", ">i4"), (c, ">f8"))]
)

Progress = Callable[[str, int, int], None]


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
    """Why each row of a batch is refused: the first rule a row breaks is the one it is refused for."""

    def __init__(self, n: int):
        self.reasons = np.full(n, "", dtype=object)
        self.rules = np.full(n, "", dtype=object)

    @property
    def ok(self) -> np.ndarray:
        return self.reasons == ""

    def add(self, rule: str, mask: np.ndarray, make: Callable[[np.ndarray], list[str]]) -> None:
        todo = mask & self.ok
        if todo.any():
            rows = np.flatnonzero(todo)
            self.reasons[rows] = make(rows)
            self.rules[rows] = rule


def validate(
    bars: pd.DataFrame,
    crypto_ids: dict[str, int],
    held_intervals: dict[int, int | None],
    bar_seconds: int | None,
    now: datetime,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Split bars into (good bars with crypto_id, refused rows with reason, identical duplicates dropped)."""
    refusals = Refusals(len(bars))
    symbols = bars["symbol"].to_numpy(dtype=object)
    ts = bars["ts"]
    ts_us = ts.to_numpy(dtype="datetime64[us]").view(np.int64)  # NaT becomes int64 min
    values = {c: bars[c].to_numpy(dtype=np.float64) for c in PRICE_COLUMNS}
    o, h, low, c, v = (values[k] for k in PRICE_COLUMNS)

    codes, uniques = pd.factorize(symbols)
    id_of_code = np.array([crypto_ids.get(s, -1) for s in uniques] + [-1], dtype=np.int32)
    ids = id_of_code[codes]  # code -1 (missing symbol) picks the trailing -1

    def text(i: np.ndarray, col: str) -> list[str]:
        return [repr(float(x)) for x in values[col][i]]

    refusals.add("unknown_symbol", ids < 0, lambda i: [f"unknown symbol {symbols[k]!r} (not in market.cryptos)" for k in i])
    for col in ("open", "high", "low", "close"):
        x = values[col]
        refusals.add("missing_value", np.isnan(x), lambda i, col=col: [f"{col} is missing"] * len(i))
        refusals.add("not_finite", ~np.isfinite(x), lambda i, col=col: [f"{col} is not finite"] * len(i))
        refusals.add("not_positive", x <= 0, lambda i, col=col: [f"{col} is not positive ({t})" for t in text(i, col)])
    refusals.add("high_below_low", h < low, lambda i: [f"high {a} is below low {b}" for a, b in zip(text(i, "high"), text(i, "low"))])
    for col, x in (("open", o), ("close", c)):
        refusals.add(
            "outside_range",
            (x < low) | (x > h),
            lambda i, col=col: [
                f"{col} {a} is outside [low {b}, high {d}]"
                for a, b, d in zip(text(i, col), text(i, "low"), text(i, "high"))
            ],
        )
    refusals.add("missing_value", np.isnan(v), lambda i: ["volume is missing"] * len(i))
    refusals.add("not_finite", ~np.isfinite(v), lambda i: ["volume is not finite"] * len(i))
    refusals.add("negative_volume", v < 0, lambda i: [f"volume is negative ({t})" for t in text(i, "volume")])
    missing_ts = ts.isna().to_numpy()
    refusals.add("missing_value", missing_ts, lambda i: ["timestamp is missing"] * len(i))
    now_us = int(now.timestamp() * 1_000_000)
    refusals.add("future_timestamp", ~missing_ts & (ts_us > now_us),
                  lambda i: [f"timestamp {ts.iloc[k].isoformat()} is in the future" for k in i])
    if bar_seconds and 86_400 % bar_seconds == 0:
        off_grid = ~missing_ts & (ts_us % (bar_seconds * 1_000_000) != 0)
        grid = interval_name(bar_seconds)
        refusals.add("off_grid", off_grid,
                      lambda i: [f"timestamp {ts.iloc[k].isoformat()} is off the {grid} grid" for k in i])
    if bar_seconds:
        clashing = {cid for cid, held in held_intervals.items() if held and held != bar_seconds}
        if clashing:
            refusals.add(
                "interval_clash",
                np.isin(ids, list(clashing)),
                lambda i: [
                    f"{symbols[k]} holds {interval_name(held_intervals[ids[k]])} bars; "
                    f"this source has {interval_name(bar_seconds)} bars"
                    for k in i
                ],
            )

    # Duplicates of one (crypto, bar) inside the batch: identical copies collapse to one, conflicting
    # copies are all refused since nothing says which is right.
    still_good = refusals.ok
    keyed = pd.DataFrame({"crypto_id": ids, "ts": ts_us, **values, "line": bars["line"].to_numpy()})
    candidates = keyed[still_good]
    duplicated_key = candidates.duplicated(["crypto_id", "ts"], keep=False)
    collapsed = 0
    if duplicated_key.any():
        dupes = candidates[duplicated_key]
        distinct = dupes.drop_duplicates(["crypto_id", "ts", *PRICE_COLUMNS])
        variants = distinct.groupby(["crypto_id", "ts"]).size()
        conflicting_keys = variants[variants > 1].index
        in_conflict = pd.MultiIndex.from_frame(dupes[["crypto_id", "ts"]]).isin(conflicting_keys)
        conflicts = dupes[in_conflict]
        lines_of = conflicts.groupby(["crypto_id", "ts"])["line"].apply(lambda s: ", ".join(map(str, sorted(s))))
        for row_position, (key_id, key_ts) in zip(
            conflicts.index, zip(conflicts["crypto_id"], conflicts["ts"])
        ):
            stamp = pd.Timestamp(key_ts, unit="us", tz="UTC").isoformat()
            refusals.reasons[row_position] = (
                f"conflicting duplicate of {symbols[row_position]} {stamp} (lines {lines_of[(key_id, key_ts)]})"
            )
            refusals.rules[row_position] = "conflicting_duplicate"
        identical_extra = dupes[~in_conflict].duplicated(["crypto_id", "ts"], keep="first")
        collapsed = int(identical_extra.sum())
        still_good = refusals.ok
        still_good[identical_extra[identical_extra].index.to_numpy()] = False

    refused = ~refusals.ok
    rejects = pd.DataFrame(
        {
            "line": bars["line"].to_numpy()[refused],
            "symbol": symbols[refused],
            "ts": ts[refused].to_numpy(),
            **{col: values[col][refused] for col in PRICE_COLUMNS},
            "rule": refusals.rules[refused],
            "reason": refusals.reasons[refused],
            "raw": None,
        }
    )
    good = keyed[still_good].drop(columns="line")
    return good, rejects, collapsed


def _timestamp(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(micros))


def _copy_buffer(bars: pd.DataFrame) -> bytes:
    rows = np.empty(len(bars), dtype=STAGING_ROW)
    rows["fields"] = 2 + len(PRICE_COLUMNS)
    rows["id_len"], rows["ts_len"] = 4, 8
    rows["crypto_id"] = bars["crypto_id"].to_numpy()
    rows["ts"] = bars["ts"].to_numpy() - PG_EPOCH_US
    for col in PRICE_COLUMNS:
        rows[f"{col}_len"] = 8
        rows[col] = bars[col].to_numpy()
    return rows.tobytes()


def _copy_bars(conn: psycopg.Connection, table: str, bars: pd.DataFrame, progress: Progress, done: int,
               total: int) -> None:
    columns = ", ".join(["crypto_id", "ts", *PRICE_COLUMNS])
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(BINARY_COPY_HEADER)
        for start in range(0, len(bars), COPY_CHUNK_ROWS):
            copy.write(_copy_buffer(bars.iloc[start : start + COPY_CHUNK_ROWS]))
            progress("load", done + min(start + COPY_CHUNK_ROWS, len(bars)), total)
        copy.write(BINARY_COPY_TRAILER)


def _sorted_by_key(good: pd.DataFrame) -> pd.DataFrame:
    """Rows in primary-key order keep the index inserts local; generated data already is."""
    if len(good) < 2:
        return good
    ids, ts = good["crypto_id"].to_numpy(), good["ts"].to_numpy()
    id_steps, ts_steps = np.diff(ids), np.diff(ts)
    if ((id_steps > 0) | ((id_steps == 0) & (ts_steps > 0))).all():
        return good
    return good.iloc[np.lexsort((ts, ids))]


def _ranges_per_crypto(bars: pd.DataFrame) -> pd.DataFrame:
    """Per crypto of key-sorted bars: crypto_id, range_start and range_end (µs), rows."""
    ids, ts = bars["crypto_id"].to_numpy(), bars["ts"].to_numpy()
    if len(ids) == 0:
        return pd.DataFrame({"crypto_id": [], "range_start": [], "range_end": [], "rows": []}, dtype=np.int64)
    firsts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    lasts = np.r_[firsts[1:] - 1, len(ids) - 1]
    return pd.DataFrame(
        {"crypto_id": ids[firsts], "range_start": ts[firsts], "range_end": ts[lasts], "rows": lasts - firsts + 1}
    )


def _ensure_year_partitions(conn: psycopg.Connection, ts_micros: np.ndarray) -> None:
    if len(ts_micros) == 0:
        return
    relkind = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'market.prices'::regclass").fetchone()[0]
    if relkind != "p":
        return  # not declaratively partitioned (a TimescaleDB hypertable makes its own chunks)
    first, last = _timestamp(ts_micros.min()), _timestamp(ts_micros.max())
    wanted = {f"prices_{year}": year for year in range(first.year, last.year + 1)}
    existing = {name for (name,) in conn.execute(query("ingest/price_partitions"))}
    missing = sorted(set(wanted) - existing)
    if not missing:
        return
    conn.execute("SELECT pg_advisory_xact_lock(%s)", [PARTITION_LOCK_KEY])
    for name in missing:
        year = wanted[name]
        conn.execute(
            pgsql.SQL(query("ingest/create_price_partition")).format(
                partition=pgsql.Identifier(name),
                year_start=pgsql.Literal(f"{year}-01-01 00:00:00+00"),
                next_year_start=pgsql.Literal(f"{year + 1}-01-01 00:00:00+00"),
            )
        )


CHANGE_COLUMNS = ["crypto_id", "range_start", "range_end", "rows_inserted", "rows_updated"]


def _write_bars(conn: psycopg.Connection, good: pd.DataFrame, progress: Progress) -> pd.DataFrame:
    """Write key-sorted validated bars; returns per changed crypto its changed range (µs) and row counts."""
    ranges = _ranges_per_crypto(good)
    overlapping = {
        crypto_id
        for (crypto_id,) in conn.execute(
            query("ingest/cryptos_with_bars_in_range"),
            {
                "crypto_ids": ranges["crypto_id"].tolist(),
                "range_starts": [_timestamp(t) for t in ranges["range_start"]],
                "range_ends": [_timestamp(t) for t in ranges["range_end"]],
            },
        )
    }
    # A crypto with no bars yet inside its range cannot conflict (this load holds its row lock), so its rows
    # are copied straight into market.prices; the others go through staging and the upsert.
    needs_upsert = good["crypto_id"].isin(overlapping).to_numpy()
    direct, staged = good[~needs_upsert], good[needs_upsert]
    changes = []
    if len(direct):
        _copy_bars(conn, "market.prices", direct, progress, 0, len(good))
        copied = _ranges_per_crypto(direct)
        changes.append(copied.assign(rows_inserted=copied["rows"], rows_updated=0)[CHANGE_COLUMNS])
    if len(staged):
        conn.execute(query("ingest/create_staging"))
        _copy_bars(conn, "pg_temp.staging_prices", staged, progress, len(direct), len(good))
        upserted = pd.DataFrame(conn.execute(query("ingest/upsert_prices")).fetchall(), columns=CHANGE_COLUMNS)
        for col in ("range_start", "range_end"):
            upserted[col] = [(t - EPOCH) // timedelta(microseconds=1) for t in upserted[col]]
        changes.append(upserted)
    if not changes:
        return pd.DataFrame({c: pd.Series([], dtype=np.int64) for c in CHANGE_COLUMNS})
    return pd.concat(changes, ignore_index=True)


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
    bars = batch.bars
    symbols = pd.unique(bars["symbol"].dropna()).tolist()

    with connect(url) as conn:
        locked = conn.execute(query("ingest/lock_cryptos"), {"symbols": symbols}).fetchall()
        crypto_ids = {symbol: crypto_id for crypto_id, symbol, _ in locked}
        held_intervals = {crypto_id: held for crypto_id, _, held in locked}
        symbol_of = {crypto_id: symbol for symbol, crypto_id in crypto_ids.items()}

        good, rejects, collapsed = validate(bars, crypto_ids, held_intervals, batch.bar_seconds, now)
        if len(batch.rejects):
            parse_rejects = batch.rejects.assign(
                ts=pd.NaT, rule="unparsable", **{c: np.nan for c in PRICE_COLUMNS}
            )[rejects.columns]
            rejects = pd.concat([parse_rejects.astype(rejects.dtypes.to_dict()), rejects], ignore_index=True)

        load_id = conn.execute(
            query("ingest/start_load"),
            {"source": batch.source, "format": batch.format, "run_id": run_id, "rows_read": batch.rows_read},
        ).fetchone()[0]
        good = _sorted_by_key(good)
        _ensure_year_partitions(conn, good["ts"].to_numpy())
        changes = _write_bars(conn, good, progress)
        changed_starts = [_timestamp(t) for t in changes["range_start"]]
        changed_ends = [_timestamp(t) for t in changes["range_end"]]
        conn.execute(
            query("ingest/log_invalidations"),
            {"load_id": load_id, "crypto_ids": changes["crypto_id"].tolist(),
             "range_starts": changed_starts, "range_ends": changed_ends},
        )
        if len(rejects):
            _record_rejects(conn, rejects, load_id, batch.source)

        changed = dict(zip(changes["crypto_id"].tolist(), zip(changed_starts, changed_ends)))
        batch_ids = sorted(set(good["crypto_id"].unique().tolist()) | set(changed))
        conn.execute(
            query("ingest/finish_load"),
            {
                "crypto_ids": batch_ids,
                "range_starts": [changed[i][0] if i in changed else None for i in batch_ids],
                "range_ends": [changed[i][1] if i in changed else None for i in batch_ids],
                "bar_seconds": batch.bar_seconds,
            },
        )
        inserted, updated = int(changes["rows_inserted"].sum()), int(changes["rows_updated"].sum())
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
            min_ts=min(changed_starts, default=None),
            max_ts=max(changed_ends, default=None),
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
    report.seconds = time.perf_counter() - started
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
