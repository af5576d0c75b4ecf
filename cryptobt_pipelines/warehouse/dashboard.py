"""The dashboard summary, ``serving.crypto_dashboard_summary``: one row per crypto of the universe.

A naive view recomputes all-time highs and lows over the whole daily history at every refresh (~0.5 s at
263 cryptos × 5 years). Here they live in ``serving.crypto_extremes``, kept up to date from
``market.rollup_changes`` (the daily buckets each rollup refresh rewrote); the view itself reads only that
table, each crypto's latest raw bars and its last 30 daily buckets, all by index. A refresh applies the
pending changes and refreshes the view CONCURRENTLY in one transaction: readers never wait and see the old
rows until it commits, and a refresh that dies leaves extremes, view and change log as they were.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from cryptobt_pipelines.warehouse.database import query, transaction

DASHBOARD_LOCK_KEY = 7_311_009
# Sums of floats depend on their order: the live computation may add the same volumes in another order.
VOLUME_COLUMNS = ("volume_7d", "volume_30d")
VOLUME_RELATIVE_TOLERANCE = 1e-9


@dataclass
class DashboardRefresh:
    refresh_id: int
    rebuilt: bool
    changes_applied: int
    through_change_id: int | None
    cryptos_rescanned: int
    extremes_changed: list[str]
    rows: int
    seconds: float


def refresh_dashboard(url: str | None = None, rebuild: bool = False) -> DashboardRefresh:
    """Apply the pending rollup changes to the all-time extremes, then refresh the view.

    ``rebuild`` recomputes the extremes from the whole daily rollup instead (after a rollup rebuild, which
    records no changes); the first refresh of a warehouse always does.
    """
    started = time.perf_counter()
    with transaction(url) as conn:
        conn.execute("SET LOCAL jit = off")  # JIT made a refresh 17x slower on a hypertable (DESIGN.md pitfalls)
        # Extremes, view and consumed log entries commit together: a commit lost in a crash loses all three
        # and the next refresh redoes them, so there is no need to wait for the WAL flush.
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [DASHBOARD_LOCK_KEY])
        rebuild = rebuild or conn.execute(query("dashboard/last_refresh")).fetchone()[0] is None
        changes, through, rescanned, changed = conn.execute(
            query("dashboard/rebuild_extremes" if rebuild else "dashboard/apply_rollup_changes")).fetchone()
        conn.execute(query("dashboard/refresh_summary"))
        refresh_id, rows = conn.execute(query("dashboard/record_refresh"), {
            "rebuilt": rebuild, "changes_applied": changes, "through_change_id": through,
            "cryptos_rescanned": rescanned, "extremes_changed": len(changed),
            "milliseconds": (time.perf_counter() - started) * 1000,
        }).fetchone()
    return DashboardRefresh(refresh_id, rebuild, changes, through, rescanned, changed, rows,
                            time.perf_counter() - started)


@dataclass
class LiveComparison:
    """The view beside the same summary computed live, for cryptos with no change pending."""

    compared: int
    pending: list[int]
    mismatched: dict[int, list[str]] = field(default_factory=dict)  # crypto_id -> columns that differ


def compare_with_live(url: str | None = None) -> LiveComparison:
    """Compare every row of the view with the live computation, in one snapshot.

    Cryptos with bars the rollups have not refreshed, or rewritten days the dashboard has not applied, are
    expected to lag and left out; every other crypto must match exactly (volumes to 1e-9 relative), and
    the two must list the same cryptos.
    """
    with transaction(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL jit = off")
        pending = {row[0] for row in conn.execute(query("dashboard/cryptos_pending"))}
        cursor = conn.execute(query("dashboard/summary"))
        columns = [d.name for d in cursor.description]
        shown = {row[0]: row for row in cursor}
        live = {row[0]: row for row in conn.execute(query("dashboard/live_summary"))}
    comparison = LiveComparison(compared=0, pending=sorted(pending & (shown.keys() | live.keys())))
    for crypto_id in sorted((shown.keys() | live.keys()) - pending):
        comparison.compared += 1
        if crypto_id not in shown or crypto_id not in live:
            missing_from = "view" if crypto_id in live else "live computation"
            comparison.mismatched[crypto_id] = [f"row missing from the {missing_from}"]
            continue
        differing = [name for name, a, b in zip(columns, shown[crypto_id], live[crypto_id], strict=True)
                     if not _same(name, a, b)]
        if differing:
            comparison.mismatched[crypto_id] = differing
    return comparison


def _same(column: str, shown, live) -> bool:
    if column in VOLUME_COLUMNS and shown is not None and live is not None:
        return math.isclose(shown, live, rel_tol=VOLUME_RELATIVE_TOLERANCE)
    return shown == live


def top_movers(url: str | None = None, per_side: int = 5) -> list[tuple]:
    """The ``per_side`` largest 24 h rises and falls: (symbol, current_price, price_24h_ago, change %, as_of)."""
    with transaction(url) as conn:
        return conn.execute(query("dashboard/top_movers"), {"per_side": per_side}).fetchall()
