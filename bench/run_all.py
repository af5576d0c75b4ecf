"""`make bench`: every benchmark at the seed's scale in one run, beside its peers, in one table.

    PYTHONPATH=. python bench/run_all.py [--cryptos 263] [--years 5] [--quick]

One warehouse of 263 cryptos × 5 years hourly (11.5 M bars of the synthetic set, on CRYPTOBT_DATABASE_URL
when set, else the embedded server) serves the ingest, rollup, dashboard and batch-backtest stages in turn, each
appending its own hours after the last; the engine stages run in fresh processes on their own arrays, the
nightly stage on a warehouse of 263 × 2,000 days. Peers run in the same command on the same data: a bare binary
COPY into an UNLOGGED table, a full rollup rebuild, a naive dashboard view, vectorbt, and the seed's published
figures. Every figure is a median of repeated runs after a warm-up, with min and max beside it; cold starts are
measured apart, in fresh processes. Prints one table (metric, seed before, seed after, peer, ours, ratio) and
writes every figure to ``bench/results/latest.json``. Prints figures only; never asserts a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dashboard
import engine
import ingest
import rollups
from common import full_scale_warehouse, machine, server_url
from tqdm import tqdm

RESULTS = Path(__file__).parent / "results" / "latest.json"
START = datetime(2019, 6, 1, tzinfo=UTC)  # as the per-stage scripts: five years, appends inside one partition


@dataclass(frozen=True)
class Row:
    """One line of the table: ours beside a peer measured in the same run and/or the seed's published figures."""

    label: str
    unit: str
    ours: str  # metric name
    peer: str | None = None  # metric name
    peer_label: str = ""
    seed_before: float | None = None
    seed_after: float | None = None
    higher_is_better: bool = False

    def ratio(self, ours: float, peer: float | None) -> float | None:
        """How many times better ours is than the reference: the peer, else the seed's tuned figure."""
        reference = peer if peer is not None else self.seed_after
        if reference is None or not ours:
            return None
        return ours / reference if self.higher_is_better else reference / ours


ROWS = [
    Row("ingest, full load", "rows/s", "ingest_rows_per_s", "copy_unlogged_rows_per_s", "bare COPY, UNLOGGED",
        higher_is_better=True),
    Row("rollups after a 1-hour append", "ms", "rollup_incremental_ms", "rollup_full_ms", "full rebuild"),
    Row("dashboard refresh after an append", "ms", "dashboard_refresh_after_append_ms", "dashboard_refresh_naive_ms",
        "naive view"),
    Row("dashboard query, 263 rows", "ms", "dashboard_query_ms", seed_before=487, seed_after=43),
    Row("batch of 5 backtests, uncached", "ms", "batch5_uncached_ms", seed_before=10_000, seed_after=2_300),
    Row("batch of 5 backtests, cached", "ms", "batch5_cached_ms", seed_before=2_000, seed_after=10),
    Row("SMA grid, 26,300 backtests", "s", "engine_grid_s", "vectorbt_grid_s", "vectorbt"),
    Row("SMA 20/50, 263 × 5 y hourly", "s", "engine_universe_hourly_s", "vectorbt_universe_hourly_s", "vectorbt"),
    Row("catalog, 263 × 2,000 days", "s", "engine_catalog_s", "vectorbt_catalog_s", "vectorbt"),
    Row("memory peak, SMA grid", "MB", "engine_grid_peak_mb", "vectorbt_grid_peak_mb", "vectorbt"),
    Row("memory peak, hourly", "MB", "engine_universe_hourly_peak_mb", "vectorbt_universe_hourly_peak_mb", "vectorbt"),
    Row("nightly run, 263 cryptos (Dagster)", "s", "nightly_wall_s", "nightly_engine_s", "engine alone"),
    Row("cold start, engine, no disk cache", "s", "engine_cold_compile_s"),
    Row("cold start, engine, disk cache", "s", "engine_cold_cached_s"),
]


def stage_warehouse(args, admin_url: str, metrics: list[dict], progress: tqdm) -> None:
    """Ingest, rollups, dashboard and batch backtests, in that order, on one full-scale warehouse."""
    with full_scale_warehouse(admin_url, f"bench_all_{int(time.time())}", args.cryptos, args.years, START,
                              keep_batch=True) as warehouse:
        progress.set_postfix_str("ingest")
        metrics += ingest.measure(admin_url, warehouse, args.appends)
        warehouse.batch = None  # 1.5 GB the later stages do not need
        progress.update()
        progress.set_postfix_str("rollups")
        figures, _ = rollups.measure(warehouse, args.warmup, args.appends, args.rebuilds)
        metrics += figures
        progress.update()
        progress.set_postfix_str("dashboard")
        figures, _ = dashboard.measure(warehouse, args.appends, args.corrections, args.query_repeats)
        metrics += figures
        progress.update()


def stage_engines(args, metrics: list[dict], progress: tqdm) -> None:
    progress.set_postfix_str("engines beside vectorbt")
    engine.engines_beside_vectorbt(argparse.Namespace(runs=args.runs, no_vectorbt=False), metrics)
    progress.update()
    progress.set_postfix_str("nightly run")
    engine.nightly(args.home, metrics)
    progress.update()


def value(metrics: dict[str, dict], name: str | None) -> float | None:
    return metrics[name]["value"] if name in metrics else None


def number(x: float | None) -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def table(metrics: dict[str, dict]) -> list[dict]:
    lines = []
    for row in ROWS:
        ours, peer = value(metrics, row.ours), value(metrics, row.peer)
        ratio = None if ours is None else row.ratio(ours, peer)
        spread = metrics.get(row.ours, {})
        lines.append({"metric": f"{row.label} ({row.unit})", "seed_before": row.seed_before,
                      "seed_after": row.seed_after, "peer": peer, "peer_is": row.peer_label or None, "ours": ours,
                      "ours_min": spread.get("min"), "ours_max": spread.get("max"), "ratio": ratio})
    return lines


def print_table(lines: list[dict]) -> None:
    header = f"{'metric':<44} {'seed before':>11} {'seed after':>10} {'peer':>12} {'ours':>10} {'ratio':>8}  peer is"
    print("\n" + header + "\n" + "-" * (len(header) + 12))
    for line in lines:
        ratio = f"{line['ratio']:.1f}x" if line["ratio"] is not None else "—"
        print(f"{line['metric']:<44} {number(line['seed_before']):>11} {number(line['seed_after']):>10} "
              f"{number(line['peer']):>12} {number(line['ours']):>10} {ratio:>8}  {line['peer_is'] or ''}")
    print("ratio: how many times better ours is than the peer (else the seed's tuned figure); ours is the median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cryptos", type=int, default=263)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="20 cryptos x 1 year, few repeats: a check that it runs")
    parser.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "cryptobt-bench-home")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    repeats = dict(appends=20, warmup=10, rebuilds=3, corrections=5, query_repeats=500, runs=3)
    if args.quick:
        args.cryptos, args.years = 20, 1.0
        repeats = dict(appends=3, warmup=2, rebuilds=2, corrections=1, query_repeats=20, runs=1)
    vars(args).update(repeats)

    started = time.perf_counter()
    admin_url = server_url(args.home)
    info = machine(admin_url)
    metrics: list[dict] = []
    with tqdm(total=5, desc="make bench", unit="stage", position=0, file=sys.stdout) as progress:
        stage_warehouse(args, admin_url, metrics, progress)
        stage_engines(args, metrics, progress)
    by_name = {}
    for metric in metrics:
        by_name.setdefault(metric["name"], metric)  # "rows" comes from several stages: the same figure
    lines = table(by_name)
    print_table(lines)
    seconds = time.perf_counter() - started
    print(f"\n{len(by_name)} figures in {seconds / 60:.1f} min")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "metrics": list(by_name.values()), "table": lines, "machine": info,
        "scale": {"cryptos": args.cryptos, "years": args.years, **repeats},
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"), "duration_s": round(seconds, 1),
    }, indent=2, default=str) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
